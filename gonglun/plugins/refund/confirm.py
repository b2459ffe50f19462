"""Refunds whose outcome is not final yet: the confirmation jobs (REF-30, REF-31,
DECISIONS.md 13) and the channels' refund notifications (REF-21, REF-22)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select

from gonglun.db import utcnow
from gonglun.plugins.refund.answers import SCHEDULE, accepted, settle
from gonglun.plugins.refund.models import FAILED, REFUNDING, Refund
from gonglun.plugins.refund.service import send_again

log = logging.getLogger(__name__)


def confirm_waiting(rt: Any, method: str, *, older_than_s: int | None = None,
                    limit: int = 200) -> dict[str, int]:
    """Ask the channel about every refund of ``method`` still refunding; apply the answers.

    Checks that get no answer count toward ``fail_refund`` (``refund.confirm_failures``,
    one per job period); the channel's PROCESSING does not (the refund is shown stuck at the
    channel instead); a refund the channel does not know is sent again under its number, and
    voided only when the channel refuses it. Refunds in
    ``fail_refund`` are asked about too, until an exit is taken: the channel's success there is
    the channel exit (DECISIONS.md 29).
    """
    from gonglun.plugins.payment import ChannelError, RefundResult, get_channel

    older = SCHEDULE[method][1] if older_than_s is None else older_than_s
    cutoff = utcnow() - dt.timedelta(seconds=older)
    with rt.db.read() as session:
        rows = [row for status in (REFUNDING, FAILED) for row in session.execute(
            select(Refund.id, Refund.refund_order, Refund.payment_order, Refund.total,
                   Refund.amount, Refund.reason, Refund.status, Refund.channel_status,
                   Refund.channel_refund_id)
            .where(Refund.status == status, Refund.method == method,
                   Refund.created_at <= cutoff)
            .order_by(Refund.id).limit(limit)
        ).all()]
    stats: dict[str, int] = {}
    channel = get_channel(rt, method)
    for row in rows:
        try:
            result = channel.refund_query({"payment_order": row.payment_order,
                                           "amount": row.total}, row.refund_order)
        except ChannelError as exc:
            log.warning("refund %s: confirmation query failed: %s", row.refund_order, exc)
            result = RefundResult("UNKNOWN", "error", str(exc)[:200])
        if result.status == "NOT_FOUND" and row.status == REFUNDING and not accepted(row):
            # Our request never got an answer and the channel does not know it: the same
            # request again decides (never a void on silence).
            result = send_again(channel, row)
        outcome = settle(rt, row.id, result, source="query")["outcome"]
        stats[outcome] = stats.get(outcome, 0) + 1
    return stats


def apply_notice(rt: Any, method: str, notice: dict[str, Any]) -> str:
    """A verified refund notification: the refund it names, settled by what it says.

    WeChat: ``out_refund_no`` and ``refund_status`` (SUCCESS, ABNORMAL, CLOSED). Alipay: its
    refund news names the request (``out_biz_no``) and the trade's settled refunds
    (``refund_fee``, yuan): a refund is settled once that total covers it.
    """
    from gonglun.plugins.payment import RefundResult

    number = notice.get("out_refund_no") if method == "wxpay" else notice.get("out_biz_no")
    if not isinstance(number, str) or not number:
        return "refund:unnamed"
    with rt.db.read() as session:
        row = session.execute(select(Refund).where(Refund.refund_order == number)).scalar()
    if row is None:
        _alarm_unknown(rt, method, number, notice)
        return "refund:unknown"
    if method == "wxpay":
        status = str(notice.get("refund_status") or "")
        amount = (notice.get("amount") or {}).get("refund")
        if amount is not None and amount != row.amount:
            _alarm_unknown(rt, method, number, notice)
            return "refund:amount_mismatch"
        result = RefundResult(status, "notice", "", refund_id=notice.get("refund_id"),
                              amount=amount, raw=notice)
    else:
        from gonglun.plugins.payment import yuan_to_fen

        try:
            settled = yuan_to_fen(str(notice.get("refund_fee") or "0"))
        except ValueError:
            return "refund:unreadable"
        if settled < row.amount:
            return "refund:pending"
        result = RefundResult("SUCCESS", "notice", "", amount=row.amount, raw=notice)
    if result.status not in ("SUCCESS", "ABNORMAL", "CLOSED"):
        return f"refund:{result.status.lower() or 'unreadable'}"
    return f"refund:{settle(rt, row.id, result, source='notice')['outcome']}"


def _alarm_unknown(rt: Any, method: str, number: str, notice: dict[str, Any]) -> None:
    """Refund news we cannot match: a person looks (nothing is applied)."""
    with rt.db.write() as session:
        rt.hooks.defer(session, "alarm", key=f"alarm:refund_notice:{method}:{number}",
                       kind="refund_notice_unmatched",
                       message=f"无法匹配的退款通知: {method} {number}",
                       data={"channel": method, "refund_order": number,
                             "notice": {k: v for k, v in notice.items()
                                        if isinstance(v, str | int)}})
