"""The Falcon ASGI application factory."""

from __future__ import annotations

import logging
from typing import Any

import falcon
import falcon.asgi
from prometheus_client import CollectorRegistry

from gonglun.api.middleware import Authentication, Metrics, RequestContext
from gonglun.api.routes import Route
from gonglun.config import Config
from gonglun.errors import GonglunError

log = logging.getLogger("gonglun.api")

HTTP_ERRORS = {
    400: ("request.invalid", "请求无效"),
    401: ("auth.required", "请先登录"),
    403: ("auth.forbidden", "非法请求"),
    404: ("route.not_found", "接口不存在"),
    405: ("route.method_not_allowed", "不支持的请求方法"),
    413: ("request.too_large", "请求体过大"),
    415: ("request.unsupported_media_type", "不支持的内容类型"),
}


def localized(req: Any, body: dict[str, Any]) -> dict[str, Any]:
    """The catalogue's English message when the client prefers English (docs/errors.md)."""
    from gonglun.errorcodes import english, prefers_english

    if prefers_english(req.get_header("Accept-Language")):
        text = english(body["error"], body.get("data"))
        if text:
            body["msg"] = text
    return body


async def _domain_error(
    req: Any, resp: Any, ex: GonglunError, params: Any, ws: Any = None
) -> None:
    if resp is None:  # a websocket: close with a 4xxx code carrying the HTTP status
        await _close_ws(ws, ex.status)
        return
    resp.status = ex.status
    resp.media = localized(req, ex.to_dict())
    for name, value in ex.headers.items():
        resp.set_header(name, value)


async def _http_error(
    req: Any, resp: Any, ex: falcon.HTTPError, params: Any, ws: Any = None
) -> None:
    status = ex.status_code
    if resp is None:
        await _close_ws(ws, status)
        return
    error, msg = HTTP_ERRORS.get(status, (f"http.{status}", ex.title or "请求失败"))
    resp.status = status
    resp.media = localized(req, {"code": 1, "error": error, "msg": msg})
    for name, value in (ex.headers or {}).items():
        resp.set_header(name, value)


async def _unexpected(req: Any, resp: Any, ex: Exception, params: Any, ws: Any = None) -> None:
    from gonglun.storage import classify

    rid = getattr(req.context, "request_id", "")
    failure = classify(ex)
    if failure is not None:  # the database is down, full or read-only: 503, said plainly
        log.error("%s in %s %s (request %s): %s", failure.error_id, req.method, req.path, rid,
                  failure.detail)
        await _domain_error(req, resp, failure.error(), params, ws)
        return
    log.exception("unhandled error in %s %s (request %s)", req.method, req.path, rid)
    if resp is None:
        await _close_ws(ws, 500)
        return
    resp.status = 500
    body = localized(req, {"code": 1, "error": "server.error", "msg": "服务器内部错误"})
    body["msg"] += f" (请求 {rid})" if body["msg"] == "服务器内部错误" else f" (request {rid})"
    resp.media = body


class OutboxCollector:
    """``gonglun_outbox_events{state}``: deferred hooks by state, read at scrape time.

    A growing ``pending`` means workers are behind or the broker is unreachable; any
    ``failed`` needs a human (``gonglun outbox``).
    """

    def __init__(self, rt: Any):
        self.rt = rt

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily
        from sqlalchemy import func, select

        from gonglun.hooks.deferred import OutboxEvent

        family = GaugeMetricFamily("gonglun_outbox_events", "Deferred hook calls by state",
                                   labels=["state"])
        counts = {"pending": 0, "done": 0, "failed": 0}
        try:
            with self.rt.db.read() as session:
                rows = session.execute(
                    select(OutboxEvent.state, func.count()).group_by(OutboxEvent.state)
                ).all()
            counts.update({state: count for state, count in rows})
        except Exception:  # a scrape must never fail because the database is down
            log.warning("outbox metrics: database unavailable", exc_info=True)
            return
        for state, count in counts.items():
            family.add_metric([state], count)
        yield family


class BlockingPool:
    """Lifespan: size the thread pool that runs blocking work (SQLAlchemy, SDK calls).

    asyncio's default pool has ``cpu_count + 4`` threads; requests spend most of their time
    waiting on the database and the channels, so more threads keep both cores busy.
    """

    def __init__(self, rt: Any):
        self.threads = int(rt.config.get("server.threads", 32))
        self.cpu_threads = int(rt.config.get("server.cpu_threads", 2))

    async def process_startup(self, scope: Any, event: Any) -> None:
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        from gonglun.api.util import cpu_pool

        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="gonglun-io")
        asyncio.get_running_loop().set_default_executor(pool)
        cpu_pool("crypto", self.cpu_threads)


async def _close_ws(ws: Any, status: int) -> None:
    if ws is not None and not ws.closed:
        await ws.close(code=4000 + status if status < 1000 else 1011)


def create_app(config: Config | None = None, *, rt: Any = None) -> falcon.asgi.App:
    """Build the API for ``config`` (or an existing runtime ``rt``).

    Routes come from every enabled plugin through the ``register_routes`` filter; the core
    plugin supplies health, metrics, sessions, me, ledger, websocket and OpenAPI.
    """
    if rt is None:
        from gonglun.runtime import Runtime

        rt = Runtime(config)
    metrics = getattr(rt, "api_metrics", None)
    if metrics is None:
        rt.metrics_registry = CollectorRegistry()
        metrics = rt.api_metrics = Metrics(rt.metrics_registry)
        rt.metrics_registry.register(OutboxCollector(rt))
    app = falcon.asgi.App(
        middleware=[RequestContext(rt), Authentication(rt), metrics, BlockingPool(rt)]
    )
    app.req_options.strip_url_path_trailing_slash = True
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(GonglunError, _domain_error)
    routes: list[Route] = rt.hooks.apply_filters("register_routes", [])
    for route in routes:
        kwargs = {"suffix": route.suffix} if route.suffix else {}
        app.add_route(route.path, route.resource, **kwargs)
    rt.api_routes = routes
    from gonglun.api.embedded import attach_embedded

    attach_embedded(app, rt)
    app.add_middleware(StartupChecks(rt))
    return app


class StartupChecks:
    """Lifespan: log what the operator must fix (channels without keys, simulated payments)."""

    def __init__(self, rt: Any):
        self.rt = rt

    async def process_startup(self, scope: Any, event: Any) -> None:
        from gonglun.api.util import run_sync

        await run_sync(self.rt.startup_problems)
