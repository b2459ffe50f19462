"""Reconciliation of refunds paid by hand (DECISIONS.md 29): a refund staff paid outside the
system (``meta.refund.manual``) must not appear refunded on the channel's statement too; when it
does, the buyer was paid twice and the day has a ``refund_paid_twice`` difference. Such items
are a person's to resolve (recover the money): a re-run never clears them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from gonglun.plugins.payment.models import Payment
from gonglun.plugins.payment.recon_base import CHUNK, Difference, chunks

if TYPE_CHECKING:
    from gonglun.plugins.payment.channels import StatementRow

#: The kind of a refund paid by hand and by the channel (the refund plugin books it too).
PAID_TWICE = "refund_paid_twice"
#: The statement's marker of a manual payout in the payment's meta.
_MANUAL = '"manual": true'


def paid_twice(rt: Any, channel: str, rows: dict[str, StatementRow]) -> list[Difference]:
    """Orders the statement shows refunded that we refunded by hand."""
    refunded = sorted(o for o, r in rows.items() if r.refund_amount > 0)
    out: list[Difference] = []
    with rt.db.read() as session:
        for chunk in chunks(refunded, CHUNK):
            for p in session.scalars(select(Payment).where(
                    Payment.payment_order.in_(chunk),
                    Payment.method == channel, Payment.state == "refund")):
                if _MANUAL not in (p.meta or ""):
                    continue
                row = rows[p.payment_order]
                out.append(Difference(PAID_TWICE, p.payment_order, trade_no=row.trade_no or None,
                                      local_amount=p.refund_amount,
                                      channel_amount=row.refund_amount, local_state=p.state,
                                      channel_state=row.status))
    return out
