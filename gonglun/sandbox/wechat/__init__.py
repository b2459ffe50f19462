"""WeChat API emulator: ``GET /cgi-bin/token``, template messages and sign-in (oauth.py).

``wechatpy``'s ``WeChatClient`` talks to it once its two base URLs are re-pointed (the token
URL is hard-coded in the client: see docs/notify.md). Like WeChat, every answer is HTTP 200
with ``errcode``/``errmsg``; a new token leaves the previous one valid for five minutes; an
unknown token is 40001, an expired one 42001. Faults: ``{"channel": "wechat", "error": 43004}``
makes the next template messages answer that errcode (43004 not subscribed, 45009 quota,
-1 busy, 40001 stale token...), ``"http": "500" | "timeout"`` as for the payment channels.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import falcon.asgi

from ..common import is_openid
from ..vendors import Vendor, json_or_none, keys_of
from ..web import read_body
from .oauth import Codes, OAuth

KEYS = ("appid", "secret")
TOKEN_TTL_S = 7200
#: How long a token stays valid after a newer one was issued (WeChat: five minutes).
OVERLAP_S = 300
ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    41001: "access_token missing",
    42001: "access_token expired",
    43004: "require subscribe",
    45009: "reach max api daily quota limit",
    47001: "data format error",
    47003: "argument invalid!",
}
_TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")


def _errcode(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value == 0:
        raise ValueError("a non-zero WeChat errcode such as 43004")
    return value


@dataclass
class Token:
    value: str
    expires_at: float


class WeChat(Vendor):
    name = "wechat"

    def __init__(self, keys: dict[str, Any], login: Any = None) -> None:
        super().__init__(keys, {"error": _errcode})
        self.appid = keys["appid"]
        self.secret = keys["secret"]
        self.tokens: dict[str, Token] = {}
        self.issued = 0
        #: Every app the emulator plays: the official account and the sign-in apps.
        self.apps = {self.appid: self.secret, **login_apps(login)}
        self.oauth = OAuth(self.apps)

    def add_routes(self, app: falcon.asgi.App) -> None:
        super().add_routes(app)
        app.add_route("/cgi-bin/token", _Call(self, "token", get=self.token))
        app.add_route("/cgi-bin/message/template/send",
                      _Call(self, "template_send", post=self.template_send))
        app.add_route("/sns/oauth2/access_token",
                      _Call(self, "oauth_access_token", get=self.oauth.access_token))
        app.add_route("/sns/userinfo", _Call(self, "oauth_userinfo", get=self.oauth.userinfo))
        app.add_route("/sns/jscode2session",
                      _Call(self, "jscode2session", get=self.oauth.jscode2session))
        app.add_route("/sandbox/wechat/oauth/codes", Codes(self.oauth))

    def info(self) -> dict[str, Any]:
        return {"appid": self.appid, "tokens_issued": self.issued, "apps": sorted(self.apps)}

    def reset(self) -> None:
        super().reset()
        self.tokens.clear()
        self.oauth.reset()

    # -- calls -------------------------------------------------------------------------------

    def token(self, params: dict[str, str], body: bytes) -> dict[str, Any]:
        if params.get("grant_type") != "client_credential":
            return _error(40002)
        appid = params.get("appid") or ""
        if appid not in self.apps:
            return _error(40013)
        given = params.get("secret") or ""
        if not re.fullmatch(r"[0-9a-f]{32}", given):
            return _error(40125)
        if not secrets.compare_digest(given, self.apps[appid]):
            return _error(40001)
        now = time.time()
        for old in self.tokens.values():
            old.expires_at = min(old.expires_at, now + OVERLAP_S)
        token = Token(secrets.token_urlsafe(96)[:128], now + TOKEN_TTL_S)
        self.tokens = {t.value: t for t in self.tokens.values() if t.expires_at > now}
        self.tokens[token.value] = token
        self.issued += 1
        return {"access_token": token.value, "expires_in": TOKEN_TTL_S}

    def _check_token(self, value: str | None) -> int:
        if not value:
            return 41001
        token = self.tokens.get(value)
        if token is None:
            return 40001
        return 42001 if token.expires_at <= time.time() else 0

    def template_send(self, params: dict[str, str], body: bytes) -> dict[str, Any]:
        bad = self._check_token(params.get("access_token"))
        if bad:
            return _error(bad)
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error(47001)
        if not isinstance(data, dict):
            return _error(47001)
        if not is_openid(data.get("touser")):
            return _error(40003)
        if not _TEMPLATE_ID.match(str(data.get("template_id") or "")):
            return _error(40037)
        fields = data.get("data")
        if not isinstance(fields, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("value"), str) for v in fields.values()
        ):
            return _error(47003, "argument invalid! data.value invalid")
        fault = self.faults.take("error")
        if fault is not None:
            return _error(int(fault.value))
        return {"errcode": 0, "errmsg": "ok", "msgid": secrets.randbelow(10**18) + 10**17}


def _error(code: int, message: str | None = None) -> dict[str, Any]:
    rid = secrets.token_hex(12)
    return {"errcode": code, "errmsg": f"{message or ERRMSG.get(code, 'error')} rid: {rid}"}


class _Call:
    """One WeChat endpoint: answers 200 JSON and records the call."""

    auth = "public"

    def __init__(self, vendor: WeChat, action: str, get: Any = None, post: Any = None) -> None:
        self.vendor, self.action, self.get, self.post = vendor, action, get, post

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self._serve(req, resp, self.get)

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self._serve(req, resp, self.post)

    async def _serve(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                     handler: Any) -> None:
        if handler is None:
            resp.status = 405
            return
        if await self.vendor.faulted(resp):
            return
        body = await read_body(req)
        params = {k: v for k, v in req.params.items() if isinstance(v, str)}
        reply = handler(params, body)
        request = json_or_none(body)
        record: dict[str, Any] = {"action": self.action, "errcode": str(reply.get("errcode", 0)),
                                  "request": request}
        if isinstance(request, dict):
            record.update(touser=str(request.get("touser", "")),
                          template_id=str(request.get("template_id", "")))
        # Tokens are secrets: recorded by their tail only.
        record["response"] = {k: (f"...{v[-6:]}" if k == "access_token" else v)
                              for k, v in reply.items()}
        self.vendor.recorder.add(**record)
        resp.status = 200
        resp.content_type = "application/json; charset=utf-8"
        resp.text = json.dumps(reply, ensure_ascii=False)


def login_apps(section: Any) -> dict[str, str]:
    """``{appid: secret}`` of the sign-in apps in the keyset's ``wechat_login`` (app, pc,
    mini: each ``{"appid", "secret"}``)."""
    apps = {}
    for keys in (section or {}).values() if isinstance(section, dict) else ():
        if isinstance(keys, dict) and keys.get("appid") and keys.get("secret"):
            apps[str(keys["appid"])] = str(keys["secret"])
    return apps


def create(keyset: dict[str, Any]) -> WeChat | None:
    keys = keys_of(keyset, "wechat", KEYS)
    return WeChat(keys, keyset.get("wechat_login")) if keys is not None else None
