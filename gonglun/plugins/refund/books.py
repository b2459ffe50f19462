"""A refund's money in the ledger: the reversal booked with the claim, undone when the channel
never paid (``refund_void``), restored when it paid after all, and the hold of a failed refund
(``refund_hold``, in ``escrow`` under the refund number) and its payout by one exit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from gonglun.errors import GonglunError
from gonglun.plugins.refund.models import Refund

#: The ledger's code for money set aside for a manual payout or a channel retry.
HOLD = "refund_hold"
#: The ledger's code undoing a refund's reversal the channel never paid (the payment plugin
#: lists it among its refund codes).
VOID_CODE = "refund_void"


def book(rt: Any, session: Any, row: Refund) -> None:
    """Add the refund to the payment's ``refund_amount`` and reverse the scene's effect in the
    ledger (the ``refund_reverse`` decision; the payment plugin answers for its scenes)."""
    from gonglun.plugins.payment import Payment, payment_dict

    if row.booked:
        return
    session.execute(
        update(Payment).where(Payment.id == row.payment_id)
        .values(refund_amount=Payment.refund_amount + row.amount)
        .execution_options(synchronize_session=False))
    payment = session.get(Payment, row.payment_id, populate_existing=True)
    done = rt.hooks.decide("refund_reverse", session=session, payment=payment_dict(payment),
                           refund={"refund_order": row.refund_order, "amount": row.amount,
                                   "way": row.way, "payment_id": row.payment_id})
    if done is None:
        raise GonglunError("refund.no_reversal", f"支付场景 {row.scene} 没有退款处理", status=500)
    row.booked = True


def unbook(rt: Any, session: Any, row: Refund) -> None:
    """The channel never paid: every reversal transfer of the refund is undone exactly (the
    same accounts the other way, code ``refund_void``) and ``refund_amount`` restored."""
    if row.booked:
        _invert(rt, session, row, f"refund:{row.refund_order}:", "refund_void:",
                "退款未成功,撤回", -row.amount)
        row.booked = False


def rebook(rt: Any, session: Any, row: Refund) -> None:
    """A voided refund the channel paid after all: every ``refund_void`` transfer of it is
    undone (keys ``refund_rebook:…``: the reversal stands again) and ``refund_amount``
    counted again."""
    if not row.booked:
        _invert(rt, session, row, f"refund_void:refund:{row.refund_order}:", "refund_rebook:",
                "作废的退款渠道已退款,恢复", row.amount)
        row.booked = True


def _invert(rt: Any, session: Any, row: Refund, keys_from: str, prefix: str, remark: str,
            change: int) -> None:
    """Each transfer whose key starts with ``keys_from`` the other way (its key behind
    ``prefix``), and ``refund_amount`` moved by ``change``."""
    from gonglun.ledger import Move, Transfer, transfer_many, transfers_by_key
    from gonglun.plugins.payment import Payment

    keys = list(session.scalars(select(Transfer.idempotency_key).where(
        Transfer.idempotency_key.like(f"{keys_from}%"))))
    transfer_many(rt, session, [Move(t.credit, t.debit, t.amount, VOID_CODE,
                                     f"{prefix}{t.key}", t.ref, remark)
                                for t in transfers_by_key(session, keys)])
    session.execute(
        update(Payment).where(Payment.id == row.payment_id)
        .values(refund_amount=Payment.refund_amount + change)
        .execution_options(synchronize_session=False))


def put_on_hold(rt: Any, session: Any, row: Refund, remark: str) -> None:
    """A refund the channel could not pay out: its money back from the channel's clearing
    account into ``escrow``, held under the refund number for a manual payout or a retry."""
    from gonglun.ledger import hold

    row.holds += 1
    hold(rt, session, source=f"channel:{row.method}", amount=row.amount, ref=row.refund_order,
         key=f"{HOLD}:{row.refund_order}:{row.holds}", code=HOLD, remark=remark[:255])


def release_hold(rt: Any, session: Any, row: Refund, *, to: str, note: str,
             operator_id: int | None = None) -> None:
    """Pay out the current hold (to ``manual``: staff paid the buyer; to the channel: a retry
    took the money out again)."""
    from gonglun.ledger import release

    release(rt, session, to=to, amount=row.amount, ref=row.refund_order,
            key=f"refund_payout:{row.refund_order}:{row.holds}", code=HOLD,
            remark=note[:255], operator_id=operator_id)


__all__ = ["HOLD", "VOID_CODE", "book", "put_on_hold", "rebook", "release_hold", "unbook"]
