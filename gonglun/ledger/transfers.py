"""Transfers: the only way money moves (BAL-01, CORE-14, DECISIONS.md 22).

``transfer`` / ``transfer_many`` run inside the caller's transaction, so a payment's state
change and its transfers commit together or not at all (DECISIONS.md 14). Each transfer debits
one account and credits another by a positive amount under a unique idempotency key; a repeated
key returns the original and moves nothing.

Concurrency: a wallet is serialised on its balance row: one conditional ``UPDATE ... RETURNING``
(PostgreSQL, SQLite) or ``SELECT ... FOR UPDATE`` then ``UPDATE`` (MariaDB, and transfers that
touch several wallets, locked in ascending id order). So each wallet's ``balance_after`` chain
is exact under any number of threads and processes, and an overdraft is refused inside the
database. A system account is only ever incremented, on one of ``ledger.shards`` rows chosen
per transaction, and never read on the way: escrow and the channel clearing accounts, touched
by every payment, are not a serialisation point.

Lock order inside one call: wallets (ascending), then system shards (ascending). One business
event should be one ``transfer_many`` call; several calls in one transaction may deadlock with
other transactions, which PostgreSQL and MariaDB break by failing one of them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from gonglun.accounts.models import User
from gonglun.db import insert_ignore_returning_id, utcnow
from gonglun.errors import GonglunError
from gonglun.ledger.accounts import (
    ESCROW,
    MANUAL,
    account_id,
    check_code,
    codes_by_id,
    ensure_balance_row,
    wallet,
    wallet_user,
)
from gonglun.ledger.failures import logged_failures
from gonglun.ledger.models import AccountBalance, Transfer

#: One transfer moves at most this many fen (10^13 fen = 100 billion yuan): a typo guard, far
#: below where a BIGINT sum could overflow.
MAX_AMOUNT = 10**13
INSUFFICIENT_MSG = "账户余额不足"
DEFAULT_SHARDS = 16
_SHARD = "gonglun_ledger_shard"


@dataclass(frozen=True)
class Move:
    """One transfer to make: ``amount`` fen from ``debit`` to ``credit`` (account codes)."""

    debit: str
    credit: str
    amount: int
    code: str
    key: str
    ref: str = ""
    remark: str = ""
    #: A wallet debit may leave it negative only with this *and* a code listed in
    #: ``ledger.negative_scenes`` (BAL-05: the platform's advances). System accounts always may.
    allow_negative: bool = False


@dataclass(frozen=True)
class TransferRow:
    """A committed (or just written) transfer, with its accounts by code."""

    id: int
    debit: str
    credit: str
    amount: int
    code: str
    ref: str
    remark: str
    key: str
    debit_after: int | None
    credit_after: int | None
    operator_id: int | None
    created_at: Any

    def to_dict(self) -> dict[str, Any]:
        """JSON primitives (the admin API)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["created_at"] = self.created_at.isoformat() if self.created_at else None
        return out


@dataclass(frozen=True)
class TransferResult:
    transfer: TransferRow
    #: False when the key had been used already: nothing moved this time.
    created: bool


# -- input ---------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(name: str, value: Any, max_len: int, *, required: bool) -> str:
    if _is_int(value) and name == "ref":
        value = str(value)
    if not isinstance(value, str) or len(value) > max_len or (required and not value):
        need = "1" if required else "0"
        raise GonglunError("ledger.invalid_argument", f"{name} 须为{need}-{max_len}个字符的字符串",
                           data={"field": name})
    return value


def check_amount(amount: Any) -> int:
    if not _is_int(amount):
        raise GonglunError("ledger.invalid_amount", "金额必须是整数(分)")
    if amount <= 0:
        raise GonglunError("ledger.invalid_amount", "金额必须大于0")
    if amount > MAX_AMOUNT:
        raise GonglunError("ledger.invalid_amount", "金额超出单笔上限")
    return int(amount)


def _validate(rt: Any, move: Move) -> Move:
    debit, credit = check_code(rt, move.debit), check_code(rt, move.credit)
    if debit == credit:
        raise GonglunError("ledger.same_account", "转出与转入账户不能相同")
    return Move(
        debit, credit, check_amount(move.amount), _text("code", move.code, 64, required=True),
        _text("key", move.key, 191, required=True), _text("ref", move.ref, 64, required=False),
        _text("remark", move.remark, 255, required=False), bool(move.allow_negative),
    )


def _check_operator(session: Session, moves: list[Move], operator_id: Any) -> None:
    """Staff transfers through ``manual`` carry a note and the admin who made them."""
    if not any(MANUAL in (m.debit, m.credit) for m in moves):
        return
    if any(not m.remark.strip() for m in moves if MANUAL in (m.debit, m.credit)):
        raise GonglunError("ledger.note_required", "人工转账必须填写备注")
    role = (session.scalar(select(User.role).where(User.id == operator_id))
            if _is_int(operator_id) else None)
    if role not in ("admin", "superadmin"):
        raise GonglunError("ledger.operator_required", "人工转账须由管理员操作", status=403)


def negative_codes(rt: Any) -> frozenset[str]:
    return frozenset(rt.config.get("ledger.negative_scenes") or ())


# -- statements (built once; the hot path only binds parameters) ----------------------------

_T, _B = Transfer.__table__, AccountBalance.__table__
_BY_KEYS = select(_T).where(_T.c.idempotency_key.in_(bindparam("keys", expanding=True)))
_WALLET = (_B.c.account_id == bindparam("a"), _B.c.shard == 0)
_ADD = (_B.update().where(*_WALLET)
        .values(balance=_B.c.balance + bindparam("d"), updated_at=bindparam("now")))
#: The overdraft check inside the UPDATE: no row comes back when it would go below zero.
_ADD_CHECKED = _ADD.where(_B.c.balance + bindparam("d") >= 0)
_SET = _B.update().where(*_WALLET).values(balance=bindparam("b"), updated_at=bindparam("now"))
_READ = select(_B.c.balance).where(*_WALLET)
_LOCK = (select(_B.c.account_id, _B.c.balance)
         .where(_B.c.account_id.in_(bindparam("ids", expanding=True)), _B.c.shard == 0)
         .order_by(_B.c.account_id).with_for_update())
_ADD_RET, _ADD_CHECKED_RET = _ADD.returning(_B.c.balance), _ADD_CHECKED.returning(_B.c.balance)
_SHARD_ADD: dict[str, Any] = {}


def _shard_add(dialect: str) -> Any:
    """Upsert-add on a system account's shard row: created on first use, then incremented."""
    stmt = _SHARD_ADD.get(dialect)
    if stmt is None:
        values = {"account_id": bindparam("a"), "shard": bindparam("s"),
                  "balance": bindparam("d"), "updated_at": bindparam("now")}
        if dialect == "mysql":
            from sqlalchemy.dialects.mysql import insert as mysql_insert

            ins = mysql_insert(_B).values(values)
            stmt = ins.on_duplicate_key_update(balance=_B.c.balance + ins.inserted.balance,
                                               updated_at=ins.inserted.updated_at)
        else:
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert as dialect_insert
            else:
                from sqlalchemy.dialects.postgresql import insert as dialect_insert  # type: ignore
            ins = dialect_insert(_B).values(values)
            stmt = ins.on_conflict_do_update(
                index_elements=[_B.c.account_id, _B.c.shard],
                set_={"balance": _B.c.balance + ins.excluded.balance,
                      "updated_at": ins.excluded.updated_at})
        _SHARD_ADD[dialect] = stmt
    return stmt


# -- the API -------------------------------------------------------------------------------


def transfer(
    rt: Any, session: Session, *, debit: str, credit: str, amount: int, code: str, key: str,
    ref: str = "", remark: str = "", allow_negative: bool = False, operator_id: int | None = None,
) -> TransferResult:
    """Move ``amount`` fen from ``debit`` to ``credit`` exactly once per ``key``.

    Refusals (nothing moves): ``ledger.invalid_amount``, ``ledger.invalid_argument``,
    ``ledger.unknown_account``, ``ledger.unknown_user`` (404), ``ledger.same_account``,
    ``ledger.insufficient_balance`` (a wallet would go below zero), ``ledger.negative_not_allowed``
    (``allow_negative`` with a code outside ``ledger.negative_scenes``), ``ledger.note_required``
    and ``ledger.operator_required`` (403) for ``manual``, ``ledger.key_conflict`` (409: the key
    was used for another transfer).
    """
    move = Move(debit, credit, amount, code, key, ref, remark, allow_negative)
    return transfer_many(rt, session, [move], operator_id=operator_id)[0]


def transfer_many(
    rt: Any, session: Session, moves: Sequence[Move], *, operator_id: int | None = None,
) -> list[TransferResult]:
    """Several transfers of one business event: all of them or (on a refusal) none.

    Results come in the order of ``moves``; already-made ones (same key) are returned with
    ``created=False``. ``balance_changed`` is deferred for every wallet side of a new transfer.
    """
    if not moves:
        return []
    checked = [_validate(rt, m) for m in moves]
    if len({m.key for m in checked}) != len(checked):
        raise GonglunError("ledger.invalid_argument", "同一批转账的幂等键不能重复",
                           data={"field": "key"})
    with logged_failures(rt, checked):
        _check_operator(session, checked, operator_id)
        done = _existing(session, [m.key for m in checked])
        new = [m for m in checked if m.key not in done]
        written: dict[str, TransferRow] = {}
        if new:
            ids = {code: _id(rt, session, code) for m in new for code in (m.debit, m.credit)}
            apply = _apply_one if len(new) == 1 and _fast_path(session, new[0]) else _apply_batch
            done.update(apply(rt, session, new, ids, operator_id, written))
        return [_result(done[m.key], m, created=m.key in written) for m in checked]


def _id(rt: Any, session: Session, code: str) -> int:
    found = account_id(rt, session, code)
    assert found is not None
    return found


def _fast_path(session: Session, move: Move) -> bool:
    """One wallet side, and UPDATE ... RETURNING available: a single locking statement."""
    wallets = sum(wallet_user(c) is not None for c in (move.debit, move.credit))
    return wallets == 1 and bool(session.get_bind().dialect.update_returning)


def _result(row: TransferRow, move: Move, *, created: bool) -> TransferResult:
    if not created and (row.debit, row.credit, row.amount, row.code) != (
        move.debit, move.credit, move.amount, move.code
    ):
        raise GonglunError("ledger.key_conflict", "幂等键已被另一笔不同的转账使用", status=409,
                           data={"transfer_id": row.id})
    return TransferResult(row, created)


def _existing(session: Session, keys: list[str]) -> dict[str, TransferRow]:
    rows = session.connection().execute(_BY_KEYS, {"keys": keys}).all()
    if not rows:
        return {}
    codes = codes_by_id(session, {r.debit_id for r in rows} | {r.credit_id for r in rows})
    return {r.idempotency_key: _row(r._mapping, codes) for r in rows}


def _row(values: Any, codes: dict[int, str]) -> TransferRow:
    return TransferRow(
        int(values["id"]), codes[values["debit_id"]], codes[values["credit_id"]],
        int(values["amount"]), values["code"], values["ref"], values["remark"],
        values["idempotency_key"], values["debit_after"], values["credit_after"],
        values["operator_id"], values["created_at"],
    )


def _refuse(rt: Any, move: Move, balance: int) -> GonglunError:
    if move.allow_negative and move.code not in negative_codes(rt):
        return GonglunError("ledger.negative_not_allowed",
                            f"余额场景 {move.code} 不允许透支(见配置 ledger.negative_scenes)")
    return GonglunError("ledger.insufficient_balance", INSUFFICIENT_MSG,
                        data={"balance": balance, "amount": move.amount})


def _may_go_negative(rt: Any, move: Move) -> bool:
    return move.allow_negative and move.code in negative_codes(rt)


def _values(move: Move, ids: dict[str, int], operator_id: int | None, now: Any,
            debit_after: int | None, credit_after: int | None) -> dict[str, Any]:
    return {"debit_id": ids[move.debit], "credit_id": ids[move.credit], "amount": move.amount,
            "code": move.code, "ref": move.ref, "remark": move.remark,
            "idempotency_key": move.key, "debit_after": debit_after,
            "credit_after": credit_after, "operator_id": operator_id, "created_at": now}


def _apply_one(rt: Any, session: Session, moves: list[Move], ids: dict[str, int],
               operator_id: int | None, written: dict[str, TransferRow]) -> dict[str, TransferRow]:
    """The hot path: one conditional UPDATE ... RETURNING locks, checks and moves the wallet."""
    (move,) = moves
    conn = session.connection()
    side = "debit" if wallet_user(move.debit) is not None else "credit"
    account, other = (move.debit, move.credit) if side == "debit" else (move.credit, move.debit)
    delta = -move.amount if side == "debit" else move.amount
    plain, checked = _ADD_RET, _ADD_CHECKED_RET
    stmt = checked if delta < 0 and not _may_go_negative(rt, move) else plain
    now = utcnow()
    params = {"a": ids[account], "d": delta, "now": now}
    row = conn.execute(stmt, params).first()
    if row is None:
        current = conn.execute(_READ, params).scalar()
        if current is None:  # the balance row is gone: recreate it at zero, then retry once
            ensure_balance_row(session, ids[account], 0)
            row = conn.execute(stmt, params).first()
        if row is None:
            # NOTE: the same key may have committed while this one waited for the lock.
            again = _existing(session, [move.key])
            if again:
                return again
            raise _refuse(rt, move, int(current or 0))
    after = int(row.balance)
    values = _values(move, ids, operator_id, now, after if side == "debit" else None,
                     after if side == "credit" else None)
    new_id = insert_ignore_returning_id(session, _T, values)
    if new_id is None:
        # A concurrent transfer with this key won: undo our move and answer theirs.
        conn.execute(plain, {**params, "d": -delta})
        return _existing(session, [move.key])
    _add_system(rt, session, {ids[other]: -delta}, now)
    written[move.key] = row_out = _written(int(new_id), move, values)
    _defer_changed(rt, session, row_out)
    return written


def _apply_batch(rt: Any, session: Session, moves: list[Move], ids: dict[str, int],
                 operator_id: int | None, written: dict[str, TransferRow],
                 ) -> dict[str, TransferRow]:
    """Several moves (or several wallets, or MariaDB): lock every wallet, check, then write."""
    conn = session.connection()
    wallets = sorted({ids[c] for m in moves for c in (m.debit, m.credit)
                      if wallet_user(c) is not None})
    balances = _lock_wallets(session, wallets)
    # NOTE: a key may have committed while this call waited for the locks.
    done = _existing(session, [m.key for m in moves])
    moves = [m for m in moves if m.key not in done]
    now = utcnow()
    rows: list[tuple[Move, dict[str, Any]]] = []
    system: dict[int, int] = {}
    for m in moves:
        after: dict[str, int | None] = {"debit": None, "credit": None}
        for side, sign in (("debit", -1), ("credit", 1)):
            aid = ids[getattr(m, side)]
            if aid not in balances:
                system[aid] = system.get(aid, 0) + sign * m.amount
                continue
            new = balances[aid] + sign * m.amount
            if sign < 0 and new < 0 and not _may_go_negative(rt, m):
                raise _refuse(rt, m, balances[aid])
            balances[aid] = after[side] = new
        rows.append((m, _values(m, ids, operator_id, now, after["debit"], after["credit"])))
    for m, values in rows:
        new_id = insert_ignore_returning_id(session, _T, values)
        if new_id is None:
            raise GonglunError("ledger.concurrent_update", "转账并发冲突,请重试", status=409)
        done[m.key] = written[m.key] = _written(int(new_id), m, values)
        _defer_changed(rt, session, done[m.key])
    changed = [{"a": a, "b": balances[a], "now": now} for a in wallets]
    if changed and rows:
        conn.execute(_SET, changed)
    _add_system(rt, session, system, now)
    return done


def _lock_wallets(session: Session, wallets: list[int]) -> dict[int, int]:
    if not wallets:
        return {}
    conn = session.connection()
    rows = dict(conn.execute(_LOCK, {"ids": wallets}).all())
    missing = [a for a in wallets if a not in rows]
    for a in missing:
        ensure_balance_row(session, a, 0)
    if missing:
        rows = dict(conn.execute(_LOCK, {"ids": wallets}).all())
    return {int(a): int(b) for a, b in rows.items()}


def _add_system(rt: Any, session: Session, deltas: dict[int, int], now: Any) -> None:
    """Add to one shard row per system account (the shard is fixed for the transaction)."""
    shard = session.info.get(_SHARD)
    if shard is None:
        count = max(1, int(rt.config.get("ledger.shards", DEFAULT_SHARDS)))
        shard = session.info[_SHARD] = random.randrange(count)
    conn = session.connection()
    stmt = _shard_add(conn.dialect.name)
    for account in sorted(deltas):
        if deltas[account]:
            conn.execute(stmt, {"a": account, "s": shard, "d": deltas[account], "now": now})


def _written(new_id: int, move: Move, values: dict[str, Any]) -> TransferRow:
    return TransferRow(new_id, move.debit, move.credit, move.amount, move.code, move.ref,
                       move.remark, move.key, values["debit_after"], values["credit_after"],
                       values["operator_id"], values["created_at"])


def _defer_changed(rt: Any, session: Session, row: TransferRow) -> None:
    from gonglun.ledger.reads import posting_view

    for code in (row.debit, row.credit):
        user_id = wallet_user(code)
        if user_id is not None:
            posting = posting_view(row, user_id)
            rt.hooks.defer(session, "balance_changed", key=f"balance_changed:{row.id}:{user_id}",
                           posting=posting.to_dict())


# -- holds in escrow -----------------------------------------------------------------------


def hold(rt: Any, session: Session, *, source: str, amount: int, ref: str, key: str,
         code: str, remark: str = "", operator_id: int | None = None) -> TransferResult:
    """Put money aside in ``escrow`` under ``ref`` (a red packet, a deposit...)."""
    return transfer(rt, session, debit=source, credit=ESCROW, amount=amount, code=code,
                    key=key, ref=ref, remark=remark, operator_id=operator_id)


def release(rt: Any, session: Session, *, to: str, amount: int, ref: str, key: str,
            code: str, remark: str = "", operator_id: int | None = None) -> TransferResult:
    """Pay out of what ``escrow`` holds under ``ref``; never more than it holds.

    The caller's own conditional update (a claim, a state change) makes one release per
    event; this check refuses what the reference does not cover (``ledger.hold_insufficient``).
    """
    from gonglun.ledger.reads import held

    if not _existing(session, [key]):
        covered = held(session, ref)
        if covered < check_amount(amount):
            raise GonglunError("ledger.hold_insufficient", "托管余额不足",
                               data={"ref": ref, "held": covered, "amount": amount})
    return transfer(rt, session, debit=ESCROW, credit=to, amount=amount, code=code, key=key,
                    ref=ref, remark=remark, operator_id=operator_id)


__all__ = ["MAX_AMOUNT", "Move", "TransferResult", "TransferRow", "check_amount", "hold",
           "release", "transfer", "transfer_many", "wallet"]
