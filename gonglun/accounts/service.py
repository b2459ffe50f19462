"""Users, authentication, API tokens, bans and user meta.

Every function works inside the caller's transaction (``rt.db.write()``) and never commits, so
an account change and whatever caused it commit or roll back together. State changes are
conditional updates: a ban lifted by its expiry, a password re-hash, a token revocation each
check the state they expect, so two racing requests cannot undo each other.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from gonglun.accounts import passwords
from gonglun.accounts.models import ROLES, ApiToken, User, UserMeta, nickname_key
from gonglun.accounts.signout import mark, usable
from gonglun.db import insert_ignore, utcnow
from gonglun.errors import GonglunError, conflict, not_found

SHANGHAI = ZoneInfo("Asia/Shanghai")
LOGIN_RE = re.compile(r"^[\w.@+-]{2,64}$")
META_KEY_MAX = 64
MAX_TOKEN_DAYS = 3650

INVALID_CREDENTIALS = "账号或密码错误"
NICKNAME_TAKEN = "该昵称已被使用"


def _hooks(rt_or_hooks: Any) -> Any:
    return getattr(rt_or_hooks, "hooks", rt_or_hooks)


def _require_id(user_id: Any) -> int:
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id <= 0:
        raise GonglunError("user.invalid_id", "用户ID无效")
    return user_id


# -- users ---------------------------------------------------------------------------------


def normalize_login(login: Any) -> str:
    """The stored form of a login; refuses non-strings (ACC-09) and odd characters."""
    if not isinstance(login, str):
        raise GonglunError("user.invalid_login", "登录名格式错误")
    value = login.strip().lower()
    if not LOGIN_RE.match(value):
        raise GonglunError(
            "user.invalid_login", "登录名须为2-64位字母、数字、下划线或 . @ + - 字符"
        )
    return value


def _check_password(password: Any) -> str:
    if not isinstance(password, str):
        raise GonglunError("user.invalid_password", "密码格式错误")
    if len(password) < passwords.MIN_LENGTH:
        raise GonglunError("user.password_too_short", f"密码长度不能少于{passwords.MIN_LENGTH}位")
    if len(password) > passwords.MAX_LENGTH:
        raise GonglunError("user.password_too_long", f"密码长度不能超过{passwords.MAX_LENGTH}位")
    return password


def create_user(
    session: Session,
    login: str,
    password: str,
    *,
    role: str = "user",
    nickname: str | None = None,
    rt: Any = None,
) -> User:
    """Create an active account. With ``rt`` (or its hooks), ``user_registered`` is deferred.

    The unique login and nickname key are the arbiters: two racing registrations of one login
    (or one nickname) get one account and one ``user.login_taken`` (``account.nickname_taken``),
    whatever the isolation level.
    """
    value = normalize_login(login)
    _check_password(password)
    if role not in ROLES:
        raise GonglunError("user.invalid_role", f"角色无效,可选:{', '.join(ROLES)}")
    if nickname is not None and (not isinstance(nickname, str) or not 0 < len(nickname) <= 64):
        raise GonglunError("user.invalid_nickname", "昵称须为1-64个字符")
    now = utcnow()
    inserted = insert_ignore(
        session,
        User.__table__,
        {
            "login": value,
            "password_hash": passwords.hash_password(password),
            "nickname": nickname,
            "nickname_key": None if nickname is None else nickname_key(nickname),
            "role": role,
            "status": "active",
            "created_at": now,
            "updated_at": now,
        },
    )
    if not inserted:  # the login or the nickname collided: the login is the one to look up
        if nickname is not None and session.scalar(
                select(User.id).where(User.login == value)) is None:
            raise conflict("account.nickname_taken", NICKNAME_TAKEN)
        raise conflict("user.login_taken", "该登录名已被注册")
    user = session.scalars(select(User).where(User.login == value)).one()
    if rt is not None:
        _hooks(rt).defer(
            session, "user_registered", key=f"user_registered:{user.id}", user_id=user.id
        )
    return user


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, _require_id(user_id))
    if user is None:
        raise not_found("user.not_found", "用户不存在")
    return user


def user_by_login(session: Session, login: str) -> User | None:
    try:
        value = normalize_login(login)
    except GonglunError:
        return None
    return session.scalars(select(User).where(User.login == value)).one_or_none()


def _fmt_time(when: dt.datetime) -> str:
    return when.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def _lift_expired_ban(session: Session, user: User, now: dt.datetime) -> bool:
    """Turn an expired ban back into ``active``; True when the user may act now."""
    if user.status == "active":
        return True
    if user.status != "banned" or user.banned_until is None or user.banned_until > now:
        return False
    session.execute(
        update(User)
        .where(User.id == user.id, User.status == "banned", User.banned_until <= now)
        .values(status="active", banned_until=None, ban_reason=None, updated_at=now)
    )
    return True


def _refuse_inactive(user: User) -> GonglunError:
    if user.status == "deleted":
        return GonglunError("auth.account_deleted", "账号已注销,无法登录", status=403)
    reason = user.ban_reason or "未说明"
    if user.banned_until is None:
        msg = f"账号已被永久封禁,原因:{reason}"
    else:
        msg = f"账号已被封禁,解封时间:{_fmt_time(user.banned_until)},原因:{reason}"
    until = user.banned_until.isoformat() if user.banned_until else None
    return GonglunError(
        "auth.banned", msg, status=403, data={"banned_until": until, "reason": user.ban_reason}
    )


def authenticate(session: Session, login: str, password: str) -> User:
    """The user for a login and password, or ``auth.invalid_credentials``.

    Unknown login and wrong password are indistinguishable (same error, same time). Banned and
    deleted accounts are refused only after the password matched, so a ban is never revealed to
    someone who does not own the account. (The API splits this in three so the Argon2 work runs
    outside any transaction: ``credentials``, ``check_password``, ``admit``.)
    """
    found = credentials(session, login)
    if not check_password(found[1] if found else None, password):
        raise GonglunError("auth.invalid_credentials", INVALID_CREDENTIALS, status=401)
    assert found is not None
    return admit(session, found[0], password)


def credentials(session: Session, login: Any) -> tuple[int, str] | None:
    """``(user_id, password_hash)`` of a login, or None (no such login)."""
    user = user_by_login(session, login) if isinstance(login, str) else None
    return (user.id, user.password_hash) if user is not None else None


def check_password(password_hash: str | None, password: Any) -> bool:
    """CPU-heavy (Argon2): run it outside transactions, on the CPU pool. A missing hash costs
    the same time as a real check."""
    candidate = password if isinstance(password, str) else ""
    if password_hash is None:
        passwords.burn_time(candidate)
        return False
    return bool(candidate) and passwords.verify_password(password_hash, candidate)


def admit(session: Session, user_id: int, password: str) -> User:
    """After the password matched: refuse banned and deleted accounts, upgrade an old hash."""
    user = get_user(session, user_id)
    if not _lift_expired_ban(session, user, utcnow()):
        raise _refuse_inactive(user)
    if passwords.needs_rehash(user.password_hash):
        old = user.password_hash
        session.execute(
            update(User)
            .where(User.id == user.id, User.password_hash == old)
            .values(password_hash=passwords.hash_password(password), updated_at=utcnow())
        )
    return user


def set_password(session: Session, user_id: int, password: str) -> None:
    """Replace the password (recovery, reset); the caller decides about open tokens (ACC-08)."""
    _check_password(password)
    done = session.execute(
        update(User)
        .where(User.id == _require_id(user_id), User.status != "deleted")
        .values(password_hash=passwords.hash_password(password), updated_at=utcnow())
    ).rowcount
    if not done:
        get_user(session, user_id)
        raise GonglunError("user.deleted", "账号已注销", status=403)


def ban(session: Session, user_id: int, until: dt.datetime | None, reason: str) -> None:
    """Ban until ``until`` (None: permanently). Tokens stop working while the ban lasts."""
    if until is not None and (not isinstance(until, dt.datetime) or until.tzinfo is None):
        raise GonglunError("user.invalid_ban", "封禁截止时间须为带时区的时间")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 255:
        raise GonglunError("user.invalid_ban", "封禁原因须为1-255个字符")
    done = session.execute(
        update(User)
        .where(User.id == _require_id(user_id), User.status != "deleted")
        .values(status="banned", banned_until=until, ban_reason=reason.strip(), updated_at=utcnow())
    ).rowcount
    mark(session, user_id)
    if not done:
        get_user(session, user_id)
        raise GonglunError("user.deleted", "账号已注销", status=403)


def unban(session: Session, user_id: int) -> bool:
    """Lift a ban; False when the user was not banned."""
    return bool(
        session.execute(
            update(User)
            .where(User.id == _require_id(user_id), User.status == "banned")
            .values(status="active", banned_until=None, ban_reason=None, updated_at=utcnow())
        ).rowcount
    )


def delete_user(session: Session, user_id: int) -> bool:
    """Mark the account deleted (rows are kept: the ledger refers to them) and revoke tokens."""
    now = utcnow()
    done = session.execute(
        update(User)
        .where(User.id == _require_id(user_id), User.status != "deleted")
        .values(status="deleted", updated_at=now)
    ).rowcount
    if done:
        revoke_all_tokens(session, user_id)
    return bool(done)


def user_dict(user: User) -> dict[str, Any]:
    """The fields a client may see about its own account (never the password hash)."""
    return {
        "id": user.id,
        "login": user.login,
        "nickname": user.nickname,
        "role": user.role,
        "status": user.status,
        "banned_until": user.banned_until.isoformat() if user.banned_until else None,
        "ban_reason": user.ban_reason,
        "phone": user.phone,
        "email": user.email,
        "created_at": user.created_at.isoformat() if user.created_at else None,
    }


# -- API tokens ----------------------------------------------------------------------------


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(
    session: Session, user_id: int, ttl_days: int = 30, label: str | None = None, *,
    platform: str | None = None, user_agent: str | None = None, ip: str | None = None,
) -> str:
    """A new bearer token for ``user_id``; the plain token is returned once and never stored."""
    if isinstance(ttl_days, bool) or not isinstance(ttl_days, int | float):
        raise GonglunError("token.invalid_ttl", "令牌有效期无效")
    if not 0 < ttl_days <= MAX_TOKEN_DAYS:
        raise GonglunError("token.invalid_ttl", f"令牌有效期须为1-{MAX_TOKEN_DAYS}天")
    if label is not None and (not isinstance(label, str) or len(label) > 64):
        raise GonglunError("token.invalid_label", "令牌标签不能超过64个字符")
    get_user(session, user_id)
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        ApiToken(
            user_id=user_id,
            token_hash=token_hash(token),
            label=label,
            created_at=now,
            expires_at=now + dt.timedelta(days=ttl_days),
            platform=(platform or None) and platform[:16],
            user_agent=(user_agent or None) and user_agent[:255],
            ip=(ip or None) and ip[:64],
            last_seen_at=now,
        )
    )
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    """The user a live token belongs to: not expired, not revoked, user active (or ban over)."""
    if not isinstance(token, str) or not token or len(token) > 512:
        return None
    now = utcnow()
    user = session.scalars(
        select(User)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(
            ApiToken.token_hash == token_hash(token),
            ApiToken.revoked_at.is_(None),
            ApiToken.expires_at > now,
        )
    ).one_or_none()
    return user if usable(user) else None


def revoke_token(session: Session, token: str) -> bool:
    """Revoke one token (logout); False when it was unknown or already revoked."""
    if not isinstance(token, str) or not token:
        return False
    owner = session.scalar(select(ApiToken.user_id).where(
        ApiToken.token_hash == token_hash(token)))
    if owner is not None:
        mark(session, owner)  # its open websockets close after commit
    return bool(
        session.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == token_hash(token), ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        ).rowcount
    )


def revoke_all_tokens(session: Session, user_id: int, *, keep: str | None = None) -> int:
    """Sign every other device out (ACC-08 ``other_accounts``); ``keep`` survives. Their
    open websockets close once the transaction commits (``signout``)."""
    mark(session, _require_id(user_id))
    stmt = update(ApiToken).where(
        ApiToken.user_id == _require_id(user_id), ApiToken.revoked_at.is_(None)
    )
    if keep:
        stmt = stmt.where(ApiToken.token_hash != token_hash(keep))
    return int(session.execute(stmt.values(revoked_at=utcnow())).rowcount)


# -- user meta -----------------------------------------------------------------------------


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not 0 < len(key) <= META_KEY_MAX:
        raise GonglunError("user.invalid_meta_key", "用户属性名须为1-64个字符")
    return key


def get_meta(session: Session, user_id: int, key: str, default: str | None = None) -> str | None:
    value = session.scalars(
        select(UserMeta.value).where(
            UserMeta.user_id == _require_id(user_id), UserMeta.key == _check_key(key)
        )
    ).one_or_none()
    return default if value is None else value


def set_meta(session: Session, user_id: int, key: str, value: str) -> None:
    """Upsert one meta value atomically (last writer wins, no lost row, no duplicate).

    One native upsert statement per dialect rather than insert-then-update: on MariaDB an
    ``INSERT IGNORE`` that hits the duplicate holds a shared lock, and two such writers each
    wanting to update next deadlock; ``ON DUPLICATE KEY UPDATE`` takes the exclusive lock at once.
    """
    if not isinstance(value, str):
        raise TypeError(f"user meta values are strings, not {type(value).__name__}")
    values = {"user_id": _require_id(user_id), "key": _check_key(key), "value": value}
    dialect = session.get_bind().dialect.name
    if dialect == "mysql":
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        stmt: Any = mysql_insert(UserMeta.__table__).values(**values)
        stmt = stmt.on_duplicate_key_update(value=stmt.inserted.value)
    else:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        stmt = dialect_insert(UserMeta.__table__).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["user_id", "key"], set_={"value": stmt.excluded.value}
        )
    session.execute(stmt)


def delete_meta(session: Session, user_id: int, key: str) -> bool:
    return bool(
        session.execute(
            delete(UserMeta)
            .where(UserMeta.user_id == _require_id(user_id), UserMeta.key == _check_key(key))
            .execution_options(synchronize_session=False)
        ).rowcount
    )


def all_meta(session: Session, user_id: int) -> dict[str, str]:
    rows = session.execute(
        select(UserMeta.key, UserMeta.value)
        .where(UserMeta.user_id == _require_id(user_id))
        .order_by(UserMeta.key)
    )
    return {row.key: row.value for row in rows}
