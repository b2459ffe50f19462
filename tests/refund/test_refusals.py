"""Every refusal of the catalog (REF-03, REF-04, DECISIONS.md 11): the message, the error id,
and nothing changed; then 100 concurrent refunds of one order give exactly one."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest

from gonglun.plugins.refund.models import Refund
from tests.payment.conftest import Live
from tests.refund.helpers import (
    KEY,
    audit_clean,
    count,
    paid_channel,
    paid_tao,
    people,
    refund,
    state,
)

GOOD = {"amount": 100, "way": "admin", "reason": "退款"}


def assert_refused(response: Any, status: int, error: str, msg: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error and body["code"] != 0, body
    if msg is not None:
        assert body["msg"] == msg


def nothing_changed(live: Live, payment: dict[str, Any], before: tuple) -> None:
    assert state(live, payment["id"]) == before
    assert count(live, Refund) == 0


@pytest.mark.parametrize(("who", "body", "status", "error", "msg"), [
    ("cs", {**GOOD, "amount": "100"}, 400, "refund.invalid_amount", "退款失败:金额不是有效数字"),
    ("cs", {**GOOD, "amount": 1.5}, 400, "refund.invalid_amount", None),
    ("cs", {**GOOD, "amount": 0}, 400, "refund.invalid_amount", None),
    ("cs", {**GOOD, "amount": -5}, 400, "refund.invalid_amount", None),
    ("cs", {**GOOD, "amount": 1201}, 400, "refund.amount_exceeds",
     "退款失败:退款金额大于支付金额"),
    ("cs", {**GOOD, "reason": ""}, 400, "refund.reason_missing", "退款说明不得为空"),
    ("cs", {**GOOD, "reason": "<b>退款</b>"}, 400, "refund.reason_html",
     "退款备注信息不得包含HTML"),
    ("cs", {"amount": 100, "reason": "退款"}, 400, "refund.way_missing", "退款失败:参数缺失"),
    ("cs", {**GOOD, "way": "buyer"}, 400, "refund.way_missing", None),
    (None, {**GOOD, "way": "seller"}, 401, "refund.login_required", "退款失败:请登录后操作"),
    ("buyer", {**GOOD, "way": "seller"}, 403, "refund.not_seller", "退款失败:你无权操作"),
    ("buyer", GOOD, 403, "refund.not_admin", "退款失败:你的权限不足!"),
    (None, {**GOOD, "way": "system"}, 401, "refund.key_missing",
     "退款失败:非法请求(系统拒绝)"),
    (None, {**GOOD, "way": "system", "refund_key": "x" * 40}, 401, "refund.key_invalid",
     "退款失败:非法请求(参数无效)"),
    (None, GOOD, 401, "refund.login_required", None),
    # The system key is a service's credential: never with a browser or app session.
    ("cs", {**GOOD, "way": "system", "refund_key": KEY}, 403, "refund.key_missing", None),
])
def test_refusals_change_nothing(live: Live, who: str | None, body: dict, status: int,
                                 error: str, msg: str | None) -> None:
    live.rt.config.data["refund"] = {"key": KEY}
    p = people(live)
    payment = paid_tao(live, p)
    before = state(live, payment["id"])
    headers = p[who][1] if who else None
    assert_refused(refund(live, payment, headers, **body), status, error, msg)
    nothing_changed(live, payment, before)


def test_state_refusals_in_the_decided_order(live: Live) -> None:
    p = people(live)
    payment = paid_tao(live, p)
    cs = p["cs"][1]
    missing = live.http.post("/v1/payments/99999/refunds", headers=cs, json=GOOD)
    assert_refused(missing, 404, "refund.payment_not_found", "退款失败:支付订单不存在")
    bad_amount_first = live.http.post("/v1/payments/99999/refunds", headers=cs,
                                      json={**GOOD, "amount": "x"})
    assert_refused(bad_amount_first, 400, "refund.invalid_amount")
    assert refund(live, payment, cs, **GOOD).status_code == 201
    again = refund(live, payment, cs, **GOOD)
    assert_refused(again, 409, "refund.already_refunded",
                   "退款失败:该订单已发起过退款\n退款金额 (1.00 元) ")
    for forced, error in (("wait_refund", "refund.in_progress"),
                          ("fail_refund", "refund.needs_support")):
        from sqlalchemy import update

        from gonglun.plugins.payment.models import Payment

        other = paid_tao(live, p)
        with live.rt.db.write() as session:
            session.execute(update(Payment).where(Payment.id == other["id"]).values(
                state=forced))
        assert_refused(refund(live, other, cs, **GOOD), 409, error)
    unpaid = live.create(p["buyer"][1], scene="recharge_money", amount=100, method="wxpay",
                         channel="native").json()["data"]["payment"]
    assert_refused(refund(live, unpaid, cs, **GOOD), 409, "refund.state_not_refundable",
                   "退款失败:支付订单状态不允许发起退款")


def test_unrefundable_scene(live: Live) -> None:
    _, headers = live.user("buyer")
    _, cs = live.user("cs", role="admin")
    payment = paid_channel(live, headers, "wxpay", 100, scene="face_number")
    assert_refused(refund(live, payment, cs, **GOOD), 409, "refund.scene_not_refundable")
    assert count(live, Refund) == 0


@pytest.mark.parametrize("redis_down", [False, True])
def test_100_concurrent_refunds_give_exactly_one(live: Live, redis_down: bool,
                                                 monkeypatch: Any) -> None:
    """Mixed ways and amounts at once: one refund; every other request gets the catalog's
    answer. With the lock gone (Redis down), the payment's state machine alone holds."""
    if redis_down:
        from gonglun.kv import Lock

        def broken(self: Any, *a: Any, **k: Any) -> bool:
            raise ConnectionError("Redis is down")

        monkeypatch.setattr(Lock, "acquire", broken)
    live.rt.config.data["refund"] = {"key": KEY}
    live.sb.post("/sandbox/config", json={"refund_defaults": {"wxpay": "SUCCESS"}})
    p = people(live)
    payment = paid_channel(live, p["buyer"][1], "wxpay", 1000, scene="tao",
                           seller_id=p["seller"][0])
    asks = []
    for n in range(100):
        way = ("admin", "seller", "system")[n % 3]
        headers = {"admin": p["cs"][1], "seller": p["seller"][1], "system": None}[way]
        body = {"amount": 1000 if n % 2 else 400, "way": way, "reason": f"并发{n}"}
        if way == "system":
            body["refund_key"] = KEY
        asks.append((headers, body))
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda a: refund(live, payment, a[0], **a[1]), asks))
    created = [a for a in answers if a.status_code == 201]
    assert len(created) == 1, [a.text for a in answers if a.status_code >= 500][:3]
    losers = {a.json()["error"] for a in answers if a.status_code != 201}
    assert losers <= {"refund.locked", "refund.in_progress", "refund.already_refunded"}, losers
    amount = created[0].json()["data"]["refund"]["amount"]
    assert state(live, payment["id"])[:2] == ("refund", amount)
    assert count(live, Refund) == 1
    trades = live.sb.get(f"/sandbox/wxpay/trades/{payment['payment_order']}").json()["data"]
    assert len(trades["refunds"]) == 1
    audit_clean(live)


def _probes(live: Live, p: dict[str, Any]) -> dict[str, str]:
    """One reference of each kind: missing, paid, refunded, unpaid, refunding (REF ids)."""
    paid = paid_tao(live, p)
    done = paid_tao(live, p)
    assert refund(live, done, p["cs"][1], **GOOD).status_code == 201
    unpaid = live.create(p["buyer"][1], scene="recharge_money", amount=100, method="wxpay",
                         channel="native").json()["data"]["payment"]
    return {"missing": "99999", "paid": str(paid["id"]), "refunded": str(done["id"]),
            "unpaid": str(unpaid["id"]), "by_number": paid["payment_order"]}


@pytest.mark.parametrize("body", [
    GOOD, {**GOOD, "way": "seller"}, {**GOOD, "way": "system"}, {"amount": 100},
    {**GOOD, "way": "system", "refund_key": "x" * 40}, {**GOOD, "amount": "x"},
], ids=["admin", "seller", "system-no-key", "no-way", "system-bad-key", "bad-amount"])
def test_anonymous_learns_nothing(live: Live, body: dict) -> None:
    """Without a token, every reference (missing, paid, refunded, unpaid) answers the same
    401 before anything is looked up: no 404 / 403 / 409 oracle of what exists."""
    live.rt.config.data["refund"] = {"key": KEY}
    p = people(live)
    answers = {name: live.http.post(f"/v1/payments/{ref}/refunds", json=body)
               for name, ref in _probes(live, p).items()}
    seen = {(a.status_code, a.json()["error"], a.json()["msg"], str(a.json().get("data")))
            for a in answers.values()}
    assert len(seen) == 1, {k: a.text for k, a in answers.items()}
    assert next(iter(seen))[0] == 401
    assert "state" not in next(iter(answers.values())).text


@pytest.mark.parametrize("way", ["admin", "seller", "system"])
def test_a_stranger_is_told_not_found(live: Live, way: str) -> None:
    """A logged-in user who may not see the payment gets 404 for every reference, exactly
    as for a missing one; the order's seller and staff still get decision 11's answers."""
    live.rt.config.data["refund"] = {"key": KEY}
    p = people(live)
    _, stranger = live.user("stranger")
    probes = _probes(live, p)
    body = {**GOOD, "way": way, "refund_key": KEY}
    answers = {name: live.http.post(f"/v1/payments/{ref}/refunds", json=body, headers=stranger)
               for name, ref in probes.items()}
    assert {(a.status_code, a.json()["error"]) for a in answers.values()} == {
        (404, "refund.payment_not_found")}, {k: a.text for k, a in answers.items()}
    seller = p["seller"][1]
    refunded = live.http.post(f"/v1/payments/{probes['refunded']}/refunds", headers=seller,
                              json={**GOOD, "way": "seller"})
    assert_refused(refunded, 409, "refund.already_refunded")


def test_a_service_with_the_key_needs_no_token(live: Live) -> None:
    """The system way, server to server: a valid key without a token refunds; the same
    request with a wrong key is 401 and changes nothing."""
    live.rt.config.data["refund"] = {"key": KEY}
    p = people(live)
    payment = paid_tao(live, p)
    before = state(live, payment["id"])
    wrong = refund(live, payment, None, **{**GOOD, "way": "system", "refund_key": KEY[:-1]})
    assert_refused(wrong, 401, "refund.key_invalid")
    nothing_changed(live, payment, before)
    done = refund(live, payment, None, **{**GOOD, "way": "system", "refund_key": KEY})
    assert done.status_code == 201, done.text
    assert state(live, payment["id"])[0] == "refund"
    audit_clean(live)
