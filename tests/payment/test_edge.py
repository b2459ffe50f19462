"""The payment edge as an attacker and a careful operator try it (issue: harden the edge).

Every test goes through HTTP against a live server, the real SDKs and the separate sandbox; on
the embedded default and, in CI's second pass, on PostgreSQL + Redis + RabbitMQ.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from gonglun.plugins.payment.models import ChannelNotification, Payment, ReconItem
from tests.payment.conftest import Live, wait_until
from tests.payment.test_orders import fund, refused


def count(live: Live, model: Any, *where: Any) -> int:
    with live.rt.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)))


def sandbox_trades(live: Live, channel: str) -> int:
    return len(live.sb.get(f"/sandbox/{channel}/trades").json()["data"])


# -- idempotency keys (Stripe's semantics) -------------------------------------------------


def test_idempotency_key_replays_and_refuses_another_body(live: Live) -> None:
    """The landed bug: a replay with another method built Alipay parameters for a WeChat
    order, so the buyer paid and was never credited."""
    _, headers = live.user()
    keyed = {**headers, "Idempotency-Key": "pay-20261130-0001"}
    body = {"scene": "recharge_money", "amount": 800, "method": "wxpay", "channel": "native"}
    first = live.http.post("/v1/payments", headers=keyed, json=body)
    assert first.status_code == 201, first.text
    trades = sandbox_trades(live, "wxpay")

    replay = live.http.post("/v1/payments", headers=keyed, json=dict(reversed(body.items())))
    assert replay.status_code == 201 and replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert sandbox_trades(live, "wxpay") == trades  # no second channel call

    for other in ({**body, "method": "alipay", "channel": "page"}, {**body, "amount": 801}):
        refused(live, live.http.post("/v1/payments", headers=keyed, json=other), 422,
                "idempotency.mismatch")
    assert count(live, Payment) == 1 and sandbox_trades(live, "wxpay") == trades

    # Scoped to the caller: another user's identical key is another request.
    _, other_user = live.user("other")
    theirs = live.http.post("/v1/payments", headers={**other_user, "Idempotency-Key":
                                                     "pay-20261130-0001"}, json=body)
    assert theirs.status_code == 201
    assert theirs.json()["data"]["payment"]["id"] != first.json()["data"]["payment"]["id"]


def test_idempotency_keys_are_compared_whole(live: Live) -> None:
    _, headers = live.user()
    body = {"scene": "recharge_money", "amount": 100, "method": "wxpay", "channel": "native"}
    common = "k" * 150  # keys used to be cut at 100 characters: these two collided
    a = live.http.post("/v1/payments", headers={**headers, "Idempotency-Key": common + "A"},
                       json=body)
    b = live.http.post("/v1/payments", headers={**headers, "Idempotency-Key": common + "B"},
                       json=body)
    assert a.status_code == b.status_code == 201
    assert a.json()["data"]["payment"]["id"] != b.json()["data"]["payment"]["id"]
    refused(live, live.http.post("/v1/payments", headers={**headers, "Idempotency-Key":
                                                          "x" * 256}, json=body),
            400, "idempotency.invalid_key")
    assert count(live, Payment) == 2


def test_idempotent_balance_payment_concurrent_replays_pay_once(live: Live) -> None:
    buyer, headers = live.user()
    seller, _ = live.user("seller")
    fund(live, buyer, 1000)
    keyed = {**headers, "Idempotency-Key": "tao-once"}
    body = {"scene": "tao", "amount": 300, "method": "money", "seller_id": seller}
    results: list[int] = []

    def send() -> None:
        results.append(live.http.post("/v1/payments", headers=keyed, json=body).status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) <= {201, 409} and 201 in results
    assert count(live, Payment) == 1
    assert live.balance(headers) == 700


# -- WeChat notifications: coupons, parties, time, serials --------------------------------


def wechat_note(live: Live, resource: dict[str, Any], *, event: str = "TRANSACTION.SUCCESS",
                timestamp: int | None = None, serial: str | None = None) -> tuple[dict, bytes]:
    """A notification signed with the platform key, as WeChat (or the sandbox) sends it."""
    from gonglun.sandbox.keys import rsa_sign

    wx = live.sandbox.wxpay
    body = json.dumps({
        "id": "note-1", "create_time": "2026-11-30T10:00:00+08:00",
        "resource_type": "encrypt-resource", "event_type": event, "summary": "支付成功",
        "resource": wx._encrypt(resource, "transaction"),
    }, separators=(",", ":"))
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = base64.b16encode(b"nonce-0123456789").decode()
    headers = {
        "Content-Type": "application/json",
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": rsa_sign(wx.platform_private_key, f"{ts}\n{nonce}\n{body}\n"),
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Serial": serial or wx.public_key_id,
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }
    return headers, body.encode()


def wx_unpaid(live: Live, headers: dict[str, str], amount: int) -> dict[str, Any]:
    created = live.create(headers, scene="recharge_money", amount=amount, method="wxpay",
                          channel="native")
    assert created.status_code == 201, created.text
    return created.json()["data"]["payment"]


def resource_for(live: Live, payment: dict[str, Any], **over: Any) -> dict[str, Any]:
    keys = live.keyset["wxpay"]
    resource = {
        "appid": keys["appid"], "mchid": keys["mchid"],
        "out_trade_no": payment["payment_order"], "transaction_id": "4200000001202611300001",
        "trade_type": "NATIVE", "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
        "bank_type": "OTHERS", "success_time": "2026-11-30T10:00:00+08:00",
        "payer": {"openid": "o-buyer"},
        "amount": {"total": payment["amount"], "payer_total": payment["amount"],
                   "currency": "CNY", "payer_currency": "CNY"},
    }
    for key, value in over.items():
        if value is None:
            resource.pop(key, None)
        else:
            resource[key] = value
    return resource


def test_coupon_payment_is_credited_in_full(live: Live) -> None:
    """``amount.total`` is the order; a coupon makes ``payer_total`` smaller. The sandbox pays
    with a coupon through its control API, the real notification path does the rest."""
    _, headers = live.user()
    payment = wx_unpaid(live, headers, 1000)
    paid = live.sb.post(f"/sandbox/wxpay/transactions/{payment['payment_order']}/pay",
                        json={"coupon": 200})
    assert paid.status_code == 200, paid.text
    assert paid.json()["data"]["amount"] == {"total": 1000, "currency": "CNY",
                                             "payer_currency": "CNY", "payer_total": 800}
    wait_until(lambda: live.balance(headers) == 1000, what="credited in full")
    assert live.payment(payment["id"], headers)["state"] == "ok"


@pytest.mark.parametrize(("over", "why"), [
    ({"mchid": "1999999999"}, "merchant_mismatch"),
    ({"appid": "wx0000000000000000"}, "appid_mismatch"),
    ({"mchid": None}, "merchant_mismatch"),
    ({"appid": None}, "appid_mismatch"),
])
def test_genuine_notification_for_other_parties_is_held(live: Live, over: dict, why: str) -> None:
    """Signed by the platform, but not for us: never applied, never dropped either: held for
    review (a reconciliation item and an alarm), acknowledged so WeChat stops retrying."""
    _, headers = live.user()
    payment = wx_unpaid(live, headers, 450)
    note_headers, body = wechat_note(live, resource_for(live, payment, **over))
    answer = live.http.post("/v1/notify/wxpay", headers=note_headers, content=body)
    assert answer.status_code == 204, answer.text
    live.settle_outbox()
    assert live.payment(payment["id"], headers)["state"] == "wait_pay"
    assert live.balance(headers) == 0
    with live.rt.db.read() as session:
        item = session.execute(select(ReconItem)).scalar_one()
        note = session.execute(select(ChannelNotification)).scalar_one()
    assert (item.kind, item.channel_state, item.status) == ("notification_rejected", why, "open")
    assert item.payment_order == payment["payment_order"] and item.channel_amount == 450
    assert note.verified and note.outcome == f"rejected:{why}"
    listed = live.http.get("/v1/admin/reconciliation",
                           headers=live.user("cs", role="admin")[1]).json()["data"]
    assert [i["kind"] for i in listed["items"]] == ["notification_rejected"]
    from gonglun.hooks.deferred import OutboxEvent

    with live.rt.db.read() as session:
        alarms = list(session.scalars(select(OutboxEvent.payload).where(
            OutboxEvent.hook == "alarm")))
    assert any(why in a for a in alarms)


@pytest.mark.parametrize(("kind", "outcome"), [
    ("stale", "rejected:stale_timestamp"),
    ("future", "rejected:stale_timestamp"),
    ("serial", "rejected:unknown_serial"),
])
def test_replayed_or_unknown_key_notifications_are_refused(live: Live, kind: str,
                                                           outcome: str) -> None:
    _, headers = live.user()
    payment = wx_unpaid(live, headers, 300)
    stamp = {"stale": int(time.time()) - 301, "future": int(time.time()) + 301}.get(kind)
    serial = "PUB_KEY_ID_0000000000000UNKNOWN" if kind == "serial" else None
    note_headers, body = wechat_note(live, resource_for(live, payment), timestamp=stamp,
                                     serial=serial)
    started = time.monotonic()
    answer = live.http.post("/v1/notify/wxpay", headers=note_headers, content=body)
    assert time.monotonic() - started < 2  # no certificate download on the request path
    assert answer.status_code == 400
    live.settle_outbox()
    assert live.payment(payment["id"], headers)["state"] == "wait_pay"
    with live.rt.db.read() as session:
        note = session.execute(select(ChannelNotification)).scalar_one()
    assert note.outcome == outcome and not note.verified


def test_alipay_seller_id_is_checked_when_configured(live: Live) -> None:
    live.rt.config.data["payment"]["alipay"] = {"seller_id": "2088000000000001"}
    live.rt.__dict__.pop("_payment_channels", None)
    from tests.payment.test_recharge import recharge_alipay

    _, headers = live.user()
    payment = recharge_alipay(live, headers, 700)
    assert live.sb.post(f"/sandbox/alipay/trades/{payment['payment_order']}/pay").is_success
    wait_until(lambda: count(live, ReconItem) == 1, what="held for review")
    assert live.payment(payment["id"], headers)["state"] == "wait_pay"
    with live.rt.db.read() as session:
        assert session.execute(select(ReconItem.channel_state)).scalar() == "seller_mismatch"


# -- no request can stall the server -------------------------------------------------------


def raw_request(base: str, head: str, body: bytes = b"", timeout: float = 5) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode() + body)
        chunks = b""
        while b"\r\n\r\n" not in chunks:
            data = sock.recv(65536)
            if not data:
                break
            chunks += data
        return chunks


@pytest.mark.parametrize("path", ["/v1/notify/alipay", "/v1/notify/wxpay", "/v1/payments",
                                  "/v1/sessions"])
def test_50_mb_bodies_are_refused_before_being_read(live: Live, path: str) -> None:
    """A client announcing 50 MB is answered 413 after its first bytes, not after 50 MB."""
    started = time.monotonic()
    reply = raw_request(live.base, f"POST {path} HTTP/1.1\r\nHost: x\r\n"
                        "Content-Type: application/json\r\nContent-Length: 52428800\r\n\r\n",
                        b"{" + b" " * 65535)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"request.too_large" in reply or b"Content-Length" in reply
    assert time.monotonic() - started < 2
    assert count(live, ChannelNotification) == 0


def test_chunked_notification_body_is_cut_at_the_limit(live: Live) -> None:
    chunk = b"a" * 32768
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
    reply = raw_request(live.base, "POST /v1/notify/alipay HTTP/1.1\r\nHost: x\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n", body)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert count(live, ChannelNotification) == 0


def test_unverified_bodies_are_kept_only_bounded(live: Live) -> None:
    junk = b"out_trade_no=1&sign=AAAA&" + b"x" * 60000
    answer = live.http.post("/v1/notify/alipay", content=junk,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.text == "fail"
    with live.rt.db.read() as session:
        note = session.execute(select(ChannelNotification)).scalar_one()
    assert not note.verified and len(note.body.encode()) < 2300
    assert "truncated: 60025 bytes, sha256 " in note.body


def test_anonymous_stall_attempts_leave_health_fast(live: Live) -> None:
    """Unknown serials, huge bodies and wrong passwords at once: /v1/health keeps answering
    within 200 ms."""
    _, headers = live.user()
    payment = wx_unpaid(live, headers, 100)
    note_headers, body = wechat_note(live, resource_for(live, payment), serial="UNKNOWN0001")
    stop = threading.Event()

    def attack(n: int) -> None:
        while not stop.is_set():
            if n % 3 == 0:
                live.http.post("/v1/notify/wxpay", headers=note_headers, content=body)
            elif n % 3 == 1:
                raw_request(live.base, "POST /v1/notify/alipay HTTP/1.1\r\nHost: x\r\n"
                            "Content-Length: 52428800\r\n\r\n", b"x" * 65536)
            else:
                live.http.post("/v1/sessions", json={"login": f"victim{n}", "password": "x" * 9})

    attackers = [threading.Thread(target=attack, args=(n,)) for n in range(12)]
    for t in attackers:
        t.start()
    try:
        time.sleep(0.5)
        timings = []
        for _ in range(20):
            started = time.monotonic()
            assert live.http.get("/v1/health").status_code == 200
            timings.append(time.monotonic() - started)
    finally:
        stop.set()
        for t in attackers:
            t.join()
    timings.sort()
    assert timings[len(timings) // 2] < 0.2, timings
    assert timings[-2] < 0.5, timings


def test_wrong_passwords_are_throttled_without_slowing_others(live: Live) -> None:
    """32 concurrent wrong passwords for one account: most never reach Argon2 (429 with
    Retry-After), and another user's requests stay fast."""
    live.user("victim")
    _, other = live.user("bystander")
    answers: list[Any] = []

    def guess(n: int) -> None:
        answers.append(live.http.post("/v1/sessions", json={
            "login": "victim", "password": f"wrong-guess-{n}"}))

    guessers = [threading.Thread(target=guess, args=(n,)) for n in range(32)]
    for t in guessers:
        t.start()
    timings = []
    for _ in range(15):
        started = time.monotonic()
        assert live.http.get("/v1/me", headers=other).status_code == 200
        timings.append(time.monotonic() - started)
    for t in guessers:
        t.join()
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(401) <= 5 and statuses.count(429) >= 27, statuses
    limited = next(a for a in answers if a.status_code == 429)
    assert limited.json()["error"] == "auth.too_many_attempts"
    assert int(limited.headers["Retry-After"]) >= 1
    # Even the right password waits out the block; the bystander logs in.
    blocked = live.http.post("/v1/sessions", json={"login": "victim",
                                                   "password": "long enough password"})
    assert blocked.status_code == 429
    fine = live.http.post("/v1/sessions", json={"login": "bystander",
                                                "password": "long enough password"})
    assert fine.status_code == 201 and fine.headers["Cache-Control"] == "no-store"
    timings.sort()
    assert timings[len(timings) // 2] < 0.25, timings


# -- guests, return URLs, who may act --------------------------------------------------------


def test_guests_cannot_create_unlimited_orders(live: Live) -> None:
    live.rt.config.data["payment"]["guest_orders_per_min"] = 3
    body = {"scene": "face_number", "amount": 100, "method": "wxpay", "channel": "native"}
    statuses = [live.create(None, **body).status_code for _ in range(5)]
    assert statuses == [201, 201, 201, 429, 429]
    refused(live, live.create(None, **body), 429, "payment.create_rate_limited")
    assert count(live, Payment) == 3


@pytest.mark.parametrize("url", ["https://evil.example/back", "javascript:alert(1)",
                                 "ftp://shop.example/x", "//evil.example",
                                 "https://evil.example\\@shop.example/",
                                 "https://shop.example@evil.example/",
                                 "https://shop.example /x"])
def test_return_url_must_be_http_on_configured_hosts(live: Live, url: str) -> None:
    live.rt.config.data["server"]["return_hosts"] = ["shop.example"]
    _, headers = live.user()
    body = {"scene": "recharge_money", "amount": 100, "method": "alipay", "channel": "page"}
    refused(live, live.create(headers, **body, return_url=url), 400,
            "payment.return_url_not_allowed")
    assert count(live, Payment) == 0
    ok = live.create(headers, **body, return_url="https://shop.example/paid")
    assert ok.status_code == 201, ok.text


def test_channel_errors_never_reach_the_client(live: Live) -> None:
    _, headers = live.user()
    payment = wx_unpaid(live, headers, 100)
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "http": "500", "count": 3})
    answer = live.http.post(f"/v1/payments/{payment['id']}/sync", headers=headers)
    refused(live, answer, 502, "payment.channel_error", "支付渠道查询失败,请稍后重试")
    assert "127.0.0.1" not in answer.text and "Error" not in answer.text
    assert answer.headers["X-Request-Id"]


# -- found by the attacker's review -----------------------------------------------------------


def test_a_failed_request_keeps_its_key_bound_to_its_body(live: Live) -> None:
    """A 502 used to release the key: a retry with another method then got the first order
    with the other channel's cashier (paid, never credited)."""
    _, headers = live.user()
    keyed = {**headers, "Idempotency-Key": "fails-first"}
    body = {"scene": "recharge_money", "amount": 100, "method": "wxpay", "channel": "native"}
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "http": "500", "count": 1})
    assert live.http.post("/v1/payments", headers=keyed, json=body).status_code == 502
    other = {"scene": "recharge_money", "amount": 5000, "method": "alipay", "channel": "page"}
    refused(live, live.http.post("/v1/payments", headers=keyed, json=other), 422,
            "idempotency.mismatch")
    retry = live.http.post("/v1/payments", headers=keyed, json=body)
    assert retry.status_code == 201, retry.text  # the failed attempt left no order behind
    assert "code_url" in retry.json()["data"]["pay_params"]
    assert count(live, Payment) == 1


def test_unverified_notifications_are_stored_only_within_a_budget(live: Live) -> None:
    live.rt.config.data["payment"]["unverified_per_min"] = 5
    for n in range(12):
        answer = live.http.post("/v1/notify/alipay", content=f"out_trade_no={n}&sign=x".encode(),
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.text == "fail"
    assert count(live, ChannelNotification) == 5


def test_a_refused_then_verified_body_keeps_the_verified_record(live: Live) -> None:
    _, headers = live.user()
    payment = wx_unpaid(live, headers, 300)
    resource = resource_for(live, payment)
    stale_headers, body = wechat_note(live, resource, timestamp=int(time.time()) - 900)
    assert live.http.post("/v1/notify/wxpay", headers=stale_headers,
                          content=body).status_code == 400
    # The same body, delivered again with a fresh signature.
    fresh_headers, _ = wechat_note(live, resource)
    from gonglun.sandbox.keys import rsa_sign

    fresh_headers["Wechatpay-Signature"] = rsa_sign(
        live.sandbox.wxpay.platform_private_key,
        f"{fresh_headers['Wechatpay-Timestamp']}\n{fresh_headers['Wechatpay-Nonce']}\n"
        f"{body.decode()}\n")
    assert live.http.post("/v1/notify/wxpay", headers=fresh_headers,
                          content=body).status_code == 204
    wait_until(lambda: live.balance(headers) == 300, what="credited")
    with live.rt.db.read() as session:
        note = session.execute(select(ChannelNotification)).scalar_one()
    assert note.verified and note.outcome == "applied"


def test_paid_orders_sync_without_a_channel_call_and_actions_are_limited(live: Live) -> None:
    buyer, headers = live.user()
    seller, seller_headers = live.user("seller")
    fund(live, buyer, 1000)
    paid = live.create(headers, scene="tao", amount=100, method="money", seller_id=seller)
    ref = paid.json()["data"]["payment"]["id"]
    synced = live.http.post(f"/v1/payments/{ref}/sync", headers=headers)
    assert synced.json()["data"]["outcome"] == "local"
    live.rt.config.data["payment"]["actions_per_min"] = 3
    statuses = [live.http.post(f"/v1/payments/{ref}/sync", headers=headers).status_code
                for _ in range(4)]
    assert statuses[-1] == 429
    # The seller sees the paid order, not unpaid ones anybody may create naming them.
    unpaid = live.create(headers, scene="tao", amount=100, method="wxpay", channel="native",
                         seller_id=seller).json()["data"]["payment"]
    listed = live.http.get("/v1/payments", headers=seller_headers).json()["data"]["payments"]
    assert [p["id"] for p in listed] == [ref]
    refused(live, live.http.get(f"/v1/payments/{unpaid['id']}", headers=seller_headers), 404,
            "payment.not_found")


def test_an_expired_token_is_not_a_guest(live: Live) -> None:
    from sqlalchemy import update

    from gonglun.accounts.models import ApiToken
    from gonglun.db import utcnow

    _, headers = live.user()
    with live.rt.db.write() as session:
        session.execute(update(ApiToken).values(expires_at=utcnow()))
    refused(live, live.create(headers, scene="face_number", amount=100, method="wxpay",
                              channel="native"), 401, "auth.invalid_token")
    assert count(live, Payment) == 0


def test_login_budgets_are_spent_by_failures_only(live: Live) -> None:
    """Twenty people logging in from one office address are fine; a stranger's guesses from
    elsewhere do not lock the owner out of their own address."""
    for n in range(22):
        live.user(f"staff{n}")
        ok = live.http.post("/v1/sessions", json={"login": f"staff{n}",
                                                  "password": "long enough password"})
        assert ok.status_code == 201, (n, ok.text)
    # Eight wrong guesses at "owner" from eight addresses: the owner's own address is fine.
    from gonglun.accounts.throttle import LoginThrottle

    throttle = LoginThrottle(live.rt)
    for n in range(8):
        throttle.charge("owner", f"198.51.100.{n}")
    throttle.charge("owner", "203.0.113.77")
    # One address guessing is blocked for that account (and IPv6 counts per /64).
    for n in range(5):
        throttle.charge("owner", f"2001:db8::{n}")
    with pytest.raises(Exception, match="登录尝试过于频繁"):
        throttle.charge("owner", "2001:db8::ffff")


def test_odd_input_is_a_400_not_a_500(live: Live) -> None:
    _, headers = live.user()
    raw = b'{"scene":"recharge_money","amount":100,"method":"wxpay","channel":"native",' \
          b'"title":"\\ud800"}'
    answer = live.http.post("/v1/payments", content=raw,
                            headers={**headers, "Content-Type": "application/json",
                                     "Idempotency-Key": "surrogate"})
    refused(live, answer, 400, "request.invalid_json")
    for query in ("state=%00", "scene=%00x", "state=bogus"):
        answer = live.http.get(f"/v1/payments?{query}", headers=headers)
        assert answer.status_code == 400, (query, answer.text)
    long_print = live.create({**headers, "X-Fingerprint": "f" * 500}, scene="recharge_money",
                             amount=100, method="wxpay", channel="native")
    assert long_print.status_code == 201, long_print.text
    assert count(live, Payment) == 1
