"""Every benchmark, once at a tiny size (``--smoke``), so a broken benchmark is a red build.

A benchmark counts only operations it verified (paid, refunded, credited, delivered, found in
the database) and exits 1 when any failed or nothing was done. The benchmarks run at once, as
subprocesses on the embedded default (each starts its own servers), so CI pays for the slowest
one rather than for all of them; marked ``slow`` so CI runs them once (its second pass).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ("hooks", "ledger", "notify", "payment", "refund", "sandbox")
#: The result file each writes (``bench/results/<name>.json`` in a normal run).
RESULTS = {"hooks": "hooks", "ledger": "ledger", "notify": "notify-sqlite",
           "payment": "payment-sqlite", "refund": "refund-sqlite", "sandbox": "sandbox"}


def _env(results: Path) -> dict[str, str]:
    """The embedded default: no test service of the pass leaks into a benchmark."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONGLUN_")}
    return {**env, "BENCH_RESULTS_DIR": str(results), "PYTHONUNBUFFERED": "1"}


def _start(script: Path, cwd: Path, results: Path, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen([sys.executable, str(script), "--smoke"], cwd=cwd,
                            env=_env(results), stdout=out, stderr=subprocess.STDOUT)


def _without_keys(tmp: Path) -> Path:
    """bench_payment.py as it was before it configured the channels' keys, in a tree of its own
    (the same package and app.py, linked)."""
    bench = tmp / "bench"
    bench.mkdir(parents=True)
    source = (ROOT / "bench" / "bench_payment.py").read_text(encoding="utf-8")
    keyless = "\n".join(line for line in source.splitlines()
                        if "GONGLUN_PAYMENT__KEYSET" not in line)
    assert keyless != source
    (bench / "bench_payment.py").write_text(keyless, encoding="utf-8")
    (bench / "checks.py").symlink_to(ROOT / "bench" / "checks.py")
    (tmp / "app.py").symlink_to(ROOT / "app.py")
    (tmp / "gonglun").symlink_to(ROOT / "gonglun")
    return bench / "bench_payment.py"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("bench")
    procs: dict[str, tuple[subprocess.Popen[bytes], Path, Path]] = {}
    for name in BENCHMARKS:
        results, log = tmp / name, tmp / f"{name}.log"
        procs[name] = (_start(ROOT / "bench" / f"bench_{name}.py", ROOT, results, log),
                       results, log)
    keyless = _without_keys(tmp / "keyless")
    procs["payment_without_keys"] = (_start(keyless, keyless.parents[1], tmp / "keyless-out",
                                            tmp / "keyless.log"), tmp / "keyless-out",
                                     tmp / "keyless.log")
    done: dict[str, Any] = {}
    try:
        for name, (proc, results, log) in procs.items():
            code = proc.wait(timeout=600)
            done[name] = {"code": code, "results": results, "log": log.read_text(errors="replace")}
        yield done
    finally:
        for proc, _, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)


def _report(figures: dict[str, Any]) -> tuple[dict[str, int], list[str]]:
    """(verified, failures); bench_payment reports them per run of the code."""
    report = figures if "verified" in figures else figures["after"]
    return dict(report["verified"]), list(report["failures"])


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_verifies_what_it_counts(runs: dict[str, Any], name: str) -> None:
    run = runs[name]
    assert run["code"] == 0, run["log"][-4000:]
    figures = json.loads((run["results"] / f"{RESULTS[name]}.json").read_text())
    verified, failures = _report(figures)
    assert verified and all(v > 0 for v in verified.values()), verified
    assert failures == []


def test_a_benchmark_measuring_failures_exits_non_zero(runs: dict[str, Any]) -> None:
    """The issue's case: bench_payment.py with no channel keys reported 2,770
    "notifications/s" with 0 orders paid and 0 orders created; now it fails."""
    run = runs["payment_without_keys"]
    assert run["code"] == 1, run["log"][-4000:]
    assert "BENCHMARK FAILED: after: notifications: 0 of 20 verified" in run["log"]
    assert "BENCHMARK FAILED: after: orders_created: 0 of 10 verified" in run["log"]
    figures = json.loads((run["results"] / "payment-sqlite.json").read_text())
    assert figures["after"]["notify"]["per_second"] == 0
