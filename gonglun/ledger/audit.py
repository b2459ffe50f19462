"""Money invariants of the ledger (``gonglun audit``), then whatever plugins add.

Set-based queries, so an audit of millions of transfers is a few scans rather than a Python
loop over rows:

1. the balance rows of all accounts sum to zero (money only moves);
2. every account's balance rows equal its transfers (credits minus debits);
3. every wallet's ``balance_after`` chain: each of its sides equals the previous side plus the
   signed amount (``LAG()``; SQLite >= 3.25, PostgreSQL, MariaDB >= 10.2);
4. wallet accounts belong to the user their code names;
5. no reference holds a negative amount in ``escrow``.

A changed, deleted or inserted transfer, an edited balance row and a moved account each break
at least one of them, and the line names the transfer or the account. Plugins then add their
own through the ``audit`` filter (the payment plugin: every order's transfers against its scene
and state, escrow against open orders and holds, channel clearing against statements).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import String, cast, func, literal, select
from sqlalchemy.orm import Session

from gonglun.ledger.accounts import ESCROW, WALLET_PREFIX
from gonglun.ledger.models import Account, AccountBalance, Transfer
from gonglun.ledger.reads import legs

#: Lines reported per check; the count of the rest is summarised.
MAX_LINES = 100

_A, _B, _T = Account.__table__, AccountBalance.__table__, Transfer.__table__


def report(problems: list[str], rows: Iterable[Any], line: Callable[[Any], str], summary: str,
           *, max_lines: int = MAX_LINES) -> None:
    """Append ``line(row)`` for the first ``max_lines`` rows, then ``summary`` with ``{n}`` the
    count of the rest."""
    extra = 0
    for n, row in enumerate(rows):
        if n < max_lines:
            problems.append(line(row))
        else:
            extra += 1
    if extra:
        problems.append(summary.format(n=extra))


def ledger_problems(session: Session, *, max_lines: int = MAX_LINES) -> list[str]:
    """One line per broken ledger invariant (empty when the ledger is consistent)."""
    problems: list[str] = []
    total = session.scalar(select(func.coalesce(func.sum(_B.c.balance), 0)))
    if total:
        problems.append(f"ledger: all accounts sum to {total}, not 0")
    checks = (
        (_balances_vs_transfers(),
         lambda r: f"ledger: account {r.code} balance {r.balance} != transfers {r.moved}",
         "ledger: {n} more accounts differ from their transfers"),
        (_broken_chains(),
         lambda r: (f"ledger: transfer {r.transfer_id} ({r.code}) balance_after {r.after} "
                    f"!= previous {r.previous or 0} + {r.delta} = {r.expected}"),
         "ledger: {n} more wallet sides break the running balance"),
        (_misowned_wallets(),
         lambda r: f"ledger: account {r.id} is {r.code} but belongs to user {r.user_id}",
         "ledger: {n} more wallets with the wrong owner"),
        (_negative_holds(),
         lambda r: f"ledger: escrow holds {r.held} under ref {r.ref!r}",
         "ledger: {n} more references negative in escrow"),
    )
    for stmt, line, summary in checks:
        report(problems, session.execute(stmt), line, summary, max_lines=max_lines)
    return problems


def _balances_vs_transfers() -> Any:
    lg = legs()
    moved = select(lg.c.account_id, func.sum(lg.c.delta).label("moved")).group_by(
        lg.c.account_id).subquery()
    held = select(_B.c.account_id, func.sum(_B.c.balance).label("balance")).group_by(
        _B.c.account_id).subquery()
    balance = func.coalesce(held.c.balance, literal(0))
    total = func.coalesce(moved.c.moved, literal(0))
    return (
        select(_A.c.code, balance.label("balance"), total.label("moved"))
        .outerjoin(held, held.c.account_id == _A.c.id)
        .outerjoin(moved, moved.c.account_id == _A.c.id)
        .where(balance != total)
        .order_by(_A.c.id)
    )


def _broken_chains() -> Any:
    sides = (
        select(_T.c.id.label("transfer_id"), _T.c.debit_id.label("account_id"),
               (-_T.c.amount).label("delta"), _T.c.debit_after.label("after"))
        .union_all(select(_T.c.id, _T.c.credit_id, _T.c.amount, _T.c.credit_after))
        .subquery()
    )
    previous = func.lag(sides.c.after).over(partition_by=sides.c.account_id,
                                            order_by=sides.c.transfer_id)
    chained = (
        select(sides, previous.label("previous"), _A.c.code)
        .join(_A, _A.c.id == sides.c.account_id)
        .where(_A.c.kind == "wallet")
        .subquery()
    )
    expected = func.coalesce(chained.c.previous, literal(0)) + chained.c.delta
    return (
        select(chained, expected.label("expected"))
        .where((chained.c.after.is_(None)) | (chained.c.after != expected))
        .order_by(chained.c.transfer_id)
    )


def _misowned_wallets() -> Any:
    owner = literal(WALLET_PREFIX) + cast(_A.c.user_id, String)
    return (select(_A.c.id, _A.c.code, _A.c.user_id)
            .where(_A.c.kind == "wallet", _A.c.code != owner).order_by(_A.c.id))


def _negative_holds() -> Any:
    lg = legs()
    return (
        select(lg.c.ref, func.sum(lg.c.delta).label("held"))
        .join(_A, _A.c.id == lg.c.account_id)
        .where(_A.c.code == ESCROW)
        .group_by(lg.c.ref)
        .having(func.sum(lg.c.delta) < 0)
        .order_by(lg.c.ref)
    )


def audit_session(rt: Any, session: Session) -> list[str]:
    """The ledger's problems plus every plugin's (``audit`` filter), in ``session``."""
    problems = ledger_problems(session)
    return list(rt.hooks.apply_filters("audit", problems, session=session))


def run_audit(rt: Any) -> list[str]:
    """``audit_session`` in one read transaction."""
    with rt.db.read() as session:
        return audit_session(rt, session)
