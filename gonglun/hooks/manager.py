"""The plugin manager: built-ins and entry-point plugins through one path.

Built-in plugins are listed in ``DEFAULT_PLUGINS`` and registered exactly like third-party ones
found in the ``gonglun.plugins`` entry-point group. Disabled plugins are blocked *before* anything
is imported, so a disabled plugin's import-time code never runs. A plugin declares what it needs
in a module-level ``REQUIRES`` tuple; disabling a plugin that an enabled one requires is refused,
and the ``ESSENTIAL`` plugins cannot be disabled at all (pytest's essential plugins work the same).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from gonglun.hooks import specs
from gonglun.hooks.markers import DEFAULT_PRIORITY, PRIORITY_ATTR, PROJECT

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "gonglun.plugins"

#: Built-in plugins in load order: (name, module).
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("core", "gonglun.core_plugin"),
    ("notify", "gonglun.plugins.notify"),
    ("payment", "gonglun.plugins.payment"),
    ("refund", "gonglun.plugins.refund"),
    ("identify", "gonglun.plugins.identify"),
    ("face", "gonglun.plugins.face"),
    ("redpacket", "gonglun.plugins.redpacket"),
)

#: Plugins the platform cannot run without.
ESSENTIAL = frozenset({"core"})


class PluginError(RuntimeError):
    """A plugin cannot be loaded, or the requested set of plugins is inconsistent."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    source: str  #: "builtin" or "entrypoint:<distribution>"
    enabled: bool
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class Impl:
    """One implementation in call order, with what the runner needs to call it fast."""

    function: Any
    argnames: tuple[str, ...]
    plugin: str
    priority: int

    @property
    def ident(self) -> str:
        """Names this implementation among all of its plugin's: plugin, module and function.

        A plugin may implement one hook several times (``specname``): the payment plugin's
        credit and its websocket push of ``payment_success``. Deferred completion is recorded
        per implementation, so one of them succeeding never marks the other done.
        """
        fn = self.function
        name = f"{self.plugin}:{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
        if len(name) <= 191:
            return name
        import hashlib

        return f"{name[:150]}#{hashlib.sha256(name.encode()).hexdigest()[:40]}"


def _package_dir(module: str) -> Path | None:
    """The folder of the package holding ``module`` (the module's own when it is a package),
    found from the import system's metadata alone: nothing is imported, not even parents. None
    for a top-level single-file module (its folder is site-packages, no plugin's own)."""
    import importlib.util

    parts = [p for p in module.split(".") if p]
    if not parts:
        return None
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    for part in parts[1:]:
        if not (folder / part).is_dir():
            break  # a module file: its package is the folder it sits in
        folder = folder / part
    return folder


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus sources, dependencies and a priority-ordered implementation cache."""

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.add_hookspecs(specs)
        self.sources: dict[str, str] = {}
        self.known: dict[str, str] = {}  #: every plugin seen, enabled or not: name → source
        self.modules: dict[str, str] = {}  #: every plugin seen: name → its module's dotted path
        self._impl_cache: dict[str, tuple[Impl, ...]] = {}

    # Registration changes invalidate the ordered-implementation cache.
    def register(self, plugin: Any, name: str | None = None) -> str | None:
        result = super().register(plugin, name)
        self._impl_cache.clear()
        return result

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        result = super().unregister(plugin, name)
        self._impl_cache.clear()
        return result

    def impls(self, hook: str) -> tuple[Impl, ...]:
        """Implementations of ``hook`` in call order: priority ascending, ties by registration."""
        cached = self._impl_cache.get(hook)
        if cached is not None:
            return cached
        caller = getattr(self.hook, hook, None)
        if caller is None:
            raise KeyError(f"unknown hook {hook!r}")
        # pluggy keeps implementations in registration order (tryfirst/trylast aside): a stable
        # sort on priority alone gives WordPress ordering.
        ordered = sorted(
            caller.get_hookimpls(),
            key=lambda i: getattr(i.function, PRIORITY_ATTR, DEFAULT_PRIORITY),
        )
        result = tuple(
            Impl(
                i.function,
                tuple(i.argnames),
                i.plugin_name,
                getattr(i.function, PRIORITY_ATTR, DEFAULT_PRIORITY),
            )
            for i in ordered
        )
        self._impl_cache[hook] = result
        return result

    # -- loading ---------------------------------------------------------------------------

    def load(self, disabled: Iterable[str] = (), *, entry_points: bool = True) -> None:
        """Block ``disabled``, register built-ins, then entry points; check dependencies.

        A disabled name no plugin has is refused with the nearest valid one (a typo would
        otherwise leave the plugin running)."""
        disabled = set(disabled)
        refused = disabled & ESSENTIAL
        if refused:
            raise PluginError(
                f"plugin {sorted(refused)[0]!r} is essential and cannot be disabled"
            )
        for name in disabled:
            self.set_blocked(name)
        for name, module in DEFAULT_PLUGINS:
            self.known[name] = "builtin"
            self.modules[name] = module
            if self.is_blocked(name):
                continue
            self._register(importlib.import_module(module), name, "builtin")
        if entry_points:
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                source = f"entrypoint:{ep.dist.name if ep.dist else '?'}"
                self.known.setdefault(ep.name, source)
                self.modules.setdefault(ep.name, ep.module)
                if self.is_blocked(ep.name) or self.get_plugin(ep.name) is not None:
                    continue
                try:
                    plugin = ep.load()
                except Exception as exc:  # a broken third-party package must say who it is
                    raise PluginError(f"plugin {ep.name!r} failed to load: {exc}") from exc
                self._register(plugin, ep.name, source)
        unknown = sorted(disabled - set(self.known))
        if unknown:
            import difflib

            near = difflib.get_close_matches(unknown[0], list(self.known), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise PluginError(f"plugins.disabled names {unknown[0]!r}, which no installed "
                              f"plugin is{hint} (gonglun plugins list)")
        self.check_requirements()

    def _register(self, plugin: Any, name: str, source: str) -> None:
        self.register(plugin, name)
        self.sources[name] = source

    def requires(self, name: str) -> tuple[str, ...]:
        plugin = self.get_plugin(name)
        return tuple(getattr(plugin, "REQUIRES", ())) if plugin is not None else ()

    def check_requirements(self) -> None:
        for name in list(self.sources):
            for needed in self.requires(name):
                if self.get_plugin(needed) is None:
                    why = "is disabled" if self.is_blocked(needed) else "is not installed"
                    raise PluginError(
                        f"plugin {needed!r} cannot be disabled: plugin {name!r} requires it"
                        if self.is_blocked(needed)
                        else f"plugin {name!r} requires {needed!r}, which {why}"
                    )

    def disabled(self) -> list[str]:
        """Installed plugins the configuration switched off, in load order."""
        return [name for name in self.known if self.get_plugin(name) is None]

    def migration_dirs(self, names: Iterable[str]) -> list[str]:
        """The ``migrations`` folder of each plugin in ``names`` that has one, found without
        importing the plugin: the folder beside its module, inside its package (a disabled
        plugin's import-time code never runs, yet Alembic still knows its revisions)."""
        found = []
        for name in names:
            folder = _package_dir(self.modules.get(name, ""))
            if folder is not None and (folder / "migrations").is_dir():
                found.append(str(folder / "migrations"))
        return found

    def plugin_infos(self) -> list[PluginInfo]:
        return [
            PluginInfo(name, source, self.get_plugin(name) is not None, self.requires(name))
            for name, source in self.known.items()
        ]
