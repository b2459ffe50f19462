"""Acceptance: 1,000 concurrent mixed transfers on one hot wallet, escrow and the clearing
accounts, from several processes and threads at once.

Spawned processes, each with several threads, plus threads in the test process, move money
between one hot user, escrow (holds and their release), income, both channel clearing accounts,
a few other wallets and sellers. Afterwards every account's balance equals what the committed
transfers say, the accounts sum to zero, every wallet chain is exact and the audit passes; then
one tampered transfer makes it fail, naming it.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from gonglun.errors import GonglunError
from gonglun.hooks import PluginManager
from gonglun.ledger import (
    ESCROW,
    INCOME,
    Account,
    AccountBalance,
    Transfer,
    account_balance,
    run_audit,
    transfer,
    wallet,
)
from gonglun.testing import isolated_config

PROCESSES = 3
THREADS = 4
PER_PROCESS_THREAD = 60  # 3 * 4 * 60 = 720 from child processes
PARENT_THREADS = 4
PER_PARENT_THREAD = 70  # + 4 * 70 = 280 from this process: 1,000 in all
SEED = 1_000_000
ALIPAY, WXPAY = "channel:alipay", "channel:wxpay"

Move = tuple[str, str, int]


def mixed(rt: Any, hot: int, others: list[int], name: str, threads: int, count: int,
          seed: int) -> list[Move]:
    """``threads * count`` transfers of mixed kinds; returns the committed ones."""
    committed: list[Move] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(t: int) -> None:
        rng = random.Random(seed * 100 + t)
        me, other, seller = wallet(hot), wallet(others[t % 2]), wallet(others[2 + t % 2])
        holds: dict[str, int] = {}
        try:
            for i in range(count):
                amount = rng.randint(1, 9)
                kind = rng.randrange(8)
                ref = f"{name}-{t}-{i}"
                if kind in (2, 6) and holds:  # release part of an earlier hold of this thread
                    ref, left = next(iter(holds.items()))
                    amount = min(amount, left)
                    holds[ref] = left - amount
                    if not holds[ref]:
                        del holds[ref]
                    plan = (ESCROW, me if kind == 2 else seller)
                elif kind in (1, 5):
                    plan = (me if kind == 1 else other, ESCROW)
                    holds[ref] = amount
                else:
                    plan = {3: (me, INCOME), 4: (WXPAY, other), 7: (me, other)}.get(
                        kind, (ALIPAY, me))
                with rt.db.write() as session:
                    transfer(rt, session, debit=plan[0], credit=plan[1], amount=amount,
                             code=f"mix{kind}", ref=ref, key=f"{name}-{t}-{i}")
                with lock:
                    committed.append((plan[0], plan[1], amount))
        except BaseException as exc:  # reported to the test, which fails on it
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return committed


def child(url: str, tmp: str, hot: int, others: list[int], n: int, barrier: Any,
          results: Any) -> None:
    """A separate process with its own runtime, engine and connection pool."""
    from gonglun.runtime import Runtime

    rt = Runtime(isolated_config(url, Path(tmp)), pm=PluginManager())
    try:
        barrier.wait(timeout=60)
        results.put(("ok", mixed(rt, hot, others, f"p{n}", THREADS, PER_PROCESS_THREAD, n)))
    except BaseException as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        rt.close()


def test_thousand_concurrent_mixed_transfers_are_exact(
    rt: Any, db_url: str, tmp_path: Path, new_user: Any
) -> None:
    hot = new_user()
    others = [new_user() for _ in range(4)]
    seeds = [(ALIPAY, wallet(hot)), (WXPAY, wallet(others[0])), (WXPAY, wallet(others[1]))]
    with rt.db.write() as session:
        for n, (debit, credit) in enumerate(seeds):
            transfer(rt, session, debit=debit, credit=credit, amount=SEED, code="seed",
                     key=f"seed{n}")

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=child,
                    args=(db_url, str(tmp_path), hot, others, n, barrier, results))
        for n in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=120)
        mine = mixed(rt, hot, others, "parent", PARENT_THREADS, PER_PARENT_THREAD, 99)
        outcomes = [results.get(timeout=300) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
    errors = [detail for kind, detail in outcomes if kind == "error"]
    assert not errors, errors
    moves = mine + [m for _, committed in outcomes for m in committed]
    assert len(moves) == 1_000

    expected: Counter[str] = Counter()
    for debit, credit, amount in [*((d, c, SEED) for d, c in seeds), *moves]:
        expected[debit] -= amount
        expected[credit] += amount
    with rt.db.read() as session:
        actual = {code: account_balance(session, code) for code in expected}
        total = session.scalar(select(func.sum(AccountBalance.balance)))
        transfers = session.scalar(select(func.count()).select_from(Transfer))
    assert actual == dict(expected)
    assert total == 0 and transfers == 1_003
    assert run_audit(rt) == []

    with rt.db.write() as session:
        victim = session.scalar(
            select(Transfer.id).join(Account, Account.id == Transfer.debit_id)
            .where(Account.code == wallet(hot)).order_by(Transfer.id).offset(100).limit(1))
        session.execute(update(Transfer).where(Transfer.id == victim)
                        .values(amount=Transfer.amount + 1))
    problems = run_audit(rt)
    assert any(f"transfer {victim} " in p for p in problems)
    assert any(f"account user:{hot} balance" in p for p in problems)


def test_same_key_from_many_threads_moves_once(rt: Any, new_user: Any) -> None:
    me = wallet(new_user())
    start = threading.Barrier(8)
    created: list[bool] = []
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            with rt.db.write() as session:
                result = transfer(rt, session, debit=ALIPAY, credit=me, amount=70, code="s",
                                  key="once")
            created.append(result.created)
        except GonglunError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(created) == [False] * 7 + [True]
    with rt.db.read() as session:
        assert account_balance(session, me) == 70
        assert account_balance(session, ALIPAY) == -70
    assert run_audit(rt) == []


def test_debits_racing_for_the_last_fen_never_overdraw(rt: Any, new_user: Any) -> None:
    me = wallet(new_user())
    with rt.db.write() as session:
        transfer(rt, session, debit=ALIPAY, credit=me, amount=5, code="seed", key="seed")
    start = threading.Barrier(10)
    outcome: list[str] = []

    def run(n: int) -> None:
        start.wait()
        try:
            with rt.db.write() as session:
                transfer(rt, session, debit=me, credit=ESCROW, amount=1, code="pay",
                         ref=f"o{n}", key=f"d{n}")
            outcome.append("ok")
        except GonglunError as exc:
            outcome.append(exc.error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcome) == ["ledger.insufficient_balance"] * 5 + ["ok"] * 5
    with rt.db.read() as session:
        assert account_balance(session, me) == 0
        assert account_balance(session, ESCROW) == 5
    assert run_audit(rt) == []
