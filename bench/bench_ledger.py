"""Ledger throughput: committed transfers per second on one hot wallet, before and after the
double-entry ledger, against pgbench's hot-row UPDATE on the same PostgreSQL as the ceiling.

Every transfer is a full ``rt.db.write()`` transaction: key check, the wallet's conditional
UPDATE ... RETURNING, the transfer row, the system account's shard row, the ``balance_changed``
outbox row, commit (the outbox relay goes to a stub broker, so the figures are the database
path). "Before" is the single-entry ``post`` of ``--before`` (default: the commit before the
double-entry ledger), run by this same harness from an export of that commit, on a fresh
database of its own.

Scenarios, each ``--seconds`` long:

- ``hot_wallet``: ``--processes`` x ``--threads`` writers move money into and out of ONE wallet
  (after: channel:alipay → wallet and wallet → income; before: +1/-1 postings);
- ``hot_wallet_1``: the same from one thread (the latency of one transfer);
- ``hot_wallet_batched`` (after only): ``--batch-processes`` x ``--batch-threads`` callers of
  ``gonglun.ledger.submit``, the group-commit queue: one transaction and one wallet lock per
  batch of concurrent requests, each request still accepted or refused on its own;
- ``escrow``: the same writers, each paying from its own wallet into ``escrow`` (after) or
  debiting its own balance (before): escrow is not a serialisation point.

pgbench runs ``UPDATE hot SET v = v + 1 WHERE id = 1`` with as many clients (and with one) on a
fresh database of the same server. Prints a table; writes bench/results/ledger.json.

Only verified transfers count: after each scenario the rows under its idempotency keys are
counted in the database and must equal the transfers the writers reported; a failed transfer,
a missing row, an unclean audit or no transfer at all exits 1. ``--smoke`` is a tiny run on
SQLite (CI).

    .venv-test/bin/python bench/bench_ledger.py [--seconds 5] [--processes 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: The "before" run (``--impl before``) imports the exported tree its parent put on
#: PYTHONPATH; this tree first would measure today's code twice (or fail on its signatures).
BEFORE_RUN = "--impl" in sys.argv and sys.argv[sys.argv.index("--impl") + 1:][:1] == ["before"]
if not BEFORE_RUN:
    sys.path.insert(0, str(ROOT))

from checks import Checks, write_results  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
SEED = 10**12


# -- the operation under test, in either version of the code --------------------------------


def moves(uid: int, i: int, key: str, escrow: bool) -> list[Any]:
    """The transfer a writer makes: into or out of its wallet, or into escrow."""
    from gonglun.ledger import Move, wallet

    me = wallet(uid)
    if escrow:
        return [Move(me, "escrow", 1, "bench", key, key)]
    return [Move(me, "income", 1, "bench", key) if i % 2
            else Move("channel:alipay", me, 1, "bench", key)]


def operation(impl: str) -> Any:
    """``op(rt, user_id, i, key, escrow)``: one transaction with one transfer (after, or
    ``batched`` through the group-commit queue) or one posting (before)."""
    if impl == "batched":
        from gonglun.ledger import submit

        return lambda rt, uid, i, key, escrow: submit(rt, moves(uid, i, key, escrow))
    if impl == "after":
        from gonglun.ledger import transfer_many

        def after(rt: Any, uid: int, i: int, key: str, escrow: bool) -> None:
            with rt.db.write() as session:
                transfer_many(rt, session, moves(uid, i, key, escrow))

        return after
    from gonglun.ledger import post

    def before(rt: Any, uid: int, i: int, key: str, escrow: bool) -> None:
        with rt.db.write() as session:
            post(rt, session, user_id=uid, delta=-1 if escrow or i % 2 else 1, scene="bench",
                 ref="", key=key)

    return before


def seed(rt: Any, impl: str, session: Any, uid: int) -> None:
    if impl == "after":
        from gonglun.ledger import transfer, wallet

        transfer(rt, session, debit="channel:alipay", credit=wallet(uid), amount=SEED,
                 code="seed", key=f"seed:{uid}")
    else:
        from gonglun.ledger import post

        post(rt, session, user_id=uid, delta=SEED, scene="seed", ref="", key=f"seed:{uid}")


def history(rt: Any, impl: str, users: list[int], rows: int) -> None:
    """Past transfers (postings before), then ANALYZE: a ledger that has been running, so the
    planner knows its tables (a table analysed empty would be read by sequential scans)."""
    from sqlalchemy import text

    for start in range(0, rows, 1000):
        with rt.db.write() as session:
            if impl == "after":
                from gonglun.ledger import Move, transfer_many, wallet

                transfer_many(rt, session, [
                    Move("channel:alipay", wallet(users[n % len(users)]), 1, "history",
                         f"history:{n}", f"h{n}") for n in range(start, min(start + 1000, rows))])
            else:
                from gonglun.ledger import post

                for n in range(start, min(start + 1000, rows)):
                    post(rt, session, user_id=users[n % len(users)], delta=1, scene="history",
                         ref=f"h{n}", key=f"history:{n}")
    if rt.db.dialect != "sqlite":
        with rt.db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


def runtime(url: str, tmp: str, pool: int) -> Any:
    from gonglun.hooks import PluginManager
    from gonglun.runtime import Runtime
    from gonglun.testing import isolated_config

    config = isolated_config(url, Path(tmp), broker={"url": "stub://"},
                             database={"pool_size": pool})
    return Runtime(config, pm=PluginManager())


def writer(impl: str, url: str, tmp: str, users: list[int], threads: int, seconds: float,
           name: str, escrow: bool, barrier: Any, out: Any) -> None:
    """One process: ``threads`` threads transferring for ``seconds``; puts (count, failures)."""
    import threading

    rt = runtime(url, tmp, min(threads, 16) + 2)
    op = operation(impl)
    counts, failures = [0] * threads, []

    def run(t: int) -> None:
        uid = users[t % len(users)]
        deadline = time.perf_counter() + seconds
        i = 0
        while time.perf_counter() < deadline:
            try:
                op(rt, uid, i, f"{name}-{t}-{i}", escrow)
                counts[t] += 1
            except Exception as exc:  # reported, never hidden
                failures.append(f"{type(exc).__name__}: {exc}"[:300])
            i += 1

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    barrier.wait(timeout=120)
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    rt.close()
    out.put((sum(counts), failures[:3], len(failures)))


def scenario(impl: str, url: str, tmp: str, name: str, users: list[int], processes: int,
             threads: int, seconds: float, escrow: bool = False) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(processes + 1), ctx.Queue()
    procs = [ctx.Process(target=writer, args=(
        impl, url, tmp, users[p * threads:(p + 1) * threads] if escrow else users, threads,
        seconds, f"{name}{p}", escrow, barrier, out)) for p in range(processes)]
    for p in procs:
        p.start()
    barrier.wait(timeout=120)
    began = time.perf_counter()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    elapsed = time.perf_counter() - began
    for p in procs:
        p.join(timeout=30)
    total = sum(r[0] for r in results)
    return {"impl": impl, "scenario": name, "processes": processes, "threads": threads,
            "transfers": total, "seconds": round(elapsed, 3),
            "per_second": round(total / elapsed, 1), "failures": sum(r[2] for r in results),
            "first_failure": next((f for r in results for f in r[1]), None)}


def rows_made(rt: Any, name: str, processes: int) -> int:
    """Transfers (postings, before) in the database under the keys of scenario ``name``."""
    from sqlalchemy import func, or_, select

    try:
        from gonglun.ledger.models import Transfer as Row
    except ImportError:  # the single-entry ledger
        from gonglun.ledger.models import Posting as Row  # type: ignore[attr-defined,no-redef]

    with rt.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(Row).where(or_(*(
            Row.idempotency_key.startswith(f"{name}{p}-", autoescape=True)
            for p in range(processes))))) or 0)


def run_impl(impl: str, server: str | None, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every scenario of one version of the code on a fresh database of ``server``."""
    from argon2 import PasswordHasher

    from gonglun.accounts import create_user, passwords
    from gonglun.migrate import upgrade
    from gonglun.testing import fresh_database

    passwords.use(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    writers = args.processes * args.threads
    out = []
    with tempfile.TemporaryDirectory() as tmp, fresh_database(server, Path(tmp)) as url:
        rt = runtime(url, tmp, 4)
        try:
            upgrade(rt)
            with rt.db.write() as session:
                users = [create_user(session, f"bench{i}", "bench-password").id
                         for i in range(writers + 1)]
                for uid in users:
                    seed(rt, impl, session, uid)
            history(rt, impl, users, args.history)
            hot, others = users[:1], users[1:]
            plan = [("hot_wallet_1", impl, hot, 1, 1, False),
                    ("hot_wallet", impl, hot, args.processes, args.threads, False),
                    ("escrow", impl, others, args.processes, args.threads, True)]
            if impl == "after":
                plan.append(("hot_wallet_batched", "batched", hot, args.batch_processes,
                             args.batch_threads, False))
            for name, how, who, procs, threads, escrow in plan:
                result = scenario(how, url, tmp, name, who, procs, threads, args.seconds,
                                  escrow)
                result["impl"] = impl
                result["verified"] = rows_made(rt, name, procs)
                result["verified_ok"] = result["verified"] == result["transfers"] > 0
                out.append(result)
                print(f"  {impl:<6} {name:<18} {procs}x{threads:<3} {result['per_second']:>9.1f}"
                      f" transfers/s  ({result['failures']} failed, {result['verified']} of "
                      f"{result['transfers']} found in the database)", flush=True)
            audit = _audit(rt, impl)
            for r in out:
                r["audit_ok"] = not audit
            if audit:
                print(f"  {impl}: AUDIT FAILED: {audit[:3]}", flush=True)
        finally:
            rt.close()
    return out


def _audit(rt: Any, impl: str) -> list[str]:
    from gonglun.ledger import run_audit

    return run_audit(rt)


# -- pgbench: the hot-row ceiling -----------------------------------------------------------


def pgbench(server: str, clients: int, seconds: float) -> dict[str, Any]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from gonglun.testing import fresh_database

    with tempfile.TemporaryDirectory() as tmp, fresh_database(server, Path(tmp)) as url:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("CREATE TABLE hot (id int PRIMARY KEY, v bigint NOT NULL)"))
            conn.execute(text("INSERT INTO hot VALUES (1, 0)"))
        engine.dispose()
        script = Path(tmp) / "hot.sql"
        script.write_text("UPDATE hot SET v = v + 1 WHERE id = 1;\n")
        parsed = make_url(url)
        cmd = ["pgbench", "-n", "-h", parsed.host or "127.0.0.1", "-p", str(parsed.port or 5432),
               "-U", parsed.username or "postgres", "-f", str(script), "-c", str(clients),
               "-j", str(min(clients, os.cpu_count() or 1)), "-T", str(int(seconds)),
               parsed.database]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                              env={**os.environ, "PGPASSWORD": parsed.password or ""})
    found = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    if done.returncode or not found:
        raise RuntimeError(f"pgbench failed: {done.stderr or done.stdout}")
    return {"scenario": "pgbench_hot_row", "clients": clients,
            "per_second": round(float(found.group(1)), 1)}


# -- orchestration ---------------------------------------------------------------------------


def run_before(ref: str, server: str | None, args: argparse.Namespace) -> list[dict[str, Any]]:
    from gonglun.testing import export_commit

    tree = export_commit(ROOT, ref)
    try:
        out = tree / "before.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--impl", "before", "--out",
               str(out), "--seconds", str(args.seconds), "--processes", str(args.processes),
               "--threads", str(args.threads), "--history", str(args.history),
               "--server", server or "sqlite"]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        subprocess.run(cmd, check=True, env=env, cwd=tree)
        return json.loads(out.read_text())
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def reachable(url: str) -> bool:
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1),
                               connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per scenario")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-processes", type=int, default=2)
    parser.add_argument("--batch-threads", type=int, default=32,
                        help="callers per process of the group-commit queue (submit)")
    parser.add_argument("--history", type=int, default=20_000,
                        help="transfers made (and analysed) before the clock starts")
    parser.add_argument("--before", default=None,
                        help="git ref of the 'before' code (default: the commit before the "
                             "double-entry ledger)")
    parser.add_argument("--no-before", action="store_true")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating after/before rounds; medians reported")
    parser.add_argument("--sqlite", action="store_true", help="also the embedded SQLite")
    parser.add_argument("--smoke", action="store_true",
                        help="a tiny run on SQLite alone, no 'before', no pgbench (CI)")
    parser.add_argument("--impl", choices=("before", "after"), help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.impl:  # a child run: one version of the code, results to --out
        server = None if args.server == "sqlite" else args.server
        Path(args.out).write_text(json.dumps(run_impl(args.impl, server, args)))
        return 0
    if args.smoke:
        args.seconds, args.processes, args.threads, args.history, args.rounds = 0.5, 1, 2, 100, 1
        args.batch_processes, args.batch_threads, args.no_before = 1, 4, True

    pg = os.environ.get("GONGLUN_BENCH_DATABASE_URL") or DEFAULT_PG
    servers = [("sqlite", None)] if args.smoke else (
        [("postgresql", pg)] if reachable(pg) else []) + (
        [("sqlite", None)] if args.sqlite or not reachable(pg) else [])
    from gonglun.testing import pre_ledger_commit

    ref = args.before or ("" if args.no_before else pre_ledger_commit(ROOT))
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    ceilings: list[dict[str, Any]] = []
    for backend, server in servers:
        print(f"{backend}: after (this tree)"
              + ("" if args.no_before else f", before ({ref[:10]})") + ", pgbench", flush=True)
        runs: list[dict[str, Any]] = []
        for n in range(args.rounds):  # alternating order: noise and warm-up fall on both
            order = ["after", "before"] if n % 2 == 0 else ["before", "after"]
            for impl in order:
                if impl == "after":
                    runs.extend(run_impl("after", server, args))
                elif not args.no_before:
                    runs.extend(run_before(ref, server, args))
            if backend == "postgresql" and shutil.which("pgbench") and not args.smoke:
                for clients in (1, args.processes * args.threads):
                    c = pgbench(server, clients, args.seconds)
                    ceilings.append(c)
                    print(f"  pgbench hot-row UPDATE, {clients} clients: "
                          f"{c['per_second']:.1f} tps", flush=True)
        results.extend({"backend": backend, **r} for r in _medians(runs))
    summary = _summary(results, ceilings)
    for line in summary["lines"]:
        print(line)
    report = {
        "benchmark": "ledger",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "before_ref": ref, "seconds_per_scenario": args.seconds,
        "processes": args.processes, "threads": args.threads,
        "results": results, "pgbench": ceilings, "summary": summary["figures"],
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    checks = Checks()
    for r in results:
        what = f"{r['backend']}.{r['impl']}.{r['scenario']}"
        checks.expect(f"{what} transfers", r["verified"] if r["verified_ok"] else 0,
                      r["transfers"])
        checks.require(not r["failures"], f"{what}: {r['failures']} transfer(s) failed, e.g. "
                                          f"{r['first_failure']}")
        checks.require(r.get("audit_ok", True), f"{what}: the ledger audit failed")
    report.update(checks.report())
    print(f"wrote {write_results('ledger', report)} in {report['total_seconds']} s")
    return checks.exit_code()


def _medians(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per (impl, scenario): the round with the median rate, with every rate."""
    import statistics

    out = []
    for key in dict.fromkeys((r["impl"], r["scenario"]) for r in runs):
        same = [r for r in runs if (r["impl"], r["scenario"]) == key]
        mid = statistics.median_low(r["per_second"] for r in same)
        pick = next(r for r in same if r["per_second"] == mid)
        out.append({**pick, "all": [r["per_second"] for r in same],
                    "failures": sum(r["failures"] for r in same),
                    "verified_ok": all(r.get("verified_ok", False) for r in same),
                    "audit_ok": all(r.get("audit_ok", True) for r in same)})
    return out


def _summary(results: list[dict[str, Any]], ceilings: list[dict[str, Any]]) -> dict[str, Any]:
    def rate(backend: str, impl: str, name: str) -> float | None:
        return next((r["per_second"] for r in results if (r["backend"], r["impl"],
                                                          r["scenario"]) == (backend, impl,
                                                                             name)), None)

    lines, figures = [], {}
    best = max((c["per_second"] for c in ceilings), default=None)
    for backend in sorted({r["backend"] for r in results}):
        for name in ("hot_wallet_1", "hot_wallet", "hot_wallet_batched", "escrow"):
            if rate(backend, "after", name) is None:
                continue
            after, before = rate(backend, "after", name), rate(backend, "before", name)
            key = f"{backend}.{name}"
            figures[key] = {"after": after, "before": before,
                            "after_vs_before": round(after / before, 3) if after and before
                            else None}
            text = f"{key:<26} after {after:>8.1f}/s"
            if before:
                text += f"  before {before:>8.1f}/s  ({after / before:.2f}x)"
            if backend == "postgresql" and best and name.startswith("hot_wallet"):
                figures[key]["of_pgbench_best"] = round(after / best, 3)
                text += f"  {after / best:.0%} of pgbench's best {best:.0f}"
            lines.append(text)
    return {"lines": lines, "figures": figures}


if __name__ == "__main__":
    sys.exit(main())
