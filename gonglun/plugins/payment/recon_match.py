"""What a reconciliation compares: the channel's statement of a day, our payments of that
channel paid that day (and every order the statement names), and the differences between them.
An order the channel was paid for and ours is not is first settled through the ordinary apply
path (DROP-05); refunds paid by hand and by the channel too are ``recon_twice.py``'s.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select

from gonglun.errors import GonglunError
from gonglun.plugins.payment.channels import ChannelError, StatementRow, get_channel
from gonglun.plugins.payment.models import Payment
from gonglun.plugins.payment.recon_base import CHUNK, Difference, Local, chunks

log = logging.getLogger(__name__)

RECOVERED = "recovered by query"


def statement(rt: Any, channel: str, bill_date: str) -> list[StatementRow]:
    try:
        return get_channel(rt, channel).statement(bill_date)
    except ChannelError as exc:
        raise GonglunError("recon.channel_error", "对账单下载失败, 请稍后重试", status=502,
                           data={"channel": channel, "detail": str(exc)[:200]}) from exc


def _snapshot(p: Payment) -> Local:
    return Local(p.id, p.payment_order, p.method, p.state, bool(p.late), p.amount, p.paid_amount,
                 p.refund_amount or 0, p.paid_at)


def load_local(rt: Any, channel: str, start: dt.datetime, end: dt.datetime,
                rows: dict[str, StatementRow]) -> dict[str, Local]:
    """Our payments of ``channel`` paid within the day, and every order the statement names."""
    out: dict[str, Local] = {}
    with rt.db.read() as session:
        for p in session.scalars(
            select(Payment).where(Payment.method == channel, Payment.paid_at >= start,
                                  Payment.paid_at < end)
        ):
            out[p.payment_order] = _snapshot(p)
        wanted = [o for o in rows if o not in out]
        for chunk in chunks(wanted, CHUNK):
            for p in session.scalars(select(Payment).where(Payment.payment_order.in_(chunk))):
                out[p.payment_order] = _snapshot(p)
    return out


def _reload(rt: Any, payment_id: int) -> Local | None:
    with rt.db.read() as session:
        p = session.get(Payment, payment_id)
        return _snapshot(p) if p is not None else None


def missing_local(rt: Any, row: StatementRow, mine: Local | None, channel: str) -> Difference:
    """The channel was paid and we were not: try the ordinary apply path first (DROP-05)."""
    d = Difference("missing_local", row.payment_order, trade_no=row.trade_no or None,
                   channel_amount=row.amount, channel_state=row.status)
    if mine is None:
        return d
    d.local_amount, d.local_state = mine.amount, mine.state
    if mine.method != channel or mine.state not in ("wait_pay", "close"):
        return d
    from gonglun.plugins.payment import lifecycle

    try:
        lifecycle.sync(rt, mine.id)
    except GonglunError as exc:
        log.warning("reconciliation: query of %s failed: %s", mine.payment_order, exc)
        return d
    after = _reload(rt, mine.id)
    if after is not None and after.paid:
        d.resolution = RECOVERED + (" (late payment, flagged for review)"
                                    if after.late and after.state == "close" else "")
    return d


def refunded_in(rt: Any, channel: str, start: dt.datetime, end: dt.datetime) -> list[Local]:
    """Our refunds of ``channel`` settled that day through the channel (not by hand)."""
    with rt.db.read() as session:
        rows = session.scalars(
            select(Payment).where(Payment.method == channel, Payment.state == "refund",
                                  Payment.refund_time >= start, Payment.refund_time < end))
        return [_snapshot(p) for p in rows if '"manual": true' not in (p.meta or "")]


def compare(row: StatementRow, mine: Local) -> list[Difference]:
    out: list[Difference] = []
    if row.amount != mine.amount or (mine.paid_amount is not None
                                     and mine.paid_amount != row.amount):
        out.append(Difference("amount_mismatch", row.payment_order, trade_no=row.trade_no or None,
                              local_amount=mine.amount, channel_amount=row.amount,
                              local_state=mine.state, channel_state=row.status))
    if row.refund_amount > 0:
        # Amounts of a refund difference are the refunded amounts on each side.
        kind = ("refund_missing_local" if mine.refund_amount == 0 else
                "refund_amount_mismatch" if mine.refund_amount != row.refund_amount else
                "status_mismatch" if mine.state != "refund" else None)
        if kind is not None:
            out.append(Difference(kind, row.payment_order, trade_no=row.trade_no or None,
                                  local_amount=mine.refund_amount,
                                  channel_amount=row.refund_amount, local_state=mine.state,
                                  channel_state=row.status))
    return out


__all__ = ["RECOVERED", "compare", "load_local", "missing_local", "refunded_in", "statement"]
