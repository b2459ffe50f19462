"""Administering users (WP-CLI's ``wp user``): list, show, ban, unban, role, password, token
revocation, from the CLI and the API, every action written to the admin audit log (who, what,
when, from where) in the same transaction as the action itself."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Text, func, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from gonglun.accounts import service
from gonglun.accounts.models import ID, ROLES, ApiToken, User
from gonglun.db import Base, UTCDateTime, utcnow
from gonglun.errors import GonglunError

#: Actions written to the log.
ACTIONS = ("ban", "unban", "role", "password", "tokens_revoke", "delete", "ledger_adjust")


class AdminAction(Base):
    """One administrative action; append-only."""

    __tablename__ = "admin_actions"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    #: The admin's user id (the API), None for the CLI (``actor`` says who ran it).
    actor_id: Mapped[int | None] = mapped_column(ID, nullable=True, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    target_user_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer,
                                                                                 "sqlite"),
                                                       nullable=True, index=True)
    detail: Mapped[str] = mapped_column(Text, default="{}")
    #: The admin's address (API) or the machine and OS user (CLI).
    source: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


def record(session: Session, *, actor_id: int | None, actor: str, action: str,
           target: int | None, source: str, **detail: Any) -> None:
    session.add(AdminAction(actor_id=actor_id, actor=actor[:128], action=action,
                            target_user_id=target, source=source[:128],
                            detail=json.dumps(detail, ensure_ascii=False, default=str),
                            created_at=utcnow()))


def user_view(session: Session, user: User, balance: int) -> dict[str, Any]:
    """What an admin sees of a user (never the password hash), with live token count and
    wallet ``balance`` in fen (negative: the user owes the platform, BAL-05), which the caller
    reads from the ledger (``gonglun.ledger.reads.balance``: the ledger sits above accounts)."""
    tokens = session.scalar(select(func.count()).select_from(ApiToken).where(
        ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None),
        ApiToken.expires_at > utcnow()))
    return {**service.user_dict(user), "live_tokens": int(tokens or 0),
            "balance": balance}


def list_users(session: Session, *, query: str | None = None, role: str | None = None,
               status: str | None = None, limit: int = 50, before: int | None = None
               ) -> dict[str, Any]:
    stmt = select(User).order_by(User.id.desc()).limit(limit)
    if query:
        like = f"%{query.lower()}%"
        stmt = stmt.where(or_(User.login.like(like), User.nickname.like(like),
                              User.phone.like(like), User.email.like(like)))
    if role:
        stmt = stmt.where(User.role == role)
    if status:
        stmt = stmt.where(User.status == status)
    if before:
        stmt = stmt.where(User.id < before)
    rows = [service.user_dict(u) for u in session.scalars(stmt)]
    return {"users": rows, "next_before": rows[-1]["id"] if len(rows) == limit else None}


def find(session: Session, who: str | int) -> User:
    """A user by id or login."""
    if isinstance(who, int) or (isinstance(who, str) and who.isascii() and who.isdigit()):
        if not 0 < int(who) <= 2**63 - 1:  # not an id any database holds
            raise GonglunError("user.not_found", "用户不存在", status=404)
        return service.get_user(session, int(who))
    user = service.user_by_login(session, str(who))
    if user is None:
        raise GonglunError("user.not_found", "用户不存在", status=404)
    return user


def ban(session: Session, user: User, *, until: dt.datetime | None, reason: str,
        actor: tuple[int | None, str, str]) -> None:
    """Ban (``until`` None: permanently) and sign every device out."""
    service.ban(session, user.id, until, reason)
    service.revoke_all_tokens(session, user.id)
    record(session, actor_id=actor[0], actor=actor[1], source=actor[2], action="ban",
           target=user.id, until=until.isoformat() if until else None, reason=reason)


def unban(session: Session, user: User, *, actor: tuple[int | None, str, str]) -> bool:
    done = service.unban(session, user.id)
    record(session, actor_id=actor[0], actor=actor[1], source=actor[2], action="unban",
           target=user.id, changed=done)
    return done


def set_role(session: Session, user: User, role: str, *, actor: tuple[int | None, str, str]
             ) -> None:
    from sqlalchemy import update

    if role not in ROLES:
        raise GonglunError("user.invalid_role", f"角色无效,可选:{', '.join(ROLES)}")
    before = user.role
    session.execute(update(User).where(User.id == user.id).values(role=role,
                                                                  updated_at=utcnow()))
    record(session, actor_id=actor[0], actor=actor[1], source=actor[2], action="role",
           target=user.id, before=before, after=role)


def set_password(session: Session, user: User, password: str, *,
                 actor: tuple[int | None, str, str]) -> int:
    """A new password; every token is revoked (ACC-08: other devices signed out)."""
    service.set_password(session, user.id, password)
    revoked = service.revoke_all_tokens(session, user.id)
    record(session, actor_id=actor[0], actor=actor[1], source=actor[2], action="password",
           target=user.id, tokens_revoked=revoked)
    return revoked


def revoke_tokens(session: Session, user: User, *, actor: tuple[int | None, str, str]) -> int:
    revoked = service.revoke_all_tokens(session, user.id)
    record(session, actor_id=actor[0], actor=actor[1], source=actor[2], action="tokens_revoke",
           target=user.id, tokens_revoked=revoked)
    return revoked


def audit_log(session: Session, *, target: int | None = None, limit: int = 100,
              before: int | None = None) -> dict[str, Any]:
    stmt = select(AdminAction).order_by(AdminAction.id.desc()).limit(limit)
    if target:
        stmt = stmt.where(AdminAction.target_user_id == target)
    if before:
        stmt = stmt.where(AdminAction.id < before)
    rows = [{"id": a.id, "actor_id": a.actor_id, "actor": a.actor, "action": a.action,
             "target_user_id": a.target_user_id, "detail": json.loads(a.detail or "{}"),
             "source": a.source, "created_at": a.created_at.isoformat()}
            for a in session.scalars(stmt)]
    return {"actions": rows, "next_before": rows[-1]["id"] if len(rows) == limit else None}


#: The longest ban with an end: longer is "forever" (give no ``until``).
MAX_BAN = dt.timedelta(days=100 * 366)
_BAN_UNITS = {"d": 86400, "h": 3600, "m": 60}


def parse_until(value: Any, *, now: dt.datetime | None = None) -> dt.datetime | None:
    """``None``/empty: permanent; ``7d``/``12h``/``30m``: from now; or an ISO time with zone.

    The end is in UTC, in the future and at most ``MAX_BAN`` away: huge counts, out-of-range
    years and zones that push a time past year 9999 are a 400 ``user.invalid_ban``, never an
    overflow later.
    """
    if value in (None, "", "forever", "permanent"):
        return None
    text = str(value).strip()
    now = now or utcnow()
    limit = now + MAX_BAN
    if text[:-1].isascii() and text[:-1].isdigit() and text[-1:] in _BAN_UNITS:
        if len(text) > 12 or int(text[:-1]) * _BAN_UNITS[text[-1]] > MAX_BAN.total_seconds():
            raise _bad_ban("封禁期限过长,最长 100 年;永久封禁请不填 until", limit)
        if not int(text[:-1]):
            raise _bad_ban("封禁期限须大于 0", limit)
        return now + dt.timedelta(seconds=int(text[:-1]) * _BAN_UNITS[text[-1]])
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _bad_ban("封禁期限格式: 7d / 12h / 30m 或带时区的时间", limit) from None
    if when.tzinfo is None:
        raise _bad_ban("封禁截止时间须为带时区的时间", limit)
    try:
        when = when.astimezone(dt.UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is in year 10000 in UTC
        raise _bad_ban("封禁截止时间超出范围", limit) from None
    if when <= now:
        raise _bad_ban("封禁截止时间须晚于现在", limit)
    if when > limit:
        raise _bad_ban("封禁期限过长,最长 100 年;永久封禁请不填 until", limit)
    return when


def _bad_ban(msg: str, limit: dt.datetime) -> GonglunError:
    return GonglunError("user.invalid_ban", msg, data={"latest": limit.isoformat()})
