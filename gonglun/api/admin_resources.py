"""Administering users over the API (admins; roles and the audit log: super admins).

Every change is written to the admin audit log with the admin and their address. An admin acts
only on users of a lower role; a super admin on anyone but themselves for role changes.
"""

from __future__ import annotations

from typing import Any

from gonglun.api.middleware import ROLE_RANK
from gonglun.api.util import (
    client_ip,
    get_str,
    json_body,
    ok,
    path_id,
    query_int,
    query_str,
    run_sync,
)
from gonglun.errors import GonglunError

USER_ID = {"user_id": {"type": "string", "pattern": "^[0-9]{1,18}$"}}
BAN_SCHEMA = {"type": "object", "required": ["reason"], "properties": {
    "reason": {"type": "string", "minLength": 1, "maxLength": 255},
    "until": {"type": "string", "maxLength": 40,
              "description": "7d, 12h, 30m or an ISO time with zone, in the future and at most "
                             "100 years away (else 400 user.invalid_ban); absent: forever"}}}
ROLE_SCHEMA = {"type": "object", "required": ["role"], "properties": {
    "role": {"type": "string", "enum": ["user", "admin", "superadmin"]}}}


def _actor(req: Any) -> tuple[int, str, str]:
    user = req.context.user
    return user.id, f"{user.role}:{user.login}", f"ip:{client_ip(req)}"


def _target(session: Any, req: Any, raw: str) -> Any:
    from gonglun.accounts.admin import find

    user = find(session, path_id(raw, error="user.not_found", msg="用户不存在"))
    me = req.context.user
    if me.role != "superadmin" and ROLE_RANK.get(user.role, 0) >= ROLE_RANK.get(me.role, 0):
        raise GonglunError("auth.forbidden", "非法请求", status=403)
    return user


class AdminUsers:
    auth = "admin"

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_get(self, req: Any, resp: Any) -> None:
        """Users, newest first: ``q`` (login, nickname, phone, email), ``role``, ``status``."""
        from gonglun.accounts.admin import list_users

        q = query_str(req, "q", max_len=64)
        role = query_str(req, "role", choices=("user", "admin", "superadmin"))
        status = query_str(req, "status", choices=("active", "banned", "deleted"))
        limit = query_int(req, "limit", 50, minimum=1, maximum=500)
        before = query_int(req, "before", 0) or None

        def load() -> dict[str, Any]:
            with self.rt.db.read() as session:
                return list_users(session, query=q, role=role, status=status, limit=limit,
                                  before=before)

        ok(resp, await run_sync(load))


class AdminUser:
    auth = "admin"

    def __init__(self, rt: Any):
        self.rt = rt

    def _act(self, req: Any, raw: str, fn: Any) -> dict[str, Any]:
        from gonglun.accounts.admin import user_view
        from gonglun.ledger.reads import balance

        with self.rt.db.write() as session:
            user = _target(session, req, raw)
            result = fn(session, user)
            session.flush()
            session.refresh(user)
            return {"user": user_view(session, user, balance(session, user.id)),
                    "result": result}

    async def on_get(self, req: Any, resp: Any, user_id: str) -> None:
        """One user with their live tokens and the admin actions about them."""
        from gonglun.accounts.admin import audit_log, find, user_view
        from gonglun.ledger.reads import balance

        uid = path_id(user_id, error="user.not_found", msg="用户不存在")

        def load() -> dict[str, Any]:
            with self.rt.db.read() as session:
                user = find(session, uid)
                return {"user": user_view(session, user, balance(session, user.id)),
                        "actions": audit_log(session, target=user.id, limit=20)["actions"]}

        ok(resp, await run_sync(load))

    async def on_post_ban(self, req: Any, resp: Any, user_id: str) -> None:
        """Ban (``until``: 7d, 12h, ISO time; absent: forever) and sign every device out."""
        from gonglun.accounts.admin import ban, parse_until

        body = await json_body(req)
        reason = get_str(body, "reason", max_len=255)
        until = parse_until(get_str(body, "until", required=False, max_len=40))
        ok(resp, await run_sync(self._act, req, user_id, lambda s, u: ban(
            s, u, until=until, reason=reason, actor=_actor(req))))

    async def on_post_unban(self, req: Any, resp: Any, user_id: str) -> None:
        """Lift a ban."""
        from gonglun.accounts.admin import unban

        ok(resp, await run_sync(self._act, req, user_id,
                                lambda s, u: unban(s, u, actor=_actor(req))))

    async def on_post_revoke(self, req: Any, resp: Any, user_id: str) -> None:
        """Revoke every token of the user (signs every device out)."""
        from gonglun.accounts.admin import revoke_tokens

        ok(resp, await run_sync(self._act, req, user_id,
                                lambda s, u: revoke_tokens(s, u, actor=_actor(req))))


class AdminUserRole:
    auth = "superadmin"

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_post(self, req: Any, resp: Any, user_id: str) -> None:
        """Set the role (super admins only; not their own)."""
        from gonglun.accounts.admin import set_role

        body = await json_body(req)
        role = get_str(body, "role", choices=("user", "admin", "superadmin"))
        uid = path_id(user_id, error="user.not_found", msg="用户不存在")
        if uid == req.context.user.id:
            raise GonglunError("user.own_role", "不能修改自己的角色", status=403)
        ok(resp, await run_sync(AdminUser(self.rt)._act, req, user_id,
                                lambda s, u: set_role(s, u, role, actor=_actor(req))))


class AdminActions:
    auth = "superadmin"

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_get(self, req: Any, resp: Any) -> None:
        """The admin audit log, newest first (``user_id`` filters by the user acted on)."""
        from gonglun.accounts.admin import audit_log

        target = query_int(req, "user_id", 0) or None
        limit = query_int(req, "limit", 100, minimum=1, maximum=500)
        before = query_int(req, "before", 0) or None

        def load() -> dict[str, Any]:
            with self.rt.db.read() as session:
                return audit_log(session, target=target, limit=limit, before=before)

        ok(resp, await run_sync(load))
