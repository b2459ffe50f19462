"""Registration and WeChat binding (``xc_reg_hook``, ACC-04..06, CORE-25).

Three types: ``phone`` (phone + SMS code + nickname, optional password), ``wechat`` (a new
account for a signed-in WeChat user: the registration ticket, phone, SMS code of scene
``wechat_reg``, nickname) and ``wechat_bind`` (the ticket's openid bound to the account that
owns the phone, SMS code of scene ``wechat_bind``). Every check runs before anything changes;
the SMS code is checked (and consumed) through the ``sms_code_check`` decision, then the
ticket burnt, then the account written in one transaction. A refusal changes no row.
Registrations are throttled per address (``accounts.register_limit`` per
``accounts.register_window_s``): the ``redis_security_check`` of the original.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from gonglun.accounts import tickets, wechat
from gonglun.accounts.codes import code_accepted
from gonglun.accounts.login import Client, announce, finish_login
from gonglun.accounts.models import User
from gonglun.accounts.profile import check_nickname, check_phone, nickname_taken, user_by_phone
from gonglun.accounts.service import NICKNAME_TAKEN, create_user, set_meta
from gonglun.accounts.service import _check_password as check_password_rules
from gonglun.accounts.throttle import address_bucket
from gonglun.errors import GonglunError, conflict
from gonglun.fields import get_str

TYPES = ("phone", "wechat", "wechat_bind")
SCENES = {"phone": "register", "wechat": "wechat_reg", "wechat_bind": "wechat_bind"}
REQUIRED = {"phone": ("phone", "code", "nickname"),
            "wechat": ("nickname", "phone", "code", "ticket"),
            "wechat_bind": ("phone", "code", "ticket")}
MSG_PHONE_TAKEN = "该手机号已注册,请直接登录"
MSG_NO_ACCOUNT = "绑定失败: 该手机未关联平台账户"
MSG_CODE = "验证码错误"


#: Refusals that tell whether a phone or WeChat has an account: asked for from one address,
#: they count against its registration budget, so the answer cannot be harvested.
REVEALING = frozenset({"account.phone_taken", "account.phone_not_found", "account.wechat_bound"})


def _throttle(rt: Any, ip: str) -> None:
    limit = int(rt.config.get("accounts.register_limit", 10) or 10)
    window = int(rt.config.get("accounts.register_window_s", 3600) or 3600)
    key = rt.keys("register", address_bucket(ip))
    try:
        count = int(rt.redis.incr(key))
        if count == 1:
            rt.redis.expire(key, window)
    except Exception:  # Redis unreachable: fail closed
        count = limit + 1
    if count > limit:
        raise GonglunError("account.register_throttled", "注册过于频繁,请稍后再试", status=429,
                           headers={"Retry-After": str(window)})


def _check_code(rt: Any, phone: str, scene: str, code: Any) -> None:
    if not isinstance(code, str) or not code.isascii() or not code.isdigit() or len(code) > 8:
        raise GonglunError("account.invalid_code", MSG_CODE)
    if not code_accepted(rt, phone, scene, code):  # None: nobody owns this scene; fail closed
        raise GonglunError("account.invalid_code", MSG_CODE)


def _validate(rt: Any, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """Every check that reads only: the ticket, the phone, the nickname, who is bound."""
    missing = [f for f in REQUIRED[kind] if f != "ticket" and body.get(f) in (None, "")]
    if missing and kind == "wechat_bind":
        raise GonglunError("account.bind_incomplete", "绑定参数不完整", data={"field": missing[0]})
    if missing:
        raise GonglunError("account.register_incomplete", "注册参数不完整",
                           data={"field": missing[0]})
    found: dict[str, Any] = {"ticket": None}
    if kind != "phone":
        ticket = found["ticket"] = tickets.read(rt, body.get("ticket"))
        if tickets.used(rt, ticket):
            raise GonglunError("account.invalid_ticket", tickets.MSG_INVALID)
    found["phone"] = check_phone(body.get("phone"))
    with rt.db.read() as session:
        ticket = found["ticket"]
        if ticket is not None and wechat.bound_user(session, ticket.platform, ticket.openid):
            raise conflict("account.wechat_bound", wechat.MSG_BOUND)
        owner = user_by_phone(session, found["phone"])
        if kind == "wechat_bind":
            if owner is None or owner.status == "deleted":
                raise GonglunError("account.phone_not_found", MSG_NO_ACCOUNT, status=404)
            if wechat.openid_of(session, owner.id, ticket.platform) is not None:
                raise conflict("account.wechat_bound", wechat.MSG_BOUND)
            other = wechat.unionid_user(session, ticket.unionid)
            if other is not None and other != owner.id:
                raise conflict("account.wechat_bound", wechat.MSG_BOUND)
            found["user_id"] = owner.id
            return found
        found["nickname"] = check_nickname(session, body.get("nickname"))
        if owner is not None:
            raise conflict("account.phone_taken", MSG_PHONE_TAKEN)
        if ticket is not None and wechat.unionid_user(session, ticket.unionid) is not None:
            raise conflict("account.wechat_bound", wechat.MSG_BOUND)
    password = body.get("password")
    if password is not None:
        check_password_rules(password)
    found["password"] = password or secrets.token_urlsafe(24)
    return found


def _create(rt: Any, session: Any, kind: str, found: dict[str, Any]) -> int:
    login = "u_" + secrets.token_hex(8)
    user = create_user(session, login, found["password"], nickname=found["nickname"], rt=rt)
    session.execute(update(User).where(User.id == user.id).values(phone=found["phone"]))
    ticket = found["ticket"]
    if ticket is not None:
        wechat.bind(session, user.id, ticket.platform, ticket.openid, ticket.unionid,
                    ticket.avatar)
    return int(user.id)


def _collision(rt: Any, kind: str, found: dict[str, Any]) -> GonglunError | None:
    """The refusal for a write a unique constraint stopped, looked up again now that the
    racing registration has committed (constraint names differ between databases)."""
    ticket = found["ticket"]
    with rt.db.read() as session:
        if ticket is not None and wechat.bound_user(session, ticket.platform, ticket.openid):
            return conflict("account.wechat_bound", wechat.MSG_BOUND)
        if kind == "wechat_bind":
            return None
        if user_by_phone(session, found["phone"]) is not None:
            return conflict("account.phone_taken", MSG_PHONE_TAKEN)
        if nickname_taken(session, found["nickname"]):
            return conflict("account.nickname_taken", NICKNAME_TAKEN)
    return None


def register(rt: Any, body: Any, client: Client) -> dict[str, Any]:
    """``xc_reg_hook``: register or bind per ``body["type"]``, then log in (201 data)."""
    if not isinstance(body, dict) or not body:
        raise GonglunError("account.incomplete", "传递信息不完整")
    kind = str(get_str(body, "type", choices=TYPES, max_len=16))
    try:
        found = _validate(rt, kind, body)
    except GonglunError as exc:
        if exc.error in REVEALING:  # a probe of who has an account spends the address's budget
            _throttle(rt, client.ip)
        raise
    _throttle(rt, client.ip)
    _check_code(rt, found["phone"], SCENES[kind], body.get("code"))
    ticket = found["ticket"]
    if ticket is not None:
        if not tickets.burn(rt, ticket):
            raise GonglunError("account.invalid_ticket", tickets.MSG_INVALID)
        client = Client(client.ip, client.user_agent, ticket.platform, client.other_accounts)
    method = "sms" if kind == "phone" else "wechat"
    try:
        with rt.db.write() as session:
            if kind == "wechat_bind":
                user_id = found["user_id"]
                wechat.bind(session, user_id, ticket.platform, ticket.openid, ticket.unionid,
                            ticket.avatar)
            else:
                user_id = _create(rt, session, kind, found)
            if kind == "phone":
                set_meta(session, user_id, "register_type", "phone")
            data = finish_login(rt, session, user_id, method, client)
    except IntegrityError:  # a racing registration committed first: say what it took
        taken = _collision(rt, kind, found)
        if taken is None:
            raise
        raise taken from None
    announce(rt, user_id, method, client)
    return data
