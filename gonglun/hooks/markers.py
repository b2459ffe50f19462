"""Markers for hook specifications and implementations.

pluggy orders implementations LIFO with only ``tryfirst``/``trylast``; Gonglun layers
WordPress-style numeric priorities on top: lower runs first, default 10, ties in registration
order. The priority rides on the implementation function as an attribute so the pluggy registry
stays the single source of truth for *which* implementations exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import pluggy

PROJECT = "gonglun"
DEFAULT_PRIORITY = 10
PRIORITY_ATTR = "gonglun_priority"

Kind = Literal["action", "filter", "decision"]
F = TypeVar("F", bound=Callable[..., Any])

_spec = pluggy.HookspecMarker(PROJECT)
_impl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class SpecInfo:
    """What the runner and ``gonglun hooks list`` need to know about one hook."""

    name: str
    kind: Kind
    deferred: bool
    doc: str


#: Every declared hook, filled as ``specs.py`` is imported.
SPECS: dict[str, SpecInfo] = {}


def _declare(fn: F, kind: Kind, deferred: bool) -> F:
    doc = " ".join((fn.__doc__ or "").split())
    SPECS[fn.__name__] = SpecInfo(fn.__name__, kind, deferred, doc)
    return _spec(firstresult=(kind == "decision"))(fn)


def action(fn: F | None = None, *, deferred: bool = False) -> Any:
    """Declare an action: every implementation runs, failures are logged and isolated.

    ``deferred=True`` marks hooks that business code fires through the outbox
    (``Hooks.defer``) so they run after commit on a worker.
    """
    if fn is None:
        return lambda f: _declare(f, "action", deferred)
    return _declare(fn, "action", deferred)


def filter(fn: F) -> F:
    """Declare a filter: the first argument is threaded through implementations in order."""
    return _declare(fn, "filter", False)


def decision(fn: F) -> F:
    """Declare a decision: the first non-None answer wins (pluggy ``firstresult``)."""
    return _declare(fn, "decision", False)


def hookimpl(
    fn: F | None = None, *, priority: int = DEFAULT_PRIORITY, specname: str | None = None
) -> Any:
    """Mark a plugin function as a hook implementation, with an optional priority."""

    def mark(f: F) -> F:
        setattr(f, PRIORITY_ATTR, int(priority))
        return _impl(specname=specname)(f) if specname else _impl(f)

    return mark(fn) if fn is not None else mark
