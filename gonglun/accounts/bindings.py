"""Phone and email bindings (CORE-19, CORE-20, FACE-15): every change of ``users.phone`` or
``users.email`` goes through ``change_binding``, which makes it a conditional update and defers
``binding_changed``, so profile caches and listeners hear of every change (CACHE-07).

``bind`` needs the field empty, ``rebind`` needs it set, ``unbind`` clears it (an email unbind
removes the address from the user record). A value another account holds is refused
(``binding.taken``); the unique columns settle any race. Verifying the new contact (an SMS or
email code) is the caller's job: see ``verify_contact``.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gonglun.accounts.codes import code_accepted
from gonglun.accounts.models import User
from gonglun.db import utcnow
from gonglun.errors import GonglunError

KINDS = ("phone", "email")
CHANGES = ("bind", "rebind", "unbind")
MSG_STATE = {"bind": "已绑定, 请使用换绑", "rebind": "尚未绑定, 请先绑定", "unbind": "尚未绑定"}


def _taken(kind: str) -> GonglunError:
    if kind == "email":
        return GonglunError("binding.taken", "该邮箱已绑定其它账户", status=409,
                            data={"field": kind})
    return GonglunError("binding.taken", "该手机号已绑定其它账户", status=409, data={"field": kind})


def _column(kind: str) -> Any:
    if kind not in KINDS:
        raise GonglunError("binding.invalid_kind", "绑定类型须为 phone 或 email")
    return User.phone if kind == "phone" else User.email


def change_binding(rt: Any, session: Session, user_id: int, kind: str, change: str,
                   value: str | None = None) -> None:
    """Bind, rebind or unbind ``kind`` of ``user_id`` inside the caller's transaction."""
    column = _column(kind)
    if change not in CHANGES:
        raise GonglunError("binding.invalid_change", "操作须为 bind、rebind 或 unbind")
    if (change == "unbind") != (value is None):
        raise GonglunError("binding.invalid_value", "绑定值无效")
    if value is not None:
        holder = session.scalar(select(User.id).where(column == value))
        if holder is not None and holder != user_id:
            raise _taken(kind)
    stmt = update(User).where(User.id == user_id)
    stmt = stmt.where(column.is_(None)) if change == "bind" else stmt.where(column.isnot(None))
    try:
        with session.begin_nested():
            done = session.execute(stmt.values({column.key: value, "updated_at": utcnow()}),
                                   execution_options={"synchronize_session": False}).rowcount
    except IntegrityError:
        raise _taken(kind) from None
    if not done:
        raise GonglunError("binding.state", MSG_STATE[change], status=409)
    rt.hooks.defer(session, "binding_changed", key=f"binding:{user_id}:{secrets.token_hex(8)}",
                   user_id=user_id, kind=kind, change=change)


def verify_contact(rt: Any, kind: str, value: str, code: Any) -> None:
    """The code sent to the new phone (``bind_phone``) or email (``bind_email``) must match,
    as the plugin owning the codes decides (``sms_code_check``); refused otherwise."""
    scene = "bind_phone" if kind == "phone" else "bind_email"
    if not code_accepted(rt, value, scene, code):
        raise GonglunError("binding.bad_code", "验证码错误或已过期")
