"""Money invariants of the ledger (``gonglun audit``), then whatever plugins add.

Three set-based queries, so an audit of millions of postings is three scans rather than a
Python loop: balances against the sum of postings, each posting's ``balance_after`` against its
predecessor's (a window function; SQLite >= 3.25, PostgreSQL, MariaDB >= 10.2), and postings
whose account has no balance row. A tampered amount, a tampered running balance, a deleted or
inserted posting and an edited balance each break at least one of them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session

from gonglun.ledger.models import Balance, Posting

#: Lines reported per check; the count of the rest is summarised.
MAX_LINES = 100


def ledger_problems(session: Session, *, max_lines: int = MAX_LINES) -> list[str]:
    """One line per broken ledger invariant (empty when the ledger is consistent)."""
    problems: list[str] = []
    sums = (
        select(Posting.user_id, func.sum(Posting.delta).label("total"))
        .group_by(Posting.user_id)
        .subquery()
    )
    total = func.coalesce(sums.c.total, literal(0))
    mismatched = (
        select(Balance.user_id, Balance.balance, total.label("total"))
        .outerjoin(sums, sums.c.user_id == Balance.user_id)
        .where(Balance.balance != total)
        .order_by(Balance.user_id)
    )
    _report(
        problems,
        session.execute(mismatched),
        max_lines,
        lambda r: f"ledger: user {r.user_id} balance {r.balance} != sum of postings {r.total}",
        "balance rows differ from their postings",
    )

    previous = (
        func.lag(Posting.balance_after)
        .over(partition_by=Posting.user_id, order_by=Posting.id)
        .label("previous")
    )
    chained = select(
        Posting.id, Posting.user_id, Posting.delta, Posting.balance_after, previous
    ).subquery()
    expected = func.coalesce(chained.c.previous, literal(0)) + chained.c.delta
    broken = (
        select(chained, expected.label("expected"))
        .where(chained.c.balance_after != expected)
        .order_by(chained.c.id)
    )
    _report(
        problems,
        session.execute(broken),
        max_lines,
        lambda r: (
            f"ledger: posting {r.id} (user {r.user_id}) balance_after {r.balance_after} "
            f"!= previous {r.previous or 0} + delta {r.delta} = {r.expected}"
        ),
        "postings break the running balance",
    )

    orphans = (
        select(Posting.user_id, func.count().label("n"))
        .outerjoin(Balance, Balance.user_id == Posting.user_id)
        .where(Balance.user_id.is_(None))
        .group_by(Posting.user_id)
        .order_by(Posting.user_id)
    )
    _report(
        problems,
        session.execute(orphans),
        max_lines,
        lambda r: f"ledger: user {r.user_id} has {r.n} posting(s) but no balance row",
        "accounts have postings but no balance row",
    )
    return problems


def _report(problems: list[str], rows: Any, max_lines: int, line: Any, summary: str) -> None:
    extra = 0
    for n, row in enumerate(rows):
        if n < max_lines:
            problems.append(line(row))
        else:
            extra += 1
    if extra:
        problems.append(f"ledger: {extra} more {summary}")


def run_audit(rt: Any) -> list[str]:
    """The ledger's problems plus every plugin's (``audit`` filter), in one read transaction."""
    with rt.db.read() as session:
        problems = ledger_problems(session)
        return list(rt.hooks.apply_filters("audit", problems, session=session))
