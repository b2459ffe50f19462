"""How transfers reach the database (the API and its checks are in ``transfers.py``).

- ``apply_one``: one transfer with one wallet side, the hot path of every payment. On
  PostgreSQL a single statement does it all: the wallet's conditional UPDATE (unused key, no
  overdraft) takes the row lock, the transfer row is inserted from its RETURNING, and the other
  side's shard row is added to; so the wallet's lock is held for that statement, the outbox row
  and the commit. Elsewhere (SQLite, MariaDB has no UPDATE ... RETURNING) the same steps run as
  separate statements.
- ``apply_requests``: any number of independent requests (each a list of moves that stand or
  fall together): every wallet is locked once in ascending id order, each request is checked
  against the balances as the requests before it left them, a refused request is dropped with
  its error while the others go on, and then every transfer is inserted in one statement, every
  wallet updated once, every system account's shard once. ``transfer_many`` uses it for one
  request, the group-commit queue for many.

A wallet's ``balance_after`` chain follows transfer ids: a transfer's id is assigned while its
wallet rows are locked, so the ids of one wallet's transfers increase in the order they moved.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ARRAY, String, bindparam, exists, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gonglun.db import insert_ignore_returning_id, utcnow
from gonglun.errors import GonglunError
from gonglun.ledger.accounts import codes_by_id, ensure_balance_row, wallet_user
from gonglun.ledger.models import AccountBalance, Transfer
from gonglun.ledger.moves import Move, TransferRow

INSUFFICIENT_MSG = "账户余额不足"
DEFAULT_SHARDS = 16
_SHARD = "gonglun_ledger_shard"

_T, _B = Transfer.__table__, AccountBalance.__table__
_BY_KEYS = select(_T).where(_T.c.idempotency_key.in_(bindparam("keys", expanding=True)))
_BY_KEY_ARRAY = select(_T).where(_T.c.idempotency_key == func.any(
    bindparam("keys", type_=ARRAY(String))))
_WALLET = (_B.c.account_id == bindparam("a"), _B.c.shard == 0)
_ADD = (_B.update().where(*_WALLET)
        .values(balance=_B.c.balance + bindparam("d"), updated_at=bindparam("now")))
#: The key is unused and (checked) no overdraft: both decided inside the UPDATE.
_FRESH = ~exists().where(_T.c.idempotency_key == bindparam("k"))
_ADD_NEW = _ADD.where(_FRESH).returning(_B.c.balance)
_ADD_NEW_CHECKED = _ADD.where(_FRESH, _B.c.balance + bindparam("d") >= 0).returning(_B.c.balance)
_SET = _B.update().where(*_WALLET).values(balance=bindparam("b"), updated_at=bindparam("now"))
_READ = select(_B.c.balance).where(*_WALLET)
_LOCK = (select(_B.c.account_id, _B.c.balance)
         .where(_B.c.account_id.in_(bindparam("ids", expanding=True)), _B.c.shard == 0)
         .order_by(_B.c.account_id).with_for_update())
_INSERT = _T.insert().returning(_T.c.id, _T.c.idempotency_key, sort_by_parameter_order=True)
_KEY_IDS = select(_T.c.idempotency_key, _T.c.id).where(
    _T.c.idempotency_key.in_(bindparam("keys", expanding=True)))
#: PostgreSQL: the whole of ``apply_one`` in one round trip (see the module docstring).
_PG_ONE = text("""
WITH w AS (
    UPDATE ledger_balances SET balance = balance + CAST(:d AS BIGINT), updated_at = :now
    WHERE account_id = :a AND shard = 0
      AND (:unchecked OR balance + CAST(:d AS BIGINT) >= 0)
      AND NOT EXISTS (SELECT 1 FROM ledger_transfers WHERE idempotency_key = :k)
    RETURNING balance
), t AS (
    INSERT INTO ledger_transfers (debit_id, credit_id, amount, code, ref, remark,
                                  idempotency_key, debit_after, credit_after, operator_id,
                                  created_at)
    SELECT :debit_id, :credit_id, :amount, :code, :ref, :remark, :k,
           CASE WHEN :wallet_debit THEN w.balance END,
           CASE WHEN :wallet_debit THEN NULL ELSE w.balance END,
           CAST(:operator_id AS BIGINT), :now
    FROM w
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
), s AS (
    INSERT INTO ledger_balances (account_id, shard, balance, updated_at)
    SELECT :other, :shard, CAST(:other_delta AS BIGINT), :now FROM t
    ON CONFLICT (account_id, shard) DO UPDATE
    SET balance = ledger_balances.balance + excluded.balance, updated_at = excluded.updated_at
)
SELECT (SELECT balance FROM w) AS balance, (SELECT id FROM t) AS id
""")
#: PostgreSQL: any number of transfers in one statement of one fixed text (arrays, not a
#: VALUES list per size), inserted in the planned order so each wallet's ids follow its chain.
_PG_MANY = text("""
INSERT INTO ledger_transfers (debit_id, credit_id, amount, code, ref, remark, idempotency_key,
                              debit_after, credit_after, operator_id, created_at)
SELECT debit_id, credit_id, amount, code, ref, remark, idempotency_key, debit_after,
       credit_after, operator_id, created_at
FROM unnest(CAST(:debit_id AS BIGINT[]), CAST(:credit_id AS BIGINT[]), CAST(:amount AS BIGINT[]),
            CAST(:code AS VARCHAR[]), CAST(:ref AS VARCHAR[]), CAST(:remark AS VARCHAR[]),
            CAST(:idempotency_key AS VARCHAR[]), CAST(:debit_after AS BIGINT[]),
            CAST(:credit_after AS BIGINT[]), CAST(:operator_id AS BIGINT[]),
            CAST(:created_at AS TIMESTAMPTZ[]))
     WITH ORDINALITY AS u(debit_id, credit_id, amount, code, ref, remark, idempotency_key,
                          debit_after, credit_after, operator_id, created_at, n)
ORDER BY n
RETURNING id, idempotency_key
""")
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


@dataclass
class Request:
    """Moves that stand or fall together, and what became of them."""

    moves: list[Move]
    operator_id: int | None = None
    rows: dict[str, TransferRow] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)
    error: GonglunError | None = None


# -- rules shared by both paths ---------------------------------------------------------------


def negative_codes(rt: Any) -> frozenset[str]:
    return frozenset(rt.config.get("ledger.negative_scenes") or ())


def may_go_negative(rt: Any, move: Move) -> bool:
    return move.allow_negative and move.code in negative_codes(rt)


def refusal(rt: Any, move: Move, balance: int) -> GonglunError:
    if move.allow_negative and move.code not in negative_codes(rt):
        return GonglunError("ledger.negative_not_allowed",
                            f"余额场景 {move.code} 不允许透支(见配置 ledger.negative_scenes)")
    return GonglunError("ledger.insufficient_balance", INSUFFICIENT_MSG,
                        data={"balance": balance, "amount": move.amount})


def key_conflict(transfer_id: int | None) -> GonglunError:
    return GonglunError("ledger.key_conflict", "幂等键已被另一笔不同的转账使用", status=409,
                        data={"transfer_id": transfer_id})


def existing(session: Session, keys: list[str]) -> dict[str, TransferRow]:
    """Transfers already made under ``keys``."""
    if not keys:
        return {}
    conn = session.connection()
    # NOTE: one statement text whatever the number of keys (= ANY(array)) on PostgreSQL: an
    # IN list of each size is a statement of its own to parse, prepare and plan.
    stmt = _BY_KEY_ARRAY if conn.dialect.name == "postgresql" else _BY_KEYS
    rows = conn.execute(stmt, {"keys": keys}).all()
    if not rows:
        return {}
    codes = codes_by_id(session, {r.debit_id for r in rows} | {r.credit_id for r in rows})
    return {r.idempotency_key: TransferRow(
        int(r.id), codes[r.debit_id], codes[r.credit_id], int(r.amount), r.code, r.ref,
        r.remark, r.idempotency_key, r.debit_after, r.credit_after, r.operator_id,
        r.created_at) for r in rows}


def _values(move: Move, ids: dict[str, int], operator_id: int | None, now: Any,
            debit_after: int | None = None, credit_after: int | None = None) -> dict[str, Any]:
    return {"debit_id": ids[move.debit], "credit_id": ids[move.credit], "amount": move.amount,
            "code": move.code, "ref": move.ref, "remark": move.remark,
            "idempotency_key": move.key, "debit_after": debit_after,
            "credit_after": credit_after, "operator_id": operator_id, "created_at": now}


def _row(new_id: int, move: Move, values: dict[str, Any]) -> TransferRow:
    return TransferRow(new_id, move.debit, move.credit, move.amount, move.code, move.ref,
                       move.remark, move.key, values["debit_after"], values["credit_after"],
                       values["operator_id"], values["created_at"])


def _shard(rt: Any, session: Session) -> int:
    """One shard per transaction and system account: fewer rows locked, same spread."""
    shard = session.info.get(_SHARD)
    if shard is None:
        count = max(1, int(rt.config.get("ledger.shards", DEFAULT_SHARDS)))
        shard = session.info[_SHARD] = random.randrange(count)
    return int(shard)


def _add_system(rt: Any, session: Session, deltas: dict[int, int], now: Any) -> None:
    conn = session.connection()
    stmt, shard = _shard_add(conn.dialect.name), _shard(rt, session)
    for account in sorted(deltas):
        if deltas[account]:
            conn.execute(stmt, {"a": account, "s": shard, "d": deltas[account], "now": now})


def _defer_changed(rt: Any, session: Session, rows: Iterable[TransferRow]) -> None:
    """``balance_changed`` once per wallet side, in one outbox statement."""
    from gonglun.ledger.reads import posting_view

    calls = [("balance_changed", f"balance_changed:{row.id}:{uid}",
              {"posting": posting_view(row, uid).to_dict()})
             for row in rows for uid in (wallet_user(row.debit), wallet_user(row.credit))
             if uid is not None]
    if len(calls) == 1:
        name, key, kwargs = calls[0]
        rt.hooks.defer(session, name, key=key, **kwargs)
    elif calls:
        rt.hooks.defer_many(session, calls)


# -- one transfer, one wallet ----------------------------------------------------------------


def apply_one(rt: Any, session: Session, move: Move, ids: dict[str, int],
              operator_id: int | None, *, retried: bool = False) -> tuple[TransferRow, bool]:
    """``(row, created)`` for a move with exactly one wallet side."""
    conn = session.connection()
    side = "debit" if wallet_user(move.debit) is not None else "credit"
    account, other = ((ids[move.debit], ids[move.credit]) if side == "debit"
                      else (ids[move.credit], ids[move.debit]))
    delta = -move.amount if side == "debit" else move.amount
    unchecked = delta > 0 or may_go_negative(rt, move)
    now = utcnow()
    values = _values(move, ids, operator_id, now)
    new_id = None
    if conn.dialect.name == "postgresql":
        found = conn.execute(_PG_ONE, {
            **values, "a": account, "d": delta, "now": now, "unchecked": unchecked,
            "k": move.key, "wallet_debit": side == "debit", "other": other,
            "shard": _shard(rt, session), "other_delta": -delta}).first()
        after, new_id = found.balance, found.id
    else:
        stmt = _ADD_NEW if unchecked else _ADD_NEW_CHECKED
        found = conn.execute(stmt, {"a": account, "d": delta, "now": now, "k": move.key}).first()
        after = found.balance if found is not None else None
        if after is not None:
            values[f"{side}_after"] = int(after)
            new_id = insert_ignore_returning_id(session, _T, values)
            if new_id is not None:
                _add_system(rt, session, {other: -delta}, now)
    if after is None:  # a repeated key, a refusal, or a missing balance row
        again = existing(session, [move.key])
        if again:
            return again[move.key], False
        current = conn.execute(_READ, {"a": account}).scalar()
        if current is None and not retried:
            ensure_balance_row(session, account, 0)
            return apply_one(rt, session, move, ids, operator_id, retried=True)
        raise refusal(rt, move, int(current or 0))
    if new_id is None:
        # A concurrent transfer with this key committed first: undo ours, answer theirs.
        conn.execute(_ADD, {"a": account, "d": -delta, "now": now})
        return existing(session, [move.key])[move.key], False
    values[f"{side}_after"] = int(after)
    row = _row(int(new_id), move, values)
    _defer_changed(rt, session, [row])
    return row, True


# -- any number of requests -------------------------------------------------------------------


def apply_requests(rt: Any, session: Session, requests: list[Request],
                   ids: dict[str, int], *, optimistic: bool = False) -> None:
    """Apply every request that the balances allow; record the others' refusals.

    ``optimistic`` (the group-commit queue) skips looking for used keys first: a used key then
    fails the INSERT (``ledger.concurrent_update``) and the queue redoes each request alone.
    """
    keys = [m.key for r in requests for m in r.moves]
    done = {} if optimistic else existing(session, keys)
    wallets = sorted({ids[c] for r in requests for m in r.moves if m.key not in done
                      for c in (m.debit, m.credit) if wallet_user(c) is not None})
    # NOTE: a key committed by another transaction while this one waited for the locks makes
    # the INSERT below fail (``ledger.concurrent_update``): rare, and safe, so not re-checked.
    balances = _lock_wallets(session, wallets)
    start = dict(balances)
    now = utcnow()
    planned: dict[str, tuple[Move, dict[str, Any], Request]] = {}
    system: Counter[int] = Counter()
    for req in requests:
        try:
            rows, changes = _check(rt, req, ids, balances, done, planned, now)
        except GonglunError as exc:
            req.error = exc
            continue
        balances.update(changes)
        for m, values in rows:
            planned[m.key] = (m, values, req)
            for code, sign in ((m.debit, -1), (m.credit, 1)):
                if ids[code] not in balances:
                    system[ids[code]] += sign * m.amount
    written = _insert(session, planned)
    changed = [{"a": a, "b": b, "now": now} for a, b in balances.items() if start[a] != b]
    if changed:
        session.connection().execute(_SET, changed)
    _add_system(rt, session, system, now)
    _defer_changed(rt, session, written.values())
    for req in requests:
        if req.error is None:
            for m in req.moves:
                req.rows[m.key] = done.get(m.key) or written[m.key]
                if m.key in planned and planned[m.key][2] is req:
                    req.created.add(m.key)


def _check(rt: Any, req: Request, ids: dict[str, int], balances: dict[int, int],
           done: dict[str, TransferRow], planned: dict[str, Any], now: Any,
           ) -> tuple[list[tuple[Move, dict[str, Any]]], dict[int, int]]:
    """The request's rows and wallet balances after it, or its refusal (nothing kept)."""
    changes: dict[int, int] = {}
    rows = []
    for m in req.moves:
        if m.key in done or m.key in planned:
            earlier = done.get(m.key)
            if (earlier is not None and not earlier.same_as(m)) or (
                    earlier is None and planned[m.key][0] != m):
                raise key_conflict(earlier.id if earlier else None)
            continue  # a repeat: nothing to move
        after: dict[str, int | None] = {"debit": None, "credit": None}
        for side, sign in (("debit", -1), ("credit", 1)):
            aid = ids[getattr(m, side)]
            if aid not in balances:
                continue
            current = changes.get(aid, balances[aid])
            new = current + sign * m.amount
            if sign < 0 and new < 0 and not may_go_negative(rt, m):
                raise refusal(rt, m, current)
            changes[aid] = after[side] = new
        rows.append((m, _values(m, ids, req.operator_id, now, after["debit"],
                                after["credit"])))
    return rows, changes


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


def _insert(session: Session, planned: dict[str, tuple[Move, dict[str, Any], Any]]
            ) -> dict[str, TransferRow]:
    """Every planned transfer in one INSERT; a key taken meanwhile fails the whole call."""
    if not planned:
        return {}
    conn = session.connection()
    params = [values for _, values, _ in planned.values()]
    try:
        if conn.dialect.name == "postgresql":
            columns = {c: [p[c] for p in params] for c in params[0]}
            ids = {key: tid for tid, key in conn.execute(_PG_MANY, columns).all()}
        elif conn.dialect.insert_returning:
            ids = {key: tid for tid, key in conn.execute(_INSERT, params).all()}
        else:
            conn.execute(_T.insert(), params)
            ids = dict(conn.execute(_KEY_IDS, {"keys": list(planned)}).all())
    except IntegrityError as exc:  # a transfer without a wallet raced for the same key
        raise GonglunError("ledger.concurrent_update", "转账并发冲突,请重试",
                           status=409) from exc
    return {key: _row(int(ids[key]), m, values) for key, (m, values, _) in planned.items()}
