"""REST for the current user's phone and email bindings (CORE-19, CORE-20, FACE-15)."""

from __future__ import annotations

from typing import Any

from gonglun.api.util import client_ip, json_body, ok, run_sync
from gonglun.errors import GonglunError

KINDS = ("phone", "email")
BIND_SCHEMA = {
    "type": "object",
    "required": ["code"],
    "properties": {"phone": {"type": "string", "maxLength": 16},
                   "email": {"type": "string", "maxLength": 191},
                   "code": {"type": "string", "maxLength": 8},
                   "password": {"type": "string", "maxLength": 256}},
}
UNBIND_SCHEMA = {"type": "object", "required": ["password"],
                 "properties": {"password": {"type": "string", "maxLength": 128}}}
KIND_SCHEMA = {"type": "string", "enum": list(KINDS)}
MSG_INVALID = {"phone": "请输入正确的手机号", "email": "请输入正确的邮箱地址"}


def _kind(kind: Any) -> str:
    if kind not in KINDS:
        raise GonglunError("binding.invalid_kind", "绑定类型须为 phone 或 email")
    return str(kind)


def _bound(rt: Any, user_id: int, kind: str) -> bool:
    from gonglun.accounts.models import User

    with rt.db.read() as session:
        user = session.get(User, user_id)
        return bool(user is not None and getattr(user, kind))


def bind(rt: Any, user_id: int, kind: str, value: Any, code: Any, password: Any = None,
         ip: str = "") -> dict[str, Any]:
    """Bind (or rebind, when one is bound) ``kind`` to ``value`` once the code sent there
    (``bind_phone`` SMS, ``bind_email`` email) matches; nothing changes otherwise. Replacing a
    bound phone or email also takes the account's password (throttled as logins are): a
    stolen session alone must not move the account's recovery and SMS-login contact."""
    from gonglun.accounts.bindings import change_binding, verify_contact
    from gonglun.accounts.contacts import contact, mask
    from gonglun.accounts.models import User
    from gonglun.accounts.throttle import confirm_password

    normal = contact(_kind(kind), value)
    if normal is None:
        raise GonglunError("binding.invalid_value", MSG_INVALID[kind], data={"field": kind})
    if _bound(rt, user_id, kind):
        if password is None:
            raise GonglunError("binding.password_required", "更换绑定需验证登录密码", status=403,
                               data={"field": "password"})
        confirm_password(rt, user_id, password, ip, error="binding.bad_password")
    verify_contact(rt, kind, normal, code)
    with rt.db.write() as session:
        user = session.get(User, user_id)
        assert user is not None
        change = "rebind" if getattr(user, kind) else "bind"
        change_binding(rt, session, user_id, kind, change, normal)
    return {"kind": kind, kind: mask(normal), "change": change}


def unbind(rt: Any, user_id: int, kind: str, password: Any, ip: str = "") -> dict[str, Any]:
    from gonglun.accounts.bindings import change_binding
    from gonglun.accounts.throttle import confirm_password

    confirm_password(rt, user_id, password, ip, error="binding.bad_password")
    with rt.db.write() as session:
        change_binding(rt, session, user_id, kind, "unbind")
    return {"kind": kind, "change": "unbind"}


class Binding:
    """``POST /v1/me/bindings/{kind}`` ``{"phone" | "email", "code", "password"?}``: bind or
    rebind the phone (``bind_phone`` SMS code) or the email (``bind_email`` email code) with
    the code sent to the new one (``POST /v1/codes``); a rebind also takes the password."""

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_post(self, req: Any, resp: Any, kind: str) -> None:
        body = await json_body(req)
        ok(resp, await run_sync(bind, self.rt, req.context.user.id, _kind(kind),
                                body.get(kind), body.get("code"), body.get("password"),
                                client_ip(req)))


class Unbind:
    """``POST /v1/me/bindings/{kind}/unbind`` ``{"password"}``: remove the phone or email."""

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_post(self, req: Any, resp: Any, kind: str) -> None:
        body = await json_body(req)
        ok(resp, await run_sync(unbind, self.rt, req.context.user.id, _kind(kind),
                                body.get("password"), client_ip(req)))


def binding_routes(rt: Any) -> list[Any]:
    from gonglun.api.routes import Route

    return [
        Route("/v1/me/bindings/{kind}", Binding(rt), tags=("auth",),
              schemas={"post": BIND_SCHEMA}, params={"kind": KIND_SCHEMA}),
        Route("/v1/me/bindings/{kind}/unbind", Unbind(rt), tags=("auth",),
              schemas={"post": UNBIND_SCHEMA}, params={"kind": KIND_SCHEMA}),
    ]
