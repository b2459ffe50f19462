"""Core REST resources: health, metrics, OpenAPI, sessions, me, ledger, websocket push."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gonglun.api.routes import responds
from gonglun.api.util import client_ip, get_str, json_body, ok, query_int, run_cpu, run_sync
from gonglun.health import StorageProblem, health_checks

log = logging.getLogger("gonglun.api")


class Health:
    auth = "public"
    auth_optional = True  #: an admin's token (or the metrics token) shows the details

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_get(self, req: Any, resp: Any) -> None:
        """Liveness of the database, Redis, the broker, the scheduler and the workers.

        503 when any check fails. Anybody sees which checks pass; the details (errors, hosts,
        ages) only admins or holders of ``server.metrics_token``. ``sandbox`` says whether
        payments are simulated here.
        """
        checks = await run_sync(self.rt.hooks.apply_filters, "health", {})
        healthy = all(c.get("ok") for c in checks.values())
        if not privileged(self.rt, req):
            checks = {name: {"ok": bool(c.get("ok"))} for name, c in checks.items()}
        data: dict[str, Any] = {"ok": healthy, "checks": checks}
        if self.rt.config.simulated_payments:
            from gonglun.embedded import SIMULATED

            data["sandbox"] = {"enabled": self.rt.config.sandbox_enabled,
                               "simulated_payments": True, "warning": SIMULATED}
        resp.status = 200 if healthy else 503
        resp.media = {"code": 0 if healthy else 503, "msg": "ok" if healthy else "unhealthy",
                      "data": data}


def privileged(rt: Any, req: Any) -> bool:
    """An admin's token, or the configured ``server.metrics_token`` (compared in constant time)."""
    import hmac

    from gonglun.api.middleware import ROLE_RANK, bearer

    user = req.context.user
    if user is not None and ROLE_RANK.get(user.role, -1) >= ROLE_RANK["admin"]:
        return True
    expected = str(rt.config.get("server.metrics_token") or "")
    given = bearer(req.get_header("Authorization")) or ""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


class Metrics:
    auth = "public"
    auth_optional = True

    def __init__(self, rt: Any):
        self.rt = rt

    @responds(responses={"200": {"description": "Prometheus text exposition",
                                 "content": {"text/plain": {"schema": {"type": "string"}}}},
                         "401": {"description": "server.metrics_token is set and not given"}})
    async def on_get(self, req: Any, resp: Any) -> None:
        """Prometheus metrics in the text exposition format.

        Public on the embedded default only; elsewhere, or with ``server.metrics_token`` set,
        only that bearer token (or an admin's) may scrape.
        """
        config = self.rt.config
        private = bool(config.get("server.metrics_token")) or not config.embedded_default
        if private and not privileged(self.rt, req):
            from gonglun.errors import GonglunError

            raise GonglunError("auth.required", "请先登录", status=401,
                               headers={"WWW-Authenticate": "Bearer"})
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(self.rt.metrics_registry)


class OpenAPI:
    auth = "public"

    def __init__(self, rt: Any):
        self.rt = rt

    @responds(responses={"200": {"description": "OpenAPI 3.1 document", "content": {
        "application/json": {"schema": {"type": "object", "required": ["openapi", "paths"]}}}}})
    async def on_get(self, req: Any, resp: Any) -> None:
        """This document: every route the enabled plugins registered."""
        from gonglun.api.openapi import build

        resp.media = build(self.rt.api_routes, self.rt)


class Sessions:
    auth = "public"

    def __init__(self, rt: Any):
        self.rt = rt
        self.throttle: Any = None
        #: Argon2 checks queued or running; past ``auth.max_pending`` logins are turned away
        #: at once (429) rather than queued for seconds.
        self.pending = 0
        self.max_pending = int(rt.config.get("auth.max_pending", 16))

    def _credentials(self, login: str) -> tuple[int, str] | None:
        """By login name, else (a mainland phone number) by the account's phone."""
        from gonglun.accounts import credentials
        from gonglun.accounts.models import User

        with self.rt.db.read() as session:
            found = credentials(session, login)
            if found is None:
                user_id = self.rt.hooks.decide("find_account", kind="phone", value=login)
                user = session.get(User, user_id) if user_id else None
                found = (user.id, user.password_hash) if user is not None else None
            return found

    def _issue(self, user_id: int, password: str, client: Any) -> dict[str, Any]:
        from gonglun.accounts import admit
        from gonglun.accounts.login import announce, finish_login

        with self.rt.db.write() as session:
            admit(session, user_id, password)
            data = finish_login(self.rt, session, user_id, "password", client)
        announce(self.rt, user_id, "password", client)
        return data

    @responds(201, description="a bearer token and the user")
    async def on_post(self, req: Any, resp: Any) -> None:
        """Log in with ``{"login", "password"}`` (the login name or the account's phone), or
        ``{"phone", "code"}`` (an SMS code of scene ``login``); answers a bearer token (201).

        ``other_accounts: true`` signs every other device out (ACC-08); ``platform`` (web, h5,
        app, pc, mp, mini) is shown in the session list. Password attempts are throttled per
        account and per client address (429 with ``Retry-After``, ``auth.too_many_attempts``);
        the password check runs on the bounded CPU pool.
        """
        from gonglun.accounts import check_password
        from gonglun.accounts.signin import sms_login
        from gonglun.accounts.throttle import LoginThrottle
        from gonglun.api.account_resources import login_client
        from gonglun.errors import GonglunError

        body = await json_body(req)
        client = login_client(req, body)
        resp.set_header("Cache-Control", "no-store")
        if "code" in body and "password" not in body:
            data = await run_sync(sms_login, self.rt, body.get("phone"), body.get("code"),
                                  client)
            ok(resp, data, status=201)
            return
        login = get_str(body, "login", max_len=64)
        password = get_str(body, "password", max_len=256)
        ip = client.ip
        if self.throttle is None:
            self.throttle = LoginThrottle(self.rt)
        await run_sync(self.throttle.charge, login, ip)
        if self.pending >= self.max_pending:
            raise GonglunError("auth.busy", "登录繁忙,请稍后重试", status=429,
                               headers={"Retry-After": "1"})
        self.pending += 1
        try:
            found = await run_sync(self._credentials, login)
            matched = await run_cpu(check_password, found[1] if found else None, password,
                                    pool="auth")
        finally:
            self.pending -= 1
        if not matched:
            raise GonglunError("auth.invalid_credentials", "账号或密码错误", status=401)
        assert found is not None
        data = await run_sync(self._issue, found[0], password, client)
        await run_sync(self.throttle.succeeded, login, ip)
        ok(resp, data, status=201)


class Me:
    def __init__(self, rt: Any):
        self.rt = rt

    def _me(self, user_id: int, token: str | None, ip: str) -> dict[str, Any]:
        from sqlalchemy import select

        from gonglun.accounts import token_hash, user_dict
        from gonglun.accounts.models import ApiToken, User
        from gonglun.accounts.profile import avatar_of
        from gonglun.accounts.wechat import openid_of
        from gonglun.ledger import balance

        with self.rt.db.read() as session:
            user = session.get(User, user_id)
            data = user_dict(user)
            data["balance"] = balance(session, user_id)
            platform = session.scalar(select(ApiToken.platform).where(
                ApiToken.token_hash == token_hash(token))) if token else None
            data["platform"] = platform
            data["openid"] = openid_of(session, user_id, platform)
            data.update(avatar_of(session, user_id))
        data = self.rt.hooks.apply_filters("user_public", data, user=user)
        self.rt.hooks.do_action("user_visits", user_id=user_id, platform=platform or "", ip=ip)
        return data

    async def on_get(self, req: Any, resp: Any) -> None:
        """The current user, with ``balance`` in fen, ``avatar_url`` and the ``openid`` of the
        WeChat app the session signed in with (the official account's otherwise; ACC-02)."""
        token = getattr(req.context, "token", None)
        ok(resp, await run_sync(self._me, req.context.user.id, token, client_ip(req)))


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


class WsTickets:
    """``POST /v1/ws/tickets``: a short-lived, single-use ticket to open the websocket with.

    Browsers cannot set headers on a websocket; a ticket in the URL keeps the bearer token
    itself out of URLs and access logs. The ticket remembers the session (the token's hash)
    it was asked with: the socket lives as long as that session.
    """

    def __init__(self, rt: Any):
        self.rt = rt

    def _issue(self, user_id: int, token: str | None) -> dict[str, Any]:
        import hashlib
        import secrets

        from gonglun.accounts import token_hash

        ttl = int(self.rt.config.get("auth.ws_ticket_ttl_s", 30))
        ticket = secrets.token_urlsafe(24)
        digest = hashlib.sha256(ticket.encode()).hexdigest()
        session = token_hash(token) if token else ""
        self.rt.redis.set(self.rt.keys("wsticket", digest), f"{user_id}:{session}", ex=ttl)
        return {"ticket": ticket, "expires_in": ttl}

    @responds(201, description="a one-time ticket")
    async def on_post(self, req: Any, resp: Any) -> None:
        """A ticket for ``WS /v1/ws?ticket=...``: valid once, for ``auth.ws_ticket_ttl_s`` s."""
        resp.set_header("Cache-Control", "no-store")
        ok(resp, await run_sync(self._issue, req.context.user.id, req.context.token),
           status=201)


#: Close code of a socket whose session was signed out (or never worked).
SIGNED_OUT = 4401


class Push:
    """``WS /v1/ws``: messages published for the user on any API process."""

    auth = "public"

    def __init__(self, rt: Any):
        self.rt = rt

    def _ticket_session(self, ticket: str) -> tuple[int, str | None] | None:
        import hashlib

        from gonglun.accounts.signout import still_valid

        digest = hashlib.sha256(ticket.encode()).hexdigest()
        raw = self.rt.redis.getdel(self.rt.keys("wsticket", digest))
        if raw is None:
            return None
        user, _, session = (raw.decode() if isinstance(raw, bytes) else str(raw)).partition(":")
        opened = (int(user), session or None)
        return opened if still_valid(self.rt, *opened) else None

    def _token_session(self, token: str) -> tuple[int, str | None] | None:
        from gonglun.accounts import token_hash
        from gonglun.api.middleware import Authentication

        user = Authentication(self.rt).lookup(token)
        return (int(user.id), token_hash(token)) if user is not None else None

    async def _session(self, req: Any, ws: Any) -> tuple[tuple[int, str | None] | None, Any]:
        """Who opens the socket, as ``(user id, token hash)``: a ticket (``?ticket=`` or
        ``?token=``), an ``Authorization: Bearer`` header, or the subprotocols ``bearer,
        <token>``. A bearer token is never taken from the URL."""
        from gonglun.api.middleware import bearer

        ticket = req.get_param("ticket") or req.get_param("token")
        if ticket:
            if len(ticket) > 128:
                return None, None
            return await run_sync(self._ticket_session, ticket), None
        token = bearer(req.get_header("Authorization"))
        subprotocol = None
        offered = list(getattr(ws, "subprotocols", ()) or ())
        if not token and len(offered) >= 2 and offered[0].lower() == "bearer":
            token, subprotocol = offered[1], offered[0]
        if not token:
            return None, None
        return await run_sync(self._token_session, token), subprotocol

    async def on_websocket(self, req: Any, ws: Any) -> None:
        """Per-user push (payment success, refunds, messages).

        Authenticate with a ticket from ``POST /v1/ws/tickets`` (``?ticket=``), or with
        ``Authorization: Bearer`` / subprotocols ``["bearer", token]``; closed with 4401 if not.
        The socket lives as long as its session: signed out (logout, session revoked, ban,
        password change, account reset, ``other_accounts``), it gets ``{"event":
        "signed_out"}`` and is closed with 4401 within ``auth.ws_recheck_s`` seconds.
        """
        opened, subprotocol = await self._session(req, ws)
        if opened is None:
            await ws.close(code=SIGNED_OUT)
            return
        await ws.accept(subprotocol=subprotocol)
        pubsub = self.rt.async_redis.pubsub()
        await pubsub.subscribe(self.rt.push_channel(opened[0]), signout_channel(self.rt, opened[0]))
        await ws.send_media({"event": "hello", "user_id": opened[0]})
        tasks = {asyncio.create_task(self._forward(ws, pubsub, opened)),
                 asyncio.create_task(_receive(ws))}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe()
                await pubsub.aclose()

    async def _forward(self, ws: Any, pubsub: Any, opened: tuple[int, str | None]) -> None:
        """Pushes to the client while the session works: checked every ``auth.ws_recheck_s``
        seconds, at once on a sign-out message, and before each push."""
        from gonglun.accounts.signout import still_valid

        loop = asyncio.get_running_loop()
        every = max(0.5, float(self.rt.config.get("auth.ws_recheck_s", 5.0)))
        control = signout_channel(self.rt, opened[0])
        due = loop.time() + every
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True,
                                               timeout=min(1.0, every))
            if message is None and loop.time() < due:
                continue
            try:
                valid = await run_sync(still_valid, self.rt, *opened)
            except Exception:
                log.warning("websocket of user %s: session check failed", opened[0],
                            exc_info=True)
                await ws.close(code=1011)  # cannot tell: nothing is pushed unchecked
                return
            if not valid:
                with contextlib.suppress(Exception):
                    await ws.send_media({"event": "signed_out"})
                await ws.close(code=SIGNED_OUT)
                return
            due = loop.time() + every
            if message is None or _text(message["channel"]) == control:
                continue
            await ws.send_text(_text(message["data"]))


def signout_channel(rt: Any, user_id: int) -> str:
    from gonglun.accounts.signout import channel

    return channel(rt, user_id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _receive(ws: Any) -> None:
    """The client's side: ``ping`` answers ``pong``; returns when the client goes."""
    try:
        while True:
            if await ws.receive_text() == "ping":
                await ws.send_media({"event": "pong"})
    except falcon.WebSocketDisconnected:
        return


def login_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["login", "password"],
        "properties": {"login": {"type": "string", "minLength": 1, "maxLength": 64},
                       "password": {"type": "string", "minLength": 1, "maxLength": 256}},
    }


__all__ = ["Health", "Me", "MeLedger", "Metrics", "OpenAPI", "Push", "Sessions", "StorageProblem",
           "WsTickets", "health_checks"]
