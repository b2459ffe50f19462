"""Reading the ledger: balances, a wallet's entries, accounts, transfers, positions by reference.

A wallet's entries are its sides of transfers, shown as the postings ``GET /v1/me/ledger`` has
always returned (``delta`` signed from the wallet's point of view, ``balance_after``). A system
account's balance is the sum of its shard rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, case, func, select, union_all
from sqlalchemy.orm import Session, aliased

from gonglun.errors import GonglunError
from gonglun.ledger.accounts import ESCROW, ensure_system_accounts, system_accounts, wallet
from gonglun.ledger.models import Account, AccountBalance, Transfer
from gonglun.ledger.moves import TransferRow

MAX_PAGE = 500

#: BAL-05, for the payment plugin's order guard (``\n`` replaces the seeds' ``<br>``, AMB-07).
NEGATIVE_BALANCE_ERROR = "payment.negative_balance"
NEGATIVE_BALANCE_MSG = (
    "订单创建失败:账户余额为负数不允许交易\n请先将账户余额恢复正常,在进行平台交易!"
)


@dataclass(frozen=True)
class Posting:
    """One wallet's side of a transfer."""

    id: int  #: the transfer's id
    user_id: int
    delta: int
    balance_after: int | None
    scene: str  #: the transfer's code
    ref: str
    remark: str
    idempotency_key: str
    created_at: Any

    def to_dict(self) -> dict[str, Any]:
        """JSON primitives for hooks and the API (the shape ``/v1/me/ledger`` always had)."""
        return {
            "id": self.id, "user_id": self.user_id, "delta": self.delta,
            "balance_after": self.balance_after, "scene": self.scene, "ref": self.ref,
            "remark": self.remark, "key": self.idempotency_key,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


def posting_view(row: TransferRow, user_id: int) -> Posting:
    """``row`` as seen from ``user_id``'s wallet."""
    debit = row.debit == wallet(user_id)
    return Posting(row.id, user_id, -row.amount if debit else row.amount,
                   row.debit_after if debit else row.credit_after, row.code, row.ref, row.remark,
                   row.key, row.created_at)


def posting_dict(posting: Posting) -> dict[str, Any]:
    return posting.to_dict()


# -- balances ------------------------------------------------------------------------------

_A, _B, _T = Account.__table__, AccountBalance.__table__, Transfer.__table__


def account_balance(session: Session, code: str) -> int:
    """The balance of account ``code`` in fen (0 for an account that never moved)."""
    value = session.scalar(
        select(func.sum(_B.c.balance)).join(_A, _A.c.id == _B.c.account_id).where(_A.c.code == code)
    )
    return int(value or 0)


#: Built once: every order creation and ``GET /v1/me`` read a wallet (its one row, shard 0).
_WALLET_BALANCE = select(_B.c.balance).where(
    _B.c.account_id == select(_A.c.id).where(_A.c.user_id == bindparam("u")).scalar_subquery(),
    _B.c.shard == 0)


def balance(session: Session, user_id: int) -> int:
    """A user's wallet balance in fen (0 before the first transfer)."""
    value = session.connection().execute(_WALLET_BALANCE, {"u": user_id}).scalar()
    return int(value or 0)


def negative_blocks(session: Session, user_id: int) -> bool:
    """BAL-05: True when the user owes the platform money and may not trade until topped up.

    A wallet that never moved (the seeds' empty ``money``) is never blocked.
    """
    return balance(session, user_id) < 0


def check_not_negative(session: Session, user_id: int) -> None:
    """Raise BAL-05's refusal for an order by a user with a negative balance."""
    if negative_blocks(session, user_id):
        raise GonglunError(NEGATIVE_BALANCE_ERROR, NEGATIVE_BALANCE_MSG, status=403)


# -- a wallet's entries --------------------------------------------------------------------


def _wallet_id(session: Session, user_id: int) -> int | None:
    return session.scalar(select(_A.c.id).where(_A.c.user_id == user_id))


def postings(
    session: Session, user_id: int, limit: int = 50, before_id: int | None = None
) -> list[Posting]:
    """The wallet's entries, newest first; page with ``before_id`` = the last id seen."""
    limit = max(1, min(int(limit), MAX_PAGE))
    account = _wallet_id(session, user_id)
    if account is None:
        return []
    rows = _transfers_of(session, account, limit, before_id)
    return [posting_view(r, user_id) for r in rows]


def _side(column: Any, account: int, limit: int, before_id: int | None,
          filters: list[Any]) -> Any:
    stmt = select(_T.c.id).where(column == account, *filters)
    if before_id is not None:
        stmt = stmt.where(_T.c.id < before_id)
    return stmt.order_by(_T.c.id.desc()).limit(limit)


def _ids_of(session: Session, account: int, limit: int, before_id: int | None,
            filters: list[Any] | None = None) -> list[int]:
    """The newest ids of an account's transfers: two index range scans (its debit side, its
    credit side) merged, not an OR over the table (escrow has millions)."""
    sides = union_all(*(_side(c, account, limit, before_id, filters or []).subquery().select()
                        for c in (_T.c.debit_id, _T.c.credit_id)))
    return sorted((i for (i,) in session.execute(sides)), reverse=True)[:limit]


def _transfers_of(session: Session, account: int, limit: int,
                  before_id: int | None) -> list[TransferRow]:
    return load_transfers(session, _ids_of(session, account, limit, before_id))


def load_transfers(session: Session, ids: list[int]) -> list[TransferRow]:
    """Transfers by id, newest first, with their account codes."""
    if not ids:
        return []
    debit, credit = aliased(Account), aliased(Account)
    rows = session.execute(
        select(Transfer, debit.code, credit.code)
        .join(debit, debit.id == Transfer.debit_id)
        .join(credit, credit.id == Transfer.credit_id)
        .where(Transfer.id.in_(ids))
        .order_by(Transfer.id.desc())
    ).all()
    return [
        TransferRow(t.id, d, c, t.amount, t.code, t.ref, t.remark, t.idempotency_key,
                    t.debit_after, t.credit_after, t.operator_id, t.created_at)
        for t, d, c in rows
    ]


def transfers_by_key(session: Session, keys: list[str]) -> list[TransferRow]:
    """The transfers made under ``keys``, in the order of ``keys`` (missing ones left out)."""
    ids = dict(session.execute(select(_T.c.idempotency_key, _T.c.id)
                               .where(_T.c.idempotency_key.in_(keys))).all())
    rows = {r.key: r for r in load_transfers(session, list(ids.values()))}
    return [rows[k] for k in keys if k in rows]


# -- positions by reference (holds) --------------------------------------------------------


def legs() -> Any:
    """Every transfer as two signed legs: (transfer id, account id, ref, code, delta)."""
    return union_all(
        select(_T.c.id.label("transfer_id"), _T.c.credit_id.label("account_id"), _T.c.ref,
               _T.c.code, _T.c.amount.label("delta")),
        select(_T.c.id, _T.c.debit_id, _T.c.ref, _T.c.code, -_T.c.amount),
    ).subquery("legs")


def positions(session: Session, ref: str) -> dict[str, int]:
    """What each account gained (+) or gave (-) under ``ref``; zero positions left out."""
    sides = union_all(
        select(_T.c.credit_id.label("account_id"), _T.c.amount.label("delta"))
        .where(_T.c.ref == ref),
        select(_T.c.debit_id, -_T.c.amount).where(_T.c.ref == ref),
    ).subquery()
    rows = session.execute(
        select(_A.c.code, func.sum(sides.c.delta))
        .join(sides, sides.c.account_id == _A.c.id)
        .group_by(_A.c.code)
    ).all()
    return {code: int(total) for code, total in rows if total}


def held(session: Session, ref: str) -> int:
    """What ``escrow`` holds under ``ref``."""
    return positions(session, ref).get(ESCROW, 0)


# -- the admin views -----------------------------------------------------------------------


def list_accounts(rt: Any, session: Session) -> dict[str, Any]:
    """System accounts with their balances, the wallets in total, and the sum of everything."""
    declared = system_accounts(rt)
    system = []
    for code, name, value in session.execute(
        select(_A.c.code, _A.c.name, func.coalesce(func.sum(_B.c.balance), 0))
        .outerjoin(_B, _B.c.account_id == _A.c.id).where(_A.c.kind == "system")
        .group_by(_A.c.id, _A.c.code, _A.c.name).order_by(_A.c.id)
    ):
        spec = declared.get(code)
        system.append({"code": code, "name": name, "balance": int(value),
                       "declared": spec is not None,
                       "description": spec.description if spec else ""})
    count, total, negative = session.execute(
        select(func.count(), func.coalesce(func.sum(_B.c.balance), 0),
               func.coalesce(func.sum(case((_B.c.balance < 0, 1), else_=0)), 0))
        .select_from(_B).join(_A, _A.c.id == _B.c.account_id).where(_A.c.kind == "wallet")
    ).one()
    wallets = {"count": int(count), "balance": int(total), "negative": int(negative)}
    return {"accounts": system, "wallets": wallets,
            "total": sum(a["balance"] for a in system) + wallets["balance"]}


def accounts_report(rt: Any) -> dict[str, Any]:
    """``list_accounts`` once every declared system account exists (the admin views')."""
    with rt.db.write() as session:
        ensure_system_accounts(rt, session)
    with rt.db.read() as session:
        return list_accounts(rt, session)


def list_transfers(
    session: Session, *, account: str | None = None, code: str | None = None,
    ref: str | None = None, limit: int = 50, before: int | None = None,
) -> dict[str, Any]:
    """Transfers newest first, filtered by account code, transfer code and reference."""
    limit = max(1, min(int(limit), MAX_PAGE))
    filters = [_T.c.code == code] if code is not None else []
    if ref is not None:
        filters.append(_T.c.ref == ref)
    if account is None:
        stmt = select(_T.c.id).where(*filters)
        if before is not None:
            stmt = stmt.where(_T.c.id < before)
        ids = list(session.scalars(stmt.order_by(_T.c.id.desc()).limit(limit)))
    else:
        aid = session.scalar(select(_A.c.id).where(_A.c.code == account))
        ids = [] if aid is None else _ids_of(session, aid, limit, before, filters)
    rows = load_transfers(session, ids)
    return {"transfers": [r.to_dict() for r in rows],
            "next_before": rows[-1].id if len(rows) == limit else None}


__all__ = ["NEGATIVE_BALANCE_ERROR", "NEGATIVE_BALANCE_MSG", "Posting", "account_balance",
           "accounts_report", "balance", "check_not_negative", "held", "legs", "list_accounts",
           "list_transfers", "negative_blocks", "positions", "posting_dict", "postings",
           "transfers_by_key"]
