"""WeChat sign-in emulation: web OAuth (official account, app, PC) and mini-program login.

Protocol routes, where WeChat serves them:

* ``GET /sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code``:
  ``access_token, expires_in, refresh_token, openid, scope[, unionid]``;
* ``GET /sns/userinfo?access_token&openid&lang``: ``openid, nickname, headimgurl[, unionid]``;
* ``GET /sns/jscode2session?appid&secret&js_code&grant_type=authorization_code``:
  ``openid, session_key[, unionid]``.

Like WeChat, every answer is HTTP 200; errors are ``{"errcode": 40029, "errmsg": "invalid
code"}``. A code is single use (40163 "code been used") and lives 300 s. The control route
``POST /sandbox/wechat/oauth/codes`` plays the WeChat user: ``{"appid", "openid", "unionid"?,
"nickname"?, "avatar"?}`` answers a fresh code for that app, as WeChat's redirect would carry.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import falcon.asgi

from ..common import OPENID_LENGTH, is_openid
from ..web import ControlError, fail, ok, read_json

CODE_TTL_S = 300
TOKEN_TTL_S = 7200
OAUTH_ERRMSG = {
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40029: "invalid code",
    40125: "invalid appsecret",
    40163: "code been used",
    41008: "missing code",
    42001: "access_token expired",
    40001: "invalid credential, access_token is invalid or not latest",
}


@dataclass
class Grant:
    appid: str
    openid: str
    unionid: str | None
    nickname: str
    avatar: str
    expires_at: float
    used: bool = False


class OAuth:
    """The sign-in half of the WeChat emulator: codes, user tokens, apps' secrets."""

    def __init__(self, apps: dict[str, str], clock: Any = time.time) -> None:
        self.apps = apps  #: appid -> secret, every app the sandbox plays
        self.codes: dict[str, Grant] = {}
        self.tokens: dict[str, Grant] = {}
        self.clock = clock

    def reset(self) -> None:
        self.codes.clear()
        self.tokens.clear()

    def issue(self, spec: dict[str, Any]) -> dict[str, Any]:
        appid = spec.get("appid")
        if not isinstance(appid, str) or appid not in self.apps:
            raise ControlError(400, "bad_appid", f"appid must be one of {sorted(self.apps)}")
        openid = spec.get("openid")
        if not is_openid(openid):
            raise ControlError(400, "bad_openid", f"openid must be {OPENID_LENGTH} letters, "
                               "digits, _ or - (as WeChat issues them)")
        unionid = spec.get("unionid")
        if unionid is not None and not is_openid(unionid):
            raise ControlError(400, "bad_unionid", f"unionid must be {OPENID_LENGTH} letters, "
                               "digits, _ or - (as WeChat issues them)")
        texts = {k: spec.get(k, "") for k in ("nickname", "avatar")}
        if not all(isinstance(v, str) and len(v) <= 512 for v in texts.values()):
            raise ControlError(400, "bad_profile", "nickname and avatar are strings")
        code = secrets.token_hex(16)
        self.codes = {c: g for c, g in self.codes.items() if g.expires_at > self.clock()}
        self.codes[code] = Grant(appid, openid, unionid, texts["nickname"], texts["avatar"],
                                 self.clock() + CODE_TTL_S)
        return {"code": code, "expires_in": CODE_TTL_S}

    def _app(self, params: dict[str, str]) -> int:
        if params.get("grant_type") != "authorization_code":
            return 40002
        appid = params.get("appid") or ""
        if appid not in self.apps:
            return 40013
        if not secrets.compare_digest((params.get("secret") or "").encode(),
                                      self.apps[appid].encode()):
            return 40125
        return 0

    def _redeem(self, params: dict[str, str], name: str) -> Grant | int:
        bad = self._app(params)
        if bad:
            return bad
        code = params.get(name) or ""
        if not code:
            return 41008
        grant = self.codes.get(code)
        if grant is None or grant.appid != params.get("appid") or (
                grant.expires_at <= self.clock()):
            return 40029
        if grant.used:
            return 40163
        grant.used = True
        return grant

    def access_token(self, params: dict[str, str], body: bytes) -> dict[str, Any]:
        grant = self._redeem(params, "code")
        if isinstance(grant, int):
            return oauth_error(grant)
        token = secrets.token_urlsafe(64)
        self.tokens[token] = Grant(grant.appid, grant.openid, grant.unionid, grant.nickname,
                                   grant.avatar, self.clock() + TOKEN_TTL_S)
        reply = {"access_token": token, "expires_in": TOKEN_TTL_S,
                 "refresh_token": secrets.token_urlsafe(64), "openid": grant.openid,
                 "scope": "snsapi_userinfo"}
        if grant.unionid:
            reply["unionid"] = grant.unionid
        return reply

    def userinfo(self, params: dict[str, str], body: bytes) -> dict[str, Any]:
        grant = self.tokens.get(params.get("access_token") or "")
        if grant is None:
            return oauth_error(40001)
        if grant.expires_at <= self.clock():
            return oauth_error(42001)
        if params.get("openid") != grant.openid:
            return oauth_error(40003)
        reply: dict[str, Any] = {"openid": grant.openid, "nickname": grant.nickname, "sex": 0,
                                 "province": "", "city": "", "country": "",
                                 "headimgurl": grant.avatar, "privilege": []}
        if grant.unionid:
            reply["unionid"] = grant.unionid
        return reply

    def jscode2session(self, params: dict[str, str], body: bytes) -> dict[str, Any]:
        grant = self._redeem(params, "js_code")
        if isinstance(grant, int):
            return oauth_error(grant)
        reply = {"openid": grant.openid, "session_key": secrets.token_urlsafe(16)}
        if grant.unionid:
            reply["unionid"] = grant.unionid
        return reply


def oauth_error(code: int) -> dict[str, Any]:
    return {"errcode": code, "errmsg": OAUTH_ERRMSG.get(code, "error")}


class Codes:
    """``POST /sandbox/wechat/oauth/codes``: a code for a WeChat user of one app."""

    auth = "public"

    def __init__(self, oauth: OAuth) -> None:
        self.oauth = oauth

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        try:
            ok(resp, self.oauth.issue(await read_json(req, required=True)), status=201)
        except ControlError as exc:
            fail(resp, exc)
