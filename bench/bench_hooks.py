"""Hook dispatch cost: ``do_action`` with 1 and 10 implementations next to a bare pluggy call.

Run: ``python bench/bench_hooks.py`` (prints a table, writes bench/results/hooks.json).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gonglun.hooks import Hooks, PluginManager, hookimpl

CALLS = 200_000
ROUNDS = 5


def make_pm(n: int) -> PluginManager:
    pm = PluginManager()
    for i in range(n):

        @hookimpl(priority=i)
        def payment_closed(rt: Any, payment: dict[str, Any], reason: str) -> None:
            return None

        pm.register(SimpleNamespace(payment_closed=payment_closed), f"p{i}")
    return pm


def per_call_ns(fn: Any) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter_ns()
        for _ in range(CALLS):
            fn()
        best = min(best, (time.perf_counter_ns() - start) / CALLS)
    return best


def main() -> dict[str, Any]:
    results: dict[str, Any] = {"machine": platform.platform(), "python": platform.python_version(),
                               "calls": CALLS, "rounds": ROUNDS, "cases": {}}
    payment = {"id": 1}
    rt = SimpleNamespace()
    for n in (1, 10):
        pm = make_pm(n)
        hooks = Hooks(pm, rt)
        bare = pm.hook.payment_closed

        def call_pluggy(bare: Any = bare) -> None:
            bare(rt=rt, payment=payment, reason="timeout")

        def call_gonglun(hooks: Hooks = hooks) -> None:
            hooks.do_action("payment_closed", payment=payment, reason="timeout")

        pluggy_ns = per_call_ns(call_pluggy)
        gonglun_ns = per_call_ns(call_gonglun)
        results["cases"][f"{n}_impls"] = {
            "pluggy_ns": round(pluggy_ns),
            "do_action_ns": round(gonglun_ns),
            "ratio": round(gonglun_ns / pluggy_ns, 3),
        }
        print(f"{n:>2} implementation(s): pluggy {pluggy_ns:8.0f} ns/call   "
              f"do_action {gonglun_ns:8.0f} ns/call   ratio {gonglun_ns / pluggy_ns:.2f}x "
              f"(goal <= 1.5x)")
    out = Path(__file__).parent / "results" / "hooks.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
