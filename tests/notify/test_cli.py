"""``gonglun notify``: scenes, a test send through the outbox, the delivery log, re-arming."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.core.test_cli import db_env, run  # noqa: F401 - the fixture is used by name
from tests.notify.conftest import REFUND_DATA


def test_notify_commands(tmp_path: Path, db_env: dict[str, str]) -> None:  # noqa: F811
    from gonglun.config import Config
    from gonglun.runtime import Runtime

    assert run(tmp_path, "migrate", env=db_env).returncode == 0
    made = run(tmp_path, "users", "add", "zoe", "--password", "s3cret-pass", env=db_env)
    user_id = json.loads(made.stdout)["id"]

    scenes = run(tmp_path, "notify", "scenes", "--json", env=db_env)
    assert scenes.returncode == 0, scenes.stderr
    listed = json.loads(scenes.stdout)
    refund = next(s for s in listed["scenes"] if s["scene"] == "payment_refund")
    assert refund["channels"]["email"]["cap"] == 5 and refund["locked"] is True
    assert "no keys" in listed["unavailable"]["sms"]

    bad = run(tmp_path, "notify", "send", "payment_refund", "--user", str(user_id), "--data",
              "[1]", env=db_env)
    assert bad.returncode == 1 and "notify.invalid_data" in bad.stderr
    unknown = run(tmp_path, "notify", "send", "nope", "--user", "1", env=db_env)
    assert unknown.returncode == 1 and "notify.unknown_scene" in unknown.stderr
    sent = run(tmp_path, "notify", "send", "payment_refund", "--user", str(user_id),
               "--data", json.dumps(REFUND_DATA), env=db_env)
    assert sent.returncode == 0, sent.stderr
    key = json.loads(sent.stdout)["deferred"]

    rt = Runtime(Config({"database": {"url": db_env["GONGLUN_DATABASE_URL"]},
                         "redis": {"prefix": f"ncli{os.getpid()}:"},
                         "broker": {"url": "stub://"}}))
    try:
        assert rt.outbox.consume(key) == "done"  # the worker's part: fan-out
        log = run(tmp_path, "notify", "deliveries", "--user", str(user_id), "--json",
                  env=db_env)
        rows: list[dict[str, Any]] = json.loads(log.stdout)
        assert {r["channel"]: r["status"] for r in rows} == {
            "inbox": "queued", "websocket": "queued", "email": "unavailable",
            "sms": "unavailable", "wechat": "unavailable", "app": "unavailable"}
        assert all(r["address"] in (None, str(user_id)) for r in rows)
        text = run(tmp_path, "notify", "deliveries", "--status", "unavailable", env=db_env)
        assert text.returncode == 0 and "no sms provider" in text.stdout

        from sqlalchemy import update

        from gonglun.plugins.notify.models import Delivery

        inbox = next(r["id"] for r in rows if r["channel"] == "inbox")
        with rt.db.write() as session:
            session.execute(update(Delivery).where(Delivery.id == inbox).values(status="failed"))
        retried = run(tmp_path, "notify", "retry", str(inbox), "999999", env=db_env)
        assert json.loads(retried.stdout) == {"rearmed": 1}
    finally:
        rt.close()
