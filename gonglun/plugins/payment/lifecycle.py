"""Query (sync) and close of orders, by hand or on a schedule (CORE-05..07, PAY-16..18, DROP).

Closing an unpaid channel order asks the channel first when it is a timeout (DROP-10), closes
locally by conditional UPDATE, then closes at the channel so the old order cannot be paid on a
phone afterwards. A channel that cannot be reached or says "already paid" leaves a drop check
behind; the scheduled query settles it, and a payment that lands anyway is a late payment.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select, update

from gonglun.db import insert_ignore, utcnow
from gonglun.errors import GonglunError
from gonglun.plugins.payment.apply import APPLIED, LATE, apply
from gonglun.plugins.payment.channels import ChannelError, get_channel
from gonglun.plugins.payment.models import DropCheck, Payment
from gonglun.plugins.payment.records import payment_dict

log = logging.getLogger(__name__)

#: Seconds between drop-order queries, by attempt (roncoo-pay's 2/3/5/10/20/30 min, compressed
#: at the start because most drops resolve within minutes).
BACKOFF_S = (60, 120, 180, 300, 600, 1200, 1800)


#: PAY-16: the unified query's answers (``\n`` for the seeds' ``<br>``).
MSG_WAITING = "查询结果:订单等待付款中"
MSG_CLOSED = "查询结果:订单已被关闭"
MSG_OTHER = "查询结果:订单未完成支付(其它错误)"
MSG_PAID = {"alipay": "查询结果:支付宝账单已付款", "wxpay": "查询结果:微信支付账单已付款"}
MSG_MISMATCH = "查询结果:支付金额与订单金额不一致\n请联系管理员处理"
WAITING_STATES = ("WAIT_BUYER_PAY", "NOTPAY", "USERPAYING", "NOT_EXIST", "ORDER_NOT_EXIST")


def query_message(method: str, cp: Any) -> str:
    if cp.paid:
        return MSG_PAID.get(method, "查询结果:已付款")
    if cp.closed:
        return MSG_CLOSED
    return MSG_WAITING if cp.status in WAITING_STATES else MSG_OTHER


def sync(rt: Any, payment_id: int) -> dict[str, Any]:
    """Ask the channel now and apply its answer (drop-order recovery on demand)."""
    with rt.db.read() as session:
        payment = session.get(Payment, payment_id)
        if payment is None:
            raise GonglunError("payment.not_found", "支付订单不存在", status=404)
        data = payment_dict(payment)
    if data["method"] == "money" or data["state"] in ("ok", "wait_refund", "refund",
                                                       "fail_refund"):
        # Balance orders have no channel; a paid order's payment can no longer change there
        # (its refunds have their own query).
        return {"outcome": "local", "channel_status": None, "payment": data,
                "msg": f"查询结果:{data['state_label']}"}
    try:
        cp = get_channel(rt, data["method"]).query(data["payment_order"])
    except ChannelError as exc:
        # The channel's own words (hosts, SDK messages) go to the log, never to the client.
        log.warning("payment %s: channel query failed: %s", payment_id, exc)
        raise GonglunError("payment.channel_error", "支付渠道查询失败,请稍后重试",
                           status=502) from exc
    outcome = apply(rt, data["method"], cp, source="query")
    if outcome == "rejected:amount_mismatch":
        raise GonglunError("payment.amount_mismatch", MSG_MISMATCH, status=409,
                           data={"amount": data["amount"], "channel_amount": cp.amount})
    if cp.closed and data["state"] == "wait_pay":
        close(rt, payment_id, "channel_closed", at_channel=False)
    with rt.db.read() as session:
        fresh = payment_dict(session.get(Payment, payment_id))
    return {"outcome": outcome, "channel_status": cp.status, "payment": fresh,
            "msg": query_message(data["method"], cp)}


def close(rt: Any, payment_id: int, reason: str, *, at_channel: bool = True,
          query_first: bool = False) -> dict[str, Any]:
    """Close an unpaid order locally and at its channel; returns the result of each step."""
    with rt.db.read() as session:
        payment = session.get(Payment, payment_id)
        if payment is None:
            raise GonglunError("payment.not_found", "支付订单不存在", status=404)
        method, order = payment.method, payment.payment_order
    if query_first and method != "money":
        try:
            cp = get_channel(rt, method).query(order)
        except ChannelError:
            log.info("payment %s: query before close failed; closing anyway", payment_id)
        else:
            if apply(rt, method, cp, source="query") in (APPLIED, LATE):
                return {"closed": False, "outcome": "paid"}
    now = utcnow()
    with rt.db.write() as session:
        changed = session.execute(
            update(Payment)
            .where(Payment.id == payment_id, Payment.state == "wait_pay")
            .values(state="close", closed_at=now, version=Payment.version + 1)
        ).rowcount
        if not changed:
            state = session.execute(select(Payment.state).where(Payment.id == payment_id)).scalar()
            raise GonglunError("payment.not_closable", f"订单状态不允许关闭: {state}",
                               status=409, data={"state": state})
        data = payment_dict(session.get(Payment, payment_id))
        rt.hooks.defer(session, "payment_closed", key=f"payment_closed:{payment_id}",
                       payment=data, reason=reason)
    from gonglun.plugins.payment.cache import invalidate

    invalidate(rt, data)
    result: dict[str, Any] = {"closed": True, "outcome": "closed", "payment": data}
    if at_channel and method != "money":
        result["channel"] = close_at_channel(rt, payment_id, method, order)
    return result


def close_at_channel(rt: Any, payment_id: int, method: str, order: str) -> dict[str, Any]:
    try:
        closed = get_channel(rt, method).close(order)
    except ChannelError as exc:
        log.warning("payment %s: channel close failed: %s", payment_id, exc)
        watch(rt, payment_id, "close_unknown")
        return {"ok": False, "code": "unreachable", "msg": "支付渠道暂时无法访问,稍后自动重试"}
    if closed.already_paid:
        # The buyer paid while we closed: query and record it as a late payment.
        try:
            cp = get_channel(rt, method).query(order)
            apply(rt, method, cp, source="query")
        except ChannelError:
            watch(rt, payment_id, "close_paid")
    elif not closed.ok:
        watch(rt, payment_id, "close_failed")
    return {"ok": closed.ok, "code": closed.code, "msg": closed.msg}


def watch(rt: Any, payment_id: int, reason: str, *, delay_s: int = BACKOFF_S[0]) -> None:
    """Put an order on the drop-order list (idempotent)."""
    with rt.db.write() as session:
        insert_ignore(session, DropCheck.__table__, {
            "payment_id": payment_id, "reason": reason, "attempts": 0,
            "next_check_at": utcnow() + dt.timedelta(seconds=delay_s), "created_at": utcnow(),
        })


def close_expired(rt: Any, limit: int = 200) -> int:
    """The timeout close job: every unpaid order past its scene's deadline."""
    now = utcnow()
    with rt.db.read() as session:
        ids = list(session.scalars(
            select(Payment.id)
            .where(Payment.state == "wait_pay", Payment.close_deadline <= now)
            .order_by(Payment.close_deadline)
            .limit(limit)
        ))
    done = 0
    for payment_id in ids:
        try:
            close(rt, payment_id, "timeout", query_first=True)
            done += 1
        except GonglunError:
            continue  # paid or closed meanwhile
    return done


def enqueue_unnotified(rt: Any, older_than_s: int, limit: int = 500) -> int:
    """Orders still unpaid well after creation join the drop-order list (DROP-04)."""
    cutoff = utcnow() - dt.timedelta(seconds=older_than_s)
    with rt.db.read() as session:
        ids = list(session.scalars(
            select(Payment.id)
            .outerjoin(DropCheck, DropCheck.payment_id == Payment.id)
            .where(Payment.state == "wait_pay", Payment.method != "money",
                   Payment.created_at <= cutoff, DropCheck.id.is_(None))
            .limit(limit)
        ))
    for payment_id in ids:
        watch(rt, payment_id, "no_notification", delay_s=0)
    return len(ids)


def drop_query(rt: Any, *, max_attempts: int | None = None, limit: int = 200) -> dict[str, int]:
    """Query the channel for every due drop check, a bounded number of times each."""
    max_attempts = max_attempts or int(rt.config.get("payment.drop_max_attempts", 10))
    enqueue_unnotified(rt, int(rt.config.get("payment.drop_after_s", 120)))
    now = utcnow()
    with rt.db.read() as session:
        rows = session.execute(
            select(DropCheck.id, DropCheck.payment_id, DropCheck.attempts, Payment.method,
                   Payment.payment_order, Payment.state)
            .join(Payment, Payment.id == DropCheck.payment_id)
            .where(DropCheck.resolved_at.is_(None), DropCheck.next_check_at <= now)
            .order_by(DropCheck.next_check_at)
            .limit(limit)
        ).all()
    stats = {"checked": 0, "paid": 0, "closed": 0, "pending": 0, "gave_up": 0, "errors": 0}
    for row in rows:
        stats["checked"] += 1
        result = _check_one(rt, row)
        stats[result] += 1
        attempts = row.attempts + 1
        resolved = result in ("paid", "closed") or attempts >= max_attempts
        if result == "pending" and attempts >= max_attempts:
            stats["gave_up"] += 1
        with rt.db.write() as session:
            session.execute(
                update(DropCheck)
                .where(DropCheck.id == row.id, DropCheck.attempts == row.attempts)
                .values(
                    attempts=attempts,
                    last_result=result,
                    resolved_at=utcnow() if resolved else None,
                    next_check_at=utcnow() + dt.timedelta(
                        seconds=BACKOFF_S[min(attempts, len(BACKOFF_S) - 1)]),
                )
            )
    return stats


def _check_one(rt: Any, row: Any) -> str:
    try:
        cp = get_channel(rt, row.method).query(row.payment_order)
    except ChannelError:
        return "errors"
    outcome = apply(rt, row.method, cp, source="drop_query")
    if outcome in (APPLIED, LATE) or cp.paid:
        return "paid"
    if cp.closed:
        if row.state == "wait_pay":
            try:
                close(rt, row.payment_id, "channel_closed", at_channel=False)
            except GonglunError:
                pass
        return "closed"
    if row.state == "close" and cp.status in ("NOT_EXIST", "ORDER_NOT_EXIST"):
        return "closed"  # closed here and never created there: nothing can be paid
    return "pending"
