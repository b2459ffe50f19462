"""``gonglun doctor --deploy``: on the embedded default it lists what a production operator must
fix; on a production-shaped configuration (real PostgreSQL, Redis and broker, live keys, https,
private metrics) it passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gonglun.testing import fresh_database


def doctor(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gonglun.cli", "doctor", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=180)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GONGLUN_")}


def test_embedded_default_lists_what_production_must_fix(tmp_path: Path) -> None:
    env = clean_env()
    subprocess.run([sys.executable, "-m", "gonglun.cli", "migrate"], cwd=tmp_path, env=env,
                   check=True, capture_output=True, timeout=180)
    plain = doctor(tmp_path, env)
    assert "ok      database: sqlite reachable" in plain.stdout, plain.stdout
    assert "ok      migrations: current" in plain.stdout
    deploy = doctor(tmp_path, env, "--deploy", "--json")
    assert deploy.returncode == 1, deploy.stdout
    found = {(f["check"], f["level"]) for f in json.loads(deploy.stdout)}
    for check in ("database", "redis", "broker", "sandbox", "public_url"):
        assert (check, "error") in found, (check, found)
    assert ("metrics", "warning") in found and ("proxies", "warning") in found
    # OPS-09 and the registration tickets: no address database, a key file in the data dir.
    assert ("accounts.ip_db", "warning") in found and ("accounts.ticket_key", "warning") in found
    assert "the data dir" in deploy.stdout


def accounts_findings(make_rt: Any, **accounts: Any) -> dict[str, Any]:
    from gonglun.doctor import deploy

    found = deploy(make_rt(migrate=False, accounts=accounts))
    return {f.check: f for f in found if f.check.startswith("accounts.")}


def test_deploy_warns_when_the_login_alert_or_the_ticket_key_cannot_work(
        make_rt: Any, tmp_path: Path) -> None:
    from tests.accounts.conftest import write_ip_db

    unset = accounts_findings(make_rt)
    assert unset["accounts.ip_db"].level == "warning"
    assert "unset: no remote-login alert" in unset["accounts.ip_db"].message
    assert unset["accounts.ticket_key"].message == "unset: WeChat registration refused"
    (tmp_path / "not.mmdb").write_bytes(b"no MaxMind database here" * 10)
    for path in (tmp_path / "not.mmdb", tmp_path / "missing.mmdb", tmp_path):
        bad = accounts_findings(make_rt, ip_db=str(path), ticket_key="short")
        assert bad["accounts.ip_db"].level == "warning"
        assert f"{path} cannot be read" in bad["accounts.ip_db"].message
        assert bad["accounts.ticket_key"].level == "warning"
        assert "shorter than 16" in bad["accounts.ticket_key"].message
    good = accounts_findings(make_rt, ip_db=str(write_ip_db(tmp_path / "ip.mmdb")),
                             ticket_key="a long random ticket key")
    assert {f.level for f in good.values()} == {"ok"}, good


def production_config(tmp_path: Path, database: str) -> str:
    from gonglun.sandbox.keys import init_keyset
    from tests.accounts.conftest import write_ip_db

    keys = init_keyset(tmp_path / "keys")
    ali, wx = keys["alipay"], keys["wxpay"]
    live_wx = {k: wx[k] for k in ("mchid", "appid", "merchant_private_key",
                                  "merchant_serial_no", "platform_public_key", "public_key_id",
                                  "apiv3_key")}

    def toml_table(name: str, values: dict[str, Any]) -> str:
        lines = [f"[{name}]"]
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
        return "\n".join(lines)

    # The operator's templates: the catalog names none for these.
    templates = {"alarm.channels.sms": {"template_id": "1234567"},
                 "alarm.channels.wechat": {"template_id": "tpl-alarm"},
                 "account_reset.channels.sms": {"template_id": "2345678"}}
    tc = keys["tencentcloud"]
    tables = [
        toml_table("database", {"url": database}),
        toml_table("redis", {"url": os.environ["GONGLUN_TEST_REDIS_URL"],
                             "prefix": f"doctor{os.getpid()}:"}),
        toml_table("broker", {"url": os.environ["GONGLUN_TEST_BROKER_URL"],
                              "namespace": f"doctor{os.getpid()}"}),
        toml_table("server", {"public_url": "https://pay.example.com",
                              "metrics_token": "a-long-scrape-token-for-prometheus",
                              "trusted_proxies": ["10.0.0.0/8"],
                              "data_dir": str(tmp_path / "var")}),
        toml_table("payment.alipay", {k: ali[k] for k in ("app_id", "app_private_key",
                                                          "alipay_public_key")}),
        toml_table("payment.wxpay", live_wx),
        toml_table("refund", {"key": "r" * 40}),
        toml_table("accounts", {"ticket_key": "a long random ticket key",
                                "ip_db": str(write_ip_db(tmp_path / "ip.mmdb"))}),
        toml_table("notify", {"code_key": "a code key that is long enough"}),
        toml_table("notify.smtp", {"host": "smtp.example.com", "port": 465, "security": "tls",
                                   "sender": "noreply@example.com"}),
        # The keyset's Tencent Cloud keys serve SMS and FaceID; the FaceID rule is the face
        # plugin's setting, not notify's.
        toml_table("notify.tencentcloud", {k: v for k, v in tc.items()
                                           if k != "faceid_rule_id"}),
        toml_table("notify.wechat", keys["wechat"]),
        toml_table("notify.jpush", keys["jpush"]),
        *(toml_table(f"notify.scenes.{c}", v) for c, v in templates.items()),
        toml_table("face", {"key_id": "2026a", "index_key": "ab" * 32}),
        toml_table("face.keys", {"2026a": "cd" * 32}),
        toml_table("face.tencentcloud", {"secret_id": tc["secret_id"],
                                         "secret_key": tc["secret_key"],
                                         "rule_id": tc["faceid_rule_id"]}),
    ]
    path = tmp_path / "gonglun.toml"
    path.write_text("\n\n".join(tables) + "\n", "utf-8")
    return str(path)


@pytest.mark.skipif(not (os.environ.get("GONGLUN_TEST_DATABASE_URL", "").startswith(
    ("postgresql", "mysql")) and os.environ.get("GONGLUN_TEST_REDIS_URL")
    and os.environ.get("GONGLUN_TEST_BROKER_URL")), reason="needs PostgreSQL, Redis, a broker")
def test_production_shaped_configuration_passes(tmp_path: Path) -> None:
    with fresh_database(os.environ["GONGLUN_TEST_DATABASE_URL"], tmp_path) as url:
        env = {**clean_env(), "GONGLUN_CONFIG": production_config(tmp_path, url)}
        migrated = subprocess.run([sys.executable, "-m", "gonglun.cli", "migrate"], cwd=tmp_path,
                                  env=env, capture_output=True, text=True, timeout=180)
        assert migrated.returncode == 0, migrated.stderr
        result = doctor(tmp_path, env, "--deploy")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ERROR" not in result.stdout
        assert "ok      sandbox: off: real channels" in result.stdout
        assert "ok      accounts.ip_db" in result.stdout
        assert "ok      accounts.ticket_key: set" in result.stdout
