"""A plugin package must not have a submodule named like a hook it implements: importing the
submodule replaces the package's attribute, and the hook silently stops being registered."""

from __future__ import annotations

import importlib
import pkgutil

from gonglun.hooks import SPECS
from gonglun.hooks.manager import DEFAULT_PLUGINS


def test_no_submodule_shadows_a_hook() -> None:
    clashes = []
    for _name, module in DEFAULT_PLUGINS:
        package = importlib.import_module(module)
        if not hasattr(package, "__path__"):
            continue
        for info in pkgutil.iter_modules(package.__path__):
            if info.name in SPECS:
                clashes.append(f"{module}.{info.name}")
    assert clashes == []
