"""Loading: built-ins and entry points through one path, blocking, dependencies, the example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gonglun.hooks import DEFAULT_PLUGINS, SPECS, PluginError, PluginManager

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gonglun-hello"


def _example_installed() -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution("gonglun-hello")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="session")
def example_plugin() -> None:
    """The third-party example, pip-installed into this environment like any plugin package."""
    if not _example_installed():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(EXAMPLE)],
            check=True,
        )
    import importlib

    importlib.invalidate_caches()


def gonglun_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gonglun.cli", *args],
        capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=60,
    )


def test_builtins_load_like_entry_points(example_plugin: None) -> None:
    pm = PluginManager()
    pm.load()
    for name, _module in DEFAULT_PLUGINS:
        assert pm.get_plugin(name) is not None
        assert pm.sources[name] == "builtin"
    assert pm.sources["hello"] == "entrypoint:gonglun-hello"


def test_disabled_plugin_is_blocked_before_import(example_plugin: None) -> None:
    code = (
        "import sys; from gonglun.hooks import PluginManager; pm = PluginManager(); "
        "pm.load(['hello']); print('gonglun_hello' in sys.modules, pm.get_plugin('hello'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "None"]


def test_required_plugin_refuses_to_be_disabled() -> None:
    pm = PluginManager()
    with pytest.raises(PluginError, match="'payment' cannot be disabled: plugin 'refund'"):
        pm.load(["payment"], entry_points=False)


def test_disabling_a_plugin_with_its_dependents_is_allowed() -> None:
    pm = PluginManager()
    pm.load(["payment", "refund", "identify", "face"], entry_points=False)
    assert pm.get_plugin("payment") is None


def test_essential_plugin_cannot_be_disabled() -> None:
    with pytest.raises(PluginError, match="'core' is essential"):
        PluginManager().load(["core"], entry_points=False)


def test_plugins_list_json_shows_builtin_and_example(example_plugin: None) -> None:
    out = gonglun_cli("plugins", "list", "--json")
    assert out.returncode == 0, out.stderr
    infos = {p["name"]: p for p in json.loads(out.stdout)}
    assert infos["payment"] == {"name": "payment", "source": "builtin", "enabled": True,
                                "requires": []}
    assert infos["hello"]["source"] == "entrypoint:gonglun-hello"
    assert infos["hello"]["enabled"] is True

    out = gonglun_cli("plugins", "list", "--json", env={"GONGLUN_PLUGINS_DISABLED": "hello"})
    infos = {p["name"]: p for p in json.loads(out.stdout)}
    assert infos["hello"]["enabled"] is False


def test_cli_reports_a_refused_disable_clearly() -> None:
    out = gonglun_cli("plugins", "list", env={"GONGLUN_PLUGINS_DISABLED": "payment"})
    assert out.returncode == 2
    assert "'payment' cannot be disabled" in out.stderr
    assert "Traceback" not in out.stderr


def test_hooks_list_json(example_plugin: None) -> None:
    out = gonglun_cli("hooks", "list", "--json")
    assert out.returncode == 0, out.stderr
    table = {h["name"]: h for h in json.loads(out.stdout)}
    for name in ("payment_success", "payment_closed", "refund_ok", "refund_abnormal",
                 "identify_close", "account_reset", "face_ok", "balance_changed", "notify",
                 "register_routes", "register_actors", "register_periodic_jobs",
                 "register_payment_scenes", "register_notification_scenes", "register_commands"):
        assert name in table
    assert table["payment_success"]["kind"] == "action"
    assert table["payment_success"]["deferred"] is True
    assert table["user_public"]["kind"] == "filter"
    assert table["channel_config"]["kind"] == "decision"
    routes = table["register_routes"]["implementations"]
    assert [i["plugin"] for i in routes][:1] == ["core"]  # priority 0 before the default 10
    assert "hello" in [i["plugin"] for i in routes]
    assert [i["priority"] for i in routes] == sorted(i["priority"] for i in routes)
    changed = table["balance_changed"]["implementations"]
    assert {"plugin": "hello", "priority": 20} .items() <= changed[-1].items()

    out = gonglun_cli("hooks", "list", "--json", env={"GONGLUN_PLUGINS_DISABLED": "hello"})
    table = {h["name"]: h for h in json.loads(out.stdout)}
    assert "hello" not in [i["plugin"] for i in table["register_routes"]["implementations"]]


def test_every_hook_has_a_docstring() -> None:
    for name, info in SPECS.items():
        assert info.doc, f"hook {name} has no docstring"


def test_every_hook_is_documented() -> None:
    text = (ROOT / "docs" / "hooks.md").read_text("utf-8")
    missing = [name for name in SPECS if f"`{name}`" not in text]
    assert not missing, f"hooks missing from docs/hooks.md: {missing}"


def test_hooks_doc_is_current() -> None:
    from gonglun.hooks.docs import render

    text = (ROOT / "docs" / "hooks.md").read_text("utf-8")
    assert text == render(), "run: python -m gonglun.hooks.docs > docs/hooks.md"


def test_jobs_list_json() -> None:
    out = gonglun_cli("jobs", "list", "--json")
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    jobs = {j["name"]: j for j in listing["jobs"]}
    actors = {a["name"] for a in listing["actors"]}
    assert jobs["outbox_sweep"]["actor"] == "gonglun.outbox_sweep"
    assert jobs["payment.close_expired"]["every_s"] == 30
    for job in jobs.values():
        assert job["actor"] in actors
    without = {"GONGLUN_PLUGINS_DISABLED": "payment,refund,identify,face"}
    out = gonglun_cli("jobs", "list", env=without)
    assert "payment.close_expired" not in out.stdout and "outbox_sweep" in out.stdout
