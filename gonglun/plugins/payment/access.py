"""Who may see a payment (PAY-21, SEC-05, CORE-24) and the bill-page data (PAY-22)."""

from __future__ import annotations

from typing import Any

from gonglun.plugins.payment.records import METHOD_LABELS, STATE_LABELS, meta
from gonglun.plugins.payment.scenes import scenes_for

REFUND_WAYS = {"admin": "平台管理员", "seller": "卖家", "system": "系统自动"}


def is_admin(user: Any) -> bool:
    return user is not None and user.role in ("admin", "superadmin")


def whitelist(rt: Any) -> set[int]:
    """``payment.view_whitelist = [{name = "...", user_id = 12}]`` (the seeds' admin option)."""
    out = set()
    for item in rt.config.get("payment.view_whitelist") or []:
        user_id = item.get("user_id") if isinstance(item, dict) else item
        if isinstance(user_id, int):
            out.add(user_id)
    return out


#: A seller sees the orders paid to them; an unpaid order naming them (anybody can create
#: one) stays out of their view unless the scene lets sellers act on unpaid orders.
PAID_STATES = ("ok", "wait_refund", "refund", "fail_refund")


def seller_sees(rt: Any, payment: dict[str, Any]) -> bool:
    if payment["state"] in PAID_STATES:
        return True
    scene = scenes_for(rt).get(payment["scene"])
    return scene is not None and scene.seller_close


def may_view(rt: Any, viewer: Any, payment: dict[str, Any]) -> bool:
    allowed = viewer is not None and (
        payment["user_id"] == viewer.id
        or (payment.get("seller_id") == viewer.id and seller_sees(rt, payment))
        or is_admin(viewer)
        or viewer.id in whitelist(rt)
    )
    return bool(rt.hooks.apply_filters("order_access", allowed, viewer=viewer, payment=payment))


def action_role(rt: Any, viewer: Any, payment: dict[str, Any]) -> str | None:
    """Who ``viewer`` is when acting on ``payment``: buyer, seller (where the scene lets
    sellers act, ``seller_close``), admin; None for anybody else, whitelisted viewers too."""
    if viewer is None:
        return None
    if payment.get("user_id") == viewer.id:
        return "buyer"
    if is_admin(viewer):
        return "admin"
    scene = scenes_for(rt).get(payment["scene"])
    if payment.get("seller_id") == viewer.id and scene is not None and scene.seller_close:
        return "seller"
    return None


def detail(rt: Any, record: dict[str, Any], viewer: Any) -> dict[str, Any]:
    """The bill-page data: driven by scene configuration, fields shown by role."""
    from gonglun.plugins.payment.cache import public

    payment = public(record)
    scene = scenes_for(rt).get(payment["scene"])
    data: dict[str, Any] = {
        "scene": {"key": payment["scene"], "name": scene.name if scene else payment["scene"],
                  "title": scene.title if scene else "其它",
                  "color": scene.color if scene else "#46c47c"},
        "method_label": METHOD_LABELS.get(payment["method"], "其它支付"),
        "state_label": STATE_LABELS.get(payment["state"], "其它"),
        "goods": {"shop_type": record.get("shop_type"), "shop_order": record.get("shop_order")},
        "seller_id": payment.get("seller_id"),
        "late": payment.get("late", False),
    }
    info = meta(record.get("meta"))
    refund_meta = info.get("refund") or {}
    if payment.get("refund_order"):
        data["refund"] = {
            "refund_order": payment["refund_order"],
            "amount": payment["refund_amount"],
            "time": payment["refund_time"],
            "way": refund_meta.get("way"),
            "way_label": REFUND_WAYS.get(refund_meta.get("way", ""), "其它"),
            "reason": record.get("refund_reason"),
        }
    if is_admin(viewer):
        data["admin"] = {
            "payer_ip": record.get("payer_ip"),
            "fingerprint": record.get("fingerprint"),
            "refund_fail_reason": refund_meta.get("fail"),
            "refund_fail_time": refund_meta.get("fail_time"),
        }
    if viewer is not None and viewer.role == "superadmin":
        data["income"] = record.get("income", 0)
    return rt.hooks.apply_filters("payment_detail", data, payment=payment, viewer=viewer)
