"""The hook core: specs, plugin manager, WordPress-style runner, deferred hooks.

Plugins import only ``hookimpl`` from here::

    from gonglun.hooks import hookimpl

    @hookimpl(priority=5)
    def payment_success(rt, payment):
        ...
"""

from gonglun.hooks.manager import (
    DEFAULT_PLUGINS,
    ENTRY_POINT_GROUP,
    ESSENTIAL,
    Impl,
    PluginError,
    PluginInfo,
    PluginManager,
)
from gonglun.hooks.markers import DEFAULT_PRIORITY, SPECS, SpecInfo, hookimpl
from gonglun.hooks.runner import HookCallError, Hooks

__all__ = [
    "DEFAULT_PLUGINS",
    "DEFAULT_PRIORITY",
    "ENTRY_POINT_GROUP",
    "ESSENTIAL",
    "SPECS",
    "HookCallError",
    "Hooks",
    "Impl",
    "PluginError",
    "PluginInfo",
    "PluginManager",
    "SpecInfo",
    "hookimpl",
]
