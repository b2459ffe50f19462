"""What follows a refund, after commit (CORE-11, CORE-12, REF-19, OPS-03..06): counters, the
payer's notice and push, the error log and finance's alarms. Each runs once per refund (the
outbox's per-implementation record, and keys on what it defers further)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from gonglun.db import utcnow

log = logging.getLogger(__name__)


def counters(rt: Any) -> Any:
    from gonglun.kv import Counters

    made = rt.__dict__.get("_refund_counters")
    if made is None:
        made = rt.__dict__["_refund_counters"] = Counters(rt.redis, rt.keys)
    return made


def count(rt: Any, refund: dict[str, Any]) -> None:
    """OPS-06: ``refund``, ``refund_<channel>`` (``refund_money`` for balance), ``refund_<scene>``,
    all in fen."""
    c = counters(rt)
    for name in ("refund", f"refund_{refund['method']}", f"refund_{refund['scene']}"):
        c.add(name, int(refund["amount"]))


def notify_payer(rt: Any, refund: dict[str, Any], payment: dict[str, Any]) -> None:
    """REF-34: the ``payment_refund`` notice to the payer (the notify plugin delivers it on
    every channel it has), and a websocket push."""
    from gonglun.plugins.payment import fen_to_yuan

    user_id = payment.get("user_id")
    if not user_id:
        return
    data = {
        "refund_order": refund["refund_order"], "payment_order": refund["payment_order"],
        "payment_id": refund["payment_id"], "amount": refund["amount"],
        "amount_yuan": fen_to_yuan(int(refund["amount"])), "method": refund["method"],
        "scene": refund["scene"], "title": payment.get("title"), "reason": refund["reason"],
        "status": refund["status_name"], "time": refund.get("success_time")
        or refund.get("created_at"),
    }
    with rt.db.write() as session:
        rt.hooks.defer(session, "notify", key=f"notify:payment_refund:{refund['refund_order']}",
                       scene="payment_refund", user_id=user_id, data=data)
    rt.push(user_id, {"event": "refund", "refund": {
        k: refund[k] for k in ("refund_order", "payment_id", "amount", "status_name")}})


def alarm_abnormal(rt: Any, channel: str, refund_order: str, payment: dict[str, Any]) -> None:
    """CORE-12: finance must pay the buyer by hand (or retry through the channel)."""
    with rt.db.write() as session:
        rt.hooks.defer(session, "alarm", key=f"alarm:refund_abnormal:{refund_order}",
                       kind="refund_abnormal",
                       message=f"退款异常,需要人工处理: {channel} {refund_order}",
                       data={"channel": channel, "refund_order": refund_order,
                             "payment_id": payment.get("id"),
                             "amount": payment.get("refund_amount")})


# -- OPS-03/04: the refund error log and its daily alarms ---------------------------------------


def error_line(when: dt.datetime, channel: str, error: str, payment_id: int) -> str:
    from gonglun.plugins.payment import SHANGHAI

    stamp = when.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    text = " ".join(str(error).split())
    return f"[退款时间 - {stamp}] [退款渠道 - {channel}] [错误 - {text}] [退款单号 - {payment_id}]"


def record_error(rt: Any, channel: str, error: str, payment_id: int) -> None:
    """Append OPS-04's line to ``<data_dir>/log/refund/YYYY-MM-DD.log`` (Asia/Shanghai day);
    the 3rd error of a day raises an alarm, and every 3rd after it, at most 3 a day (OPS-03:
    ``refund.error_alarm_every``, ``refund.error_alarms_per_day``)."""
    from gonglun.plugins.payment import SHANGHAI

    now = utcnow()
    day = now.astimezone(SHANGHAI).strftime("%Y-%m-%d")
    path = Path(rt.config.data_dir) / "log" / "refund" / f"{day}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(error_line(now, channel, error, payment_id) + "\n")
    except OSError:
        log.exception("refund error log %s not written", path)
    every = max(1, int(rt.config.get("refund.error_alarm_every", 3)))
    most = int(rt.config.get("refund.error_alarms_per_day", 3))
    try:
        key = rt.keys("refund_errors", day)
        n = int(rt.redis.incr(key))
        rt.redis.expire(key, 3 * 86400)
    except Exception:
        log.warning("refund error counter unavailable", exc_info=True)
        return
    if n % every == 0 and n // every <= most:
        with rt.db.write() as session:
            rt.hooks.defer(session, "alarm", key=f"alarm:refund_errors:{day}:{n}",
                           kind="refund_errors",
                           message=f"今日退款错误已达 {n} 次: 最近一次 {channel} {error}"[:255],
                           data={"day": day, "errors": n, "channel": channel,
                                 "payment_id": payment_id})
