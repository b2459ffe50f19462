"""The refund query (REF-23..29, CORE-13): the status of a payment's refund, asked of the
channel now; with the catalog's answers and its rate limits."""

from __future__ import annotations

import datetime as dt
from typing import Any

from gonglun.db import utcnow
from gonglun.errors import GonglunError

MSG_NOT_NUMERIC = "查询失败:订单号必须为数字"
MSG_NO_ORDER = "查询结果:订单不存在"
MSG_NO_REFUND = "查询结果:该订单未发起过退款请求"
MSG_DONE = "查询结果:该订单已完成退款"
MSG_NOT_DONE = "退款未完成"
MSG_SUCCESS = "查询结果:退款成功"
MSG_WX = {"CLOSED": "查询结果:CLOSED-退款关闭", "ABNORMAL": "查询结果:ABNORMAL-退款异常",
          "PROCESSING": "查询结果:PROCESSING-退款处理中"}
MSG_ALIPAY_FAILED = "查询结果:退款失败"
MSG_ALIPAY_WAIT = "查询结果:退款失败(可能正在退款,请稍后查询)"
MSG_UNREADABLE = "返回异常:SDK返回不可识别的错误"
MSG_TOO_FAST = "查询速度过快,请稍后重试"
MSG_LIMITED = "查询过于频繁,请稍后再试"


def rate_limit(rt: Any, user: Any, ip: str) -> None:
    """REF-29: one query per 5 s per address; REF-28 per role: users 5 a minute (then 5
    minutes blocked), admins 10 a minute, superadmins unlimited; banned users never reach
    here (their tokens stop working)."""
    from gonglun.kv import RateLimiter

    limiter = rt.__dict__.get("_refund_query_limiter")
    if limiter is None:  # an exact sliding log: "1 per 5 s" means 5 s, whatever the clock
        limiter = rt.__dict__["_refund_query_limiter"] = RateLimiter(rt.redis, rt.keys,
                                                                     algorithm="log")
    if user.role == "superadmin":
        return
    limiter.require(f"refund_query_ip:{ip}", 1, 5.0, error="refund.query_too_fast",
                    msg=MSG_TOO_FAST)
    if user.role == "admin":
        limiter.require(f"refund_query:{user.id}", 10, 60.0, error="refund.query_limited",
                        msg=MSG_LIMITED)
    else:
        limiter.require(f"refund_query:{user.id}", 5, 60.0, block_s=300.0,
                        error="refund.query_limited", msg=MSG_LIMITED)


def live_query(rt: Any, ref: str, viewer: Any) -> dict[str, Any]:
    """``{"refunded", "status", "msg", "state"}``; the channel's own data stays here."""
    from gonglun.plugins.payment import ChannelError, get_channel, may_view, payment_dict, resolve

    text = ref.strip() if isinstance(ref, str) else ""
    if not text.isascii() or not text.isdigit() or len(text) > 32:
        raise GonglunError("refund.invalid_ref", MSG_NOT_NUMERIC)
    with rt.db.read() as session:
        payment = resolve(session, text)
        data = payment_dict(payment) if payment is not None else None
    if data is None or not may_view(rt, viewer, data):
        raise GonglunError("refund.payment_not_found", MSG_NO_ORDER, status=404)
    if not data.get("refund_order"):
        raise GonglunError("refund.none", MSG_NO_REFUND, status=404)
    base = {"state": data["state"], "refund_order": data["refund_order"],
            "amount": data["refund_amount"]}
    if data["method"] == "money":
        done = data["state"] == "refund"
        return {**base, "refunded": done, "status": "SUCCESS" if done else data["state"],
                "msg": MSG_DONE if done else MSG_NOT_DONE}
    try:
        result = get_channel(rt, data["method"]).refund_query(data, data["refund_order"])
    except ChannelError as exc:
        raise GonglunError("refund.query_failed", MSG_UNREADABLE, status=502) from exc
    _apply_final(rt, data["refund_order"], result)
    if result.status == "SUCCESS":
        return {**base, "refunded": True, "status": "SUCCESS", "msg": MSG_SUCCESS}
    if data["method"] == "wxpay":
        msg = MSG_WX.get(result.status, MSG_UNREADABLE)
    else:
        when = dt.datetime.fromisoformat(data["refund_time"]) if data.get("refund_time") \
            else utcnow()
        recent = utcnow() - when < dt.timedelta(seconds=30)
        msg = MSG_ALIPAY_WAIT if recent or result.status == "PROCESSING" else MSG_ALIPAY_FAILED
    return {**base, "refunded": False, "status": result.status, "msg": msg}


def _apply_final(rt: Any, refund_order: str, result: Any) -> None:
    """A definitive answer found on the way is applied at once (it would be at the next
    confirmation anyway): to a refund still refunding, failed (the channel exit) or paid by
    hand (money that left twice)."""
    if result.status not in ("SUCCESS", "ABNORMAL"):
        return
    from sqlalchemy import select

    from gonglun.plugins.refund.answers import settle
    from gonglun.plugins.refund.models import FAILED, REFUNDING, SUCCESS, Refund

    with rt.db.read() as session:
        refund_id = session.scalar(select(Refund.id).where(
            Refund.refund_order == refund_order,
            Refund.status.in_((REFUNDING, FAILED, SUCCESS))))
    if refund_id is not None:
        settle(rt, refund_id, result, source="live")
