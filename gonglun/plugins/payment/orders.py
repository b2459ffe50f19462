"""Order creation (CORE-03, CORE-04, PAY-05..08, BAL-05, BAL-07) and the pay parameters."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gonglun.api.util import get_int, get_str
from gonglun.db import utcnow
from gonglun.errors import GonglunError
from gonglun.plugins.payment.channels import ChannelError, get_channel
from gonglun.plugins.payment.models import Payment
from gonglun.plugins.payment.records import new_order_number, payment_dict
from gonglun.plugins.payment.scenes import METHOD_CHANNELS, Scene, get_scene

log = logging.getLogger(__name__)

# Catalog messages (spec/requirements.md), ``\n`` for ``<br>`` (AMB-07).
MSG_METHOD_REQUIRED = "请先选择支付方式"  # PAY-05
MSG_BALANCE_LOGIN = "支付失败:余额支付必须先登录"  # PAY-06
MSG_WECHAT_LOGIN = "支付失败:微信环境需登录后才能支付"  # PAY-07
MSG_NO_OPENID = "公众号支付失败:openid获取不到"  # PAY-08


@dataclass(frozen=True)
class OrderRequest:
    scene: Scene
    amount: int
    method: str
    channel: str
    title: str
    seller_id: int | None
    openid: str | None
    return_url: str | None


def parse_request(rt: Any, body: dict[str, Any], user: Any) -> OrderRequest:
    """Validate the body in the catalog's order; refusals change nothing."""
    method = body.get("method")
    if method in (None, ""):
        raise GonglunError("payment.method_required", MSG_METHOD_REQUIRED)
    method = get_str(body, "method", choices=tuple(METHOD_CHANNELS))
    scene = get_scene(rt, get_str(body, "scene", max_len=32) or "")
    if method == "money" and user is None:
        raise GonglunError("payment.balance_login_required", MSG_BALANCE_LOGIN, status=401)
    if "user_id" in body:
        # PAY-06: the payer is the session's user, never a parameter.
        raise GonglunError("payment.user_id_not_allowed", "非法请求:不接受 user_id 参数")
    if method not in scene.methods:
        raise GonglunError("payment.method_not_allowed",
                           f"该支付场景不支持此支付方式: {method}")
    channel = body.get("channel") or ("balance" if method == "money" else None)
    channel = get_str({"channel": channel}, "channel", choices=METHOD_CHANNELS[method])
    if user is None and not scene.guest_allowed:
        raise GonglunError("payment.login_required", "请先登录后再支付", status=401)
    if method == "wxpay" and channel == "jsapi" and user is None:
        raise GonglunError("payment.wechat_login_required", MSG_WECHAT_LOGIN, status=401)
    amount = get_int(body, "amount", minimum=1)
    assert amount is not None
    if not scene.min_amount <= amount <= scene.max_amount:
        raise GonglunError(
            "payment.amount_out_of_range",
            f"支付金额超出范围: {scene.min_amount}-{scene.max_amount} 分",
            data={"min": scene.min_amount, "max": scene.max_amount},
        )
    title = get_str(body, "title", required=False, max_len=128) or scene.name
    seller_id = get_int(body, "seller_id", required=False, minimum=1)
    if scene.seller_required and seller_id is None:
        raise GonglunError("payment.seller_required", "该支付场景需要指定收款方 seller_id")
    if seller_id is not None and user is not None and seller_id == user.id:
        raise GonglunError("payment.seller_is_buyer", "不能向自己付款")
    openid = get_str(body, "openid", required=False, max_len=128)
    if openid is not None and not openid.isascii():
        raise GonglunError("request.invalid_characters", "参数 openid 含有非法字符",
                           data={"field": "openid"})
    if method == "wxpay" and channel == "jsapi" and not openid:
        from gonglun.accounts import get_meta

        with rt.db.read() as session:  # PAY-08: the payer's own openid
            openid = get_meta(session, user.id, "weixin_uid") if user else None
        if not openid:
            raise GonglunError("payment.openid_missing", MSG_NO_OPENID)
    return_url = check_return_url(rt, get_str(body, "return_url", required=False, max_len=512))
    return OrderRequest(scene, amount, method, channel, title, seller_id, openid, return_url)


def limit_creations(rt: Any, user: Any, ip: str) -> None:
    """Orders per minute: guests per address (``payment.guest_orders_per_min``, default 10),
    users per account (``payment.user_orders_per_min``, default 60). Each order costs a channel
    call and a row; 429 ``payment.create_rate_limited`` past the limit."""
    from gonglun.kv import RateLimiter

    limiter = rt.__dict__.get("_order_limiter")
    if limiter is None:
        limiter = rt.__dict__["_order_limiter"] = RateLimiter(rt.redis, rt.keys)
    if user is None:
        key, limit = f"order:ip:{ip}", int(rt.config.get("payment.guest_orders_per_min", 10))
    else:
        key, limit = f"order:u:{user.id}", int(rt.config.get("payment.user_orders_per_min", 60))
    limiter.require(key, max(1, limit), 60.0, error="payment.create_rate_limited",
                    msg="下单过于频繁,请稍后再试")


def check_return_url(rt: Any, url: str | None) -> str | None:
    """``return_url`` goes to the channel's cashier, which sends the buyer there: only http(s)
    URLs on hosts of ``server.return_hosts`` (plus this server's own public host)."""
    if url is None:
        return None
    from urllib.parse import urlsplit

    if any(ch in url for ch in "\\@ \t") or not url.isascii():
        # Browsers read ``https://evil.example\@shop.example/`` as evil.example; Python's
        # parser as shop.example. Such URLs are refused rather than interpreted.
        raise GonglunError("payment.return_url_not_allowed",
                           "return_url 必须是 http(s) 地址且主机在 server.return_hosts 中",
                           data={"field": "return_url"})
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        host, parts = "", None
    allowed = {str(h).lower() for h in (rt.config.get("server.return_hosts") or [])}
    public = str(rt.config.get("server.public_url") or "")
    if public:
        allowed.add((urlsplit(public).hostname or "").lower())
    if rt.config.embedded_default:
        allowed.update({"127.0.0.1", "localhost"})
    if parts is None or parts.scheme not in ("http", "https") or not host or host not in allowed:
        raise GonglunError("payment.return_url_not_allowed",
                           "return_url 必须是 http(s) 地址且主机在 server.return_hosts 中",
                           data={"field": "return_url"})
    return url


def _guards(rt: Any, session: Any, req: OrderRequest, user: Any) -> None:
    from gonglun.accounts.models import User
    from gonglun.ledger import NEGATIVE_BALANCE_ERROR, NEGATIVE_BALANCE_MSG, negative_blocks

    # BAL-05: no trading while the user owes the platform; a top-up is how the debt is repaid,
    # so a scene whose money goes to the payer's own wallet (``topup``) stays open.
    if user is not None and not req.scene.topup and negative_blocks(session, user.id):
        raise GonglunError(NEGATIVE_BALANCE_ERROR, NEGATIVE_BALANCE_MSG, status=403)
    if req.seller_id is not None:
        seller = session.get(User, req.seller_id)
        if seller is None or seller.status == "deleted":
            raise GonglunError("payment.unknown_seller", "收款方不存在")
    errors = rt.hooks.apply_filters("payment_guard", [], session=session, user=user,
                                    scene=req.scene.key, amount=req.amount, method=req.method)
    if errors:
        raise errors[0]


def create_payment(
    rt: Any, req: OrderRequest, user: Any, *, ip: str | None, fingerprint: str | None,
    request_key: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """Create the order; returns ``(payment, pay_params, created)``.

    Balance orders are paid inside the same transaction (debit posting + state ``ok`` +
    deferred ``payment_success``). Channel orders ask the channel first, under the drafted
    order number, and are written only once it answered, so no transaction is held open
    across the network and a channel that is not configured (503), errs or times out (502)
    leaves no unpayable ``wait_pay`` order behind. A request key whose earlier attempt wrote
    its order finds that order again.
    """
    existing = _by_request_key(rt, request_key)
    if existing is not None:
        return existing, _pay_params(rt, existing, req, ip), False
    if req.method != "money":
        get_channel(rt, req.method)  # 503 payment.channel_unavailable, nothing written
        with rt.db.read() as session:
            _guards(rt, session, req, user)  # refused before the channel is asked
    for attempt in range(3):
        values = _draft(req, user, ip=ip, fingerprint=fingerprint, request_key=request_key)
        params = _pay_params(rt, {**values, "close_deadline": values["close_deadline"].isoformat()},
                             req, ip)
        try:
            payment = _insert(rt, req, user, values)
            break
        except IntegrityError:
            found = _by_request_key(rt, request_key)
            if found is not None:  # a twin request under the same key wrote first
                return found, _pay_params(rt, found, req, ip), False
            if attempt == 2:
                raise
    from gonglun.plugins.payment.cache import invalidate

    invalidate(rt, payment)  # drops negative entries cached under its numbers
    return payment, params, True


def _pay_params(rt: Any, payment: dict[str, Any], req: OrderRequest, ip: str | None
                ) -> dict[str, Any]:
    """The channel's pay parameters ({} for balance orders and orders no longer unpaid).

    The order's own method and channel, never the request's: a retry finds the order its
    first attempt created (request keys cover the whole request, so they agree)."""
    if payment["method"] == "money" or payment.get("state") != "wait_pay":
        return {}
    try:
        return dict(get_channel(rt, payment["method"]).pay_params(
            payment, payment["channel"],
            {"openid": req.openid, "ip": ip, "return_url": req.return_url},
        ))
    except ChannelError as exc:
        log.warning("order %s: channel refused or unreachable: %s", payment["payment_order"], exc)
        raise GonglunError("payment.channel_error", "支付渠道暂时不可用,请稍后重试",
                           status=502) from exc


def _by_request_key(rt: Any, request_key: str | None) -> dict[str, Any] | None:
    if request_key is None:
        return None
    with rt.db.read() as session:
        row = session.execute(select(Payment).where(Payment.request_key == request_key)).scalar()
        return payment_dict(row) if row else None


#: Built once; RETURNING gives the id (and every default) without a second query.
_INSERT = Payment.__table__.insert().returning(*Payment.__table__.c)


def _draft(req: OrderRequest, user: Any, *, ip: str | None, fingerprint: str | None,
           request_key: str | None) -> dict[str, Any]:
    """The new order's row, with a fresh order number; nothing written yet."""
    now = utcnow()
    return {
        "payment_order": new_order_number(now), "user_id": user.id if user else None,
        "seller_id": req.seller_id, "scene": req.scene.key, "title": req.title,
        "amount": req.amount, "method": req.method, "channel": req.channel,
        "state": "wait_pay", "pay_order": None, "paid_at": None, "paid_amount": None,
        "payer_ip": ip, "fingerprint": fingerprint, "request_key": request_key,
        "created_at": now, "close_deadline": now + dt.timedelta(minutes=req.scene.close_minutes),
        "refund_amount": 0, "income": 0, "meta": "{}", "version": 0, "late": False,
    }


def _insert(rt: Any, req: OrderRequest, user: Any, values: dict[str, Any]) -> dict[str, Any]:
    from gonglun.plugins.payment.funds import pay_from_balance

    values = dict(values)
    with rt.db.write() as session:
        _guards(rt, session, req, user)
        if req.method == "money":
            # BAL-07: the payer is the session user; the transfer to the scene's account
            # (escrow, income) refuses an overdraft and rolls the whole order back with it.
            now = values["created_at"]
            pay_from_balance(rt, session, req.scene, user_id=user.id, amount=req.amount,
                             order=values["payment_order"])
            values.update(state="ok", pay_order=new_order_number(now), paid_at=now,
                          paid_amount=req.amount, version=1)
        row = session.connection().execute(_INSERT, values).first()
        data = payment_dict(row)
        rt.hooks.defer(session, "payment_created", key=f"payment_created:{data['id']}",
                       payment=data)
        if data["state"] == "ok":
            rt.hooks.defer(session, "payment_success", key=f"payment_success:{data['id']}",
                           payment=data)
    return data
