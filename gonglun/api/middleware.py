"""Request ids, authentication and Prometheus metrics, as Falcon ASGI middleware."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from gonglun.api.util import DEFAULT_MAX_BODY, parse_networks, run_sync, too_large
from gonglun.errors import GonglunError

log = logging.getLogger("gonglun.api")

#: A role reaches every ``auth`` level at or below its own rank.
ROLE_RANK = {"user": 0, "admin": 1, "superadmin": 2}


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


#: Sent with every API response: JSON is never sniffed, framed, cached with credentials or
#: allowed to load anything (the sandbox's cashier pages set their own content type).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
JSON_CSP = "default-src 'none'; frame-ancestors 'none'"


class RequestContext:
    """Request ids (echoed as ``X-Request-Id``), the body limit, security headers.

    The body limit is ``server.max_body_bytes``, or the resource's own ``max_body`` (channel
    notifications take less): a declared ``Content-Length`` above it is a 413 before the
    responder runs, and ``read_body`` enforces it on chunked bodies.
    """

    def __init__(self, rt: Any = None):
        config = getattr(rt, "config", None)
        get = config.get if config is not None else (lambda _k, d=None: d)
        self.max_body = int(get("server.max_body_bytes", DEFAULT_MAX_BODY) or DEFAULT_MAX_BODY)
        self.trusted = parse_networks(get("server.trusted_proxies", []))
        public = str(get("server.public_url", "") or "")
        self.hsts = public.startswith("https://")

    async def process_request(self, req: Any, resp: Any) -> None:
        rid = req.get_header("X-Request-Id") or ""
        ok = rid and len(rid) <= 64 and rid.isascii() and rid.isprintable()
        req.context.request_id = rid if ok else uuid.uuid4().hex
        from gonglun.logs import REQUEST_ID

        REQUEST_ID.set(req.context.request_id)
        req.context.user = None
        req.context.token = None
        req.context.started = time.perf_counter()
        req.context.max_body = self.max_body
        req.context.trusted_proxies = self.trusted

    async def process_resource(self, req: Any, resp: Any, resource: Any, params: Any) -> None:
        limit = getattr(resource, "max_body", None) or self.max_body
        req.context.max_body = limit
        length = req.content_length
        if length is not None and length > limit:
            raise too_large(limit)

    async def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool):
        resp.set_header("X-Request-Id", getattr(req.context, "request_id", ""))
        for name, value in SECURITY_HEADERS.items():
            resp.set_header(name, value)
        if not resp.get_header("Cache-Control"):
            # Answers carry users' money and tokens: no shared or browser cache keeps them.
            resp.set_header("Cache-Control", "no-store")
        if self.hsts:
            resp.set_header("Strict-Transport-Security", "max-age=31536000")
        content_type = resp.content_type or ""
        if not content_type.startswith("text/html") and not resp.get_header(
                "Content-Security-Policy"):
            resp.set_header("Content-Security-Policy", JSON_CSP)


class Authentication:
    """Resolves ``Authorization: Bearer <token>`` and enforces the resource's ``auth`` level."""

    def __init__(self, rt: Any):
        self.rt = rt

    def is_metrics_token(self, token: str) -> bool:
        import hmac

        expected = str(self.rt.config.get("server.metrics_token") or "")
        return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())

    def lookup(self, token: str) -> Any:
        from gonglun.accounts import user_for_token

        with self.rt.db.read() as session:
            user = user_for_token(session, token)
        if user is None:
            user = self.rt.hooks.decide("resolve_token", token=token)
        return user

    async def process_resource(self, req: Any, resp: Any, resource: Any, params: Any) -> None:
        if resource is None:
            return
        level = getattr(resource, "auth", "user")
        token = bearer(req.get_header("Authorization"))
        if token:
            req.context.user = await run_sync(self.lookup, token)
            req.context.token = token if req.context.user is not None else None
            if req.context.user is not None:
                from gonglun.accounts.sessions import touch

                await run_sync(touch, self.rt, token)
            # A token that no longer works is an error wherever a token would change the
            # answer: an expired session must not turn a purchase into a guest's.
            optional = level == "public" and getattr(resource, "auth_optional", False)
            if req.context.user is None and (level != "public" or (
                    optional and not self.is_metrics_token(token))):
                raise GonglunError("auth.invalid_token", "登录已失效, 请重新登录", status=401)
        if level == "public":
            return
        user = req.context.user
        if user is None:
            raise GonglunError("auth.required", "请先登录", status=401,
                               headers={"WWW-Authenticate": "Bearer"})
        if ROLE_RANK.get(user.role, -1) < ROLE_RANK.get(level, 99):
            raise GonglunError("auth.forbidden", "非法请求", status=403)


class Metrics:
    """Request counts and latencies per route template, in a per-app registry."""

    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter(
            "gonglun_http_requests_total", "HTTP requests", ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "gonglun_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
            registry=registry,
        )

    async def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool):
        route = req.uri_template or "unmatched"
        status = str(resp.status_code if hasattr(resp, "status_code") else resp.status)[:3]
        self.requests.labels(req.method, route, status).inc()
        started = getattr(req.context, "started", None)
        if started is not None:
            self.latency.labels(req.method, route).observe(time.perf_counter() - started)
