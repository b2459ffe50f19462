"""What every benchmark shares: it counts only operations it verified, and fails loudly.

A benchmark records, for each kind of operation it counts, how many it asked for and how many
it then found done in the database, the API or the receiving end (paid, refunded, credited,
delivered...). ``Checks.exit_code`` is non-zero when any counted operation was not verified or
nothing was done at all, so a benchmark measuring failures (no keys, a broken channel) turns
its run, and CI's smoke run (``--smoke``, tests/bench/test_bench_smoke.py), red.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class Checks:
    def __init__(self) -> None:
        self.verified: dict[str, int] = {}
        self.failures: list[str] = []

    def expect(self, what: str, verified: int, wanted: int) -> int:
        """``verified`` of the ``wanted`` operations named ``what`` were found done."""
        self.verified[what] = verified
        if wanted <= 0 or verified != wanted:
            self.failures.append(f"{what}: {verified} of {wanted} verified")
        return verified

    def require(self, ok: bool, message: str) -> None:
        if not ok:
            self.failures.append(message)

    def report(self) -> dict[str, Any]:
        return {"verified": dict(self.verified), "failures": list(self.failures)}

    def exit_code(self) -> int:
        """1 (after saying why on stderr) when anything counted failed or nothing was done."""
        if not self.verified or not any(self.verified.values()):
            self.failures.append("nothing was done")
        for failure in self.failures:
            print(f"BENCHMARK FAILED: {failure}", file=sys.stderr)
        return 1 if self.failures else 0


def per_second(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def write_results(name: str, results: dict[str, Any]) -> Path:
    """``bench/results/<name>.json`` (``BENCH_RESULTS_DIR`` elsewhere, as the smoke test does)."""
    folder = Path(os.environ.get("BENCH_RESULTS_DIR") or ROOT / "bench" / "results")
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{name}.json"
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out
