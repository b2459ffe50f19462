"""The refund request's checks, in DECISIONS.md 11's order, with the catalog's messages (REF-03,
REF-04). Every refusal is raised before anything is written."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from gonglun.errors import GonglunError

WAYS = ("seller", "admin", "system")

# The catalog's texts (``\n`` for ``<br>``, AMB-07).
MSG_AMOUNT = "退款失败:金额不是有效数字"
MSG_NOT_FOUND = "退款失败:支付订单不存在"
MSG_IN_PROGRESS = "退款失败:该订单正在退款中\n如果三天内未到账联系平台客服"
MSG_FAILED = "退款失败:需要联系官方客服进一步处理"
MSG_DONE = "退款失败:该订单已发起过退款\n退款金额 ({} 元) "
MSG_STATE = "退款失败:支付订单状态不允许发起退款"
MSG_WAY = "退款失败:参数缺失"
MSG_LOGIN = "退款失败:请登录后操作"
MSG_NOT_SELLER = "退款失败:你无权操作"
MSG_NO_KEY = "退款失败:非法请求(系统拒绝)"
MSG_BAD_KEY = "退款失败:非法请求(参数无效)"
MSG_NOT_ADMIN = "退款失败:你的权限不足!"
MSG_TOO_MUCH = "退款失败:退款金额大于支付金额"
MSG_NO_REASON = "退款说明不得为空"
MSG_HTML = "退款备注信息不得包含HTML"
MSG_SCENE = "退款失败:该支付场景不支持退款"
MSG_LOCKED = "退款失败:重复请求(订单锁)"

_HTML = re.compile(r"<\s*/?\s*[a-zA-Z!][^>]*>|&(?:[a-zA-Z]+|#\d+|#x[0-9a-fA-F]+);")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Ask:
    """What a caller asks for, as received (checked by ``check``)."""

    ref: str
    amount: Any
    way: Any
    reason: Any
    refund_key: Any = None
    user: Any = None
    ip: str | None = None
    #: The caller came with a user's session (a browser or app), not as a service.
    session: bool = False


def amount_of(value: Any) -> int:
    """1. A positive integer of fen (floats, strings, booleans are not numbers of fen)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 2**63 - 1:
        raise GonglunError("refund.invalid_amount", MSG_AMOUNT)
    return value


def state_allows(payment: Any) -> None:
    """3-6: wait_refund, fail_refund, refund, then anything but ok (AMB-17's order)."""
    state = payment.state
    if state == "wait_refund":
        raise GonglunError("refund.in_progress", MSG_IN_PROGRESS, status=409)
    if state == "fail_refund":
        raise GonglunError("refund.needs_support", MSG_FAILED, status=409)
    if state == "refund":
        from gonglun.plugins.payment import fen_to_yuan

        raise GonglunError("refund.already_refunded",
                           MSG_DONE.format(fen_to_yuan(int(payment.refund_amount or 0))),
                           status=409, data={"refund_amount": payment.refund_amount})
    if state != "ok":
        raise GonglunError("refund.state_not_refundable", MSG_STATE, status=409,
                           data={"state": state})


def way_of(value: Any) -> str:
    """7. One of seller, admin, system."""
    if value not in WAYS:
        raise GonglunError("refund.way_missing", MSG_WAY, data={"ways": list(WAYS)})
    return str(value)


def key_matches(rt: Any, given: Any) -> bool:
    """The system way's key against ``refund.key`` (32+ characters, else no key), in constant
    time: digests of equal length are compared, so neither content nor length leaks."""
    expected = str(rt.config.get("refund.key") or "")
    if not isinstance(given, str) or not given or len(expected) < 32:
        return False
    return hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                               hashlib.sha256(expected.encode()).digest())


def gate(rt: Any, ask: Ask) -> None:
    """Before anything is looked up: a caller without a user's session is a service holding
    the refund key, or nobody (401). Nothing about the payment (exists, paid, refunded) is
    told to a caller who has not shown who they are."""
    if ask.session:
        return
    if ask.way != "system":
        raise GonglunError("refund.login_required", MSG_LOGIN, status=401,
                           data={"jump": "login"}, headers={"WWW-Authenticate": "Bearer"})
    if not isinstance(ask.refund_key, str) or not ask.refund_key:
        raise GonglunError("refund.key_missing", MSG_NO_KEY, status=401)
    if not key_matches(rt, ask.refund_key):
        raise GonglunError("refund.key_invalid", MSG_BAD_KEY, status=401)


def visible(rt: Any, ask: Ask, payment: Any) -> None:
    """2. A logged-in caller who may not see the payment is told it does not exist (404),
    as ``GET /v1/payments/{ref}`` would; a service with the key sees every payment."""
    from gonglun.plugins.payment import may_view, payment_dict

    if ask.session and not may_view(rt, ask.user, payment_dict(payment)):
        raise GonglunError("refund.payment_not_found", MSG_NOT_FOUND, status=404)


def authorize(rt: Any, ask: Ask, way: str, payment: Any) -> None:
    """8. REF-04: the seller of this order; an admin; the system with the refund key.

    The system way is for services, never for a browser or app session: the key is
    configuration (``refund.key``), compared in constant time (``gate`` did it already for
    a caller without a session).
    """
    from gonglun.plugins.payment import is_admin

    if way == "seller":
        if ask.user is None:
            raise GonglunError("refund.login_required", MSG_LOGIN, status=401,
                               data={"jump": "login"})
        if payment.seller_id is None or payment.seller_id != ask.user.id:
            raise GonglunError("refund.not_seller", MSG_NOT_SELLER, status=403)
    elif way == "admin":
        if not is_admin(ask.user):
            raise GonglunError("refund.not_admin", MSG_NOT_ADMIN, status=403)
    elif ask.session or not isinstance(ask.refund_key, str) or not ask.refund_key:
        raise GonglunError("refund.key_missing", MSG_NO_KEY, status=403)
    elif not key_matches(rt, ask.refund_key):
        raise GonglunError("refund.key_invalid", MSG_BAD_KEY, status=403)


def reason_of(value: Any) -> str:
    """10. Present, no HTML, no control characters, at most 255 characters."""
    if not isinstance(value, str) or not value.strip():
        raise GonglunError("refund.reason_missing", MSG_NO_REASON)
    if _HTML.search(value):
        raise GonglunError("refund.reason_html", MSG_HTML)
    if _CONTROL.search(value) or len(value) > 255:
        raise GonglunError("refund.reason_invalid", "退款说明须为1-255个字符且不含控制字符")
    return value.strip()


def check(rt: Any, ask: Ask, payment: Any) -> tuple[int, str, str]:
    """The whole sequence after the payment was found: ``(amount, way, reason)``."""
    amount = amount_of(ask.amount)
    visible(rt, ask, payment)
    state_allows(payment)
    way = way_of(ask.way)
    authorize(rt, ask, way, payment)
    if amount > payment.amount:
        raise GonglunError("refund.amount_exceeds", MSG_TOO_MUCH,
                           data={"amount": amount, "paid": payment.amount})
    reason = reason_of(ask.reason)
    from gonglun.plugins.payment import scenes_for

    scene = scenes_for(rt).get(payment.scene)
    if scene is None or not scene.refundable:
        raise GonglunError("refund.scene_not_refundable", MSG_SCENE, status=409,
                           data={"scene": payment.scene})
    return amount, way, reason
