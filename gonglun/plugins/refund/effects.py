"""What follows a refund, after commit (CORE-11, REF-19, OPS-03..06): counters, the payer's
notice and push, the error log and its alarms (CORE-12's alarm to finance is the notify
plugin's own ``refund_abnormal``). Each runs once per refund (the
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
    every channel it has; the fields are docs/notify.md's), and a websocket push."""
    user_id = payment.get("user_id")
    if not user_id:
        return
    data = {
        "refund_id": refund["id"], "payment_id": refund["payment_id"],
        "payment_order": refund["payment_order"], "pay_order": payment.get("pay_order"),
        "title": payment.get("title") or refund["scene"], "amount": refund["amount"],
        "pay_amount": refund["total"], "reason": refund["reason"],
        "refund_time": refund.get("success_time") or refund.get("created_at"),
        "method": refund["method"], "payment_scene": refund["scene"], "way": refund["way"],
        "refund_order": refund["refund_order"], "status": refund["status_name"],
    }
    with rt.db.write() as session:
        rt.hooks.defer(session, "notify", key=f"notify:refund:{refund['id']}",
                       scene="payment_refund", user_id=user_id, data=data)
    rt.push(user_id, {"event": "refund", "refund": {
        k: refund[k] for k in ("refund_order", "payment_id", "amount", "status_name")}})


# -- OPS-03/04: the refund error log and its daily alarms ---------------------------------------


def error_line(when: dt.datetime, channel: str, error: str, payment_id: int) -> str:
    from gonglun.plugins.payment import SHANGHAI

    stamp = when.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    text = " ".join(str(error).split())
    return f"[退款时间 - {stamp}] [退款渠道 - {channel}] [错误 - {text}] [退款单号 - {payment_id}]"


def record_error(rt: Any, channel: str, error: str, payment_id: int) -> None:
    """Append OPS-04's line to ``<data_dir>/log/refund/YYYY-MM-DD.log`` (Asia/Shanghai day) and
    raise ``alarm(kind="refund")``: the notify plugin turns 3 a day into one staff alarm, at
    most 3 a day (OPS-03)."""
    from gonglun.plugins.payment import SHANGHAI

    now = utcnow()
    day = now.astimezone(SHANGHAI).strftime("%Y-%m-%d")
    path = Path(rt.config.data_dir) / "log" / "refund" / f"{day}.log"
    line = error_line(now, channel, error, payment_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError:
        log.exception("refund error log %s not written", path)
    import uuid

    with rt.db.write() as session:
        rt.hooks.defer(session, "alarm", key=f"alarm:refund:{uuid.uuid4().hex}", kind="refund",
                       message=line[:255],
                       data={"channel": channel, "payment_id": payment_id, "error": error[:200]})
