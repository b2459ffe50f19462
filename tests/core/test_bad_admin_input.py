"""Bad admin input never answers 500 and a process that cannot start says so in one line:
ban ends past year 9999 (API and CLI), whole numbers no column holds, a database that is
unreachable, read-only or full at start-up (serve, worker, scheduler)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from falcon import testing

from gonglun.api import create_app
from tests.api.test_core_api import assert_error, auth, make_user
from tests.core.test_cli import run

WILD_ENDS = ("999999999d", "99999999999999999999999h", "9999-12-31T23:59:59-01:00",
             "0001-01-01T00:00:00+14:00", "2020-01-01T00:00:00+08:00", "0d", "NaNd", "nan",
             "1e400d", "-5d", "inf")


def test_ban_ends_out_of_range_are_a_clear_400(rt: Any) -> None:
    client = testing.TestClient(create_app(rt=rt))
    _, admin = make_user(rt, "root", role="admin")
    uid, token = make_user(rt)
    for until in WILD_ENDS:
        result = client.simulate_post(f"/v1/admin/users/{uid}/ban", headers=auth(admin),
                                      json={"reason": "核查", "until": until})
        assert_error(result, 400, "user.invalid_ban")
    # Nothing changed: the user still signs in.
    assert client.simulate_get("/v1/me", headers=auth(token)).status_code == 200
    done = client.simulate_post(f"/v1/admin/users/{uid}/ban", headers=auth(admin),
                                json={"reason": "核查", "until": "36500d"})
    assert done.status_code == 200, done.text
    assert done.json["data"]["user"]["banned_until"] > "2120"


def test_ban_and_ids_out_of_range_are_one_line_on_the_cli(tmp_path: Path,
                                                          db_env: dict[str, str]) -> None:
    assert run(tmp_path, "migrate", env=db_env).returncode == 0
    assert run(tmp_path, "users", "add", "bob", "--password", "a long password",
               env=db_env).returncode == 0
    for until in ("999999999d", "9999-12-31T23:59:59-01:00"):
        out = run(tmp_path, "users", "ban", "bob", "--reason", "x", "--until", until,
                  env=db_env)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        assert '"user.invalid_ban"' in out.stderr
    for args in (("users", "show", "99999999999999999999999"),
                 ("users", "list", "--limit", "99999999999999999999"),
                 ("outbox", "--retry", "1", "99999999999999999999"),
                 ("notify", "deliveries", "--user", "-99999999999999999999")):
        out = run(tmp_path, *args, env=db_env)
        assert out.returncode in (1, 2) and "Traceback" not in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, (args, out.stderr)
    shown = run(tmp_path, "users", "show", "bob", env=db_env)
    assert '"status": "active"' in shown.stdout


@pytest.fixture
def db_env(tmp_path: Path) -> Any:
    from gonglun.testing import fresh_database

    with fresh_database(os.environ.get("GONGLUN_TEST_DATABASE_URL"), tmp_path) as url:
        yield {"GONGLUN_DATABASE_URL": url}


def start(tmp_path: Path, command: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GONGLUN_")}
    base.update({"GONGLUN_DATA_DIR": str(tmp_path / "var"),
                 "GONGLUN_CONFIG": str(tmp_path / "gonglun.toml"), **env})
    args = [command, "--port", str(free_port())] if command == "serve" else [command]
    return subprocess.run([sys.executable, "-m", "gonglun.cli", *args], capture_output=True,
                          text=True, env=base, cwd=tmp_path, timeout=120)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = [x for x in out.stderr.splitlines() if x.startswith("gonglun: ")]
    assert len(lines) == 1, out.stderr
    return lines[0]


@pytest.mark.parametrize("command", ["serve", "worker", "scheduler"])
def test_processes_refuse_to_start_on_an_unreachable_database(tmp_path: Path,
                                                              command: str) -> None:
    line = one_line(start(tmp_path, command,
                          GONGLUN_DATABASE_URL="postgresql://postgres@127.0.0.1:1/x",
                          GONGLUN_REDIS_URL=os.environ.get("GONGLUN_TEST_REDIS_URL", "")))
    assert "cannot use the database" in line and "GONGLUN_DATABASE_URL" in line


def test_serve_refuses_to_start_on_a_read_only_database(tmp_path: Path) -> None:
    """``chmod a-w`` of the data folder (root writes through it, so the mode decides), and a
    read-only open of the database: one line each, exit 2 (worker and scheduler run the
    same start-up check)."""
    command = "serve"
    assert start(tmp_path, "migrate").returncode == 0
    var = tmp_path / "var"
    var.chmod(0o500)
    try:
        assert "is read-only" in one_line(start(tmp_path, command))
    finally:
        var.chmod(0o700)
    url = f"sqlite:///file:{var / 'gonglun.db'}?mode=ro&uri=true"
    line = one_line(start(tmp_path, command, GONGLUN_DATABASE_URL=url))
    assert "does not accept writes" in line


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 10**30])
def test_settings_refuse_nan_infinity_and_huge_numbers(value: Any) -> None:
    from gonglun.config import ConfigError
    from gonglun.settings import check, schema

    for path in ({"idempotency": {"lock_s": value}}, {"server": {"threads": value}}):
        with pytest.raises(ConfigError, match="must be"):
            check(path, schema())
