"""Balance postings (BAL-01..09, CORE-14): the only way money enters or leaves a balance.

``post`` runs inside the caller's transaction, so a payment's state change, its refund record
and its posting commit together (DECISIONS.md 14). Per account it serialises on the balance row:
``SELECT ... FOR UPDATE`` on PostgreSQL and MariaDB, the ``BEGIN IMMEDIATE`` write lock on
SQLite, and in every case a version-checked UPDATE, so ``balance_after`` chains exactly however
many threads and processes post at once. The unique idempotency key makes a retried posting a
no-op that returns the original.

Lock order: a transaction that posts to several accounts should post in ascending ``user_id``
order; PostgreSQL and MariaDB break the deadlocks of other orders by failing one transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from gonglun.accounts.models import User
from gonglun.db import insert_ignore, insert_ignore_returning_id, utcnow
from gonglun.errors import GonglunError
from gonglun.ledger.models import Balance, Posting

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")

#: One posting moves at most this many fen (10^13 fen = 100 billion yuan): a typo guard, and far
#: below where a BIGINT sum could overflow.
MAX_DELTA = 10**13
MAX_PAGE = 500

INSUFFICIENT_MSG = "账户余额不足"
#: BAL-05, for the payment plugin's order guard (``\n`` replaces the seeds' ``<br>``, AMB-07).
NEGATIVE_BALANCE_ERROR = "payment.negative_balance"
NEGATIVE_BALANCE_MSG = (
    "订单创建失败:账户余额为负数不允许交易\n请先将账户余额恢复正常,在进行平台交易!"
)

#: Refusals that are the caller's input, not a failed update: not written to the BAL-02 log.
_NOT_LOGGED = frozenset(
    {
        "ledger.invalid_amount",
        "ledger.invalid_argument",
        "ledger.unknown_user",
        "ledger.insufficient_balance",
    }
)
_log_lock = threading.Lock()


@dataclass(frozen=True)
class PostingResult:
    posting: Posting
    #: False when ``key`` had already been posted: nothing changed this time.
    created: bool

    @property
    def balance_after(self) -> int:
        return self.posting.balance_after


def _runtime(rt_or_hooks: Any) -> Any:
    """The Runtime behind either a Runtime or its ``Hooks`` (None for a bare ``Hooks``)."""
    return rt_or_hooks if hasattr(rt_or_hooks, "hooks") else getattr(rt_or_hooks, "rt", None)


def _hooks(rt_or_hooks: Any) -> Any:
    return getattr(rt_or_hooks, "hooks", rt_or_hooks)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(name: str, value: Any, max_len: int, *, required: bool) -> str:
    if _is_int(value) and name == "ref":
        value = str(value)
    if not isinstance(value, str) or len(value) > max_len or (required and not value):
        need = "1" if required else "0"
        raise GonglunError("ledger.invalid_argument", f"{name} 须为{need}-{max_len}个字符的字符串")
    return value


def _validate(user_id: Any, delta: Any, scene: Any, ref: Any, key: Any, remark: Any) -> str:
    if not _is_int(user_id) or user_id <= 0:
        raise GonglunError("ledger.invalid_argument", "用户ID无效")
    if not _is_int(delta):
        raise GonglunError("ledger.invalid_amount", "金额必须是整数(分)")
    if delta == 0:
        raise GonglunError("ledger.invalid_amount", "金额不能为0")
    if abs(delta) > MAX_DELTA:
        raise GonglunError("ledger.invalid_amount", "金额超出单笔上限")
    _text("scene", scene, 64, required=True)
    _text("key", key, 191, required=True)
    _text("remark", remark, 255, required=False)
    return _text("ref", ref, 64, required=False)


def _negative_scenes(rt: Any) -> list[str] | None:
    config = getattr(rt, "config", None)
    if config is None:
        return None
    return list(config.get("ledger.negative_scenes") or [])


def post(
    rt_or_hooks: Any,
    session: Session,
    *,
    user_id: int,
    delta: int,
    scene: str,
    ref: str,
    key: str,
    remark: str = "",
    allow_negative: bool = False,
) -> PostingResult:
    """Apply ``delta`` fen to ``user_id``'s balance, exactly once per ``key``.

    A repeated ``key`` returns the original posting with ``created=False`` (and
    ``ledger.key_conflict`` if it was for another user, amount or scene). A debit that would
    leave the balance negative is refused (``ledger.insufficient_balance``) unless
    ``allow_negative`` and the scene is one of ``ledger.negative_scenes`` (BAL-05: only the
    platform's advances may go negative). ``balance_changed`` is deferred until commit.
    """
    ref = _validate(user_id, delta, scene, ref, key, remark)
    try:
        return _post(rt_or_hooks, session, user_id, delta, scene, ref, key, remark, allow_negative)
    except GonglunError as exc:
        if exc.error not in _NOT_LOGGED:
            write_failure_log(rt_or_hooks, user_id, delta, scene, ref, remark, exc.msg)
        raise
    except Exception as exc:
        write_failure_log(
            rt_or_hooks, user_id, delta, scene, ref, remark, f"{type(exc).__name__}: {exc}"
        )
        raise


def _post(
    rt_or_hooks: Any,
    session: Session,
    user_id: int,
    delta: int,
    scene: str,
    ref: str,
    key: str,
    remark: str,
    allow_negative: bool,
) -> PostingResult:
    # NOTE: a bare id lookup first: the repeat is rare, the common path should not load rows.
    if session.connection().execute(_KEY_ID, {"k": key}).first() is not None:
        return _repeat(_by_key(session, key), user_id, delta, scene)
    current, version = _lock(session, user_id)
    after = current + delta
    if delta < 0 and after < 0:
        if not allow_negative:
            # NOTE: the same key may have committed while we waited for the lock.
            existing = _by_key(session, key)
            if existing is not None:
                return _repeat(existing, user_id, delta, scene)
            raise GonglunError(
                "ledger.insufficient_balance",
                INSUFFICIENT_MSG,
                data={"balance": current, "amount": -delta},
            )
        allowed = _negative_scenes(_runtime(rt_or_hooks))
        if allowed is not None and scene not in allowed:
            raise GonglunError(
                "ledger.negative_not_allowed",
                f"余额场景 {scene} 不允许透支(见配置 ledger.negative_scenes)",
            )
    now = utcnow()
    values = {
        "user_id": user_id,
        "delta": delta,
        "balance_after": after,
        "scene": scene,
        "ref": ref,
        "remark": remark,
        "idempotency_key": key,
        "created_at": now,
    }
    posting_id = _insert_posting(session, values)
    if posting_id is None:
        # A concurrent posting of the same key for another account won the unique key.
        return _repeat(_by_key(session, key), user_id, delta, scene)
    updated = session.connection().execute(_BUMP, {
        "u": user_id, "v": version, "new_balance": after, "new_version": version + 1, "now": now,
    }).rowcount
    if updated != 1:
        raise GonglunError("ledger.concurrent_update", "余额并发更新冲突,请重试", status=409)
    # The row is known in full: no need to load it back (a plain, unattached instance).
    posting = Posting(id=posting_id, **values)
    _hooks(rt_or_hooks).defer(
        session,
        "balance_changed",
        key=f"balance_changed:{posting.id}",
        posting=posting_dict(posting),
    )
    return PostingResult(posting, True)


def _insert_posting(session: Session, values: dict[str, Any]) -> int | None:
    """INSERT unless the key exists; the new id, or None when the key was already taken."""
    posting_id = insert_ignore_returning_id(session, Posting.__table__, values)
    return int(posting_id) if posting_id is not None else None


# Built once, executed with parameters on the session's connection: the posting path is hot
# (every recharge, refund and balance payment), and building statements costs more than running.
_P, _B = Posting.__table__, Balance.__table__
_KEY_ID = select(_P.c.id).where(_P.c.idempotency_key == bindparam("k"))
#: FOR UPDATE renders nothing on SQLite, whose BEGIN IMMEDIATE already serialises.
_LOCK = select(_B.c.balance, _B.c.version).where(_B.c.user_id == bindparam("u")).with_for_update()
_BUMP = (
    _B.update()
    .where(_B.c.user_id == bindparam("u"), _B.c.version == bindparam("v"))
    .values(balance=bindparam("new_balance"), version=bindparam("new_version"),
            updated_at=bindparam("now"))
)


def _by_key(session: Session, key: str) -> Posting | None:
    return session.scalars(select(Posting).where(Posting.idempotency_key == key)).one_or_none()


def _repeat(existing: Posting | None, user_id: int, delta: int, scene: str) -> PostingResult:
    if existing is None:  # pragma: no cover - the key's holder rolled back in between
        raise GonglunError("ledger.concurrent_update", "余额并发更新冲突,请重试", status=409)
    if (existing.user_id, existing.delta, existing.scene) != (user_id, delta, scene):
        raise GonglunError(
            "ledger.key_conflict",
            "幂等键已被另一笔不同的余额变动使用",
            status=409,
            data={"posting_id": existing.id},
        )
    return PostingResult(existing, False)


def _lock(session: Session, user_id: int) -> tuple[int, int]:
    """Lock the account's balance row (creating it at 0 first) and read balance and version."""
    row = session.connection().execute(_LOCK, {"u": user_id}).first()
    if row is None:
        if session.scalar(select(User.id).where(User.id == user_id)) is None:
            raise GonglunError("ledger.unknown_user", "用户不存在", status=404)
        _create_balance_row(session, user_id)
        row = session.connection().execute(_LOCK, {"u": user_id}).first()
        assert row is not None
    return int(row.balance), int(row.version)


def _create_balance_row(session: Session, user_id: int) -> None:
    """Insert the account's zero balance unless a concurrent first posting already did.

    On MariaDB ``INSERT IGNORE`` would leave a shared lock on the duplicate, and two such
    waiters upgrading to ``FOR UPDATE`` deadlock; a no-op ``ON DUPLICATE KEY UPDATE`` takes the
    exclusive lock directly.
    """
    values = {"user_id": user_id, "balance": 0, "version": 0, "updated_at": utcnow()}
    table = Balance.__table__
    if session.get_bind().dialect.name == "mysql":
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        stmt = mysql_insert(table).values(**values)
        session.execute(stmt.on_duplicate_key_update(version=table.c.version))
    else:
        insert_ignore(session, table, values)


def posting_dict(posting: Posting) -> dict[str, Any]:
    """JSON primitives for hooks and the API."""
    return {
        "id": posting.id,
        "user_id": posting.user_id,
        "delta": posting.delta,
        "balance_after": posting.balance_after,
        "scene": posting.scene,
        "ref": posting.ref,
        "remark": posting.remark,
        "key": posting.idempotency_key,
        "created_at": posting.created_at.isoformat() if posting.created_at else None,
    }


def balance(session: Session, user_id: int) -> int:
    """The current balance in fen (0 for an account that never had a posting)."""
    value = session.scalar(select(Balance.balance).where(Balance.user_id == user_id))
    return int(value or 0)


def postings(
    session: Session, user_id: int, limit: int = 50, before_id: int | None = None
) -> list[Posting]:
    """The account's postings, newest first; page with ``before_id`` = the last id seen."""
    limit = max(1, min(int(limit), MAX_PAGE))
    stmt = select(Posting).where(Posting.user_id == user_id)
    if before_id is not None:
        stmt = stmt.where(Posting.id < before_id)
    return list(session.scalars(stmt.order_by(Posting.id.desc()).limit(limit)))


def negative_blocks(session: Session, user_id: int) -> bool:
    """BAL-05: True when the user owes the platform money and may not trade until topped up.

    An account without a balance row (the seeds' empty ``money``) is never blocked.
    """
    value = session.scalar(select(Balance.balance).where(Balance.user_id == user_id))
    return value is not None and value < 0


def check_not_negative(session: Session, user_id: int) -> None:
    """Raise BAL-05's refusal for an order by a user with a negative balance."""
    if negative_blocks(session, user_id):
        raise GonglunError(NEGATIVE_BALANCE_ERROR, NEGATIVE_BALANCE_MSG, status=403)


# -- BAL-02 failure log --------------------------------------------------------------------


def failure_line(
    user_id: int, delta: int, scene: str, ref: str, remark: str, reason: str, when: dt.datetime
) -> str:
    """One BAL-02 line; the amount is in fen, the action says which way it was meant to go."""
    action = "增加" if delta > 0 else "扣除"
    text = f"{remark} | 失败原因: {reason}" if remark else f"失败原因: {reason}"
    text = " ".join(text.split())  # one record per line, whatever the error said
    stamp = when.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"[时间 - {stamp}] [余额场景 - ({scene}:{ref})] [金额 - {abs(delta)}] "
        f"[动作 - {action}] [备注 - {text}] [用户 - {user_id}]"
    )


def write_failure_log(
    rt_or_hooks: Any, user_id: int, delta: int, scene: str, ref: str, remark: str, reason: str
) -> Path | None:
    """Append to ``<data_dir>/log/balance/YYYY-MM-DD.log`` (Asia/Shanghai day); never raises."""
    now = utcnow()
    line = failure_line(user_id, delta, scene, ref, remark, reason, now)
    log.error("balance posting failed: %s", line)
    config = getattr(_runtime(rt_or_hooks), "config", None)
    if config is None:
        return None
    day = now.astimezone(SHANGHAI).strftime("%Y-%m-%d")
    path = Path(config.data_dir) / "log" / "balance" / f"{day}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # NOTE: one write() of one line in append mode: lines from several processes never mix.
        with _log_lock, open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    except OSError:
        log.exception("cannot write the balance failure log %s", path)
        return None
    return path
