"""WordPress-style calls over the pluggy registry: actions, filters, decisions.

``Hooks`` is what business code uses: ``do_action``, ``apply_filters``, ``decide``, ``defer``,
``add_action``/``remove_action`` for plain callables, ``did_action``/``doing_action``. It calls
implementations itself (in priority order, from a cache the manager rebuilds when registration
changes) rather than through pluggy's LIFO ``_multicall``; ``rt`` is injected into every call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from gonglun.hooks.manager import Impl, PluginManager
from gonglun.hooks.markers import DEFAULT_PRIORITY, SPECS, hookimpl

log = logging.getLogger("gonglun.hooks")
trace_log = logging.getLogger("gonglun.hooks.trace")


class HookCallError(TypeError):
    """A hook was called with arguments its implementation needs but did not get."""


class Hooks:
    """The hook runner bound to one runtime (``rt`` is passed to every implementation)."""

    def __init__(self, pm: PluginManager, rt: Any = None, *, trace: bool = False):
        self.pm = pm
        self.rt = rt
        self.trace = trace
        self._fired: Counter[str] = Counter()
        self._local = threading.local()
        self._callbacks: dict[tuple[str, Callable[..., Any]], str] = {}
        #: Set by the outbox module: writes a deferred call in the caller's transaction.
        self.deferrer: Callable[..., Any] | None = None

    # -- introspection ---------------------------------------------------------------------

    def _stack(self) -> list[str]:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def did_action(self, name: str) -> int:
        """How many times ``name`` has been fired in this process (WordPress ``did_action``)."""
        return self._fired[name]

    def doing_action(self, name: str | None = None) -> bool:
        """Whether ``name`` (or, with no name, any hook) is running in this thread."""
        stack = self._stack()
        return bool(stack) if name is None else name in stack

    def current_hook(self) -> str | None:
        stack = self._stack()
        return stack[-1] if stack else None

    def implementations(self, name: str) -> tuple[Impl, ...]:
        return self.pm.impls(name)

    # -- calling ---------------------------------------------------------------------------

    def _args(self, impl: Impl, kwargs: dict[str, Any], name: str) -> list[Any]:
        try:
            return [kwargs[a] for a in impl.argnames]
        except KeyError as exc:
            raise HookCallError(
                f"hook {name!r}: implementation {impl.plugin}.{impl.function.__name__} "
                f"needs argument {exc.args[0]!r}"
            ) from None

    def do_action(self, name: str, /, **kwargs: Any) -> None:
        """Run every implementation; a failing one is logged with its traceback, the rest run."""
        impls = self.pm._impl_cache.get(name) or self.pm.impls(name)
        self._fired[name] += 1
        if self.trace:
            return self._traced(name, impls, kwargs, "action")
        kwargs["rt"] = self.rt
        stack = self._stack()
        stack.append(name)
        try:
            for impl in impls:
                try:
                    impl.function(*[kwargs[a] for a in impl.argnames])
                except Exception:
                    log.exception(
                        "action %s: implementation %s.%s failed",
                        name,
                        impl.plugin,
                        impl.function.__name__,
                    )
        finally:
            stack.pop()
        return None

    def apply_filters(self, name: str, value: Any, /, **kwargs: Any) -> Any:
        """Thread ``value`` through the implementations; a None return keeps the value."""
        impls = self.pm._impl_cache.get(name) or self.pm.impls(name)
        self._fired[name] += 1
        if self.trace:
            return self._traced(name, impls, {**kwargs, "_value": value}, "filter")
        kwargs["rt"] = self.rt
        first = _first_arg(name)
        stack = self._stack()
        stack.append(name)
        try:
            for impl in impls:
                kwargs[first] = value
                result = impl.function(*self._args(impl, kwargs, name))
                if result is not None:
                    value = result
        finally:
            stack.pop()
        return value

    def decide(self, name: str, /, **kwargs: Any) -> Any:
        """Return the first non-None answer, in priority order; None when nobody answers."""
        impls = self.pm._impl_cache.get(name) or self.pm.impls(name)
        self._fired[name] += 1
        if self.trace:
            return self._traced(name, impls, kwargs, "decision")
        kwargs["rt"] = self.rt
        stack = self._stack()
        stack.append(name)
        try:
            for impl in impls:
                result = impl.function(*self._args(impl, kwargs, name))
                if result is not None:
                    return result
        finally:
            stack.pop()
        return None

    def defer(self, session: Any, name: str, /, *, key: str | None = None, **kwargs: Any) -> Any:
        """Fire ``name`` after ``session`` commits, on a worker, exactly once per ``key``."""
        if self.deferrer is None:
            raise RuntimeError("deferred hooks need the outbox (Runtime wires it)")
        _deferrable(name)
        return self.deferrer(session, name, key=key, kwargs=kwargs)

    def defer_many(self, session: Any, calls: list[tuple[str, str, dict[str, Any]]]) -> None:
        """``defer`` for many ``(name, key, kwargs)`` at once, in one statement."""
        for name, _key, _kwargs in calls:
            _deferrable(name)
        self.rt.outbox.defer_many(session, calls)

    def _traced(self, name: str, impls: tuple[Impl, ...], kwargs: dict[str, Any], kind: str) -> Any:
        """Slow path with per-implementation timings, taken only when tracing is switched on."""
        self.trace, was = False, self.trace
        started = time.perf_counter()
        timings: list[str] = []
        try:
            if kind == "filter":
                value = kwargs.pop("_value")
                for impl in impls:
                    t = time.perf_counter()
                    result = self.call_one(name, impl, {**kwargs, _first_arg(name): value})
                    timings.append(f"{impl.plugin}:{impl.priority}={_ms(t)}")
                    value = value if result is None else result
                return value
            if kind == "decision":
                for impl in impls:
                    t = time.perf_counter()
                    result = self.call_one(name, impl, kwargs)
                    timings.append(f"{impl.plugin}:{impl.priority}={_ms(t)}")
                    if result is not None:
                        return result
                return None
            for impl in impls:
                t = time.perf_counter()
                try:
                    self.call_one(name, impl, kwargs)
                except Exception:
                    log.exception("action %s: implementation %s failed", name, impl.plugin)
                timings.append(f"{impl.plugin}:{impl.priority}={_ms(t)}")
            return None
        finally:
            self.trace = was
            trace_log.info(
                "%s %s args=%s impls=[%s] total=%s",
                kind,
                name,
                sorted(k for k in kwargs if k != "rt"),
                ", ".join(timings),
                _ms(started),
            )

    def call_one(self, name: str, impl: Impl, kwargs: dict[str, Any]) -> Any:
        """Call a single implementation (the outbox consumer runs them one by one)."""
        kwargs = {**kwargs, "rt": self.rt}
        stack = self._stack()
        stack.append(name)
        try:
            return impl.function(*self._args(impl, kwargs, name))
        finally:
            stack.pop()

    # -- plain callables (WordPress add_action / remove_action) ------------------------------

    def add_action(
        self, name: str, callback: Callable[..., Any], priority: int = DEFAULT_PRIORITY
    ) -> str:
        """Register ``callback`` as an implementation of ``name``; returns its plugin name."""
        if (name, callback) in self._callbacks:
            return self._callbacks[(name, callback)]
        plugin_name = f"callback:{name}:{getattr(callback, '__qualname__', 'fn')}:{id(callback)}"
        impl = hookimpl(_rename(callback, name), priority=priority)
        self.pm.register(SimpleNamespace(**{name: impl}), plugin_name)
        self._callbacks[(name, callback)] = plugin_name
        return plugin_name

    add_filter = add_action

    def remove_action(self, name: str, callback: Callable[..., Any]) -> bool:
        plugin_name = self._callbacks.pop((name, callback), None)
        if plugin_name is None:
            return False
        self.pm.unregister(name=plugin_name)
        return True

    remove_filter = remove_action


def _deferrable(name: str) -> None:
    info = SPECS.get(name)
    if info is None or info.kind != "action":
        raise ValueError(f"only actions can be deferred, not {name!r}")


def _first_arg(name: str) -> str:
    caller = _SPEC_ARGS.get(name)
    if caller is None:
        import inspect

        from gonglun.hooks import specs

        params = [p for p in inspect.signature(getattr(specs, name)).parameters if p != "rt"]
        caller = _SPEC_ARGS[name] = params[0]
    return caller


_SPEC_ARGS: dict[str, str] = {}


def _rename(callback: Callable[..., Any], name: str) -> Callable[..., Any]:
    """Wrap ``callback`` so pluggy sees a function named like the hook with the same arguments."""
    import functools
    import inspect

    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return callback(*args, **kwargs)

    wrapper.__name__ = name
    wrapper.__signature__ = inspect.signature(callback)  # type: ignore[attr-defined]
    return wrapper


def _ms(start: float) -> str:
    return f"{(time.perf_counter() - start) * 1000:.3f}ms"
