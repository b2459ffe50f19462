"""REST resources of the payment plugin (API.md)."""

from __future__ import annotations

import logging
from typing import Any

from gonglun.api.openapi import TOO_LARGE, plain_text
from gonglun.api.routes import responds
from gonglun.api.util import (
    ascii_ref,
    client_ip,
    header_text,
    json_body,
    ok,
    query_int,
    query_str,
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
                fingerprint=header_text(req, "X-Fingerprint"), request_key=request_key,
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
        from gonglun.plugins.payment.models import STATES

        state = query_str(req, "state", choices=STATES)
        scene = query_str(req, "scene", max_len=32)
        ok(resp, await run_sync(self._list, user, limit, before, state, scene))

    def _list(self, user: Any, limit: int, before: int | None, state: Any, scene: Any) -> dict:
        from sqlalchemy import and_, or_, select

        from gonglun.plugins.payment.access import PAID_STATES

        stmt = select(Payment).order_by(Payment.id.desc()).limit(limit)
        if not is_admin(user):
            acting = [k for k, sc in scenes_for(self.rt).items() if sc.seller_close]
            stmt = stmt.where(or_(
                Payment.user_id == user.id,
                and_(Payment.seller_id == user.id,
                     or_(Payment.state.in_(PAID_STATES), Payment.scene.in_(acting)))))
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

        Its buyer, its seller where the scene allows it (``seller_close``), or an admin;
        ``payment.actions_per_min`` (20) closes and syncs per user.
        """
        data, role = await run_sync(_actionable, self.rt, ref, req.context.user)
        await run_sync(limit_actions, self.rt, req.context.user)
        ok(resp, await run_sync(lifecycle.close, self.rt, data["id"], role))

    async def on_post_sync(self, req: Any, resp: Any, ref: str) -> None:
        """Ask the channel now and apply its answer (buyer, seller or admin).

        A paid order is answered from here: the channel can no longer change it.
        """
        data, _ = await run_sync(_actionable, self.rt, ref, req.context.user)
        await run_sync(limit_actions, self.rt, req.context.user)
        ok(resp, await run_sync(lifecycle.sync, self.rt, data["id"]))


def limit_actions(rt: Any, user: Any) -> None:
    """Each close or sync may cost a channel call: ``payment.actions_per_min`` per user."""
    from gonglun.kv import RateLimiter

    limiter = rt.__dict__.get("_action_limiter")
    if limiter is None:
        limiter = rt.__dict__["_action_limiter"] = RateLimiter(rt.redis, rt.keys)
    limiter.require(f"payment_action:{user.id}",
                    max(1, int(rt.config.get("payment.actions_per_min", 20))), 60.0,
                    error="payment.action_rate_limited", msg="操作过于频繁,请稍后再试")


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
        # Exact: a fixed window would let a second lookup through across a window edge.
        limiter = RateLimiter(self.rt.redis, self.rt.keys, algorithm="log")
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
        """Our gates and the SDK's verification (CPU pool: RSA).

        Returns ``(payment, "")`` or ``(None, outcome)``. A verified packet is logged whole
        (OPS-01) before anything is decided about it.
        """
        from gonglun.plugins.payment.channels.base import NotificationRefused

        try:
            cp = get_channel(self.rt, self.method).parse_notification(headers, body)
        except NotificationRefused as exc:
            return None, f"rejected:{exc.reason}"
        if cp is None:
            return None, "rejected:bad_signature"
        self.log_packet(headers, body, verified=True)
        return cp, ""

    def refund_notice(self, cp: Any, body: bytes) -> str:
        """Refund news: ours (the parties hold) goes to the refund plugin (``refund_notice``);
        recorded either way, and acknowledged: the refund's own confirmation queries too."""
        from gonglun.plugins.payment.apply import parties_problem

        channel = get_channel(self.rt, self.method)
        why = parties_problem(channel, cp, True)
        outcome = f"rejected:{why}" if why else str(self.rt.hooks.decide(
            "refund_notice", method=self.method, notice=dict(cp.raw)) or "refund:ignored")
        logs.write(self.rt, self.method, {"notice": cp.raw, "outcome": outcome}, refund=True)
        record_notification(self.rt, self.method, body, f"refund:{outcome}"[:64],
                            verified=True, payment_order=cp.payment_order)
        return outcome

    def log_packet(self, headers: dict[str, str], body: bytes, *, verified: bool) -> None:
        from gonglun.plugins.payment.apply import bounded_text

        logs.write(self.rt, self.method, {
            "headers": _interesting(headers), "verified": verified, "bytes": len(body),
            "body": body.decode("utf-8", "replace") if verified else bounded_text(body)})

    def unverified(self, headers: dict[str, str], body: bytes, outcome: str, ip: str) -> None:
        """Keep a bounded trace of what we refused, but only ``payment.unverified_per_min``
        per address (60): past that, an anonymous sender fills neither disk nor database."""
        from gonglun.kv import RateLimiter

        log.warning("%s notification refused (%s) from %s", self.method, outcome, ip)
        limiter = self.rt.__dict__.get("_unverified_limiter")
        if limiter is None:
            limiter = self.rt.__dict__["_unverified_limiter"] = RateLimiter(
                self.rt.redis, self.rt.keys, algorithm="fixed")
        per_min = int(self.rt.config.get("payment.unverified_per_min", 60))
        if not limiter.hit(f"notify_unverified:{ip}", max(1, per_min), 60.0).allowed:
            return
        self.log_packet(headers, body, verified=False)
        record_notification(self.rt, self.method, body, outcome, verified=False)

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

    async def handle_async(self, headers: dict[str, str], body: bytes, ip: str = "") -> bool:
        cp, refused = await run_cpu(self.verify, headers, body)
        if cp is None:
            await run_sync(self.unverified, headers, body, refused, ip)
            self.count(refused)
            return False
        if cp.status == "REFUND_NOTICE":
            outcome = await run_sync(self.refund_notice, cp, body)
        elif not cp.paid:
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
            acknowledged = await self.handle_async(headers, body, client_ip(req))
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


#: The headers a channel signs with; each logged at most 512 characters.
LOGGED_HEADERS = ("Wechatpay-Serial", "Wechatpay-Timestamp", "Wechatpay-Nonce",
                  "Wechatpay-Signature", "Wechatpay-Signature-Type")


def _interesting(headers: dict[str, str]) -> dict[str, str]:
    return {k: headers[k][:512] for k in LOGGED_HEADERS if k in headers}
