"""Hook dispatch cost: ``do_action`` with 1 and 10 implementations next to a bare pluggy call.

Every implementation counts its calls; a run in which any call did not reach every
implementation exits 1.

Run: ``python bench/bench_hooks.py [--smoke]`` (prints a table, writes bench/results/hooks.json).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checks import Checks, write_results

from gonglun.hooks import Hooks, PluginManager, hookimpl


def make_pm(n: int, calls: Any) -> PluginManager:
    """``n`` implementations, each counting its calls on ``calls``."""
    pm = PluginManager()
    for i in range(n):

        @hookimpl(priority=i)
        def payment_closed(rt: Any, payment: dict[str, Any], reason: str) -> None:
            next(calls)

        pm.register(SimpleNamespace(payment_closed=payment_closed), f"p{i}")
    return pm


def per_call_ns(fn: Any, calls: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="a tiny run (CI)")
    args = parser.parse_args(argv)
    calls, rounds = (2_000, 1) if args.smoke else (args.calls, args.rounds)
    results: dict[str, Any] = {"machine": platform.platform(), "python": platform.python_version(),
                               "calls": calls, "rounds": rounds, "cases": {}}
    checks = Checks()
    payment = {"id": 1}
    rt = SimpleNamespace()
    for n in (1, 10):
        counter = itertools.count()
        pm = make_pm(n, counter)
        hooks = Hooks(pm, rt)
        bare = pm.hook.payment_closed

        def call_pluggy(bare: Any = bare) -> None:
            bare(rt=rt, payment=payment, reason="timeout")

        def call_gonglun(hooks: Hooks = hooks) -> None:
            hooks.do_action("payment_closed", payment=payment, reason="timeout")

        pluggy_ns = per_call_ns(call_pluggy, calls, rounds)
        ran = next(counter)
        checks.expect(f"pluggy_{n}_impls_calls", ran // n, calls * rounds)
        gonglun_ns = per_call_ns(call_gonglun, calls, rounds)
        checks.expect(f"do_action_{n}_impls_calls", (next(counter) - ran - 1) // n,
                      calls * rounds)
        results["cases"][f"{n}_impls"] = {
            "pluggy_ns": round(pluggy_ns),
            "do_action_ns": round(gonglun_ns),
            "ratio": round(gonglun_ns / pluggy_ns, 3),
        }
        print(f"{n:>2} implementation(s): pluggy {pluggy_ns:8.0f} ns/call   "
              f"do_action {gonglun_ns:8.0f} ns/call   ratio {gonglun_ns / pluggy_ns:.2f}x "
              f"(goal <= 1.5x)")
    results.update(checks.report())
    print(f"wrote {write_results('hooks', results)}")
    return checks.exit_code()


if __name__ == "__main__":
    sys.exit(main())
