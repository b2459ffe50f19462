"""The command line: users add, audit, migrate; run as a user would, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GONGLUN_")}
    base.update({"GONGLUN_DATA_DIR": str(tmp_path / "var"),
                 "GONGLUN_CONFIG": str(tmp_path / "gonglun.toml")})
    if os.environ.get("GONGLUN_TEST_DATABASE_URL"):
        base["GONGLUN_DATABASE_URL"] = os.environ["GONGLUN_TEST_DATABASE_URL"]
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "gonglun.cli", *args], capture_output=True,
                          text=True, env=base, cwd=tmp_path, timeout=120)


@pytest.fixture
def db_env(tmp_path: Path) -> Any:
    from gonglun.testing import fresh_database

    with fresh_database(os.environ.get("GONGLUN_TEST_DATABASE_URL"), tmp_path) as url:
        yield {"GONGLUN_DATABASE_URL": url}


def test_users_add_audit_and_tamper(tmp_path: Path, db_env: dict[str, str]) -> None:
    assert run(tmp_path, "migrate", env=db_env).returncode == 0
    out = run(tmp_path, "users", "add", "alice", "--password", "s3cret-pass", "--role", "admin",
              env=db_env)
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    assert created["login"] == "alice" and created["token"] and created["id"]

    dup = run(tmp_path, "users", "add", "alice", "--password", "s3cret-pass", env=db_env)
    assert dup.returncode == 1
    assert json.loads(dup.stderr.strip().splitlines()[-1])["error"] == "user.login_taken"

    from gonglun.config import Config
    from gonglun.ledger import post
    from gonglun.runtime import Runtime

    rt = Runtime(Config({"database": {"url": db_env["GONGLUN_DATABASE_URL"]},
                         "redis": {"prefix": f"cli{os.getpid()}:"}}))
    try:
        with rt.db.write() as session:
            for i, delta in enumerate((500, -200, 300)):
                post(rt, session, user_id=created["id"], delta=delta, scene="admin_adjust",
                     ref=f"r{i}", key=f"cli:{i}", counter="manual", remark="补偿",
                     operator_id=created["id"])
        assert run(tmp_path, "audit", env=db_env).returncode == 0
        accounts = run(tmp_path, "ledger", "accounts", "--json", env=db_env)
        assert accounts.returncode == 0, accounts.stderr
        listed = json.loads(accounts.stdout)
        assert {a["code"]: a["balance"] for a in listed["accounts"]}["manual"] == -600
        assert listed["wallets"] == {"count": 1, "balance": 600, "negative": 0}
        assert listed["total"] == 0
        from sqlalchemy import text

        with rt.db.write() as session:  # someone edits a transfer behind the ledger's back
            session.execute(text(
                "UPDATE ledger_transfers SET amount = amount + 1 WHERE ref = 'r1'"))
        bad = run(tmp_path, "audit", "--json", env=db_env)
        assert bad.returncode == 1
        report = json.loads(bad.stdout)
        assert not report["ok"] and report["problems"]
    finally:
        rt.close()


def test_serve_answers_health_on_the_embedded_default(tmp_path: Path) -> None:
    """The README's run command, as a user runs it: a fresh directory, nothing configured."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONGLUN_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gonglun.cli", "serve", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert status == 200
        assert (tmp_path / "var" / "gonglun.db").exists()
        assert (tmp_path / "var" / "sandbox" / "sandbox.json").exists()
        recharge_through_the_embedded_gateway(tmp_path, port, env)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "Traceback" not in output, output


def recharge_through_the_embedded_gateway(tmp_path: Path, port: int, env: dict) -> None:
    """One server, nothing else: the channels talk to the sandbox it mounts, the sandbox
    notifies it back, its in-process worker credits the balance."""
    added = subprocess.run([sys.executable, "-m", "gonglun.cli", "users", "add", "alice",
                            "--password-stdin"], input="a long password\n",
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert added.returncode == 0, added.stderr
    headers = {"Authorization": f"Bearer {json.loads(added.stdout)['token']}"}
    base = f"http://127.0.0.1:{port}"
    created = httpx.post(f"{base}/v1/payments", timeout=30, json={
        "scene": "recharge_money", "amount": 2500, "method": "alipay", "channel": "page"},
        headers={**headers, "X-Forwarded-For": "6.6.6.6"})
    assert created.status_code == 201, created.text
    import sqlite3

    with sqlite3.connect(tmp_path / "var" / "gonglun.db") as db:
        # No proxy is trusted: the client's own X-Forwarded-For is not its address.
        assert db.execute("SELECT payer_ip FROM payments").fetchone() == ("127.0.0.1",)
    data = created.json()["data"]
    assert data["pay_params"]["url"].startswith(f"{base}/gateway.do?")
    assert httpx.get(data["pay_params"]["url"], timeout=30).status_code == 200  # cashier
    order = data["payment"]["payment_order"]
    assert httpx.post(f"{base}/sandbox/alipay/trades/{order}/pay", timeout=30).status_code == 200
    deadline = time.monotonic() + 30
    balance = None
    while time.monotonic() < deadline:
        balance = httpx.get(f"{base}/v1/me", headers=headers, timeout=10).json()["data"]["balance"]
        if balance == 2500:
            break
        time.sleep(0.2)
    assert balance == 2500


def test_app_module_uses_its_own_folder_from_anywhere(tmp_path: Path) -> None:
    """``uvicorn app:app`` started from another folder finds the same database and keys as
    ``gonglun serve`` run in the project."""
    import shutil

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "app.py", project / "app.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONGLUN_")}
    env["PYTHONPATH"] = str(project)
    shown = subprocess.run(
        [sys.executable, "-c", "import app; print(app.config.database_url)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"sqlite:///{project.resolve() / 'var' / 'gonglun.db'}"
    assert not (elsewhere / "var").exists()


def test_operator_mistakes_get_one_plain_line(tmp_path: Path) -> None:
    """A wrong database URL, an unmigrated database: what is wrong and what to run, no
    traceback; a typo in a plugin name: the nearest valid one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONGLUN_")}

    def gl(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gonglun.cli", *args], env={**env, **extra},
                              capture_output=True, text=True, cwd=tmp_path, timeout=120)

    refused = gl("users", "list", GONGLUN_DATABASE_URL="postgresql://nobody@127.0.0.1:1/x")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "check database.url" in refused.stderr
    empty = tmp_path / "empty.db"
    unmigrated = gl("users", "list", GONGLUN_DATABASE_URL=f"sqlite:///{empty}")
    assert unmigrated.returncode == 2 and "run `gonglun migrate`" in unmigrated.stderr
    typo = gl("plugins", "list", GONGLUN_PLUGINS_DISABLED="redpaket")
    assert typo.returncode == 2 and "did you mean 'redpacket'" in typo.stderr
    assert "Traceback" not in unmigrated.stderr + typo.stderr


def test_json_logs_carry_the_request_id() -> None:
    import io
    import logging

    from gonglun.logs import REQUEST_ID, JsonFormatter, RequestIdFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("gonglun.test_json")
    logger.addHandler(handler)
    token = REQUEST_ID.set("req-123")
    try:
        logger.warning("paid %s", 5)
    finally:
        REQUEST_ID.reset(token)
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["request_id"] == "req-123" and line["message"] == "paid 5"
    assert line["level"] == "WARNING" and line["logger"] == "gonglun.test_json"


def test_ledger_adjust_transfers_and_users_show(tmp_path: Path, db_env: dict[str, str]) -> None:
    """``gonglun ledger adjust``: once per key, never below zero without the flag, in the admin
    audit log; ``ledger transfers --account`` and ``users show`` see it; the audit holds."""
    assert run(tmp_path, "migrate", env=db_env).returncode == 0
    seller = json.loads(run(tmp_path, "users", "add", "seller", "--password", "s3cret-pass",
                            env=db_env).stdout)["id"]

    def adjust(*args: str) -> Any:
        return run(tmp_path, "ledger", "adjust", *args, env=db_env)

    def error(out: Any) -> str:
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
        return str(json.loads(out.stderr)["error"])

    made = adjust("seller", "500", "--reason", "线下补款", "--key", "t-1")
    assert made.returncode == 0, made.stderr
    first = json.loads(made.stdout)
    assert first["created"] and first["balance"] == 500
    again = json.loads(adjust(str(seller), "500", "--reason", "线下补款", "--key", "t-1").stdout)
    assert again["created"] is False and again["adjustment"] == first["adjustment"]
    assert error(adjust("seller", "501", "--reason", "线下补款", "--key", "t-1")) \
        == "ledger.adjustment_mismatch"
    assert error(adjust("seller", "-800", "--reason", "线下付款")) == "ledger.adjustment_negative"
    for amount in ("1.5", "+-5"):  # the rest of the validation is the API's (test_adjustments)
        assert error(adjust("seller", amount, "--reason", "x")) == "ledger.invalid_amount"
    assert error(adjust("seller", "5", "--reason", " ")) == "ledger.invalid_reason"
    assert error(adjust("nobody", "5", "--reason", "x")) == "user.not_found"
    assert error(adjust("seller", "5", "--reason", "x", "--by", "seller")) == "auth.forbidden"
    paid = adjust("seller", "-800", "--reason", "线下付款", "--allow-negative")
    assert paid.returncode == 0, paid.stderr
    assert json.loads(paid.stdout)["balance"] == -300
    # The same command rerun (after a timeout, an unclear answer) is a replay: no second debit.
    rerun = json.loads(adjust("seller", "-800", "--reason", "线下付款", "--allow-negative").stdout)
    assert rerun["created"] is False and rerun["balance"] == -300

    listed = run(tmp_path, "ledger", "transfers", "--account", f"user:{seller}", "--json",
                 env=db_env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["transfers"]
    assert [(t["debit"], t["credit"], t["amount"], t["code"]) for t in rows] == [
        (f"user:{seller}", "manual", 800, "admin_adjust"),
        ("manual", f"user:{seller}", 500, "admin_adjust")]
    by_ref = json.loads(run(tmp_path, "ledger", "transfers", "--ref", f"adjust:{seller}",
                            "--json", env=db_env).stdout)["transfers"]
    assert [t["id"] for t in by_ref] == [t["id"] for t in rows]
    assert error(run(tmp_path, "ledger", "transfers", "--account", "nope", env=db_env)) \
        == "ledger.unknown_account"

    shown = json.loads(run(tmp_path, "users", "show", "seller", env=db_env).stdout)
    assert shown["user"]["balance"] == -300
    assert [(a["action"], a["detail"]["amount"]) for a in shown["actions"]] == [
        ("ledger_adjust", -800), ("ledger_adjust", 500)]
    assert shown["actions"][0]["actor"].startswith("cli:")
    assert shown["actions"][0]["source"].startswith("host:")
    assert run(tmp_path, "audit", env=db_env).returncode == 0
