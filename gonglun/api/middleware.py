"""Request ids, authentication and Prometheus metrics, as Falcon ASGI middleware."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from gonglun.api.util import run_sync
from gonglun.errors import GonglunError

log = logging.getLogger("gonglun.api")

#: A role reaches every ``auth`` level at or below its own rank.
ROLE_RANK = {"user": 0, "admin": 1, "superadmin": 2}


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class RequestContext:
    """Gives every request an id (echoed as ``X-Request-Id``) and a context user slot."""

    async def process_request(self, req: Any, resp: Any) -> None:
        rid = req.get_header("X-Request-Id") or ""
        req.context.request_id = rid[:64] if rid.isprintable() and rid else uuid.uuid4().hex
        req.context.user = None
        req.context.started = time.perf_counter()

    async def process_response(self, req: Any, resp: Any, resource: Any, req_succeeded: bool):
        resp.set_header("X-Request-Id", getattr(req.context, "request_id", ""))


class Authentication:
    """Resolves ``Authorization: Bearer <token>`` and enforces the resource's ``auth`` level."""

    def __init__(self, rt: Any):
        self.rt = rt

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
            if req.context.user is None and level != "public":
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
