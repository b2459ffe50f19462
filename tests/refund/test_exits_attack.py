"""Attacks on the exits of a ``fail_refund`` after issue 17's fix (the attacker's findings).
Through HTTP, the real SDKs, the sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from gonglun.ledger import run_audit
from gonglun.plugins.payment import get_channel
from gonglun.plugins.refund.confirm import confirm_waiting
from gonglun.plugins.refund.models import Refund
from tests.payment.conftest import Live, wait_until
from tests.refund.helpers import later, paid_channel, refund, refunds, settle_wx, state
from tests.refund.test_exits import cli_audit

MANUAL = {"action": "manual", "note": "已通过银行转账退还用户"}


def _payouts(live: Live, refund_order: str) -> list[str]:
    from sqlalchemy import select

    from gonglun.ledger import Transfer, transfers_by_key

    with live.rt.db.read() as session:
        keys = list(session.scalars(select(Transfer.idempotency_key).where(
            Transfer.idempotency_key.like(f"refund_payout:{refund_order}:%"))))
        return [t.credit for t in transfers_by_key(session, keys)]


def _pending_alipay_in_fail_refund(live: Live, cs: dict[str, str], amount: int
                                   ) -> tuple[dict[str, Any], Refund]:
    """An Alipay refund accepted with fund_change N that the bank has not settled yet: three
    confirmations a period apart see the request known but unsettled: ``fail_refund``."""
    _, headers = live.user(f"buyer{amount}")
    payment = paid_channel(live, headers, "alipay", amount)
    live.sb.post("/sandbox/faults", json={"channel": "alipay", "next_refund": "PENDING"})
    answer = refund(live, payment, cs, amount=amount, way="admin", reason="退款")
    assert answer.status_code == 201, answer.text
    [row] = refunds(live, Refund.payment_id == payment["id"])
    for _ in range(3):
        confirm_waiting(live.rt, "alipay", older_than_s=0)
        later(live, row.refund_order)
    assert state(live, payment["id"])[0] == "fail_refund"
    return payment, row


def test_manual_payout_refused_while_alipay_still_has_the_refund_pending(live: Live) -> None:
    """REF-27: a manual payout first asks the channel; Alipay's query still knows the request
    (fund_change N, the bank has not settled it) and may yet pay it, so staff must not pay it
    by hand. Before the fix the payout was recorded and the bank's later settlement paid the
    buyer a second time."""
    _, cs = live.user("cs", role="admin")
    payment, row = _pending_alipay_in_fail_refund(live, cs, 640)
    manual = live.http.post(f"/v1/refunds/{row.id}/resolve", headers=cs, json=MANUAL)
    assert manual.status_code == 409, manual.text
    assert manual.json()["error"] == "refund.channel_processing", manual.text
    assert state(live, payment["id"])[0] == "fail_refund"
    # The bank settles it: the channel's exit, one payout.
    done = live.sb.post(f"/sandbox/alipay/refunds/{row.refund_order}/settle",
                        json={"status": "SUCCESS", "out_trade_no": payment["payment_order"]})
    assert done.status_code == 200, done.text
    confirm_waiting(live.rt, "alipay", older_than_s=0)
    wait_until(lambda: state(live, payment["id"])[0] == "refund", what="paid by the channel")
    assert _payouts(live, row.refund_order) == ["channel:alipay"]


def _alarmed(live: Live, refund_order: str) -> bool:
    import json

    from sqlalchemy import select

    from gonglun.hooks.deferred import OutboxEvent

    live.settle_outbox()
    with live.rt.db.read() as session:
        bodies = session.scalars(select(OutboxEvent.payload).where(OutboxEvent.hook == "alarm"))
        return any(refund_order in json.dumps(json.loads(b)) for b in bodies)


def test_a_request_answered_500_that_lands_late_pays_once(live: Live) -> None:
    """WeChat answers 500 SYSTEM_ERROR (outcome unknown; its documentation says retry with the
    same out_refund_no); our query right after finds no such refund yet. Before the fix the
    refund was voided and the payment refundable again, so the first request landing late
    paid the buyer a second time. Now the same request is sent again under its number; the
    late first one is the same refund at the channel: one payout."""
    _, cs = live.user("cs", role="admin")
    _, headers = live.user("buyer")
    payment = paid_channel(live, headers, "wxpay", 500)
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "next_refund": "SYSTEM_ERROR"})
    first = refund(live, payment, cs, amount=500, way="admin", reason="退款")
    assert first.status_code == 201, first.text
    assert state(live, payment["id"])[:2] == ("wait_refund", 500)  # never refundable twice
    [row] = refunds(live, Refund.payment_id == payment["id"])
    again = refund(live, payment, cs, amount=500, way="admin", reason="再退一次")
    assert again.status_code == 409, again.text
    # The first request reaches WeChat after all: the same number, the same refund.
    late = get_channel(live.rt, "wxpay").refund(payment, row.refund_order, 500, "退款")
    assert late.status == "PROCESSING", late
    settle_wx(live, row.refund_order)
    wait_until(lambda: _notice_seen(live, payment["payment_order"]), what="the SUCCESS notice")
    assert state(live, payment["id"])[:2] == ("refund", 500)
    assert [(r.status, r.paid_by) for r in refunds(live, Refund.payment_id == payment["id"])] \
        == [(1, "channel")]
    assert run_audit(live.rt) == []


def _voided(live: Live, cs: dict[str, str], payment: dict[str, Any], amount: int) -> Refund:
    """A refund the channel refused in so many words (4xx): voided, the payment refundable."""
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "next_refund": "NOT_ENOUGH"})
    refused = refund(live, payment, cs, amount=amount, way="admin", reason="退款")
    assert refused.status_code == 422, refused.text
    [row] = refunds(live, Refund.payment_id == payment["id"], Refund.status == 4)
    return row


def test_channel_success_for_a_voided_refund_is_never_ignored(live: Live) -> None:
    """A voided number the channel pays after all (sent again behind our back: another
    process, the merchant console): that answer for a state already left is compared: the
    refund is taken back up while the payment still holds the money, finance is told."""
    _, cs = live.user("cs", role="admin")
    _, headers = live.user("buyer")
    payment = paid_channel(live, headers, "wxpay", 500)
    row = _voided(live, cs, payment, 500)
    assert state(live, payment["id"])[0] == "ok"
    late = get_channel(live.rt, "wxpay").refund(payment, row.refund_order, 500, "退款")
    assert late.status == "PROCESSING", late
    settle_wx(live, row.refund_order)
    wait_until(lambda: _notice_seen(live, payment["payment_order"]), what="the SUCCESS notice")
    [seen] = _notice_seen(live, payment["payment_order"])
    assert seen.endswith("refund:refunded"), seen
    assert state(live, payment["id"])[0] == "refund"
    [row] = refunds(live, Refund.payment_id == payment["id"])
    assert (row.status, row.paid_by) == (1, "channel")
    assert _alarmed(live, row.refund_order)
    again = refund(live, payment, cs, amount=500, way="admin", reason="再退一次")
    assert again.status_code == 409, again.text
    assert run_audit(live.rt) == []


def test_channel_success_for_a_voided_refund_of_a_settled_order_is_not_taken_from_escrow(
        live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    """The order settled to the seller after the void: escrow no longer holds the money, so
    the late payout is not taken back out of it (escrow would go negative, the seller keep
    it all); it is money that left twice: booked, alarmed, failing the audit until resolved."""
    from sqlalchemy import func, select

    from gonglun.ledger import Transfer
    from gonglun.plugins.payment.settlement import settle as settle_payment

    _, cs = live.user("cs", role="admin")
    _, headers = live.user("buyer")
    seller, _ = live.user("seller")
    payment = paid_channel(live, headers, "wxpay", 700, scene="tao", seller_id=seller,
                           title="青花瓷瓶")
    row = _voided(live, cs, payment, 700)
    settle_payment(live.rt, payment["id"], by="auto")
    _paid_twice_late(live, payment, row.refund_order, 700)
    with live.rt.db.read() as session:  # nothing taken back out of the emptied escrow
        assert session.scalar(select(func.count()).select_from(Transfer).where(
            Transfer.idempotency_key.like(f"refund_rebook:%{row.refund_order}%"))) == 0
    assert _alarmed(live, row.refund_order)
    code, out = cli_audit(live, capsys)
    assert code == 1 and payment["payment_order"] in out, out


def test_channel_success_for_a_voided_number_after_another_refund_is_paid_twice(
        live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    """The voided number is paid by the channel after the payment was refunded again under a
    new number: the buyer got the money twice. Booked, alarmed, a reconciliation item, and
    ``gonglun audit`` fails naming the order until staff resolve it."""
    _, cs = live.user("cs", role="admin")
    _, headers = live.user("buyer")
    payment = paid_channel(live, headers, "wxpay", 600)
    voided = _voided(live, cs, payment, 300)
    second = refund(live, payment, cs, amount=300, way="admin", reason="再次退款")
    assert second.status_code == 201, second.text
    newer = [r for r in refunds(live, Refund.payment_id == payment["id"]) if r.id != voided.id]
    settle_wx(live, newer[0].refund_order)
    wait_until(lambda: state(live, payment["id"])[0] == "refund", what="the second refund")
    _paid_twice_late(live, payment, voided.refund_order, 300)
    assert _alarmed(live, voided.refund_order)
    problems = run_audit(live.rt)
    assert any(payment["payment_order"] in str(p) for p in problems), problems
    code, out = cli_audit(live, capsys)
    assert code == 1 and payment["payment_order"] in out, out


def _paid_twice_late(live: Live, payment: dict[str, Any], refund_order: str, amount: int
                     ) -> None:
    """The voided number sent again behind our back and paid: its notice is compared and
    found to be money that left twice."""
    late = get_channel(live.rt, "wxpay").refund(payment, refund_order, amount, "退款")
    assert late.status == "PROCESSING", late
    settle_wx(live, refund_order)
    wait_until(lambda: any(o.endswith("refund:paid_twice")
                           for o in _notice_seen(live, payment["payment_order"])),
               what="the late SUCCESS compared")


def _notice_seen(live: Live, payment_order: str) -> list[str]:
    """The outcomes of the channel's refund notices for the trade."""
    from sqlalchemy import select

    from gonglun.plugins.payment.models import ChannelNotification

    n = ChannelNotification
    with live.rt.db.read() as session:
        return list(session.scalars(select(n.outcome).where(
            n.payment_order == payment_order, n.outcome.like("refund:%"))))
