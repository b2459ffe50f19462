"""Attacks on the exits of a ``fail_refund`` after issue 17's fix (the attacker's findings).
Through HTTP, the real SDKs, the sandbox."""

from __future__ import annotations

from typing import Any

from gonglun.plugins.refund.confirm import confirm_waiting
from gonglun.plugins.refund.models import Refund
from tests.payment.conftest import Live, wait_until
from tests.refund.helpers import later, paid_channel, refund, refunds, state

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
