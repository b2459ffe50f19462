"""What a statement day holds, for the channels' statements (``alipay/statements.py``,
``wxpay/statements.py``) and the control API's JSON variant.

A statement day is a Shanghai calendar day. Payments appear on the day they were paid (whatever
happened to them later), refunds on the day they succeeded. Money is yuan text in the CSVs, as
in the channels' files, and integer fen in the JSON variant.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from .common import day_of, local, now
from .core import SandboxCore
from .store import Refund, Trade


@dataclass
class Entry:
    trade: Trade
    refund: Refund | None
    at: float

    @property
    def kind(self) -> str:
        return "refund" if self.refund else "payment"


def entries(sb: SandboxCore, channel: str, period: str) -> list[Entry]:
    """Payments and successful refunds of a day (``YYYY-MM-DD``) or a month (``YYYY-MM``)."""

    def within(ts: float | None) -> bool:
        return ts is not None and day_of(ts).startswith(period)

    out: list[Entry] = []
    for trade in sb.store.trades.values():
        if trade.channel == channel and within(trade.paid_at):
            assert trade.paid_at is not None
            out.append(Entry(trade, None, trade.paid_at))
    for refund in sb.store.refunds.values():
        if refund.channel == channel and refund.status == "SUCCESS" and within(refund.success_at):
            trade = sb.store.trade(channel, refund.out_trade_no)
            if trade is not None:
                assert refund.success_at is not None
                out.append(Entry(trade, refund, refund.success_at))
    out.sort(key=lambda e: e.at)
    return out


def as_json(sb: SandboxCore, channel: str, period: str) -> dict[str, Any]:
    records = []
    for e in entries(sb, channel, period):
        rec: dict[str, Any] = {
            "type": e.kind,
            "out_trade_no": e.trade.out_trade_no,
            "channel_no": e.trade.channel_no,
            "amount": e.trade.amount,
            "subject": e.trade.subject,
            "time": local(e.at).isoformat(timespec="seconds"),
        }
        if e.refund is not None:
            rec.update({"out_refund_no": e.refund.out_refund_no, "refund_id": e.refund.refund_id,
                        "refund_amount": e.refund.amount, "status": e.refund.status})
        else:
            rec["status"] = "SUCCESS"
        records.append(rec)
    pays = [r for r in records if r["type"] == "payment"]
    refunds = [r for r in records if r["type"] == "refund"]
    return {
        "channel": channel,
        "date": period,
        "records": records,
        "totals": {
            "payments": len(pays),
            "payment_amount": sum(r["amount"] for r in pays),
            "refunds": len(refunds),
            "refund_amount": sum(r["refund_amount"] for r in refunds),
        },
    }


def period_bounds(period: str) -> tuple[dt.date, dt.date] | None:
    """The first day of ``YYYY-MM-DD`` or ``YYYY-MM`` and the day after its last; None when
    the text names no such day or month."""
    try:
        if len(period) == 7:
            first = dt.date.fromisoformat(period + "-01")
            after = (first + dt.timedelta(days=31)).replace(day=1)
            return first, after
        day = dt.date.fromisoformat(period)
    except ValueError:
        return None
    return day, day + dt.timedelta(days=1)


def period_ready(period: str, *, partial: bool = False) -> bool:
    """Whether a statement of the period exists: Alipay serves days and months that are over
    (T+1) and never the future; ``partial`` also serves the current day and month."""
    bounds = period_bounds(period)
    if bounds is None:
        return False
    today = local(now()).date()
    first, after = bounds
    return first <= today and (partial or after <= today)
