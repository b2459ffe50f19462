"""The unified refund through HTTP, the real SDKs against the sandbox, a worker: every outcome
of REF-09..REF-15 leaves the payment, the refund record, the ledger and the hooks as the
catalog says, and the audit clean."""

from __future__ import annotations

from sqlalchemy import select, update

from gonglun.hooks.deferred import OutboxEvent
from gonglun.ledger import balance, held
from gonglun.plugins.payment.models import Payment
from gonglun.plugins.refund.confirm import confirm_waiting
from gonglun.plugins.refund.models import Refund
from tests.payment.conftest import Live, wait_until
from tests.refund.helpers import (
    KEY,
    audit_clean,
    later,
    paid_channel,
    paid_tao,
    people,
    refund,
    refunds,
    settle_wx,
    state,
)


def wallet(live: Live, user_id: int) -> int:
    with live.rt.db.read() as session:
        return balance(session, user_id)


def hooks_fired(live: Live) -> set[str]:
    live.settle_outbox()
    with live.rt.db.read() as session:
        return set(session.scalars(select(OutboxEvent.hook)))


# -- balance payments (REF-09) ------------------------------------------------------------------


def test_balance_refund_before_settlement_comes_out_of_escrow(live: Live) -> None:
    p = people(live)
    payment = paid_tao(live, p)
    assert wallet(live, p["buyer"][0]) == 0
    answer = refund(live, payment, p["seller"][1], amount=500, way="seller", reason="缺货")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["msg"] == "订单退款成功"
    assert body["data"]["payment"]["state"] == "refund"
    assert body["data"]["payment"]["refund_amount"] == 500
    assert body["data"]["refund"]["status"] == 1
    assert wallet(live, p["buyer"][0]) == 500
    with live.rt.db.read() as session:
        assert held(session, payment["payment_order"]) == 700  # the rest stays in escrow
    assert {"refund_ok", "notify"} <= hooks_fired(live)
    audit_clean(live)


def test_refund_after_settlement_debits_the_seller_in_proportion(live: Live) -> None:
    p = people(live)
    live.rt.config.data["payment"].setdefault("scenes", {})["tao"] = {"commission": 1000}
    live.rt.__dict__.pop("_payment_scenes", None)
    payment = paid_tao(live, p, 1000)
    settled = live.http.post(f"/v1/payments/{payment['id']}/settle", headers=p["cs"][1])
    assert settled.status_code == 200, settled.text
    assert wallet(live, p["seller"][0]) == 900
    # The seller's own refund of the whole order: 900 from the seller, 100 back from income.
    done = refund(live, payment, p["seller"][1], amount=1000, way="seller", reason="退货")
    assert done.status_code == 201, done.text
    assert wallet(live, p["seller"][0]) == 0 and wallet(live, p["buyer"][0]) == 1000
    audit_clean(live)


def test_seller_way_cannot_drive_the_seller_negative_but_admin_can(live: Live) -> None:
    p = people(live)
    payment = paid_tao(live, p, 1000)
    live.http.post(f"/v1/payments/{payment['id']}/settle", headers=p["cs"][1])
    spend = live.create(p["seller"][1], scene="tao", amount=800, method="money",
                        seller_id=p["buyer"][0])
    assert spend.status_code == 201, spend.text  # the seller spent it
    short = refund(live, payment, p["seller"][1], amount=1000, way="seller", reason="退货")
    assert short.status_code == 409 and short.json()["error"] == "refund.balance_short"
    assert state(live, payment["id"]) == ("ok", 0, None)
    forced = refund(live, payment, p["cs"][1], amount=1000, way="admin", reason="平台判定退款")
    assert forced.status_code == 201, forced.text
    assert wallet(live, p["seller"][0]) == -800  # BAL-05: blocks the seller's new orders
    blocked = live.create(p["seller"][1], scene="tao", amount=1, method="money",
                          seller_id=p["buyer"][0])
    assert blocked.json()["error"] == "payment.negative_balance"
    audit_clean(live)


# -- channel payments (REF-10..15) ----------------------------------------------------------------


def test_wechat_refund_processing_then_settled_by_the_notification(live: Live) -> None:
    _, headers = live.user("buyer")
    _, cs = live.user("cs", role="admin")
    payment = paid_channel(live, headers, "wxpay", 900)
    assert live.balance(headers) == 900
    answer = refund(live, payment, cs, amount=900, way="admin", reason="用户申请退款")
    assert answer.status_code == 201, answer.text
    assert answer.json()["msg"] == "订单退款请求已提交\n如果超过三天未到账,请联系平台客服进行处理"
    order_state, amount, refund_order = state(live, payment["id"])
    assert (order_state, amount) == ("wait_refund", 900)
    assert live.balance(headers) == 0  # the recharge is taken back at once
    audit_clean(live)
    settle_wx(live, refund_order)  # the bank pays; WeChat notifies REFUND.SUCCESS
    wait_until(lambda: state(live, payment["id"])[0] == "refund", what="refund notice")
    [row] = refunds(live)
    assert row.status == 1 and row.channel_status == "SUCCESS" and row.success_time
    audit_clean(live)


def test_alipay_refund_settles_at_once(live: Live) -> None:
    _, headers = live.user("buyer")
    _, cs = live.user("cs", role="admin")
    payment = paid_channel(live, headers, "alipay", 1500)
    answer = refund(live, payment, cs, amount=600, way="admin", reason="部分退款")
    assert answer.status_code == 201 and answer.json()["msg"] == "订单退款成功", answer.text
    assert state(live, payment["id"])[:2] == ("refund", 600)
    assert live.balance(headers) == 900
    audit_clean(live)


def test_alipay_pending_refund_fails_after_three_checks_and_is_paid_by_hand(live: Live) -> None:
    _, headers = live.user("buyer")
    _, cs = live.user("cs", role="admin")
    payment = paid_channel(live, headers, "alipay", 800)
    live.sb.post("/sandbox/faults", json={"channel": "alipay", "next_refund": "PENDING"})
    answer = refund(live, payment, cs, amount=800, way="admin", reason="退款")
    assert answer.json()["msg"] == (
        "订单退款请求已成功提交\n,如果超过三天未到账,请联系平台客服进行处理。")
    refund_order = state(live, payment["id"])[2]
    live.sb.post(f"/sandbox/alipay/refunds/{refund_order}/settle",
                 json={"status": "FAILED", "out_trade_no": payment["payment_order"]})
    for n in range(3):  # Alipay no longer knows it: checks without an answer, a period apart
        stats = confirm_waiting(live.rt, "alipay", older_than_s=0)
        assert stats == ({"failed": 1} if n == 2 else {"unknown": 1}), stats
        later(live, refund_order)
    assert state(live, payment["id"])[0] == "fail_refund"
    [row] = refunds(live)
    assert row.status == 3
    with live.rt.db.read() as session:
        assert held(session, refund_order) == 800  # set aside for the payout
    assert "refund_abnormal" in hooks_fired(live)
    audit_clean(live)
    resolved = live.http.post(f"/v1/refunds/{row.id}/resolve", headers=cs,
                              json={"action": "manual", "note": "已通过银行转账退还用户"})
    assert resolved.status_code == 200, resolved.text
    assert state(live, payment["id"])[0] == "refund"
    again = live.http.post(f"/v1/refunds/{row.id}/resolve", headers=cs,
                           json={"action": "manual", "note": "再来一次"})
    assert again.status_code == 409 and again.json()["error"] == "refund.not_failed"
    with live.rt.db.read() as session:
        assert held(session, refund_order) == 0
    audit_clean(live)


def test_wechat_abnormal_refund_is_retried_through_the_channel(live: Live) -> None:
    _, headers = live.user("buyer")
    _, cs = live.user("cs", role="admin")
    payment = paid_channel(live, headers, "wxpay", 700)
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "next_refund": "ABNORMAL"})
    answer = refund(live, payment, cs, amount=700, way="admin", reason="退款")
    assert answer.status_code == 201, answer.text
    assert answer.json()["msg"] == "订单退款请求已提交\n,需要平台手动进行退款(72小时完成处理)"
    assert state(live, payment["id"])[0] == "fail_refund"
    [row] = refunds(live)
    audit_clean(live)
    retried = live.http.post(f"/v1/refunds/{row.id}/resolve", headers=cs, json={
        "action": "retry", "type": "MERCHANT_BANK_CARD"})
    assert retried.status_code == 200, retried.text
    assert state(live, payment["id"])[0] == "wait_refund"
    settle_wx(live, row.refund_order)
    wait_until(lambda: state(live, payment["id"])[0] == "refund", what="paid out by retry")
    audit_clean(live)


def test_channel_refusal_gives_the_claim_back(live: Live) -> None:
    _, headers = live.user("buyer")
    _, cs = live.user("cs", role="admin")
    payment = paid_channel(live, headers, "wxpay", 500)
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "next_refund": "NOT_ENOUGH"})
    refused = refund(live, payment, cs, amount=500, way="admin", reason="退款")
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "refund.channel_refused"
    assert state(live, payment["id"]) == ("ok", 0, None)
    assert live.balance(headers) == 500  # the recharge is given back with the claim
    [row] = refunds(live)
    assert row.status == 4
    audit_clean(live)
    live.sb.post("/sandbox/config", json={"refund_defaults": {"wxpay": "SUCCESS"}})
    again = refund(live, payment, cs, amount=500, way="admin", reason="退款")
    assert again.status_code == 201 and state(live, payment["id"])[0] == "refund", again.text
    audit_clean(live)


def test_unknown_outcome_is_queried_before_anything_else(live: Live) -> None:
    """No answer to a refund request: the channel is asked first; one that does not know the
    refund is sent the same request again under the same number (it pays it once); silence
    voids nothing: the payment stays waiting, never refundable twice, until an answer."""
    from gonglun.plugins.payment import get_channel

    _, headers = live.user("buyer")
    _, cs = live.user("cs", role="admin")
    payment = paid_channel(live, headers, "wxpay", 400)
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "http": "500", "count": 1})
    sent = refund(live, payment, cs, amount=400, way="admin", reason="退款")
    assert sent.status_code == 201, sent.text  # not found, sent again: accepted
    assert state(live, payment["id"])[:2] == ("wait_refund", 400)
    [row] = refunds(live, Refund.payment_id == payment["id"])
    assert get_channel(live.rt, "wxpay").refund_query(payment, row.refund_order).status \
        == "PROCESSING"

    other = paid_channel(live, headers, "wxpay", 300)
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "http": "500", "count": 2})
    blind = refund(live, other, cs, amount=300, way="admin", reason="退款")
    assert blind.status_code == 502, blind.text  # request and query unanswered
    assert blind.json()["error"] == "refund.outcome_unknown"
    assert "127.0.0.1" not in blind.text
    assert state(live, other["id"])[:2] == ("wait_refund", 300)  # nothing voided
    again = refund(live, other, cs, amount=300, way="admin", reason="再退")
    assert again.status_code == 409, again.text
    # The confirmation job: the channel does not know it, so the same request goes again.
    confirm_waiting(live.rt, "wxpay", older_than_s=0)
    [row] = refunds(live, Refund.payment_id == other["id"])
    assert get_channel(live.rt, "wxpay").refund_query(other, row.refund_order).status \
        == "PROCESSING"
    settle_wx(live, row.refund_order)
    confirm_waiting(live.rt, "wxpay", older_than_s=0)
    assert state(live, other["id"])[:2] == ("refund", 300)
    audit_clean(live)


def test_system_refund_failing_up_to_the_cap(live: Live) -> None:
    live.rt.config.data["refund"] = {"key": KEY, "system_fail_cap": 3}
    _, headers = live.user("buyer")
    payment = paid_channel(live, headers, "wxpay", 300)
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "next_refund": "NOT_ENOUGH",
                                           "count": 3})
    codes = [refund(live, payment, None, amount=300, way="system", reason="鉴定超时",
                    refund_key=KEY) for _ in range(3)]
    assert [c.status_code for c in codes] == [422, 422, 201], [c.text for c in codes]
    assert codes[2].json()["msg"] == "订单退款成功"
    assert state(live, payment["id"])[0] == "fail_refund"
    with live.rt.db.read() as session:
        meta = session.get(Payment, payment["id"]).meta
    assert '"number": 3' in meta and '"way": "system"' in meta
    audit_clean(live)


def test_late_payment_refunded_automatically(live: Live) -> None:
    from tests.payment.test_lifecycle import expire, wx_order

    live.rt.config.data["payment"]["late_payment"] = "refund"
    live.sb.post("/sandbox/config", json={"refund_defaults": {"wxpay": "SUCCESS"}})
    _, headers = live.user("buyer")
    payment = wx_order(live, headers, 660)
    expire(live, payment["id"])
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "http": "500", "count": 2})
    from gonglun.plugins.payment import lifecycle

    lifecycle.close_expired(live.rt)
    live.sb.post(f"/sandbox/wxpay/transactions/{payment['payment_order']}/pay")
    wait_until(lambda: state(live, payment["id"])[0] == "refund", what="late payment refunded")
    [row] = refunds(live)
    assert row.way == "system" and row.amount == 660
    assert live.balance(headers) == 0
    audit_clean(live)


def test_wait_refund_confirmation_settles_wechat_processing(live: Live) -> None:
    _, headers = live.user("buyer")
    _, cs = live.user("cs", role="admin")
    payment = paid_channel(live, headers, "wxpay", 250)
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "notify": "drop", "count": 5})
    refund(live, payment, cs, amount=250, way="admin", reason="退款")
    refund_order = state(live, payment["id"])[2]
    settle_wx(live, refund_order)  # its notification is dropped
    assert confirm_waiting(live.rt, "wxpay", older_than_s=0) == {"refunded": 1}
    assert state(live, payment["id"])[0] == "refund"
    audit_clean(live)


def test_refund_query_live_with_role_limits(live: Live) -> None:
    _, headers = live.user("buyer")
    _, cs = live.user("cs", role="admin")
    _, stranger = live.user("stranger")
    payment = paid_channel(live, headers, "wxpay", 350)
    none = live.http.get(f"/v1/payments/{payment['id']}/refund", headers=headers)
    assert none.status_code == 404 and none.json()["msg"] == "查询结果:该订单未发起过退款请求"
    live.rt.redis.delete(*live.rt.redis.keys(f"{live.rt.keys.prefix}*refund_query*"))
    refund(live, payment, cs, amount=350, way="admin", reason="退款")
    hidden = live.http.get(f"/v1/payments/{payment['id']}/refund", headers=stranger)
    assert hidden.status_code == 404 and hidden.json()["error"] == "refund.payment_not_found"
    live.rt.redis.delete(*live.rt.redis.keys(f"{live.rt.keys.prefix}*refund_query*"))
    seen = live.http.get(f"/v1/payments/{payment['id']}/refund", headers=headers).json()
    assert seen["data"]["status"] == "PROCESSING"
    assert seen["data"]["msg"] == "查询结果:PROCESSING-退款处理中"
    assert "raw" not in seen["data"]
    fast = live.http.get(f"/v1/payments/{payment['id']}/refund", headers=headers)
    assert fast.status_code == 429 and fast.json()["msg"] == "查询速度过快,请稍后重试"


def test_refund_counters_and_logs(live: Live) -> None:
    from gonglun.plugins.refund.effects import counters

    p = people(live)
    payment = paid_tao(live, p, 300)
    refund(live, payment, p["cs"][1], amount=300, way="admin", reason="退款")
    live.settle_outbox()
    c = counters(live.rt)
    assert c.get("refund").total == 300
    assert c.get("refund_money").total == 300 and c.get("refund_tao").total == 300


def test_refund_keeps_who_asked(live: Live) -> None:
    p = people(live)
    payment = paid_tao(live, p, 300)
    refund(live, payment, p["cs"][1], amount=300, way="admin", reason="退款")
    with live.rt.db.read() as session:
        row = session.execute(select(Refund)).scalar_one()
        meta = session.get(Payment, payment["id"]).meta
    assert row.user_id == p["cs"][0] and row.ip == "127.0.0.1" and row.way == "admin"
    assert '"way": "admin"' in meta and f'"user_id": {p["cs"][0]}' in meta
    # Tampering with a refund record is caught by the audit.
    with live.rt.db.write() as session:
        session.execute(update(Refund).values(amount=299))
    from gonglun.ledger import run_audit

    found = run_audit(live.rt)
    assert any(line.startswith("refund: payment") for line in found), found


def test_reconciliation_sees_refunds_on_both_sides(live: Live, day_over: None) -> None:
    """A refund of ours is on the channel's statement; one missing there is a difference."""
    import datetime as dt

    from gonglun.plugins.payment.money import SHANGHAI
    from gonglun.plugins.payment.reconcile import reconcile

    live.sb.post("/sandbox/config", json={"partial_bills": True,
                                          "refund_defaults": {"wxpay": "SUCCESS"}})
    _, headers = live.user("buyer")
    _, cs = live.user("cs", role="admin")
    kept = paid_channel(live, headers, "wxpay", 300)
    assert refund(live, kept, cs, amount=300, way="admin", reason="退款").status_code == 201
    today = dt.datetime.now(SHANGHAI).strftime("%Y-%m-%d")
    report = reconcile(live.rt, today, "wxpay")
    assert report.open == 0, report.to_dict()
    # A refund we record as settled that the channel never made.
    other = paid_channel(live, headers, "wxpay", 200)
    with live.rt.db.write() as session:
        session.execute(update(Payment).where(Payment.id == other["id"]).values(
            state="refund", refund_amount=200, refund_order="20261130999999999999",
            refund_time=dt.datetime.now(dt.UTC)))
    kinds = {(i["kind"], i["payment_order"]) for i in
             reconcile(live.rt, today, "wxpay").items if i["status"] == "open"}
    assert kinds == {("refund_missing_channel", other["payment_order"])}


def test_a_notification_faster_than_the_answer_still_answers_success(live: Live) -> None:
    """The channel's REFUND.SUCCESS may be applied before the request's own answer: the
    request then answers from what the refund is now."""
    import concurrent.futures

    live.sb.post("/sandbox/config", json={"refund_defaults": {"wxpay": "SUCCESS"}})
    _, headers = live.user("buyer")
    _, cs = live.user("cs", role="admin")
    payments = [paid_channel(live, headers, "wxpay", 100) for _ in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda p: refund(live, p, cs, amount=100, way="admin",
                                                 reason="退款"), payments))
    assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
    assert {a.json()["msg"] for a in answers} <= {
        "订单退款成功", "订单退款请求已提交\n如果超过三天未到账,请联系平台客服进行处理"}
    audit_clean(live)
