"""Transfers: the only way money moves (BAL-01, CORE-14, DECISIONS.md 22).

``transfer`` / ``transfer_many`` run inside the caller's transaction, so a payment's state
change and its transfers commit together or not at all (DECISIONS.md 14). Each transfer debits
one account and credits another by a positive amount under a unique idempotency key; a repeated
key returns the original and moves nothing.

Concurrency (``engine.py``): a wallet is serialised on its balance row, so its
``balance_after`` chain is exact under any number of threads and processes and an overdraft is
refused inside the database. A system account is only ever added to, on one of
``ledger.shards`` rows picked per transaction, and never read on the way: escrow and the channel
clearing accounts, touched by every payment, are not a serialisation point.

Lock order inside one call: wallets (ascending id), then system shards. One business event
should be one ``transfer_many`` call; several calls in one transaction may deadlock with other
transactions, which PostgreSQL and MariaDB break by failing one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gonglun.accounts.models import User
from gonglun.errors import GonglunError
from gonglun.ledger.accounts import ESCROW, MANUAL, account_id, check_code, wallet, wallet_user
from gonglun.ledger.engine import (
    INSUFFICIENT_MSG,
    Request,
    apply_one,
    apply_requests,
    existing,
    key_conflict,
)
from gonglun.ledger.failures import logged_failures
from gonglun.ledger.moves import Move, TransferResult, TransferRow

#: One transfer moves at most this many fen (10^13 fen = 100 billion yuan): a typo guard, far
#: below where a BIGINT sum could overflow.
MAX_AMOUNT = 10**13


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


def check_operator(session: Session, moves: list[Move], operator_id: Any, *,
                   console: bool = False) -> None:
    """Staff transfers through ``manual`` carry a note and the admin who made them; from the
    operator's console (``console``: the command line, which holds the database's keys) the
    admin audit log names the machine and OS user instead, and ``operator_id`` may be None."""
    if not any(MANUAL in (m.debit, m.credit) for m in moves):
        return
    if any(not m.remark.strip() for m in moves if MANUAL in (m.debit, m.credit)):
        raise GonglunError("ledger.note_required", "人工转账必须填写备注")
    if console and operator_id is None:
        return
    role = (session.scalar(select(User.role).where(User.id == operator_id))
            if _is_int(operator_id) else None)
    if role not in ("admin", "superadmin"):
        raise GonglunError("ledger.operator_required", "人工转账须由管理员操作", status=403)


# -- the API -------------------------------------------------------------------------------


def transfer(
    rt: Any, session: Session, *, debit: str, credit: str, amount: int, code: str, key: str,
    ref: str = "", remark: str = "", allow_negative: bool = False, operator_id: int | None = None,
    console: bool = False,
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
    return transfer_many(rt, session, [move], operator_id=operator_id, console=console)[0]


def transfer_many(
    rt: Any, session: Session, moves: Sequence[Move], *, operator_id: int | None = None,
    console: bool = False,
) -> list[TransferResult]:
    """Several transfers of one business event: all of them or (on a refusal) none.

    Results come in the order of ``moves``; already-made ones (same key) are returned with
    ``created=False``. ``balance_changed`` is deferred for every wallet side of a new transfer.
    """
    if not moves:
        return []
    request = Request(prepare(rt, moves), operator_id)
    with logged_failures(rt, request.moves):
        check_operator(session, request.moves, operator_id, console=console)
        ids = ids_for(rt, session, request.moves)
        only = request.moves[0]
        if len(request.moves) == 1 and _one_wallet(only) and (
                session.get_bind().dialect.update_returning):  # the hot path
            row, created = apply_one(rt, session, only, ids, operator_id)
            request.rows[only.key] = row
            if created:
                request.created.add(only.key)
        else:
            apply_requests(rt, session, [request], ids)
            if request.error is not None:
                raise request.error
        return results(request)


def prepare(rt: Any, moves: Sequence[Move]) -> list[Move]:
    """Validated moves with unique keys (the refusals of bad input)."""
    checked = [_validate(rt, m) for m in moves]
    if len({m.key for m in checked}) != len(checked):
        raise GonglunError("ledger.invalid_argument", "同一批转账的幂等键不能重复",
                           data={"field": "key"})
    return checked


def results(request: Request) -> list[TransferResult]:
    """The outcome per move; a key used before for another transfer is a conflict."""
    out = []
    for m in request.moves:
        row, created = request.rows[m.key], m.key in request.created
        if not created and not row.same_as(m):
            raise key_conflict(row.id)
        out.append(TransferResult(row, created))
    return out


def _one_wallet(move: Move) -> bool:
    return (wallet_user(move.debit) is None) != (wallet_user(move.credit) is None)


def ids_for(rt: Any, session: Session, moves: list[Move]) -> dict[str, int]:
    """Account ids by code for every account the moves touch (created when missing)."""
    out: dict[str, int] = {}
    for code in (c for m in moves for c in (m.debit, m.credit)):
        if code not in out:
            found = account_id(rt, session, code)
            assert found is not None
            out[code] = found
    return out


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

    if not existing(session, [key]):
        covered = held(session, ref)
        if covered < check_amount(amount):
            raise GonglunError("ledger.hold_insufficient", "托管余额不足",
                               data={"ref": ref, "held": covered, "amount": amount})
    return transfer(rt, session, debit=ESCROW, credit=to, amount=amount, code=code, key=key,
                    ref=ref, remark=remark, operator_id=operator_id)


__all__ = ["INSUFFICIENT_MSG", "MAX_AMOUNT", "Move", "TransferResult", "TransferRow",
           "check_amount", "hold", "prepare", "release", "results", "transfer", "transfer_many",
           "wallet"]
