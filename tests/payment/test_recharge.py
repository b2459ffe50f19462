"""Recharge end to end: real SDKs against the sandbox, notifications over HTTP, worker credit."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import httpx
import pytest

from tests.payment.conftest import Live, wait_until


def open_cashier(live: Live, pay_params: dict[str, Any]) -> None:
    """The buyer's browser opens Alipay's cashier with the signed order string."""
    url = pay_params["url"]
    assert url.startswith(live.sandbox_url + "/gateway.do?")
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text


def recharge_alipay(live: Live, headers: dict[str, str], amount: int = 1234) -> dict[str, Any]:
    created = live.create(headers, scene="recharge_money", amount=amount, method="alipay",
                          channel="page")
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    open_cashier(live, data["pay_params"])
    return data["payment"]


def test_alipay_page_recharge_credits_once(live: Live) -> None:
    _, headers = live.user()
    payment = recharge_alipay(live, headers)
    assert payment["state"] == "wait_pay" and payment["amount"] == 1234
    assert len(payment["payment_order"]) >= 18 and payment["payment_order"].isdigit()

    paid = live.sb.post(f"/sandbox/alipay/trades/{payment['payment_order']}/pay")
    assert paid.status_code == 200, paid.text
    wait_until(lambda: live.balance(headers) == 1234, what="balance credited")
    after = live.payment(payment["payment_order"], headers)
    assert after["state"] == "ok" and after["pay_order"] and after["paid_at"]
    attempts = live.attempts(payment["payment_order"])
    assert attempts, "the sandbox logged no notification"

    # The same notification delivered 4 more times: acknowledged, credited once.
    body = attempts[0]["body"]
    for _ in range(4):
        replay = live.http.post("/v1/notify/alipay", content=body.encode(),
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert replay.text == "success"
    live.settle_outbox()
    assert live.balance(headers) == 1234
    ledger = live.http.get("/v1/me/ledger", headers=headers).json()["data"]["postings"]
    assert [(p["delta"], p["scene"], p["remark"]) for p in ledger] == [
        (1234, "recharge_money", "账户余额充值")]


def test_wxpay_native_recharge(live: Live) -> None:
    _, headers = live.user()
    created = live.create(headers, scene="recharge_money", amount=500, method="wxpay",
                          channel="native")
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    assert data["pay_params"]["code_url"].startswith("weixin://")
    order = data["payment"]["payment_order"]
    assert live.sb.post(f"/sandbox/wxpay/transactions/{order}/pay").status_code == 200
    wait_until(lambda: live.balance(headers) == 500, what="balance credited")
    live.settle_outbox()
    assert live.payment(order, headers)["state"] == "ok"


@pytest.mark.parametrize("tamper", ["signature", "amount", "app_id", "unknown_order"])
def test_forged_alipay_notification_changes_nothing(live: Live, tamper: str) -> None:
    from urllib.parse import parse_qsl, urlencode

    from sqlalchemy import select

    from gonglun.plugins.payment.models import ChannelNotification

    _, headers = live.user()
    payment = recharge_alipay(live, headers)
    order = payment["payment_order"]
    # A genuine notification for another order gives a correctly signed template.
    other = recharge_alipay(live, headers, amount=77)
    live.sb.post("/sandbox/faults", json={"channel": "alipay", "notify": "drop", "count": 1})
    live.sb.post(f"/sandbox/alipay/trades/{other['payment_order']}/pay")
    genuine = dict(parse_qsl(wait_until(lambda: live.attempts(other["payment_order"]))[0]["body"]))
    forged = dict(genuine)
    if tamper == "signature":
        forged["out_trade_no"] = order
        forged["total_amount"] = "12.34"
    elif tamper == "amount":
        forged = _resign(live, {**genuine, "out_trade_no": order, "total_amount": "0.01"})
    elif tamper == "app_id":
        forged = _resign(live, {**genuine, "out_trade_no": order, "total_amount": "12.34",
                                "app_id": "2021000000000000"})
    else:
        forged = _resign(live, {**genuine, "out_trade_no": "99999999999999999999"})
    reply = live.http.post("/v1/notify/alipay", content=urlencode(forged).encode(),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 200
    live.settle_outbox()
    assert live.payment(order, headers)["state"] == "wait_pay"
    assert live.balance(headers) == 0
    with live.rt.db.read() as session:
        outcomes = list(session.scalars(select(ChannelNotification.outcome)))
    expected = {"signature": "rejected:bad_signature", "amount": "rejected:amount_mismatch",
                "app_id": "rejected:merchant_mismatch",
                "unknown_order": "rejected:unknown_order"}[tamper]
    assert expected in outcomes


def _resign(live: Live, data: dict[str, str]) -> dict[str, str]:
    """Sign as the gateway would: only a holder of the gateway's key can do this."""
    from gonglun.sandbox.alipay import signing_string
    from gonglun.sandbox.keys import rsa_sign

    data = {k: v for k, v in data.items() if k not in ("sign", "sign_type")}
    message = signing_string(data, exclude=("sign", "sign_type"))
    sign = rsa_sign(live.keyset["alipay"]["alipay_private_key"], message)
    return {**data, "sign_type": "RSA2", "sign": sign}


def test_fifty_concurrent_duplicates_one_success(live: Live) -> None:
    from sqlalchemy import func, select

    from gonglun.hooks.deferred import OutboxEvent
    from gonglun.ledger import Transfer

    _, headers = live.user()
    payment = recharge_alipay(live, headers, amount=888)
    order = payment["payment_order"]
    live.sb.post("/sandbox/faults", json={"channel": "alipay", "notify": "drop", "count": 1})
    live.sb.post(f"/sandbox/alipay/trades/{order}/pay")
    body = wait_until(lambda: live.attempts(order))[0]["body"].encode()

    def deliver(_: int) -> str:
        return httpx.post(f"{live.base}/v1/notify/alipay", content=body, timeout=60,
                          headers={"Content-Type": "application/x-www-form-urlencoded"}).text

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        replies = list(pool.map(deliver, range(50)))
    assert replies == ["success"] * 50
    live.settle_outbox()
    with live.rt.db.read() as session:
        events = session.scalar(select(func.count()).where(
            OutboxEvent.hook == "payment_success"))
        postings = session.scalar(select(func.count()).where(Transfer.ref == order))
    assert events == 1
    assert postings == 1
    assert live.balance(headers) == 888


def test_metrics_count_notifications_and_outbox(live: Live) -> None:
    _, headers = live.user()
    payment = recharge_alipay(live, headers, amount=321)
    live.sb.post(f"/sandbox/alipay/trades/{payment['payment_order']}/pay")
    wait_until(lambda: live.balance(headers) == 321, what="credited")
    live.settle_outbox()
    live.http.post("/v1/notify/alipay", content=b"sign=bad&out_trade_no=1",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    _, admin = live.user("ops", role="admin")
    text = live.http.get("/metrics", headers=admin).text
    assert 'gonglun_payment_notifications_total{channel="alipay",outcome="applied"} 1.0' in text
    assert ('gonglun_payment_notifications_total{channel="alipay",'
            'outcome="rejected:bad_signature"} 1.0') in text
    assert 'gonglun_outbox_events{state="pending"} 0.0' in text
    assert 'gonglun_outbox_events{state="failed"} 0.0' in text
