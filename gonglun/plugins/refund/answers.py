"""The channel's answer to a refund, applied once (REF-11..16, REF-20, DECISIONS.md 12-13).

``settle`` takes what the channel said (its reply to the request, a confirmation query, a
notification, a retry, a live query) and moves the refund in one transaction with the money:
paid (``refund``), processing (waiting; after ``refund.confirm_failures`` confirmations shown
stuck at the channel), refused (the claim given back: ``void``), or accepted and not paid out
(``fail_refund``: its money held for one exit). Answers about a refund already failed, paid by
hand or voided are the channel's exits (``channel_exits.py``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select, update

from gonglun.db import utcnow
from gonglun.plugins.refund.books import put_on_hold, unbook
from gonglun.plugins.refund.channel_exits import after_void, failed_answer, paid_twice
from gonglun.plugins.refund.models import FAILED, SUCCESS, VOID, Refund
from gonglun.plugins.refund.state import (
    after,
    announce_ok,
    dumps,
    meta_with,
    payment_api,
    snapshot,
    to_state,
)

log = logging.getLogger(__name__)

#: REF-21's reason for an abnormal refund.
ABNORMAL_REASON = "ABNORMAL:退款异常,退款到银行发现用户的卡作废或者冻结了,导致原路退款银行卡失败"
#: REF-30/31: Alipay every 10 minutes for refunds older than 10 minutes, WeChat every 30 (the
#: confirmation jobs, ``confirm.py``; a confirmation counts once per period).
SCHEDULE = {"alipay": (600.0, 600), "wxpay": (1800.0, 0)}


def settle(rt: Any, refund_id: int, result: Any, *, source: str) -> dict[str, Any]:
    """Apply what the channel says about a refund, once, in one transaction with the money.

    ``source``: request, query (the confirmation job), notice (a channel notification), retry,
    live, manual_check (asked before a manual payout). Returns ``{"outcome": refunded|
    processing|stuck|failed|void|unknown|paid_twice|unchanged, "data": ...}``. The refund row
    is locked for the decision (PostgreSQL; SQLite's write transactions are serial).
    """
    from gonglun.plugins.payment import Payment

    with rt.db.write() as session:
        row = session.execute(select(Refund).where(Refund.id == refund_id)
                              .with_for_update()).scalar_one()
        payment = session.get(Payment, row.payment_id)
        outcome, capped = _transition(rt, session, row, payment, result, source)
        data = snapshot(session, row.payment_id, row)
    if outcome != "unchanged":
        after(rt, data["payment"])
        _log(rt, row, result, source)
    return {"outcome": outcome, "capped": capped, "data": data}


def _transition(rt: Any, session: Any, row: Refund, payment: Any, result: Any,
                source: str) -> tuple[str, bool]:
    if row.status == SUCCESS and result.status == "SUCCESS" and row.paid_by == "manual":
        return paid_twice(rt, session, row, result), False  # never "unchanged"
    if row.status == VOID and (result.status == "SUCCESS" or result.processing):
        return after_void(rt, session, row, payment, result), False  # compared
    if row.status in (SUCCESS, VOID):
        return "unchanged", False
    if row.status == FAILED:
        return failed_answer(rt, session, row, result), False
    now = utcnow()
    accepted_before = accepted(row)  # before this answer changes channel_status
    row.channel_status = result.status
    row.updated_at = now
    if result.refund_id:
        row.channel_refund_id = str(result.refund_id)[:64]
    status = result.status
    if status == "NOT_FOUND":
        # A check that does not find it is no answer: a payout that failed (accepted before),
        # or a request that may still land. Only a refusal of the request itself voids it
        # (the confirmation job sends a refund it never saw answered again: ``send_again``).
        status = "UNKNOWN"
    if status == "SUCCESS":
        to_state(session, row, payment, "refund")
        row.status, row.success_time, row.checks, row.paid_by = SUCCESS, now, 0, "channel"
        row.success = dumps(result.raw)
        announce_ok(rt, session, row)
        return "refunded", False
    if status == "PROCESSING":
        row.success = dumps(result.raw)
        if source == "query":
            return _checked(rt, session, row, payment, result), False
        announce_ok(rt, session, row)  # CORE-11 for an accepted refund (REF-11, REF-13)
        return "processing", False
    if status in ("ABNORMAL", "FAILED") or (status == "CLOSED" and (
            accepted_before or source in ("query", "notice"))):
        why = ABNORMAL_REASON if status == "ABNORMAL" else f"{status}:{result.msg}"
        _fail(rt, session, row, payment, result, why)
        return "failed", False
    if status in ("REFUSED", "CLOSED"):
        failures = _count_failure(session, row, payment, result)
        cap = int(rt.config.get("refund.system_fail_cap", 3))
        if row.way == "system" and failures >= cap:  # REF-15, DECISIONS.md 12
            _fail(rt, session, row, payment, result, f"系统退款失败{failures}次: {result.msg}")
            return "failed", True
        _void(rt, session, row, payment, result)
        return "void", False
    if source == "query":
        return _checked(rt, session, row, payment, result), False
    return "unknown", False


def accepted(row: Any) -> bool:
    """The channel has taken the refund on (a later "no such refund" or CLOSED is then a
    payout that failed, not a request that never arrived)."""
    return row.channel_status in ("PROCESSING", "ABNORMAL", "SUCCESS") or bool(
        row.channel_refund_id)


def confirm_period(rt: Any, method: str) -> float:
    """Seconds between two confirmation runs for ``method``: the job's schedule and the gap
    between two counted checks come from here alone."""
    every = SCHEDULE.get(method, (600.0, 0))[0]
    return float(rt.config.get(f"refund.confirm_every_s.{method}", every))


def _checked(rt: Any, session: Any, row: Refund, payment: Any, result: Any) -> str:
    """One confirmation (DECISIONS.md 13): counted only when the last counted one is a job
    period old (nine tenths, for the scheduler's jitter), so a job re-run at once cannot fail
    a refund early. The channel's own PROCESSING is no failure: after
    ``refund.confirm_failures`` of them the refund is shown stuck at the channel, with one
    alarm; checks that got no answer (or Alipay's unsettled request) count toward
    ``fail_refund``."""
    now = utcnow()
    pending = "processing" if result.status == "PROCESSING" else "unknown"
    gap = dt.timedelta(seconds=confirm_period(rt, row.method) * 0.9)
    if row.checked_at is not None and now - row.checked_at < gap:
        return pending
    row.checked_at = now
    cap = int(rt.config.get("refund.confirm_failures", 3))
    if result.processing:
        row.checks, row.waits = 0, row.waits + 1
        if row.waits < cap or row.stuck_at is not None:
            return "processing"
        row.stuck_at = now
        rt.hooks.defer(session, "alarm", key=f"alarm:refund_stuck:{row.refund_order}",
                       kind="refund_stuck",
                       message=f"退款 {row.refund_order} 在支付渠道处理中已{row.waits}次确认未到账,"
                               f"请联系渠道, 勿人工退款",
                       data={"refund_order": row.refund_order, "channel": row.method,
                             "payment_order": row.payment_order, "payment_id": row.payment_id})
        return "stuck"
    row.checks += 1
    if row.checks >= cap:
        why = f"{row.checks}次确认未到账" if result.status == "PROCESSING" else (
            f"{row.checks}次确认失败: {result.msg}")
        _fail(rt, session, row, payment, result, why)
        return "failed"
    return pending


def _fail(rt: Any, session: Any, row: Refund, payment: Any, result: Any, why: str) -> None:
    """``fail_refund`` (REF-20, REF-32): the business effect is undone, the buyer has not been
    paid: the money is held for a manual payout or a retry, and finance is told."""
    from gonglun.plugins.payment import Payment

    to_state(session, row, payment, "fail_refund")
    put_on_hold(rt, session, row, why)
    payment = session.get(Payment, row.payment_id, populate_existing=True)
    row.status = FAILED
    row.fail = dumps({"status": result.status, "code": result.code, "msg": result.msg,
                       "why": why, "raw": result.raw})
    session.execute(update(Payment).where(Payment.id == row.payment_id).values(
        meta=meta_with(payment, fail=why[:255], fail_time=utcnow().isoformat()))
        .execution_options(synchronize_session=False))
    announce_ok(rt, session, row)
    from gonglun.plugins.payment import payment_dict

    fresh = session.get(Payment, row.payment_id, populate_existing=True)
    rt.hooks.defer(session, "refund_abnormal", key=f"refund_abnormal:{row.refund_order}",
                   channel=row.method, refund_order=row.refund_order,
                   payment=payment_dict(fresh))


def _count_failure(session: Any, row: Refund, payment: Any, result: Any) -> int:
    """REF-14: ``meta.refund.number`` counts the payment's failed attempts."""
    from gonglun.plugins.payment import Payment, meta

    failures = int((meta(payment.meta).get("refund") or {}).get("number") or 0) + 1
    session.execute(update(Payment).where(Payment.id == row.payment_id).values(
        meta=meta_with(payment, number=failures, reason=(result.msg or result.code)[:255],
                        time=utcnow().isoformat()))
        .execution_options(synchronize_session=False))
    return failures


def _void(rt: Any, session: Any, row: Refund, payment: Any, result: Any) -> None:
    """Nothing moved: the claim and the reversal are given back, the attempt kept as void."""
    from gonglun.plugins.payment import Payment

    unbook(rt, session, row)
    session.execute(
        update(Payment)
        .where(Payment.id == row.payment_id, Payment.refund_order == row.refund_order,
               Payment.state == "wait_refund")
        .values(state="ok", refund_order=None, refund_time=None, refund_reason=None,
                version=Payment.version + 1)
        .execution_options(synchronize_session=False))
    row.status = VOID
    row.fail = dumps({"status": result.status, "code": result.code, "msg": result.msg,
                       "raw": result.raw})


def _log(rt: Any, row: Refund, result: Any, source: str) -> None:
    """OPS-01: every refund action and answer, in the channel's refund log; errors also in
    OPS-04's refund error log, with its alarms (OPS-03)."""
    try:
        payment_api().write_channel_log(rt, row.method, {
            "refund_order": row.refund_order, "payment_order": row.payment_order,
            "source": source, "status": result.status, "code": result.code, "msg": result.msg,
            "raw": result.raw}, refund=True)
    except OSError:
        log.exception("refund log of %s not written", row.refund_order)
    if result.status in ("REFUSED", "UNKNOWN", "CLOSED", "ABNORMAL"):
        from gonglun.plugins.refund.effects import record_error

        record_error(rt, row.method, f"{result.status}:{result.code} {result.msg}".strip(),
                     row.payment_id)


__all__ = ["ABNORMAL_REASON", "SCHEDULE", "settle"]
