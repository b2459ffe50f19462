"""REST for the current user's phone and email bindings (CORE-19, CORE-20, FACE-15)."""

from __future__ import annotations

import re
from typing import Any

from gonglun.api.util import json_body, ok, run_sync
from gonglun.errors import GonglunError

_MAINLAND = re.compile(r"^(?:\+?86)?(1[3-9]\d{9})$")
BIND_SCHEMA = {
    "type": "object",
    "required": ["phone", "code"],
    "properties": {"phone": {"type": "string", "maxLength": 16},
                   "code": {"type": "string", "maxLength": 8}},
}
UNBIND_SCHEMA = {"type": "object", "required": ["password"],
                 "properties": {"password": {"type": "string", "maxLength": 128}}}
KIND_SCHEMA = {"type": "string", "enum": ["phone", "email"]}


def bind_phone(rt: Any, user_id: int, phone: Any, code: Any) -> dict[str, Any]:
    from gonglun.accounts.bindings import change_binding, verify_contact
    from gonglun.accounts.models import User

    found = _MAINLAND.match(phone.strip()) if isinstance(phone, str) else None
    if found is None:
        raise GonglunError("binding.invalid_value", "请输入正确的手机号")
    number = found.group(1)
    verify_contact(rt, "phone", number, code)
    with rt.db.write() as session:
        user = session.get(User, user_id)
        assert user is not None
        change = "rebind" if user.phone else "bind"
        change_binding(rt, session, user_id, "phone", change, number)
    return {"phone": number[:3] + "****" + number[-4:], "change": change}


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


class PhoneBinding:
    """``POST /v1/me/bindings/phone`` ``{"phone", "code"}``: bind or rebind the phone with
    the ``bind_phone`` SMS code sent to the new number."""

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_post(self, req: Any, resp: Any) -> None:
        body = await json_body(req)
        ok(resp, await run_sync(bind_phone, self.rt, req.context.user.id, body.get("phone"),
                                body.get("code")))


class Unbind:
    """``POST /v1/me/bindings/{kind}/unbind`` ``{"password"}``: remove the phone or email."""

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_post(self, req: Any, resp: Any, kind: str) -> None:
        if kind not in ("phone", "email"):
            raise GonglunError("binding.invalid_kind", "绑定类型须为 phone 或 email")
        body = await json_body(req)
        ok(resp, await run_sync(unbind, self.rt, req.context.user.id, kind,
                                body.get("password")))


def binding_routes(rt: Any) -> list[Any]:
    from gonglun.api.routes import Route

    return [
        Route("/v1/me/bindings/phone", PhoneBinding(rt), tags=("auth",),
              schemas={"post": BIND_SCHEMA}),
        Route("/v1/me/bindings/{kind}/unbind", Unbind(rt), tags=("auth",),
              schemas={"post": UNBIND_SCHEMA}, params={"kind": KIND_SCHEMA}),
    ]
