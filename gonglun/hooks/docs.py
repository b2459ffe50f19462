"""Render ``docs/hooks.md`` from the specs: ``python -m gonglun.hooks.docs > docs/hooks.md``.

A test keeps the file equal to this rendering, so a new hook cannot ship undocumented.
"""

from __future__ import annotations

import inspect

from gonglun.hooks import specs
from gonglun.hooks.markers import SPECS

HEADER = """# Hooks

Every business event of Gonglun is a named hook; every feature is a plugin implementing hooks
(see `gonglun/hooks/specs.py`, the single source of this page). Kinds:

- **action**: every implementation runs in priority order; one failing is logged with its
  traceback and the others still run. *Deferred* actions are fired with
  `rt.hooks.defer(session, name, key=..., **kwargs)` inside the business transaction, written to
  the outbox, and run on a worker after commit (arguments are ids and JSON primitives).
- **filter**: the first argument is threaded through the implementations; returning `None`
  keeps the value. Failures propagate.
- **decision**: the first non-`None` answer wins. Failures propagate.

Implementations take any subset of the arguments (`rt`, the Runtime, is always available) and
declare a WordPress-style priority: `@hookimpl(priority=5)` (default 10; lower runs first; ties
in registration order). `gonglun hooks list` shows the live call order.

Regenerate this page with `python -m gonglun.hooks.docs > docs/hooks.md`.
"""


def render() -> str:
    lines = [HEADER]
    for name, info in SPECS.items():
        sig = inspect.signature(getattr(specs, name))
        args = ", ".join(p for p in sig.parameters)
        flag = ", deferred" if info.deferred else ""
        lines.append(f"## `{name}` ({info.kind}{flag})\n")
        lines.append(f"`{name}({args})`\n")
        lines.append(f"{info.doc}\n")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
