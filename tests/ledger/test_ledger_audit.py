"""The audit finds every kind of tampering and carries what plugins add."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, insert, update

from gonglun.hooks import hookimpl
from gonglun.ledger import Balance, Posting, post, run_audit
from gonglun.ledger.audit import ledger_problems


def seed(rt: Any, new_user: Any) -> tuple[int, int]:
    a, b = new_user(), new_user()
    with rt.db.write() as session:
        for i, (uid, delta) in enumerate([(a, 100), (b, 7), (a, -40), (a, 15), (b, -7)]):
            post(rt, session, user_id=uid, delta=delta, scene="s", ref=str(i), key=f"k{i}")
    return a, b


def tamper(rt: Any, stmt: Any) -> list[str]:
    with rt.db.write() as session:
        session.execute(stmt)
    return run_audit(rt)


def test_clean_ledger_passes(rt: Any, new_user: Any) -> None:
    assert run_audit(rt) == []
    seed(rt, new_user)
    assert run_audit(rt) == []


def test_tampered_amount_is_found(rt: Any, new_user: Any) -> None:
    a, _ = seed(rt, new_user)
    problems = tamper(rt, update(Posting).where(Posting.idempotency_key == "k2").values(delta=-30))
    assert any(f"user {a} balance 75 != sum of postings 85" in p for p in problems)
    assert any("balance_after 60 != previous 100 + delta -30 = 70" in p for p in problems)


def test_tampered_running_balance_is_found(rt: Any, new_user: Any) -> None:
    seed(rt, new_user)
    problems = tamper(
        rt, update(Posting).where(Posting.idempotency_key == "k3").values(balance_after=999)
    )
    assert len(problems) == 1 and "balance_after 999 != previous 60 + delta 15 = 75" in problems[0]


def test_tampered_balance_row_is_found(rt: Any, new_user: Any) -> None:
    _, b = seed(rt, new_user)
    problems = tamper(rt, update(Balance).where(Balance.user_id == b).values(balance=1_000_000))
    assert problems == [f"ledger: user {b} balance 1000000 != sum of postings 0"]


def test_deleted_posting_is_found(rt: Any, new_user: Any) -> None:
    seed(rt, new_user)
    problems = tamper(rt, delete(Posting).where(Posting.idempotency_key == "k0"))
    assert any("!= previous 0 + delta -40 = -40" in p for p in problems)
    assert any("!= sum of postings -25" in p for p in problems)


def test_posting_without_balance_row_is_found(rt: Any, new_user: Any) -> None:
    c = new_user()
    row = {
        "user_id": c,
        "delta": 5,
        "balance_after": 5,
        "scene": "s",
        "ref": "",
        "remark": "",
        "idempotency_key": "forged",
    }
    problems = tamper(rt, insert(Posting).values(**row))
    assert problems == [f"ledger: user {c} has 1 posting(s) but no balance row"]


def test_many_problems_are_summarised(rt: Any, new_user: Any) -> None:
    uid = new_user()
    with rt.db.write() as session:
        for i in range(5):
            post(rt, session, user_id=uid, delta=1, scene="s", ref="", key=f"k{i}")
        session.execute(update(Posting).values(balance_after=0))
        problems = ledger_problems(session, max_lines=2)
    assert len(problems) == 3
    assert problems[-1] == "ledger: 3 more postings break the running balance"


def test_plugins_add_their_problems(rt: Any) -> None:
    @hookimpl
    def audit(problems: list[str], session: Any) -> list[str]:
        assert session is not None
        return [*problems, "payment: order 1 paid twice"]

    rt.pm.register(SimpleNamespace(audit=audit), "payment-audit")
    assert run_audit(rt) == ["payment: order 1 paid twice"]
