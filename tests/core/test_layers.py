"""The layers of docs/design.md, checked by import-linter (the contracts in ``.importlinter``).

- The ``plugin-<name>`` contracts say what each built-in plugin's ``REQUIRES`` says: a plugin
  imports the core and only the plugins it requires. They are written out by hand, and this
  test fails when they and ``REQUIRES`` disagree, so changing one without the other is caught.
- ``lint-imports`` keeps every contract on the tree as it is.
- And it is no rubber stamp: a plugin importing a plugin it does not require breaks its
  contract (shown on a copy of the package).
"""

from __future__ import annotations

import configparser
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gonglun

PACKAGE = Path(gonglun.__file__).resolve().parent
REPO = PACKAGE.parent
CONTRACTS = REPO / ".importlinter"
PREFIX = "importlinter:contract:"


def builtin_plugins() -> list[str]:
    return sorted(p.name for p in (PACKAGE / "plugins").iterdir()
                  if (p / "__init__.py").is_file())


def contracts() -> dict[str, configparser.SectionProxy]:
    parser = configparser.ConfigParser()
    parser.read(CONTRACTS, encoding="utf-8")
    return {s.removeprefix(PREFIX): parser[s] for s in parser.sections() if s.startswith(PREFIX)}


def modules(value: str) -> set[str]:
    return {line.strip() for line in value.splitlines() if line.strip()}


def lint_imports(cwd: Path, *contract: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    command = [str(exe) if exe.exists() else shutil.which("lint-imports") or "lint-imports",
               "--no-cache"]
    for c in contract:
        command += ["--contract", c]
    env = {**os.environ, "PYTHONPATH": str(cwd)}  # the package found in cwd, not the installed
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_plugin_contracts_agree_with_requires() -> None:
    plugins = builtin_plugins()
    found = contracts()
    for name in plugins:
        requires = tuple(importlib.import_module(f"gonglun.plugins.{name}").REQUIRES)
        unknown = set(requires) - set(plugins)
        assert not unknown, f"{name} REQUIRES plugins that are not built in: {unknown}"
        forbidden = {f"gonglun.plugins.{p}" for p in plugins if p != name and p not in requires}
        contract = found.get(f"plugin-{name}")
        if not forbidden:  # requires every other plugin: nothing to forbid
            assert contract is None, f"plugin-{name}: {name} requires every plugin"
            continue
        assert contract is not None, (
            f".importlinter has no contract plugin-{name}; add a forbidden contract from "
            f"gonglun.plugins.{name} to {sorted(forbidden)}")
        assert contract["type"] == "forbidden"
        assert modules(contract["source_modules"]) == {f"gonglun.plugins.{name}"}
        assert modules(contract["forbidden_modules"]) == forbidden, (
            f"plugin-{name} disagrees with REQUIRES = {requires}: it should forbid "
            f"{sorted(forbidden)}")
        assert contract.getboolean("allow_indirect_imports") is True
        assert f"REQUIRES ({', '.join(requires) or 'none'})" in contract["name"]
    stray = {c for c in found if c.startswith("plugin-")} - {f"plugin-{p}" for p in plugins}
    assert not stray, f"contracts for plugins that do not exist: {stray}"


def test_import_contracts_are_kept() -> None:
    result = lint_imports(REPO)
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_plugin_importing_an_undeclared_plugin_breaks_its_contract(tmp_path: Path) -> None:
    assert "refund" not in importlib.import_module("gonglun.plugins.notify").REQUIRES
    shutil.copytree(PACKAGE, tmp_path / "gonglun",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(CONTRACTS, tmp_path / ".importlinter")
    before = lint_imports(tmp_path, "plugin-notify")
    assert before.returncode == 0, before.stdout + before.stderr
    notify = tmp_path / "gonglun" / "plugins" / "notify" / "__init__.py"
    notify.write_text(notify.read_text("utf-8") + "\nimport gonglun.plugins.refund\n", "utf-8")

    result = lint_imports(tmp_path, "plugin-notify")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "gonglun.plugins.notify imports only the plugins in its REQUIRES" in out
    assert "BROKEN" in out
    assert "gonglun.plugins.notify -> gonglun.plugins.refund" in out


@pytest.mark.parametrize("edge", ["gonglun.embedded -> gonglun.sandbox",
                                  "gonglun.cli -> gonglun.sandbox.cli"])
def test_the_core_imports_no_sandbox(tmp_path: Path, edge: str) -> None:
    """The same for the core: an import of the sandbox breaks sandbox-only-by-sandbox."""
    source, target = edge.split(" -> ")
    shutil.copytree(PACKAGE, tmp_path / "gonglun",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(CONTRACTS, tmp_path / ".importlinter")
    path = tmp_path.joinpath(*source.split(".")).with_suffix(".py")
    path.write_text(path.read_text("utf-8") + f"\nimport {target}\n", "utf-8")

    result = lint_imports(tmp_path, "sandbox-only-by-sandbox")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert f"{source} -> {target}" in out
