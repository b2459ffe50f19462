"""The channel's word on a refund that is already out of ``wait_refund`` (DECISIONS.md 29),
applied inside ``settle``'s transaction (``answers.py``).

A ``fail_refund``'s money is held in ``escrow`` under its refund number until one exit takes it
(``exits.py`` has the staff's: a manual payout, a retry). The channel's own exits are here: its
success takes ``failed → refunded`` whatever staff claimed (it is a fact), its word that it is
paying again puts the refund back to waiting. So is the channel's success for a refund that was
already settled otherwise: paid by hand (money that left twice: booked, alarmed, opened in
reconciliation) or voided (taken back up while the payment allows it, else paid twice).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select, true, update

from gonglun.db import insert_ignore, utcnow
from gonglun.errors import GonglunError
from gonglun.plugins.refund.books import rebook, release_hold
from gonglun.plugins.refund.models import FAILED, REFUNDING, SUCCESS, Refund
from gonglun.plugins.refund.state import announce_ok, dumps, move_payment

log = logging.getLogger(__name__)

#: A claim older than this was abandoned (a crashed process): another exit may take it. The
#: channels' calls time out long before.
CLAIM_TTL_S = 300
#: The system account of money paid out twice, to recover from the buyer (negative: owed to us).
RECOVER = "refund_recover"
#: The ledger code and the reconciliation kind of a refund paid twice.
TWICE = "refund_paid_twice"


def failed_answer(rt: Any, session: Any, row: Refund, result: Any) -> str:
    """A ``fail_refund`` is still asked about until an exit is taken: the channel's success
    is the channel exit; its word that it is paying again puts the refund back to waiting."""
    release_stale(session, row)
    if result.status == "SUCCESS":
        return "refunded" if channel_paid(rt, session, row, result) else "unchanged"
    if result.processing and resume(rt, session, row, token=None):
        return "processing"
    return "unchanged"


def release_stale(session: Any, row: Refund) -> None:
    """An abandoned claim (its process died) is given back by the confirmation job."""
    if row.claim is None or row.claimed_at is None:
        return
    if utcnow() - row.claimed_at >= dt.timedelta(seconds=CLAIM_TTL_S):
        session.execute(update(Refund).where(Refund.id == row.id, Refund.claim == row.claim)
                        .values(claim=None, claimed_at=None)
                        .execution_options(synchronize_session=False))
        session.refresh(row)


def _to_channel(rt: Any, session: Any, row: Refund, where: Any, values: dict[str, Any],
                state: str, note: str) -> bool:
    """``failed → ...`` by one conditional update, then the hold goes to the channel's clearing
    account and the payment from ``fail_refund`` to ``state``. False when another exit won."""
    taken = session.execute(
        update(Refund).where(Refund.id == row.id, Refund.status == FAILED, where)
        .values(claim=None, claimed_at=None, checks=0, updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)).rowcount
    if not taken:
        return False
    session.refresh(row)
    release_hold(rt, session, row, to=f"channel:{row.method}", note=note)
    move_payment(session, row, "fail_refund", state)
    return True


def channel_paid(rt: Any, session: Any, row: Refund, result: Any) -> bool:
    """``failed → refunded`` by the channel, whatever staff claimed (it is a fact)."""
    return _to_channel(rt, session, row, true(), {
        "status": SUCCESS, "paid_by": "channel", "channel_status": "SUCCESS",
        "success_time": utcnow(), "success": dumps(result.raw)}, "refund", "渠道退款成功")


def resume(rt: Any, session: Any, row: Refund, *, token: str | None) -> bool:
    """``failed → refunding``: the channel is paying it out again (a retry it accepted, or a
    check that finds it processing); the payment waits again. ``token``: the retry's claim,
    which must still be held (None: no claim may be held)."""
    held = Refund.claim == token if token else Refund.claim.is_(None)
    return _to_channel(rt, session, row, held, {
        "status": REFUNDING, "waits": 0, "stuck_at": None, "checked_at": None,
        "channel_status": "PROCESSING"}, "wait_refund", "渠道重新退款")


def paid_twice(rt: Any, session: Any, row: Refund, result: Any, *,
               why: str = "已人工退款") -> str:
    """The channel paid a refund that was already paid otherwise (by hand; or its number was
    voided and the payment refunded again): the money left twice. Booked once (its key),
    alarmed and opened in reconciliation for staff to recover."""
    from gonglun.ledger import transfer
    from gonglun.plugins.payment.models import ReconItem
    from gonglun.plugins.payment.money import SHANGHAI

    amount = result.amount if isinstance(result.amount, int) and result.amount > 0 else row.amount
    booked = transfer(rt, session, debit=RECOVER, credit=f"channel:{row.method}",
                      amount=amount, code=TWICE, key=f"{TWICE}:{row.refund_order}",
                      ref=row.refund_order, remark=f"{why}, 渠道也已退款: 重复退款,待追回"[:255])
    row.channel_status, row.updated_at = "SUCCESS", utcnow()
    if not booked.created:
        return "paid_twice"
    now = utcnow()
    insert_ignore(session, ReconItem.__table__, {
        "bill_date": now.astimezone(SHANGHAI).date().isoformat(), "channel": row.method,
        "kind": TWICE, "payment_order": row.payment_order, "trade_no": None,
        "local_amount": row.amount, "channel_amount": amount, "local_state": "refund",
        "channel_state": "SUCCESS", "status": "open", "created_at": now})
    rt.hooks.defer(session, "alarm", key=f"alarm:{TWICE}:{row.refund_order}", kind=TWICE,
                   message=f"重复退款: 订单 {row.payment_order} {why}, 渠道也退款成功 "
                           f"{amount} 分, 请向用户追回",
                   data={"payment_order": row.payment_order, "refund_order": row.refund_order,
                         "payment_id": row.payment_id, "amount": amount,
                         "channel": row.method})
    log.error("refund %s paid twice (%s, and by %s)", row.refund_order, why, row.method)
    return "paid_twice"


def after_void(rt: Any, session: Any, row: Refund, payment: Any, result: Any) -> str:
    """The channel paid (or is paying) a refund we had voided (no answer, then a query that did
    not find it yet): the answer is compared, never dropped. Still processing there: finance is
    told. Paid: while the payment is still ``ok``, unsettled, with no other refund, the refund
    is taken back up (its reversal restored, the payment ``refund``) and finance is told;
    otherwise (settled to the seller, or refunded again under another number) escrow no
    longer holds the money: it left twice (``paid_twice``)."""
    from gonglun.plugins.payment import Payment

    paid = result.status == "SUCCESS"
    info = {"payment_order": row.payment_order, "refund_order": row.refund_order,
            "payment_id": row.payment_id, "amount": row.amount, "channel": row.method,
            "status": result.status}
    if not paid:  # accepted late: told now, taken up when it is paid
        rt.hooks.defer(session, "alarm", key=f"alarm:refund_after_void:{row.refund_order}",
                       kind="refund_after_void", data=info,
                       message=f"已作废的退款 {row.refund_order} 渠道仍在受理 "
                               f"(订单 {row.payment_order}), 勿重复退款")
        return "unchanged"
    now = utcnow()
    try:
        with session.begin_nested():
            taken = session.execute(
                update(Payment)
                .where(Payment.id == row.payment_id, Payment.state == "ok",
                       Payment.refund_order.is_(None), Payment.settled_at.is_(None))
                .values(state="refund", refund_order=row.refund_order, refund_time=now,
                        refund_reason=row.reason, version=Payment.version + 1)
                .execution_options(synchronize_session=False)).rowcount
            if taken:
                rebook(rt, session, row)
    except GonglunError as exc:  # a wallet that cannot cover the reversal: money left anyway
        log.warning("refund %s: paid after void, reversal refused: %s", row.refund_order, exc)
        taken = 0
    if not taken:  # refunded again meanwhile, or settled: escrow no longer holds the money
        settled = session.scalar(select(Payment.settled_at).where(
            Payment.id == row.payment_id)) is not None
        why = "退款单曾作废, 订单已结算给卖家后渠道又退款成功" if settled \
            else "退款单曾作废且订单已另行退款"
        return paid_twice(rt, session, row, result, why=why)
    row.status, row.paid_by, row.checks = SUCCESS, "channel", 0
    row.channel_status, row.updated_at, row.success_time = "SUCCESS", now, now
    row.success = dumps(result.raw)
    if result.refund_id:
        row.channel_refund_id = str(result.refund_id)[:64]
    announce_ok(rt, session, row)
    rt.hooks.defer(session, "alarm", key=f"alarm:refund_after_void:paid:{row.refund_order}",
                   kind="refund_after_void", data=info,
                   message=f"已作废的退款 {row.refund_order} 渠道已退款成功, 已恢复为退款 "
                           f"(订单 {row.payment_order})")
    return "refunded"


__all__ = ["CLAIM_TTL_S", "RECOVER", "TWICE", "after_void", "channel_paid", "failed_answer",
           "paid_twice", "release_stale", "resume"]
