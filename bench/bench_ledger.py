"""Ledger throughput: committed postings per second, one hot account and many accounts.

Each posting is a full ``rt.db.write()`` transaction through ``gonglun.ledger.post``: key check,
balance row lock, posting insert, version-checked balance update, outbox row, commit. The relay
of the committed outbox row goes to a stub broker, so the figures are the database path alone.

Backends: SQLite (a file in a temporary directory) always; PostgreSQL when
GONGLUN_BENCH_DATABASE_URL is set or a local server answers at the default URL (a fresh database
is created and dropped). MariaDB with GONGLUN_BENCH_MARIADB_URL. Prints a table and writes
bench/results/ledger.json.

    /work/venv/bin/python bench/bench_ledger.py [--seconds 2.5] [--threads 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import create_engine, text

from gonglun.accounts import create_user, passwords
from gonglun.db import Base
from gonglun.hooks import PluginManager
from gonglun.ledger import post, run_audit
from gonglun.runtime import Runtime
from gonglun.testing import fresh_database, isolated_config

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).parent / "results" / "ledger.json"
ACCOUNTS = 200


def reachable(url: str) -> bool:
    try:
        engine = create_engine(
            url.replace("postgresql://", "postgresql+psycopg://", 1),
            connect_args={"connect_timeout": 2},
        )
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def backends() -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = [("sqlite", None)]
    pg = os.environ.get("GONGLUN_BENCH_DATABASE_URL")
    if pg or reachable(DEFAULT_PG):
        found.append(("postgresql", pg or DEFAULT_PG))
    if os.environ.get("GONGLUN_BENCH_MARIADB_URL"):
        found.append(("mariadb", os.environ["GONGLUN_BENCH_MARIADB_URL"]))
    return found


def run(rt: Any, name: str, threads: int, seconds: float, pick: Any) -> dict[str, Any]:
    """Post +1s from ``threads`` threads for ``seconds``; ``pick(rng)`` chooses the account."""
    counts = [0] * threads
    failures: list[str] = []
    start = threading.Barrier(threads + 1)

    def worker(t: int) -> None:
        rng = random.Random(t)
        start.wait()
        deadline = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < deadline:
            try:
                with rt.db.write() as session:
                    post(
                        rt,
                        session,
                        user_id=pick(rng),
                        delta=1,
                        scene="bench",
                        ref="",
                        key=f"{name}-{threads}-{t}-{n}",
                    )
                counts[t] += 1
            except Exception as exc:  # reported, never hidden
                failures.append(f"{type(exc).__name__}: {exc}")
            n += 1

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    start.wait()
    began = time.perf_counter()
    for th in pool:
        th.join()
    elapsed = time.perf_counter() - began
    total = sum(counts)
    return {
        "scenario": name,
        "threads": threads,
        "postings": total,
        "seconds": round(elapsed, 3),
        "per_second": round(total / elapsed, 1),
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
    }


def bench_backend(kind: str, server: str | None, seconds: float, threads: int) -> list[dict]:
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, fresh_database(server, Path(tmp)) as url:
        config = isolated_config(
            url, Path(tmp), broker={"url": "stub://"}, database={"pool_size": threads + 2}
        )
        rt = Runtime(config, pm=PluginManager())
        try:
            Base.metadata.create_all(rt.db.engine)
            with rt.db.write() as session:
                ids = [
                    create_user(session, f"bench{i}", "bench-password").id for i in range(ACCOUNTS)
                ]
            hot = ids[0]
            plan = [
                ("hot_account", 1, lambda rng: hot),
                ("hot_account", threads, lambda rng: hot),
                ("many_accounts", threads, lambda rng: rng.choice(ids)),
            ]
            for name, n, pick in plan:
                result = {"backend": kind, **run(rt, name, n, seconds, pick)}
                out.append(result)
                print(
                    f"{kind:<11} {name:<14} threads={n:<3} {result['per_second']:>9.1f} postings/s"
                    f"  ({result['postings']} in {result['seconds']} s, "
                    f"{result['failures']} failed)",
                    flush=True,
                )
            problems = run_audit(rt)
            for r in out:
                r["audit_ok"] = not problems
            if problems:
                print(f"{kind}: AUDIT FAILED: {problems[:3]}", flush=True)
        finally:
            rt.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.5, help="per scenario")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    # The benchmark measures the ledger, not Argon2 (user creation happens before timing).
    passwords.use(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    for kind, server in backends():
        results.extend(bench_backend(kind, server, args.seconds, args.threads))
    report = {
        "benchmark": "ledger",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "platform": platform.platform(),
        },
        "seconds_per_scenario": args.seconds,
        "results": results,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(f"wrote {RESULTS} in {report['total_seconds']} s")
    failed = any(r["failures"] or not r["audit_ok"] for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
