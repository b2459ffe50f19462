"""Payment rows as JSON primitives, order numbers and client references (DECISIONS.md 2)."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gonglun.plugins.payment.models import Payment
from gonglun.plugins.payment.money import SHANGHAI

STATE_LABELS = {
    "wait_pay": "等待付款",
    "ok": "付款成功",
    "close": "订单关闭",
    "wait_refund": "正在退款",
    "refund": "退款成功",
    "fail_refund": "退款失败(需人工处理)",
}
METHOD_LABELS = {"wxpay": "微信支付", "alipay": "支付宝", "money": "余额支付"}

FIELDS = ("id", "payment_order", "pay_order", "user_id", "seller_id", "scene", "title", "amount",
          "method", "channel", "state", "refund_order", "refund_amount", "refund_time",
          "created_at", "paid_at", "closed_at", "close_deadline", "late", "paid_amount",
          "settled_at")


def new_order_number(now: dt.datetime | None = None) -> str:
    """24 digits: Beijing time to the second, then 10 random digits (unique column behind it)."""
    now = (now or dt.datetime.now(dt.UTC)).astimezone(SHANGHAI)
    return f"{now:%Y%m%d%H%M%S}{secrets.randbelow(10**10):010d}"


def payment_dict(p: Payment) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in FIELDS:
        value = getattr(p, name)
        out[name] = value.isoformat() if isinstance(value, dt.datetime) else value
    out["state_label"] = STATE_LABELS.get(p.state, "其它")
    return out


def meta(text: str | None) -> dict[str, Any]:
    """A payment's ``meta`` JSON as a dict ({} when empty or not an object)."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def resolve(session: Session, ref: str, *, for_update: bool = False) -> Payment | None:
    """A client reference: fewer than 10 digits is the primary key; otherwise a merchant,
    channel or refund order number (AMB-09)."""
    ref = (ref or "").strip()
    if not ref.isascii() or not ref.isalnum() or len(ref) > 64:
        return None
    stmt = select(Payment)
    if ref.isdigit() and len(ref) < 10:
        stmt = stmt.where(Payment.id == int(ref))
    else:
        stmt = stmt.where(
            or_(Payment.payment_order == ref, Payment.pay_order == ref,
                Payment.refund_order == ref)
        )
    if for_update and session.get_bind().dialect.name != "sqlite":
        stmt = stmt.with_for_update()
    return session.execute(stmt.limit(1)).scalar()
