"""Acceptance: 1,000 concurrent +1/-1 postings on one account from threads and processes.

Several spawned processes, each with several threads, plus threads in the test process, all post
to one hot account at once. Afterwards the balance equals the seed plus every committed delta,
each posting's ``balance_after`` chains exactly from its predecessor, and the audit passes; then
one tampered posting makes it fail.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from gonglun.errors import GonglunError
from gonglun.hooks import PluginManager
from gonglun.hooks.deferred import OutboxEvent
from gonglun.ledger import Posting, balance, post, run_audit
from gonglun.testing import isolated_config

PROCESSES = 3
THREADS = 4
PER_PROCESS_THREAD = 60  # 3 * 4 * 60 = 720 from child processes
PARENT_THREADS = 4
PER_PARENT_THREAD = 70  # + 4 * 70 = 280 from this process: 1,000 in all
SEED = 1_000


def post_many(rt: Any, user_id: int, name: str, threads: int, count: int, seed: int) -> list[int]:
    """Post ``threads * count`` random +1/-1 deltas from ``threads`` threads; the committed ones."""
    committed: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(t: int) -> None:
        rng = random.Random(seed * 100 + t)
        try:
            for i in range(count):
                delta = rng.choice((1, -1))
                with rt.db.write() as session:
                    post(
                        rt,
                        session,
                        user_id=user_id,
                        delta=delta,
                        scene="test",
                        ref=name,
                        key=f"{name}-{t}-{i}",
                    )
                with lock:
                    committed.append(delta)
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


def child(url: str, tmp: str, user_id: int, n: int, barrier: Any, results: Any) -> None:
    """A separate process with its own runtime, engine and connection pool."""
    from gonglun.runtime import Runtime

    rt = Runtime(isolated_config(url, Path(tmp)), pm=PluginManager())
    try:
        barrier.wait(timeout=60)
        results.put(("ok", post_many(rt, user_id, f"p{n}", THREADS, PER_PROCESS_THREAD, n)))
    except BaseException as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        rt.close()


def test_thousand_concurrent_postings_chain_exactly(
    rt: Any, db_url: str, tmp_path: Path, new_user: Any
) -> None:
    uid = new_user()
    with rt.db.write() as session:
        post(rt, session, user_id=uid, delta=SEED, scene="seed", ref="", key="seed")

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=child, args=(db_url, str(tmp_path), uid, n, barrier, results))
        for n in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=120)
        mine = post_many(rt, uid, "parent", PARENT_THREADS, PER_PARENT_THREAD, 99)
        outcomes = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
    errors = [detail for kind, detail in outcomes if kind == "error"]
    assert not errors, errors
    deltas = mine + [d for _, committed in outcomes for d in committed]
    assert len(deltas) == 1_000

    with rt.db.read() as session:
        assert balance(session, uid) == SEED + sum(deltas)
        rows = session.execute(
            select(Posting.delta, Posting.balance_after).order_by(Posting.id)
        ).all()
        total = session.scalar(select(func.sum(Posting.delta)))
        events = session.scalar(select(func.count()).select_from(OutboxEvent))
    assert len(rows) == 1_001 and total == SEED + sum(deltas)
    running = 0
    for delta, after in rows:
        running += delta
        assert after == running
    assert events == 1_001  # one balance_changed per posting
    assert run_audit(rt) == []

    with rt.db.write() as session:
        victim = session.scalar(select(Posting.id).order_by(Posting.id).offset(500).limit(1))
        session.execute(update(Posting).where(Posting.id == victim).values(delta=-Posting.delta))
    problems = run_audit(rt)
    assert any(f"posting {victim} " in p for p in problems)
    assert any(f"user {uid} balance" in p for p in problems)


def test_same_key_from_many_threads_posts_once(rt: Any, new_user: Any) -> None:
    uid = new_user()
    start = threading.Barrier(8)
    created: list[bool] = []
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            with rt.db.write() as session:
                result = post(rt, session, user_id=uid, delta=70, scene="s", ref="", key="once")
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
        assert balance(session, uid) == 70
    assert run_audit(rt) == []


def test_debits_racing_for_the_last_fen_never_overdraw(rt: Any, new_user: Any) -> None:
    uid = new_user()
    with rt.db.write() as session:
        post(rt, session, user_id=uid, delta=5, scene="seed", ref="", key="seed")
    start = threading.Barrier(10)
    outcome: list[str] = []

    def run(n: int) -> None:
        start.wait()
        try:
            with rt.db.write() as session:
                post(rt, session, user_id=uid, delta=-1, scene="pay", ref="", key=f"d{n}")
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
        assert balance(session, uid) == 0
    assert run_audit(rt) == []
