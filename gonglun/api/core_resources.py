"""Core REST resources: health, metrics, OpenAPI, sessions, me, ledger, websocket push."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gonglun.api.util import get_str, json_body, ok, query_int, run_sync

log = logging.getLogger("gonglun.api")


class Health:
    auth = "public"

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_get(self, req: Any, resp: Any) -> None:
        """Liveness of the database, Redis and the broker; 503 when any check fails."""
        checks = await run_sync(self.rt.hooks.apply_filters, "health", {})
        healthy = all(c.get("ok") for c in checks.values())
        resp.status = 200 if healthy else 503
        resp.media = {"code": 0 if healthy else 503, "msg": "ok" if healthy else "unhealthy",
                      "data": {"ok": healthy, "checks": checks}}


class Metrics:
    auth = "public"

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_get(self, req: Any, resp: Any) -> None:
        """Prometheus metrics in the text exposition format."""
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(self.rt.metrics_registry)


class OpenAPI:
    auth = "public"

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_get(self, req: Any, resp: Any) -> None:
        """This document: every route the enabled plugins registered."""
        from gonglun.api.openapi import build

        resp.media = build(self.rt.api_routes, self.rt)


class Sessions:
    auth = "public"

    def __init__(self, rt: Any):
        self.rt = rt

    def _login(self, login: str, password: str, ip: str) -> dict[str, Any]:
        from gonglun.accounts import authenticate, issue_token, user_dict

        ttl = int(self.rt.config.get("auth.token_ttl_days", 30))
        with self.rt.db.write() as session:
            user = authenticate(session, login, password)
            token = issue_token(session, user.id, ttl_days=ttl, label="session")
            data = {"token": token, "user": user_dict(user)}
        self.rt.hooks.do_action("user_login", user_id=data["user"]["id"], method="password", ip=ip)
        return data

    async def on_post(self, req: Any, resp: Any) -> None:
        """Log in with ``{"login", "password"}``; answers a bearer token."""
        body = await json_body(req)
        login = get_str(body, "login", max_len=64)
        password = get_str(body, "password", max_len=256)
        data = await run_sync(self._login, login, password, req.remote_addr or "")
        ok(resp, data, status=201)


class Me:
    def __init__(self, rt: Any):
        self.rt = rt

    def _me(self, user_id: int) -> dict[str, Any]:
        from gonglun.accounts import user_dict
        from gonglun.accounts.models import User
        from gonglun.ledger import balance

        with self.rt.db.read() as session:
            user = session.get(User, user_id)
            data = user_dict(user)
            data["balance"] = balance(session, user_id)
        return self.rt.hooks.apply_filters("user_public", data, user=user)

    async def on_get(self, req: Any, resp: Any) -> None:
        """The current user, with ``balance`` in fen."""
        ok(resp, await run_sync(self._me, req.context.user.id))


class MeLedger:
    def __init__(self, rt: Any):
        self.rt = rt

    def _ledger(self, user_id: int, limit: int, before: int | None) -> dict[str, Any]:
        from gonglun.ledger import balance, posting_dict, postings

        with self.rt.db.read() as session:
            rows = postings(session, user_id, limit=limit, before_id=before)
            return {
                "balance": balance(session, user_id),
                "postings": [posting_dict(p) for p in rows],
                "next_before": rows[-1].id if len(rows) == limit else None,
            }

    async def on_get(self, req: Any, resp: Any) -> None:
        """The caller's balance postings, newest first (``limit``, ``before`` for paging)."""
        limit = query_int(req, "limit", 50, minimum=1, maximum=500)
        before = query_int(req, "before", 0, minimum=0) or None
        ok(resp, await run_sync(self._ledger, req.context.user.id, limit, before))


class Push:
    """``WS /v1/ws?token=``: messages published for the user on any API process."""

    auth = "public"

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_websocket(self, req: Any, ws: Any) -> None:
        """Per-user push (payment success, refunds, messages); authenticate with ``?token=``."""
        token = req.get_param("token") or ""
        user = None
        if token:
            from gonglun.api.middleware import Authentication

            user = await run_sync(Authentication(self.rt).lookup, token)
        if user is None:
            await ws.close(code=4401)
            return
        await ws.accept()
        pubsub = self.rt.async_redis.pubsub()
        await pubsub.subscribe(self.rt.push_channel(user.id))
        await ws.send_media({"event": "hello", "user_id": user.id})

        async def forward() -> None:
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None:
                    continue
                data = message["data"]
                await ws.send_text(data.decode() if isinstance(data, bytes) else str(data))

        sender = asyncio.create_task(forward())
        try:
            while True:
                text = await ws.receive_text()
                if text == "ping":
                    await ws.send_media({"event": "pong"})
        except falcon.WebSocketDisconnected:
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe()
                await pubsub.aclose()


def login_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["login", "password"],
        "properties": {"login": {"type": "string"}, "password": {"type": "string"}},
    }


def health_checks(rt: Any, checks: dict[str, Any]) -> dict[str, Any]:
    """The core's own health checks: database, Redis, broker."""
    from sqlalchemy import text

    def probe(name: str, fn: Any) -> None:
        try:
            detail = fn()
            checks[name] = {"ok": True, **(detail or {})}
        except Exception as exc:
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}

    def db() -> dict[str, Any]:
        with rt.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"dialect": rt.db.dialect}

    def redis() -> dict[str, Any]:
        rt.redis.ping()
        return {"embedded": not rt.config.redis_url}

    def broker() -> dict[str, Any]:
        b = rt.broker
        client = getattr(b, "client", None)
        if client is not None:
            client.ping()
        elif hasattr(b, "connection"):
            b.connection  # noqa: B018 - opens (or reuses) the AMQP connection
        return {"type": type(b).__name__}

    probe("database", db)
    probe("redis", redis)
    probe("broker", broker)
    return checks


__all__ = ["Health", "Me", "MeLedger", "Metrics", "OpenAPI", "Push", "Sessions"]
