"""The audit finds every kind of tampering, names what was touched, and carries plugins' checks."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update

from gonglun.hooks import hookimpl
from gonglun.ledger import (
    ESCROW,
    INCOME,
    Account,
    AccountBalance,
    Transfer,
    audit_session,
    run_audit,
    transfer,
    wallet,
)
from gonglun.ledger.audit import ledger_problems

ALIPAY = "channel:alipay"


def seed(rt: Any, new_user: Any) -> tuple[int, int]:
    a, b = new_user(), new_user()
    plan = [(ALIPAY, wallet(a), 100), (ALIPAY, wallet(b), 7), (wallet(a), ESCROW, 40),
            (ESCROW, wallet(a), 15), (wallet(b), INCOME, 7)]
    with rt.db.write() as session:
        for i, (debit, credit, amount) in enumerate(plan):
            transfer(rt, session, debit=debit, credit=credit, amount=amount, code="s",
                     ref="hold" if i in (2, 3) else f"r{i}", key=f"k{i}")
    return a, b


def tampered(rt: Any, stmt: Any) -> list[str]:
    """The audit inside a transaction that tampers, then rolls back: the data is left intact."""
    with rt.db.session() as session, session.begin():
        session.execute(stmt)
        problems = audit_session(rt, session)
        session.rollback()
    return problems


def account_id(rt: Any, code: str) -> int:
    with rt.db.read() as session:
        return session.scalar(select(Account.id).where(Account.code == code))


def test_clean_ledger_passes(rt: Any, new_user: Any) -> None:
    assert run_audit(rt) == []
    seed(rt, new_user)
    assert run_audit(rt) == []


def test_edited_amount_is_named(rt: Any, new_user: Any) -> None:
    a, _ = seed(rt, new_user)
    problems = tampered(rt, update(Transfer).where(Transfer.idempotency_key == "k2")
                        .values(amount=30))
    assert f"ledger: account user:{a} balance 75 != transfers 85" in problems
    assert "ledger: account escrow balance 25 != transfers 15" in problems
    assert any(p.startswith("ledger: transfer 3 (user:") and "!= previous 100 + -30 = 70" in p
               for p in problems)


def test_redirected_transfer_is_named(rt: Any, new_user: Any) -> None:
    seed(rt, new_user)
    problems = tampered(rt, update(Transfer).where(Transfer.idempotency_key == "k4")
                        .values(credit_id=account_id(rt, ESCROW)))
    assert "ledger: account income balance 7 != transfers 0" in problems
    assert "ledger: account escrow balance 25 != transfers 32" in problems


def test_edited_running_balance_is_named(rt: Any, new_user: Any) -> None:
    a, _ = seed(rt, new_user)
    problems = tampered(rt, update(Transfer).where(Transfer.idempotency_key == "k3")
                        .values(credit_after=999))
    assert problems[0] == (f"ledger: transfer 4 (user:{a}) balance_after 999 != previous 60 "
                           f"+ 15 = 75")
    assert len(problems) == 1  # the balance row still equals the amounts
    nulled = tampered(rt, update(Transfer).where(Transfer.idempotency_key == "k3")
                      .values(credit_after=None))
    assert any("transfer 4 " in p for p in nulled)


def test_deleted_transfer_is_named(rt: Any, new_user: Any) -> None:
    a, _ = seed(rt, new_user)
    problems = tampered(rt, delete(Transfer).where(Transfer.idempotency_key == "k0"))
    assert f"ledger: account user:{a} balance 75 != transfers -25" in problems
    assert "ledger: account channel:alipay balance -107 != transfers -7" in problems
    assert any("transfer 3 " in p and "!= previous 0 + -40 = -40" in p for p in problems)


def test_edited_balance_rows_are_named(rt: Any, new_user: Any) -> None:
    _, b = seed(rt, new_user)
    wallet_row = update(AccountBalance).where(
        AccountBalance.account_id == account_id(rt, wallet(b))).values(balance=1_000_000)
    assert tampered(rt, wallet_row) == [
        "ledger: all accounts sum to 1000000, not 0",
        f"ledger: account user:{b} balance 1000000 != transfers 0",
    ]
    shard = update(AccountBalance).where(
        AccountBalance.account_id == account_id(rt, ESCROW)).values(balance=0)
    assert tampered(rt, shard) == ["ledger: all accounts sum to -25, not 0",
                                   "ledger: account escrow balance 0 != transfers 25"]
    extra = insert(AccountBalance).values(account_id=account_id(rt, INCOME), shard=999,
                                          balance=3)
    assert "ledger: account income balance 10 != transfers 7" in tampered(rt, extra)
    gone = delete(AccountBalance).where(AccountBalance.account_id == account_id(rt, wallet(b)))
    assert tampered(rt, gone) == []  # b's wallet is at 0 anyway: nothing is wrong
    a_row = delete(AccountBalance).where(
        AccountBalance.account_id != account_id(rt, wallet(b)),
        AccountBalance.account_id == account_id(rt, ALIPAY))
    assert "ledger: account channel:alipay balance 0 != transfers -107" in tampered(rt, a_row)


def test_forged_transfer_is_named(rt: Any, new_user: Any) -> None:
    a, _ = seed(rt, new_user)
    forged = insert(Transfer).values(
        debit_id=account_id(rt, INCOME), credit_id=account_id(rt, wallet(a)), amount=5,
        code="s", ref="x", remark="", idempotency_key="forged", credit_after=80)
    problems = tampered(rt, forged)
    assert f"ledger: account user:{a} balance 75 != transfers 80" in problems
    assert "ledger: account income balance 7 != transfers 2" in problems


def test_moved_wallet_is_named(rt: Any, new_user: Any) -> None:
    a, _ = seed(rt, new_user)
    c = new_user()
    problems = tampered(rt, update(Account).where(Account.code == wallet(a)).values(user_id=c))
    assert problems == [f"ledger: account {account_id(rt, wallet(a))} is user:{a} but belongs "
                        f"to user {c}"]


def test_negative_hold_is_named(rt: Any, new_user: Any) -> None:
    seed(rt, new_user)
    problems = tampered(rt, update(Transfer).where(Transfer.idempotency_key == "k3")
                        .values(ref="other"))
    assert "ledger: escrow holds -15 under ref 'other'" in problems


def test_many_problems_are_summarised(rt: Any, new_user: Any) -> None:
    uid = new_user()
    with rt.db.write() as session:
        for i in range(5):
            transfer(rt, session, debit=ALIPAY, credit=wallet(uid), amount=1, code="s",
                     key=f"k{i}")
        session.execute(update(Transfer).values(credit_after=0))
        problems = ledger_problems(session, max_lines=2)
        session.rollback()
    assert len(problems) == 3
    assert problems[-1] == "ledger: 3 more wallet sides break the running balance"


@pytest.mark.parametrize("plugin_line", ["payment: order 1 paid twice"])
def test_plugins_add_their_problems(rt: Any, plugin_line: str) -> None:
    @hookimpl
    def audit(problems: list[str], session: Any) -> list[str]:
        assert session is not None
        return [*problems, plugin_line]

    rt.pm.register(SimpleNamespace(audit=audit), "payment-audit")
    assert run_audit(rt) == [plugin_line]
