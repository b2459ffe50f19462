"""Account REST resources: WeChat sign-in, registration/binding, the user's own sessions."""

from __future__ import annotations

from typing import Any

from gonglun.api.routes import responds
from gonglun.api.util import (
    client_ip,
    get_str,
    json_body,
    ok,
    path_id,
    query_str,
    run_sync,
)
from gonglun.errors import GonglunError


def login_client(req: Any, body: dict[str, Any], platform: str | None = None) -> Any:
    """The request's side of a login: address, user agent, platform, ``other_accounts``."""
    from gonglun.accounts.login import PLATFORMS, Client

    other = body.get("other_accounts", False)
    if not isinstance(other, bool):
        raise GonglunError("request.invalid_type", "参数 other_accounts 必须是布尔值",
                           data={"field": "other_accounts"})
    agent = req.get_header("User-Agent") or ""
    agent = agent[:255] if agent.isprintable() else ""
    chosen = platform or get_str(body, "platform", required=False, choices=PLATFORMS,
                                 default="web", max_len=8)
    return Client(client_ip(req), agent or None, str(chosen), other)


def _no_store(resp: Any) -> None:
    resp.set_header("Cache-Control", "no-store")


class WechatSessions:
    """``POST /v1/sessions/wechat``: sign in with a WeChat code (ACC-01)."""

    auth = "public"

    def __init__(self, rt: Any):
        self.rt = rt

    @responds(201, description="a bearer token (bound user), or 200 with a registration ticket")
    async def on_post(self, req: Any, resp: Any) -> None:
        """``{"platform": "mp|app|pc|mini", "code", "other_accounts"?}``.

        A bound openid logs in (201, ``token``); otherwise 200 with ``registered: false`` and
        a ``ticket`` for ``POST /v1/registrations`` (valid ``accounts.ticket_ttl_s``). A caller
        already logged in gets its user back and the code is left unused.
        """
        from gonglun.accounts import user_dict
        from gonglun.accounts.signin import wechat_signin
        from gonglun.accounts.wechat import PLATFORMS

        body = await json_body(req)
        platform = get_str(body, "platform", choices=PLATFORMS, max_len=8)
        code = get_str(body, "code", max_len=128)
        _no_store(resp)
        if req.context.user is not None:
            ok(resp, {"registered": True, "logged_in": True,
                      "user": user_dict(req.context.user)})
            return
        client = login_client(req, body, platform)
        status, data = await run_sync(wechat_signin, self.rt, platform, code, client)
        ok(resp, data, status=status)


class Registrations:
    """``POST /v1/registrations``: ``xc_reg_hook`` (ACC-04..06)."""

    auth = "public"

    def __init__(self, rt: Any):
        self.rt = rt

    @responds(201, description="the new (or newly bound) account's token and user")
    async def on_post(self, req: Any, resp: Any) -> None:
        """``{"type": "phone|wechat|wechat_bind", "phone", "code", "nickname"?, "ticket"?,
        "password"?, "other_accounts"?}``: register or bind, then log in (201)."""
        from gonglun.accounts.registration import register

        body = await json_body(req)
        client = login_client(req, body)
        _no_store(resp)
        ok(resp, await run_sync(register, self.rt, body, client), status=201)


class MeSessions:
    """``GET /v1/me/sessions``: the caller's live sessions, newest first."""

    def __init__(self, rt: Any):
        self.rt = rt

    def _list(self, user_id: int, token: str | None) -> dict[str, Any]:
        from gonglun.accounts.sessions import list_sessions

        with self.rt.db.read() as session:
            return {"sessions": list_sessions(session, user_id, token)}

    async def on_get(self, req: Any, resp: Any) -> None:
        """Each live token: method, platform, user agent, address, created, last seen;
        ``current`` marks the one making this request."""
        token = getattr(req.context, "token", None)
        ok(resp, await run_sync(self._list, req.context.user.id, token))

    def _revoke_all(self, user_id: int, keep: str | None) -> int:
        from gonglun.accounts import revoke_all_tokens

        with self.rt.db.write() as session:
            return revoke_all_tokens(session, user_id, keep=keep)

    async def on_delete(self, req: Any, resp: Any) -> None:
        """Sign out everywhere: every session of the caller, this one too, and their open
        websockets; ``?keep_current=true`` keeps the session making the request."""
        keep = query_str(req, "keep_current", choices=("true", "false")) == "true"
        token = getattr(req.context, "token", None)
        revoked = await run_sync(self._revoke_all, req.context.user.id,
                                 token if keep else None)
        ok(resp, {"revoked": revoked, "kept_current": bool(keep and token)})


class MeSession:
    """``DELETE /v1/me/sessions/{session_id}``: sign one of the caller's devices out."""

    def __init__(self, rt: Any):
        self.rt = rt

    def _revoke(self, user_id: int, session_id: int) -> None:
        from gonglun.accounts.sessions import revoke_session

        with self.rt.db.write() as session:
            revoke_session(session, user_id, session_id)

    async def on_delete(self, req: Any, resp: Any, session_id: str) -> None:
        """Revoke the session; another user's id, or an unknown one, is a 404."""
        sid = path_id(session_id, error="account.session_not_found", msg="会话不存在或已退出")
        await run_sync(self._revoke, req.context.user.id, sid)
        ok(resp, {"id": sid, "revoked": True})


class LoginAlert:
    """``PUT /v1/me/login-alert``: turn the remote-login alert (OPS-09) on or off."""

    def __init__(self, rt: Any):
        self.rt = rt

    def _set(self, user_id: int, enabled: bool) -> None:
        from gonglun.accounts import set_meta
        from gonglun.accounts.risk import ENABLED_META

        with self.rt.db.write() as session:
            set_meta(session, user_id, ENABLED_META, "1" if enabled else "0")

    async def on_put(self, req: Any, resp: Any) -> None:
        """``{"enabled": true|false}``."""
        body = await json_body(req)
        enabled = body.get("enabled")
        if not isinstance(enabled, bool):
            raise GonglunError("request.invalid_type", "参数 enabled 必须是布尔值",
                               data={"field": "enabled"})
        await run_sync(self._set, req.context.user.id, enabled)
        ok(resp, {"enabled": enabled})


SESSION_ID = {"session_id": {"type": "string", "pattern": "^[0-9]{1,19}$"}}
PHONE = {"type": "string", "maxLength": 20}
WECHAT_SCHEMA = {
    "type": "object", "required": ["platform", "code"],
    "properties": {"platform": {"type": "string", "enum": ["mp", "app", "pc", "mini"]},
                   "code": {"type": "string", "minLength": 1, "maxLength": 128},
                   "other_accounts": {"type": "boolean"}},
}
REGISTER_SCHEMA = {
    "type": "object", "required": ["type", "phone", "code"],
    "properties": {"type": {"type": "string", "enum": ["phone", "wechat", "wechat_bind"]},
                   "phone": PHONE, "code": {"type": "string", "maxLength": 8},
                   "nickname": {"type": "string", "maxLength": 64},
                   "ticket": {"type": "string", "maxLength": 2048},
                   "password": {"type": "string", "maxLength": 256},
                   "platform": {"type": "string"}, "other_accounts": {"type": "boolean"}},
}
ALERT_SCHEMA = {"type": "object", "required": ["enabled"],
                "properties": {"enabled": {"type": "boolean"}}}
