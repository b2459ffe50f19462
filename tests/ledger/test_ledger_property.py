"""Property: any sequence of transfers, repeats and refusals keeps the ledger's invariants.

A plain Python model (each account's balance, the keys used) predicts every outcome; the
database must agree after each step, the accounts must sum to zero and the audit stay clean.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gonglun.errors import GonglunError
from gonglun.ledger import (
    ESCROW,
    INCOME,
    account_balance,
    postings,
    release,
    run_audit,
    transfer,
    wallet,
)

ACCOUNTS = ("a", "b", ESCROW, INCOME, "channel:alipay")

step = st.tuples(
    st.sampled_from(range(len(ACCOUNTS))),  # debit
    st.sampled_from(range(len(ACCOUNTS))),  # credit
    st.integers(1, 300),  # amount
    st.booleans(),  # allow_negative (with a code that may go negative)
    st.integers(0, 4),  # 0: repeat an earlier key instead of a new transfer
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=25))
def test_random_sequences_keep_the_invariants(rt: Any, new_user: Any, steps: list[Any]) -> None:
    # Fresh wallets per example; the database (and its system accounts) is shared across them.
    names = {"a": wallet(new_user()), "b": wallet(new_user())}
    codes = [names.get(a, a) for a in ACCOUNTS]
    with rt.db.read() as session:
        start = {c: account_balance(session, c) for c in codes}
    model: Counter[str] = Counter(start)
    holds: Counter[str] = Counter()  # what escrow holds per reference (this example's)
    done: list[tuple[str, str, str, int, str, str]] = []  # key, debit, credit, amount, code, ref
    for n, (d, c, amount, allow, repeat) in enumerate(steps):
        debit, credit = codes[d], codes[c]
        if repeat == 0 and done:
            key, debit, credit, amount, code, ref = done[n % len(done)]
            with rt.db.write() as session:
                result = transfer(rt, session, debit=debit, credit=credit, amount=amount,
                                  code=code, key=key, ref=ref)
            assert not result.created and result.transfer.key == key
        elif debit != credit:
            key, code = f"{names['a']}-{n}", "admin_adjust" if allow else "pay"
            ref = f"{names['a']}-h{n}" if credit == ESCROW else ""
            if debit == ESCROW:  # escrow pays out only what a reference holds
                ref = sorted(holds)[n % len(holds)] if holds else f"{names['a']}-none"
            try:
                with rt.db.write() as session:
                    if debit == ESCROW:
                        result = release(rt, session, to=credit, amount=amount, ref=ref,
                                         key=key, code=code)
                    else:
                        result = transfer(rt, session, debit=debit, credit=credit,
                                          amount=amount, code=code, key=key, ref=ref,
                                          allow_negative=allow)
            except GonglunError as exc:
                if debit == ESCROW:
                    assert exc.error == "ledger.hold_insufficient" and holds[ref] < amount
                else:
                    assert exc.error == "ledger.insufficient_balance"
                    assert debit.startswith("user:") and model[debit] < amount and not allow
            else:
                assert not debit.startswith("user:") or model[debit] >= amount or allow
                assert debit != ESCROW or holds[ref] >= amount
                model[debit] -= amount
                model[credit] += amount
                holds[ref] += amount if credit == ESCROW else -amount if debit == ESCROW else 0
                holds = +holds
                assert result.created
                if debit.startswith("user:"):
                    assert result.transfer.debit_after == model[debit]
                done.append((key, debit, credit, amount, code, ref))
        with rt.db.read() as session:
            assert {x: account_balance(session, x) for x in codes} == dict(model)
        assert run_audit(rt) == []
    with rt.db.read() as session:
        for code in names.values():
            rows = postings(session, int(code.split(":")[1]), limit=500)
            assert sum(p.delta for p in rows) == model[code]
    assert sum(model.values()) == sum(start.values())
