"""REST for the current user's phone and email bindings (CORE-19, CORE-20, FACE-15)."""

from __future__ import annotations

from typing import Any

from gonglun.api.util import json_body, ok, run_sync
from gonglun.errors import GonglunError

KINDS = ("phone", "email")
BIND_SCHEMA = {
    "type": "object",
    "required": ["code"],
    "properties": {"phone": {"type": "string", "maxLength": 16},
                   "email": {"type": "string", "maxLength": 191},
                   "code": {"type": "string", "maxLength": 8}},
}
UNBIND_SCHEMA = {"type": "object", "required": ["password"],
                 "properties": {"password": {"type": "string", "maxLength": 128}}}
KIND_SCHEMA = {"type": "string", "enum": list(KINDS)}
MSG_INVALID = {"phone": "请输入正确的手机号", "email": "请输入正确的邮箱地址"}


def _kind(kind: Any) -> str:
    if kind not in KINDS:
        raise GonglunError("binding.invalid_kind", "绑定类型须为 phone 或 email")
    return str(kind)


def bind(rt: Any, user_id: int, kind: str, value: Any, code: Any) -> dict[str, Any]:
    """Bind (or rebind, when one is bound) ``kind`` to ``value`` once the code sent there
    (``bind_phone`` SMS, ``bind_email`` email) matches; nothing changes otherwise."""
    from gonglun.accounts.bindings import change_binding, verify_contact
    from gonglun.accounts.contacts import contact, mask
    from gonglun.accounts.models import User

    normal = contact(_kind(kind), value)
    if normal is None:
        raise GonglunError("binding.invalid_value", MSG_INVALID[kind], data={"field": kind})
    verify_contact(rt, kind, normal, code)
    with rt.db.write() as session:
        user = session.get(User, user_id)
        assert user is not None
        change = "rebind" if getattr(user, kind) else "bind"
        change_binding(rt, session, user_id, kind, change, normal)
    return {"kind": kind, kind: mask(normal), "change": change}


def unbind(rt: Any, user_id: int, kind: str, password: Any) -> dict[str, Any]:
    from gonglun.accounts import check_password
    from gonglun.accounts.bindings import change_binding
    from gonglun.accounts.models import User

    with rt.db.write() as session:
        user = session.get(User, user_id)
        assert user is not None
        if not check_password(user.password_hash, password):
            raise GonglunError("binding.bad_password", "密码错误", status=403)
        change_binding(rt, session, user_id, kind, "unbind")
    return {"kind": kind, "change": "unbind"}


class Binding:
    """``POST /v1/me/bindings/{kind}`` ``{"phone" | "email", "code"}``: bind or rebind the
    phone (``bind_phone`` SMS code) or the email (``bind_email`` email code) with the code
    sent to the new one (``POST /v1/codes``)."""

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_post(self, req: Any, resp: Any, kind: str) -> None:
        body = await json_body(req)
        ok(resp, await run_sync(bind, self.rt, req.context.user.id, _kind(kind),
                                body.get(kind), body.get("code")))


class Unbind:
    """``POST /v1/me/bindings/{kind}/unbind`` ``{"password"}``: remove the phone or email."""

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_post(self, req: Any, resp: Any, kind: str) -> None:
        body = await json_body(req)
        ok(resp, await run_sync(unbind, self.rt, req.context.user.id, _kind(kind),
                                body.get("password")))


def binding_routes(rt: Any) -> list[Any]:
    from gonglun.api.routes import Route

    return [
        Route("/v1/me/bindings/{kind}", Binding(rt), tags=("auth",),
              schemas={"post": BIND_SCHEMA}, params={"kind": KIND_SCHEMA}),
        Route("/v1/me/bindings/{kind}/unbind", Unbind(rt), tags=("auth",),
              schemas={"post": UNBIND_SCHEMA}, params={"kind": KIND_SCHEMA}),
    ]
