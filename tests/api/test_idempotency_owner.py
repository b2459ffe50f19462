"""An Idempotency-Key whose owner crashed is released as soon as the owner is known dead; a
slow but alive owner is never taken over. The owners are real processes holding the key on
the same database; the retries go through HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from falcon import testing

from gonglun.api import create_app
from tests.api.test_core_api import assert_error, auth, make_user

PAY = {"scene": "recharge_money", "amount": 100, "method": "wxpay", "channel": "native"}
ROUTE = "POST /v1/payments"

OWNER = """
import json, os, signal, sys, time
from gonglun.config import Config
from gonglun.idempotency import begin, fingerprint
from gonglun.runtime import Runtime

config, scope, key, body, crash = json.loads(sys.argv[1])
rt = Runtime(Config(config))
slot = begin(rt, scope, "POST /v1/payments", key, fingerprint("POST", "POST /v1/payments", body))
print("claimed", flush=True)
if crash:
    os.kill(os.getpid(), signal.SIGKILL)  # dies mid-request: no release, no finish
from gonglun.idempotency import renew

while True:  # a slow request: what idempotent() does while its work runs
    renew(rt, slot)
    time.sleep(0.2)
"""


def hold(rt: Any, scope: str, key: str, *, lock_s: float, crash: bool) -> subprocess.Popen[str]:
    config = {"database": {"url": rt.db.url}, "idempotency": {"lock_s": lock_s}}
    proc = subprocess.Popen([sys.executable, "-c", OWNER,
                             json.dumps([config, scope, key, PAY, crash])],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "claimed"
    return proc


def post(client: Any, token: str, key: str) -> Any:
    return client.simulate_post("/v1/payments", json=PAY,
                                headers={**auth(token), "Idempotency-Key": key})


def test_a_crashed_owner_releases_the_key_at_once(rt: Any) -> None:
    client = testing.TestClient(create_app(rt=rt))
    uid, token = make_user(rt)
    owner = hold(rt, f"u{uid}", "crash-1", lock_s=600, crash=True)
    owner.wait(timeout=30)
    retried = post(client, token, "crash-1")
    assert retried.json.get("error") != "idempotency.in_progress", retried.text
    # The retry ran the request (no channel keys here: the channel's own refusal).
    assert_error(retried, 503, "payment.channel_unavailable")


def test_a_slow_alive_owner_is_never_taken_over(rt: Any) -> None:
    client = testing.TestClient(create_app(rt=rt))
    uid, token = make_user(rt)
    owner = hold(rt, f"u{uid}", "slow-1", lock_s=1, crash=False)
    try:
        assert_error(post(client, token, "slow-1"), 409, "idempotency.in_progress")
        time.sleep(2.5)  # more than its lease: it renews, so it still holds the key
        assert_error(post(client, token, "slow-1"), 409, "idempotency.in_progress")
    finally:
        owner.kill()
        owner.wait(timeout=30)
    assert post(client, token, "slow-1").json.get("error") != "idempotency.in_progress"


def test_a_key_this_process_failed_to_release_is_taken_over(rt: Any) -> None:
    """The owner is alive (this process) but no request of it holds the key any more: the
    database failed under the release. The next retry takes the key at once."""
    from gonglun.db import Database
    from gonglun.idempotency import _release, begin, fingerprint

    client = testing.TestClient(create_app(rt=rt))
    uid, token = make_user(rt)
    slot = begin(rt, f"u{uid}", ROUTE, "orphan-1", fingerprint("POST", ROUTE, PAY))
    saved, rt.db = rt.db, Database("postgresql://postgres@127.0.0.1:1/gone")
    try:
        _release(rt, slot)  # the write fails: the key stays started, owned by us
    finally:
        rt.db.dispose()
        rt.db = saved
    assert post(client, token, "orphan-1").json.get("error") != "idempotency.in_progress"


def test_an_owner_hidden_by_proc_is_alive_and_a_gone_one_dead(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With /proc mounted ``hidepid=2`` another user's process has no entry: it must not be
    taken for dead (its key would be taken over while it still runs); ``kill(pid, 0)`` says."""
    import builtins

    from gonglun import idempotency

    if not idempotency.MACHINE:
        pytest.skip("no machine id here")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    real_open = builtins.open

    def hidden(path: Any, *args: Any, **kwargs: Any) -> Any:
        if str(path).startswith("/proc/") and str(path).endswith("/stat"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", hidden)
    alive = f"{idempotency.MACHINE}:{os.getppid()}:12345"
    assert not idempotency.owner_dead(alive, "k")
    assert idempotency.owner_dead(f"{idempotency.MACHINE}:{gone.pid}:12345", "k")
