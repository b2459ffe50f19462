"""Sign-in without a password: WeChat (ACC-01) and phone + SMS code.

WeChat: the code is exchanged for the openid (and unionid) of the platform's app. An openid
already bound logs in. An unbound openid whose unionid another platform of one account
carries is bound to that account (decision 18) and logs in. Anyone else gets a registration
ticket (tickets.py) for the register/bind step: 200 with ``registered: false``.
"""

from __future__ import annotations

from typing import Any

from gonglun.accounts import tickets, wechat
from gonglun.accounts.codes import code_accepted
from gonglun.accounts.login import Client, announce, finish_login
from gonglun.accounts.profile import check_phone, user_by_phone
from gonglun.errors import GonglunError

MSG_CODE = "验证码错误"
LOGIN_SCENE = "login"


def wechat_signin(rt: Any, platform: str, code: str, client: Client) -> tuple[int, dict[str, Any]]:
    """``(201, token data)`` for a bound WeChat user, ``(200, ticket data)`` otherwise."""
    who = wechat.exchange(rt, platform, code)
    client = Client(client.ip, client.user_agent, platform, client.other_accounts)
    with rt.db.write() as session:
        user_id = wechat.bound_user(session, platform, who.openid)
        if user_id is None:
            user_id = wechat.unionid_user(session, who.unionid)
            if user_id is not None:
                wechat.bind(session, user_id, platform, who.openid, who.unionid, who.avatar)
        data = finish_login(rt, session, user_id, "wechat", client) if user_id else None
    if data is not None and user_id is not None:
        announce(rt, user_id, "wechat", client)
        return 201, {"registered": True, **data}
    ticket, life = tickets.issue(rt, platform, who.openid, who.unionid, who.nickname,
                                 who.avatar)
    return 200, {"registered": False, "ticket": ticket, "expires_in": life,
                 "platform": platform, "openid": who.openid, "unionid": who.unionid,
                 "nickname": who.nickname, "avatar": who.avatar}


def sms_login(rt: Any, phone: Any, code: Any, client: Client) -> dict[str, Any]:
    """Phone + SMS code of scene ``login``; unknown phones and wrong codes look alike."""
    number = check_phone(phone)
    if not isinstance(code, str) or not code.isascii() or not code.isdigit() or len(code) > 8:
        raise GonglunError("account.invalid_code", MSG_CODE, status=401)
    if not code_accepted(rt, number, LOGIN_SCENE, code):
        raise GonglunError("account.invalid_code", MSG_CODE, status=401)
    with rt.db.write() as session:
        user = user_by_phone(session, number)
        if user is None:
            raise GonglunError("account.invalid_code", MSG_CODE, status=401)
        data = finish_login(rt, session, user.id, "sms", client)
        user_id = user.id
    announce(rt, user_id, "sms", client)
    return data


def find_account(rt: Any, kind: str, value: Any) -> int | None:
    """The core's answer to ``find_account``: ``phone`` and ``login`` identifiers."""
    from gonglun.accounts.service import user_by_login

    with rt.db.read() as session:
        if kind == "phone":
            try:
                user = user_by_phone(session, check_phone(value))
            except GonglunError:
                return None
        elif kind == "login" and isinstance(value, str):
            user = user_by_login(session, value)
        else:
            return None
        return int(user.id) if user is not None else None
