"""Administering users from the CLI and the API: every action takes effect at once and is in
the audit log, readable by super admins only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from falcon import testing

from gonglun.api import create_app
from tests.api.test_core_api import auth, make_user


def test_admin_actions_over_http_take_effect_and_are_audited(rt: Any) -> None:
    client = testing.TestClient(create_app(rt=rt))
    uid, token = make_user(rt, "alice")
    _, admin = make_user(rt, "cs", role="admin")
    _, boss = make_user(rt, "boss", role="superadmin")
    assert client.simulate_get("/v1/me", headers=auth(token)).status_code == 200
    banned = client.simulate_post(f"/v1/admin/users/{uid}/ban", headers=auth(admin),
                                  json={"reason": "刷单", "until": "7d"})
    assert banned.status_code == 200, banned.text
    assert banned.json["data"]["user"]["status"] == "banned"
    # The next request of the banned user is refused (its tokens are revoked).
    assert client.simulate_get("/v1/me", headers=auth(token)).status_code == 401
    login = client.simulate_post("/v1/sessions", json={"login": "alice",
                                                       "password": "correct horse battery"})
    assert login.status_code == 403 and login.json["error"] == "auth.banned"
    assert client.simulate_post(f"/v1/admin/users/{uid}/unban",
                                headers=auth(admin)).status_code == 200
    # Admins cannot act on admins; roles are super admins' business.
    cs_id = client.simulate_get("/v1/admin/users", headers=auth(admin),
                                query_string="q=cs").json["data"]["users"][0]["id"]
    assert client.simulate_post(f"/v1/admin/users/{cs_id}/ban", headers=auth(admin),
                                json={"reason": "x"}).status_code == 403
    assert client.simulate_post(f"/v1/admin/users/{uid}/role", headers=auth(admin),
                                json={"role": "admin"}).status_code == 403
    assert client.simulate_post(f"/v1/admin/users/{uid}/role", headers=auth(boss),
                                json={"role": "admin"}).status_code == 200
    assert client.simulate_get("/v1/admin/actions", headers=auth(admin)).status_code == 403
    log = client.simulate_get("/v1/admin/actions", headers=auth(boss)).json["data"]["actions"]
    assert [a["action"] for a in log] == ["role", "unban", "ban"]
    assert log[-1]["actor"] == "admin:cs" and log[-1]["source"].startswith("ip:")
    assert log[-1]["detail"]["reason"] == "刷单" and log[-1]["target_user_id"] == uid


def test_users_cli(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("GONGLUN_")}

    def gl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gonglun.cli", *args], input=stdin,
                              capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=120)

    made = gl("users", "add", "bob", "--password-stdin", stdin="a long password\n")
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    assert json.loads(gl("users", "list", "--search", "bo").stdout)["users"][0]["login"] == "bob"
    assert gl("users", "ban", "bob", "--reason", "spam", "--until", "1d").returncode == 0
    shown = json.loads(gl("users", "show", "bob").stdout)
    assert shown["user"]["status"] == "banned" and shown["user"]["live_tokens"] == 0
    assert shown["actions"][0]["action"] == "ban"
    assert shown["actions"][0]["actor"].startswith("cli:")
    assert gl("users", "unban", "bob").returncode == 0
    assert gl("users", "role", "bob", "admin").returncode == 0
    changed = gl("users", "passwd", "bob", "--password-stdin", stdin="another long one\n")
    assert changed.returncode == 0, changed.stderr
    assert gl("users", "tokens", "revoke", "bob").returncode == 0
    assert [a["action"] for a in json.loads(gl("users", "show", "bob").stdout)["actions"]] == [
        "tokens_revoke", "password", "role", "unban", "ban"]
    assert token  # revoked with the ban: checked over HTTP in the test above
    missing = gl("users", "show", "nobody")
    assert missing.returncode == 1 and "user.not_found" in missing.stderr
