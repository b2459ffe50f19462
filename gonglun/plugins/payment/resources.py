"""REST resources of the payment plugin (API.md)."""

from __future__ import annotations

import logging
from typing import Any

from gonglun.api.openapi import TOO_LARGE, plain_text
from gonglun.api.routes import responds
from gonglun.api.util import (
    ascii_ref,
    client_ip,
    json_body,
    ok,
    query_int,
    read_body,
    run_cpu,
    run_sync,
)
from gonglun.errors import GonglunError
from gonglun.plugins.payment import lifecycle, logs
from gonglun.plugins.payment.access import action_role, detail, is_admin, may_view
from gonglun.plugins.payment.apply import apply, record_notification
from gonglun.plugins.payment.batch import NotificationBatcher
from gonglun.plugins.payment.cache import public, query_payment
from gonglun.plugins.payment.channels import get_channel
from gonglun.plugins.payment.models import Payment
from gonglun.plugins.payment.orders import create_payment, limit_creations, parse_request
from gonglun.plugins.payment.records import payment_dict
from gonglun.plugins.payment.scenes import scenes_for

log = logging.getLogger(__name__)

MSG_NOT_FOUND = "支付订单不存在"
MSG_NO_PERMISSION = "无权查看此订单"


class Scenes:
    auth = "public"

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_get(self, req: Any, resp: Any) -> None:
        """Configured payment scenes: key, name, two-character title, color, methods..."""
        ok(resp, [s.public() for s in scenes_for(self.rt).values()])


def _visible(rt: Any, ref: str, viewer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cached record and the public payment of ``ref``, if ``viewer`` may see it.

    Somebody else's payment answers exactly like a missing one (404): ids and order numbers
    are not an oracle of what exists.
    """
    ref = ascii_ref(ref, error="payment.invalid_ref", msg="订单号必须是数字")
    record = query_payment(rt, ref)
    if record is None:
        raise GonglunError("payment.not_found", MSG_NOT_FOUND, status=404)
    data = public(record)
    if not may_view(rt, viewer, data):
        raise GonglunError("payment.not_found", MSG_NOT_FOUND, status=404)
    return record, data


def _actionable(rt: Any, ref: str, viewer: Any) -> tuple[dict[str, Any], str]:
    """The payment of ``ref`` and the viewer's role on it, for acting (close, sync).

    Its buyer, its seller where the scene allows, and admins; whitelisted viewers may read a
    payment but not act on it (403 ``payment.forbidden``).
    """
    _, data = _visible(rt, ref, viewer)
    role = action_role(rt, viewer, data)
    if role is None:
        raise GonglunError("payment.forbidden", MSG_NO_PERMISSION, status=403)
    return data, role


class Payments:
    """``POST /v1/payments`` (guests allowed where the scene allows) and the caller's list."""

    auth = "public"
    auth_optional = True

    def __init__(self, rt: Any):
        self.rt = rt

    @responds(201, description="the payment and the channel's pay parameters")
    async def on_post(self, req: Any, resp: Any) -> None:
        """Create a payment order and get the channel's pay parameters (201).

        Balance (``money``) orders are paid at once. An ``Idempotency-Key`` header (1-255
        ASCII characters) makes a retried request get the first answer back without a second
        order or channel call; the same key with another body is 422 ``idempotency.mismatch``.
        Guests are rate-limited per address (each order costs a channel call).
        """
        from gonglun.idempotency import idempotent

        body = await json_body(req)
        user = req.context.user
        ip = client_ip(req)
        order = parse_request(self.rt, body, user)
        await run_sync(limit_creations, self.rt, user, ip)
        scope = f"u{user.id}" if user else f"ip:{ip}"

        async def work(request_key: str | None) -> None:
            payment, params, created = await run_sync(
                create_payment, self.rt, order, user, ip=ip,
                fingerprint=(req.get_header("X-Fingerprint") or None), request_key=request_key,
            )
            ok(resp, {"payment": payment, "pay_params": params},
               status=201 if created else 200)

        await idempotent(self.rt, req, resp, scope, body, work)

    async def on_get(self, req: Any, resp: Any) -> None:
        """The caller's payments (admins: everyone's), newest first; filter by state, scene."""
        user = req.context.user
        if user is None:
            raise GonglunError("auth.required", "请先登录", status=401)
        limit = query_int(req, "limit", 20, minimum=1, maximum=200)
        before = query_int(req, "before", 0) or None
        state, scene = req.get_param("state"), req.get_param("scene")
        ok(resp, await run_sync(self._list, user, limit, before, state, scene))

    def _list(self, user: Any, limit: int, before: int | None, state: Any, scene: Any) -> dict:
        from sqlalchemy import or_, select

        stmt = select(Payment).order_by(Payment.id.desc()).limit(limit)
        if not is_admin(user):
            stmt = stmt.where(or_(Payment.user_id == user.id, Payment.seller_id == user.id))
        if before:
            stmt = stmt.where(Payment.id < before)
        if state:
            stmt = stmt.where(Payment.state == state)
        if scene:
            stmt = stmt.where(Payment.scene == scene)
        with self.rt.db.read() as session:
            rows = [payment_dict(p) for p in session.scalars(stmt)]
        return {"payments": rows, "next_before": rows[-1]["id"] if len(rows) == limit else None}


class PaymentItem:
    def __init__(self, rt: Any):
        self.rt = rt

    async def on_get(self, req: Any, resp: Any, ref: str) -> None:
        """One payment (owner, seller, admins, whitelist) with its bill-page detail."""
        def load() -> dict[str, Any]:
            record, data = _visible(self.rt, ref, req.context.user)
            return {"payment": data, "detail": detail(self.rt, record, req.context.user)}

        ok(resp, await run_sync(load))

    async def on_post_close(self, req: Any, resp: Any, ref: str) -> None:
        """Close an unpaid order here and at the channel.

        Its buyer, its seller where the scene allows it (``seller_close``), or an admin.
        """
        data, role = await run_sync(_actionable, self.rt, ref, req.context.user)
        ok(resp, await run_sync(lifecycle.close, self.rt, data["id"], role))

    async def on_post_sync(self, req: Any, resp: Any, ref: str) -> None:
        """Ask the channel now and apply its answer (buyer, seller or admin)."""
        data, _ = await run_sync(_actionable, self.rt, ref, req.context.user)
        ok(resp, await run_sync(lifecycle.sync, self.rt, data["id"]))


class Lookup:
    """PAY-20: any logged-in user looks a bill up by a payment or merchant number."""

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_post(self, req: Any, resp: Any) -> None:
        """Find a bill by number (``{"order"}``); 1 request per 5 s per IP (SEC-06).

        Answers the payment's id and the link of its detail, or why it may not be seen.
        """
        from gonglun.kv import RateLimiter

        body = await json_body(req)
        order = body.get("order")
        if isinstance(order, int) and not isinstance(order, bool):
            order = str(order)
        order = ascii_ref(order, error="payment.invalid_ref", msg="订单号必须是数字")
        limiter = RateLimiter(self.rt.redis, self.rt.keys, algorithm="fixed")
        await run_sync(limiter.require, f"payment_query:{client_ip(req)}", 1, 5.0,
                       error="payment.lookup_rate_limited", msg="查询过于频繁,请5秒后再试")
        _, data = await run_sync(_visible, self.rt, order, req.context.user)
        ok(resp, {"id": data["id"], "link": f"/v1/payments/{data['id']}"})


#: What the channels expect back, in their own formats (not the API envelope).
NOTIFY_RESPONSES: dict[str, dict[str, Any]] = {
    "alipay": {"200": plain_text("success: stop retrying; fail: retry later",
                                 ["success", "fail"]), **TOO_LARGE},
    "wxpay": {
        "204": {"description": "acknowledged"},
        "400": {"description": "not acknowledged: WeChat retries", "content": {
            "application/json": {"schema": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}},
        **TOO_LARGE,
    },
}

#: Notification outcomes of bodies we could not trust: answered ``fail`` so that a genuine
#: channel retries; everything else verified is acknowledged (applied, or held for review).
UNVERIFIED = ("rejected:bad_signature", "rejected:unknown_serial", "rejected:stale_timestamp")


class Notify:
    """``POST /v1/notify/{alipay|wxpay}``: verified by the SDK, cross-checked, applied once."""

    auth = "public"

    def __init__(self, rt: Any, method: str):
        self.rt = rt
        self.method = method
        self.batcher = NotificationBatcher(rt, method)
        self.openapi_responses = {"post": NOTIFY_RESPONSES[method]}
        #: Channel notifications are a few kilobytes; anything much larger is not one.
        self.max_body = int(rt.config.get("payment.notify_max_body", 65536))

    def verify(self, headers: dict[str, str], body: bytes) -> tuple[Any, str]:
        """Log the raw packet (OPS-01, bounded), then our gates and the SDK's verification.

        Runs on the CPU pool (RSA). Returns ``(payment, "")`` or ``(None, outcome)``.
        """
        from gonglun.plugins.payment.apply import bounded_text
        from gonglun.plugins.payment.channels.base import NotificationRefused

        logs.write(self.rt, self.method, {"headers": _interesting(headers),
                                          "body": bounded_text(body), "bytes": len(body)})
        try:
            cp = get_channel(self.rt, self.method).parse_notification(headers, body)
        except NotificationRefused as exc:
            log.warning("%s notification refused: %s", self.method, exc.reason)
            return None, f"rejected:{exc.reason}"
        if cp is None:
            log.warning("%s notification with a bad signature refused", self.method)
            return None, "rejected:bad_signature"
        return cp, ""

    def count(self, outcome: str) -> None:
        """``gonglun_payment_notifications_total{channel, outcome}`` (rejections by reason)."""
        counter = self.rt.__dict__.get("_notification_counter")
        if counter is None:
            registry = getattr(self.rt, "metrics_registry", None)
            if registry is None:
                return
            from prometheus_client import Counter

            counter = self.rt.__dict__.setdefault("_notification_counter", Counter(
                "gonglun_payment_notifications", "Channel notifications by outcome",
                ["channel", "outcome"], registry=registry,
            ))
        counter.labels(self.method, outcome).inc()

    async def handle_async(self, headers: dict[str, str], body: bytes) -> bool:
        cp, refused = await run_cpu(self.verify, headers, body)
        if cp is None:
            await run_sync(record_notification, self.rt, self.method, body, refused,
                           verified=False)
            self.count(refused)
            return False
        if not cp.paid:
            outcome = await run_sync(apply, self.rt, self.method, cp, source="notify",
                                     body=body, require_merchant=True)
        else:
            outcome = await self.batcher.submit(cp, body)
        self.count(outcome)
        return accepted(outcome)

    async def on_post(self, req: Any, resp: Any) -> None:
        """Channel notification endpoint: Alipay wants ``success``, WeChat a 200/204."""
        body = await read_body(req, self.max_body)
        headers = {k.title(): v for k, v in req.headers.items()}
        try:
            acknowledged = await self.handle_async(headers, body)
        except Exception:
            # PAY-12: never a fatal error here; the channel will retry.
            log.exception("%s notification failed; the channel will retry", self.method)
            acknowledged = False
        if self.method == "alipay":
            resp.content_type = "text/plain"
            resp.text = "success" if acknowledged else "fail"
            return
        if acknowledged:
            resp.status = 204
        else:
            resp.status = 400
            resp.media = {"code": "FAIL", "message": "失败"}


def accepted(outcome: str) -> bool:
    """True when the channel should stop retrying: applied, duplicate, or verified and held.

    A verified notification refused for its content (unknown order, wrong amount, another
    merchant) will not get better by retrying; it is held for review with an alarm
    (``hold_for_review``), so acknowledging loses nothing. Only bodies we could not trust are
    answered ``fail``.
    """
    return outcome not in UNVERIFIED and outcome != "error"


def _interesting(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower().startswith("wechatpay")}
