"""WeChat sign-in (ACC-01, ACC-02, ACC-07, decision 18) through ``wechatpy``.

Four platforms, each a WeChat app of its own and so with its own openid for one person:
``mp`` (official account, in the WeChat browser), ``app`` (mobile app), ``pc`` (website
QR login) and ``mini`` (mini program, ``jscode2session``). The unionid links them.

Keys: ``[accounts.wechat.<platform>]`` ``appid`` and ``secret`` (live WeChat at
``accounts.wechat.api_base``); without them, a sandbox keyset (``accounts.keyset`` with
``accounts.gateway_url``, or the bundled sandbox where it runs: the official account is the
keyset's ``wechat``, the others its ``wechat_login``). Anything else: sign-in unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from gonglun.accounts.models import WechatBinding, WechatUnion
from gonglun.accounts.service import get_meta, set_meta
from gonglun.db import insert_ignore, utcnow
from gonglun.errors import GonglunError, conflict

#: Platform → the user-meta field of its openid (ACC-07).
OPENID_META = {"mp": "weixin_uid", "app": "weixin_app_uid", "pc": "weixin_apc_uid",
               "mini": "weixin_mini_uid"}
PLATFORMS = tuple(OPENID_META)
UNIONID_META = "wechat_unionid"  #: decision 18
AVATAR_META = "wechat_avatar"
LIVE_BASE = "https://api.weixin.qq.com/"
MSG_OPENID = "openid获取失败,接口异常!"
MSG_BOUND = "微信号已绑定其它账户,无法完成注册"
#: Codes that are the caller's fault (a bad, used or expired code): 400, not 502.
CLIENT_CODES = frozenset({40029, 40163, 41008})


@dataclass(frozen=True)
class Identity:
    platform: str
    openid: str
    unionid: str | None
    nickname: str
    avatar: str


def unavailable(why: str) -> GonglunError:
    return GonglunError("account.wechat_unavailable", "微信登录暂不可用", status=503,
                        data={"reason": why})


def app_settings(rt: Any, platform: str) -> dict[str, Any]:
    """``appid``, ``secret``, ``base`` (API root ending in /) and ``timeout`` of a platform."""
    configured = dict(rt.config.get(f"accounts.wechat.{platform}") or {})
    timeout = float(rt.config.get("accounts.wechat.timeout") or 10)
    if configured.get("appid") and configured.get("secret"):
        base = str(rt.config.get("accounts.wechat.api_base") or LIVE_BASE)
        return {**configured, "base": base.rstrip("/") + "/", "timeout": timeout}
    from gonglun.embedded import named_keyset

    try:
        found = named_keyset(rt, "accounts.keyset")
    except ValueError as exc:
        raise unavailable(str(exc)) from None
    if found is None:
        raise unavailable(f"no keys: set [accounts.wechat.{platform}] appid and secret")
    keyset = found[0]
    keys = keyset.get("wechat") if platform == "mp" else (
        keyset.get("wechat_login") or {}).get(platform)
    if not isinstance(keys, dict) or not keys.get("appid") or not keys.get("secret"):
        raise unavailable(f"{found[1]} has no {platform} keys (gonglun sandbox init)")
    from gonglun.vendors import SettingsError, keyset_gateway

    try:
        gateway = keyset_gateway(rt, "accounts")
    except SettingsError as exc:
        raise unavailable(str(exc)) from None
    return {"appid": keys["appid"], "secret": keys["secret"], "base": gateway + "/",
            "timeout": timeout}


class _TimeoutSession(requests.Session):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.trust_env = False
        self.default_timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["timeout"] = kwargs.get("timeout") or self.default_timeout
        return super().request(*args, **kwargs)


def _oauth(settings: dict[str, Any], code: str) -> dict[str, Any]:
    """Web OAuth: code → access token and openid/unionid, then the profile (best effort)."""
    from wechatpy.exceptions import WeChatClientException
    from wechatpy.oauth import WeChatOAuth

    client = WeChatOAuth(settings["appid"], settings["secret"], "", scope="snsapi_userinfo")
    client.API_BASE_URL = settings["base"]
    client._http = _TimeoutSession(settings["timeout"])
    reply = dict(client.fetch_access_token(code))
    try:
        profile = client.get_user_info()
    except (WeChatClientException, requests.RequestException, ValueError):
        profile = {}  # snsapi_base, or userinfo failing: the openid is what matters
    return {**reply, "nickname": profile.get("nickname") or "",
            "avatar": profile.get("headimgurl") or "",
            "unionid": reply.get("unionid") or profile.get("unionid")}


def _mini(rt: Any, settings: dict[str, Any], code: str) -> dict[str, Any]:
    """Mini program: ``jscode2session`` (wechatpy also sends a client access token)."""
    from wechatpy import WeChatClient
    from wechatpy.session.redisstorage import RedisStorage

    base = settings["base"]

    class Client(WeChatClient):  # type: ignore[misc]
        API_BASE_URL = base + "cgi-bin/"

        def fetch_access_token(self) -> Any:  # wechatpy hard-codes this URL
            return self._fetch_access_token(url=base + "cgi-bin/token", params={
                "grant_type": "client_credential", "appid": self.appid, "secret": self.secret})

    client = Client(settings["appid"], settings["secret"], timeout=settings["timeout"],
                    session=RedisStorage(rt.redis, prefix=rt.keys("wechatpy-login")),
                    auto_retry=False)
    client._http = _TimeoutSession(settings["timeout"])
    client.wxa.API_BASE_URL = base
    return dict(client.wxa.code_to_session(code))


def exchange(rt: Any, platform: str, code: str) -> Identity:
    """What WeChat says about the person who signed in with ``code`` (single use)."""
    from wechatpy.exceptions import WeChatClientException

    settings = app_settings(rt, platform)
    try:
        reply = _mini(rt, settings, code) if platform == "mini" else _oauth(settings, code)
        openid = reply["openid"]
    except WeChatClientException as exc:
        status = 400 if exc.errcode in CLIENT_CODES else 502
        raise GonglunError("account.openid_failed", MSG_OPENID, status=status,
                           data={"wechat_errcode": exc.errcode}) from None
    except (requests.RequestException, KeyError, ValueError, TypeError):
        raise GonglunError("account.openid_failed", MSG_OPENID, status=502) from None
    if not isinstance(openid, str) or not 0 < len(openid) <= 64:
        raise GonglunError("account.openid_failed", MSG_OPENID, status=502)
    unionid = reply.get("unionid")
    unionid = unionid if isinstance(unionid, str) and 0 < len(unionid) <= 64 else None
    return Identity(platform, openid, unionid, str(reply.get("nickname") or "")[:64],
                    str(reply.get("avatar") or "")[:512])


# -- bindings ------------------------------------------------------------------------------


def bound_user(session: Session, platform: str, openid: str) -> int | None:
    return session.scalar(select(WechatBinding.user_id).where(
        WechatBinding.platform == platform, WechatBinding.openid == openid))


def unionid_user(session: Session, unionid: str | None) -> int | None:
    if not unionid:
        return None
    return session.scalar(select(WechatBinding.user_id).where(
        WechatBinding.unionid == unionid).order_by(WechatBinding.id).limit(1))


def bind(session: Session, user_id: int, platform: str, openid: str, unionid: str | None,
         avatar: str = "") -> None:
    """Bind ``openid`` of ``platform`` to the user, and mirror it into user meta (ACC-06.6).

    Refused (``account.wechat_bound``) when the openid is anybody's, the unionid another
    account's, or the user already has another WeChat on this platform.
    """
    if unionid:
        insert_ignore(session, WechatUnion.__table__, {
            "unionid": unionid, "user_id": user_id, "created_at": utcnow()})
        owner = session.scalar(select(WechatUnion.user_id).where(WechatUnion.unionid == unionid))
        if owner != user_id:  # the unique unionid decides, whoever committed first
            raise conflict("account.wechat_bound", MSG_BOUND)
    other = unionid_user(session, unionid)
    if other is not None and other != user_id:
        raise conflict("account.wechat_bound", MSG_BOUND)
    inserted = insert_ignore(session, WechatBinding.__table__, {
        "user_id": user_id, "platform": platform, "openid": openid, "unionid": unionid,
        "created_at": utcnow()})
    if not inserted:
        raise conflict("account.wechat_bound", MSG_BOUND)
    set_meta(session, user_id, OPENID_META[platform], openid)
    if unionid:
        set_meta(session, user_id, UNIONID_META, unionid)
    if avatar:
        set_meta(session, user_id, AVATAR_META, avatar)


def openid_of(session: Session, user_id: int, platform: str | None) -> str | None:
    """The caller's openid for their platform (ACC-02); the official account's otherwise."""
    key = OPENID_META.get(platform or "", OPENID_META["mp"])
    return get_meta(session, user_id, key)


def phone_has_wechat(rt: Any, phone: str, platform: str) -> bool:
    """Whether the account owning ``phone`` has a WeChat of ``platform`` (NTF-14)."""
    from gonglun.accounts.models import User

    with rt.db.read() as session:
        user_id = session.scalar(select(User.id).where(User.phone == phone))
        return user_id is not None and openid_of(session, user_id, platform) is not None


def phone_owner(rt: Any, phone: str) -> int | None:
    from gonglun.accounts.models import User

    with rt.db.read() as session:
        return session.scalar(select(User.id).where(User.phone == phone))
