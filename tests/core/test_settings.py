"""The settings schema: unknown settings and plugin names refused with a suggestion, types
checked, `config show` with sources and masked secrets, docs/settings.md current, and every
setting the code reads declared."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gonglun.config import Config, ConfigError
from gonglun.hooks import PluginError
from gonglun.settings import render, schema

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("given", "message"), [
    ({"server": {"prot": 9000}}, "did you mean 'server.port'"),
    ({"sever": {"port": 9000}}, "did you mean 'server'"),
    ({"payment": {"alipay": {"app_idd": "2021"}}}, "did you mean 'payment.alipay.app_id'"),
    ({"server": {"port": "9000"}}, "must be int"),
    ({"auth": {"login_failures": True}}, "must be int"),
])
def test_unknown_or_mistyped_settings_are_refused(given: dict, message: str) -> None:
    from gonglun.runtime import Runtime

    with pytest.raises(ConfigError, match=message):
        Runtime(Config(given))


def test_unknown_plugin_names_are_refused() -> None:
    from gonglun.runtime import Runtime

    with pytest.raises(PluginError, match="did you mean 'redpacket'"):
        Runtime(Config({"plugins": {"disabled": ["redpaket"]}}))


def test_free_form_tables_are_accepted() -> None:
    from gonglun.runtime import Runtime

    Runtime(Config({"payment": {"scenes": {"deposit": {"name": "保证金", "title": "押金"}}},
                    "notify": {"scenes": {"payment_refund": {"channels": {
                        "email": {"cap": 3}}}}}})).close()


def test_config_show_masks_secrets_and_names_sources(tmp_path: Path) -> None:
    (tmp_path / "gonglun.toml").write_text('[server]\nmetrics_token = "very-secret"\n'
                                           '[payment]\nlate_payment = "refund"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONGLUN_")}
    env.update(GONGLUN_CONFIG=str(tmp_path / "gonglun.toml"),
               GONGLUN_REDIS_URL="redis://:hunter2@127.0.0.1:6379/0",
               GONGLUN_AUTH__TOKEN_TTL_DAYS="7")
    shown = subprocess.run([sys.executable, "-m", "gonglun.cli", "config", "show", "--json"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert shown.returncode == 0, shown.stderr
    rows = {r["setting"]: r for r in json.loads(shown.stdout)}
    assert rows["server.metrics_token"]["value"] == "***"
    assert "very-secret" not in shown.stdout and "hunter2" not in shown.stdout
    assert rows["redis.url"]["value"] == "redis://:***@127.0.0.1:6379/0"
    assert rows["payment.late_payment"]["source"].startswith("file")
    assert rows["auth.token_ttl_days"] == {"setting": "auth.token_ttl_days", "value": 7,
                                           "source": "environment", "secret": False}
    assert rows["server.port"]["source"] == "default"
    bad = subprocess.run([sys.executable, "-m", "gonglun.cli", "config", "show"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**env, "GONGLUN_SERVER__PROT": "1"})
    assert bad.returncode == 2 and "did you mean 'server.port'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_the_settings_page_is_current() -> None:
    assert (ROOT / "docs" / "settings.md").read_text("utf-8") == render(), (
        "run: python -m gonglun.settings > docs/settings.md")


def test_every_setting_the_code_reads_is_declared() -> None:
    declared = schema()
    sections = {p.split(".")[0] for p in declared}
    tables = [p for p, s in declared.items() if s.type == "table"]
    read = set()
    for path in (ROOT / "gonglun").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(
                    node.func, "id", None)) in ("get", "path") and node.args and isinstance(
                    node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                value = node.args[0].value
                if "." in value and value.split(".")[0] in sections:
                    read.add(value)
    missing = sorted(p for p in read if p not in declared and not any(
        p == t or p.startswith(t + ".") for t in tables) and not any(
        d.startswith(p + ".") for d in declared))
    assert missing == [], "declare these in gonglun/settings.py"


#: Defaults the code derives from other settings instead of a literal (and why).
DERIVED = {"notify.max_attempts": "one more than notify.retry_s has delays"}


def _value(node: ast.expr, constants: dict[str, ast.expr]) -> object:
    """A default as written: a literal, a module constant, or arithmetic on them."""
    if isinstance(node, ast.Name) and node.id in constants:
        return _value(constants[node.id], constants)
    if isinstance(node, ast.BinOp):
        ops = {ast.Mult: lambda a, b: a * b, ast.Add: lambda a, b: a + b,
               ast.Sub: lambda a, b: a - b}
        left, right = _value(node.left, constants), _value(node.right, constants)
        return ops[type(node.op)](left, right)  # type: ignore[no-untyped-call]
    value = ast.literal_eval(node)
    return list(value) if isinstance(value, tuple) else value


def test_every_default_the_code_passes_is_the_schemas() -> None:
    """``config.get("a.b", default)`` with a default other than the schema's is a second source
    of truth (``config show`` and docs/settings.md would say one thing, the code do another)."""
    declared = schema()
    wrong = []
    for path in (ROOT / "gonglun").rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        constants = {t.id: n.value for n in tree.body if isinstance(n, ast.Assign)
                     for t in n.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get"
                    and len(node.args) == 2 and isinstance(node.args[0], ast.Constant)
                    and node.args[0].value in declared):
                continue
            key = node.args[0].value
            where = f"{path.relative_to(ROOT)}:{node.lineno} {key}"
            try:
                given = _value(node.args[1], constants)
            except (ValueError, KeyError, TypeError):
                if key not in DERIVED:
                    wrong.append(f"{where}: {ast.unparse(node.args[1])} (not a literal)")
                continue
            if given != declared[key].default:
                wrong.append(f"{where}: {given!r} != schema {declared[key].default!r}")
    assert wrong == [], "drop the default (config.get answers the schema's) or fix the schema"


def test_an_unset_setting_reads_as_the_schemas_default() -> None:
    from gonglun.runtime import Runtime

    config = Config({})
    declared = schema()
    assert {p: config.get(p) for p in declared} == {p: s.default for p, s in declared.items()}
    assert config.get("notify.sweep_s", 7) == 7 and config.get("no.such_setting") is None
    rt = Runtime(Config({}))
    try:
        from gonglun.plugins.notify.service import Notifier

        notifier = Notifier(rt)
        assert notifier.retry_s == (10, 30, 120, 600, 1800) and notifier.lease_s == 120
        assert notifier.max_attempts == declared["notify.max_attempts"].default
        assert notifier.grace_s == 2 * declared["notify.sweep_s"].default
        jobs = {j.name: j for j in rt.hooks.apply_filters("register_periodic_jobs", [])}
        assert jobs["notify.sweep"].every_s == declared["notify.sweep_s"].default
    finally:
        rt.close()
