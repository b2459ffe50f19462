"""Deferred hooks: written in the business transaction, relayed after commit, run once.

These run on whatever the session's services are: SQLite + in-process broker by default, the
real PostgreSQL and Redis/RabbitMQ broker in CI's second pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dramatiq
import pytest
from sqlalchemy import select, text

from gonglun.hooks import hookimpl
from gonglun.hooks.deferred import OutboxDone, OutboxEvent


def recorder(calls: list[dict[str, Any]], fail_times: int = 0) -> SimpleNamespace:
    state = {"left": fail_times}

    @hookimpl
    def balance_changed(posting: dict[str, Any]) -> None:
        if state["left"] > 0:
            state["left"] -= 1
            raise RuntimeError("transient failure")
        calls.append(posting)

    return SimpleNamespace(balance_changed=balance_changed)


def fire(rt: Any, key: str, n: int = 1) -> None:
    with rt.db.write() as session:
        rt.hooks.defer(session, "balance_changed", key=key, posting={"user_id": 7, "n": n})


def drain(rt: Any, timeout: float = 20.0) -> None:
    """Run a real Dramatiq worker on the runtime's broker until its queues are empty."""
    worker = dramatiq.Worker(rt.broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        deadline = time.monotonic() + timeout
        for queue in rt.broker.get_declared_queues():
            rt.broker.join(queue, timeout=int((deadline - time.monotonic()) * 1000))
        worker.join()
    finally:
        worker.stop()


def state_of(rt: Any, key: str) -> str:
    with rt.db.read() as session:
        return session.execute(select(OutboxEvent.state).where(OutboxEvent.key == key)).scalar()


def test_commit_relays_and_runs_once(rt: Any) -> None:
    calls: list[dict[str, Any]] = []
    rt.pm.register(recorder(calls), "recorder")
    fire(rt, "k1")
    assert calls == []  # nothing runs inside the transaction
    drain(rt)
    assert calls == [{"user_id": 7, "n": 1}]
    assert state_of(rt, "k1") == "done"


def test_rollback_writes_and_sends_nothing(rt: Any) -> None:
    calls: list[dict[str, Any]] = []
    rt.pm.register(recorder(calls), "recorder")
    with pytest.raises(ZeroDivisionError), rt.db.write() as session:
        rt.hooks.defer(session, "balance_changed", key="gone", posting={"user_id": 1})
        1 / 0  # noqa: B018
    drain(rt)
    assert calls == []
    assert state_of(rt, "gone") is None


def test_savepoints_hand_nothing_over_before_the_commit(rt: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A savepoint released or rolled back inside the business transaction neither sends its
    keys early (the worker would find no committed row) nor drops the transaction's own."""
    calls: list[dict[str, Any]] = []
    rt.pm.register(recorder(calls), "recorder")
    sent: list[list[str]] = []
    real = rt.outbox.send
    monkeypatch.setattr(rt.outbox, "send", lambda keys: sent.append(list(keys)) or real(keys))
    with rt.db.write() as session:
        rt.hooks.defer(session, "balance_changed", key="outer", posting={"user_id": 1})
        with session.begin_nested():
            rt.hooks.defer(session, "balance_changed", key="inner", posting={"user_id": 2})
        with pytest.raises(ZeroDivisionError), session.begin_nested():
            rt.hooks.defer(session, "balance_changed", key="undone", posting={"user_id": 3})
            1 / 0  # noqa: B018
        assert sent == []  # nothing leaves before the commit
    assert sorted(k for keys in sent for k in keys if k != "undone") == ["inner", "outer"]
    drain(rt)
    assert sorted(c["user_id"] for c in calls) == [1, 2]
    assert (state_of(rt, "outer"), state_of(rt, "inner"), state_of(rt, "undone")) == (
        "done", "done", None)


def test_same_key_is_one_event(rt: Any) -> None:
    calls: list[dict[str, Any]] = []
    rt.pm.register(recorder(calls), "recorder")
    fire(rt, "dup", 1)
    fire(rt, "dup", 2)
    drain(rt)
    assert calls == [{"user_id": 7, "n": 1}]


def test_duplicate_delivery_runs_once(rt: Any) -> None:
    calls: list[dict[str, Any]] = []
    rt.pm.register(recorder(calls), "recorder")
    fire(rt, "twice")
    rt.outbox.send(["twice", "twice", "twice"])  # a relay retry and a sweeper racing it
    drain(rt)
    assert len(calls) == 1
    assert rt.outbox.consume("twice") == "skipped"
    assert len(calls) == 1


def test_broker_down_at_commit_then_sweeper_delivers_once(make_rt: Any) -> None:
    # A runtime whose broker is unreachable: the relay after commit fails and logs.
    down = make_rt(broker={"url": "redis://127.0.0.1:1/0"})
    fire(down, "lost?")
    assert state_of(down, "lost?") == "pending"

    # The same database seen by a process with a working broker (its worker and sweeper).
    up = make_rt(migrate=False, database={"url": down.config.database_url})
    calls: list[dict[str, Any]] = []
    up.pm.register(recorder(calls), "recorder")
    with up.db.write() as session:  # the sweeper only re-sends rows whose grace has passed
        session.execute(text("UPDATE outbox SET next_attempt_at = created_at"))
    assert up.outbox.sweep() == 1
    drain(up)
    assert calls == [{"user_id": 7, "n": 1}]
    assert up.outbox.sweep() == 0  # done rows are never sent again
    drain(up)
    assert len(calls) == 1


def test_failed_implementation_is_retried_alone(rt: Any) -> None:
    steady: list[dict[str, Any]] = []
    flaky: list[dict[str, Any]] = []
    rt.pm.register(recorder(steady), "steady")
    rt.pm.register(recorder(flaky, fail_times=2), "flaky")
    fire(rt, "retry")
    # min_backoff is 500 ms: two retries finish within the drain.
    drain(rt, timeout=30)
    assert len(steady) == 1
    assert len(flaky) == 1
    assert state_of(rt, "retry") == "done"
    with rt.db.read() as session:
        done = {impl.split(":")[0] for impl in session.scalars(select(OutboxDone.impl))}
    assert {"steady", "flaky"} <= done


def test_two_implementations_in_one_plugin_complete_separately(rt: Any) -> None:
    """The landed loss: the payment plugin's credit failed while its push succeeded, the event
    was marked done per plugin, and the credit was never retried. Completion is recorded per
    implementation."""
    credits: list[dict[str, Any]] = []
    pushes: list[dict[str, Any]] = []
    state = {"left": 2}

    @hookimpl
    def balance_changed(posting: dict[str, Any]) -> None:
        if state["left"] > 0:
            state["left"] -= 1
            raise RuntimeError("the ledger insert failed for a few seconds")
        credits.append(posting)

    @hookimpl(specname="balance_changed", priority=90)
    def push_balance_changed(posting: dict[str, Any]) -> None:
        pushes.append(posting)

    plugin = SimpleNamespace(balance_changed=balance_changed,
                             push_balance_changed=push_balance_changed)
    rt.pm.register(plugin, "payments_like")
    fire(rt, "two-impls")
    drain(rt, timeout=30)
    assert len(credits) == 1 and len(pushes) == 1  # the push ran once, the credit retried
    assert state_of(rt, "two-impls") == "done"
    with rt.db.read() as session:
        done = [i for i in session.scalars(select(OutboxDone.impl)) if
                i.startswith("payments_like:")]
    assert len(done) == 2


def test_an_implementation_that_keeps_failing_is_left_failed_with_an_alarm(
        make_rt: Any, tmp_path: Path) -> None:
    rt = make_rt(outbox={"max_retries": 2})
    alarms: list[str] = []

    @hookimpl
    def balance_changed(posting: dict[str, Any]) -> None:
        raise RuntimeError("never works")

    @hookimpl
    def alarm(kind: str, message: str) -> None:
        alarms.append(kind)

    rt.pm.register(SimpleNamespace(balance_changed=balance_changed, alarm=alarm), "broken")
    fire(rt, "doomed")
    with pytest.raises(Exception, match="never works"):
        rt.outbox.consume("doomed")  # retried by the broker...
    assert rt.outbox.consume("doomed") == "failed"  # ...until max_retries: a human's turn
    assert state_of(rt, "doomed") == "failed"
    with rt.db.read() as session:
        error = session.execute(select(OutboxEvent.last_error).where(
            OutboxEvent.key == "doomed")).scalar()
        alarm_key = session.execute(select(OutboxEvent.key).where(
            OutboxEvent.hook == "alarm")).scalar()
        doomed_id = session.execute(select(OutboxEvent.id).where(
            OutboxEvent.key == "doomed")).scalar()
    assert "broken:" in error and "never works" in error
    assert rt.outbox.consume(alarm_key) == "done" and alarms == ["outbox_failed"]
    # The operator sees it, fixes the cause and re-arms it.
    from gonglun.cli import main

    config = tmp_path / "gonglun.toml"
    config.write_text(f'[database]\nurl = "{rt.config.database_url}"\n'
                      f'[redis]\nprefix = "{rt.keys.prefix}"\n')
    assert main(["--config", str(config), "outbox", "--failed"]) == 1
    assert main(["--config", str(config), "outbox", "--retry", str(doomed_id)]) == 0
    assert state_of(rt, "doomed") == "pending"


CHILD = textwrap.dedent(
    """
    import os, sys
    from types import SimpleNamespace
    from gonglun.config import Config
    from gonglun.hooks import hookimpl
    from gonglun.runtime import Runtime

    rt = Runtime(Config.load(environ={"GONGLUN_DATABASE_URL": sys.argv[1],
                                      "GONGLUN_OUTBOX__LEASE_S": "1"}))

    @hookimpl
    def balance_changed(posting):
        os._exit(9)  # the worker process dies in the middle of the message

    rt.pm.register(SimpleNamespace(balance_changed=balance_changed), "recorder")
    rt.outbox.consume(sys.argv[2])
    """
)


def test_worker_dying_mid_message_loses_nothing(make_rt: Any, tmp_path: Path) -> None:
    rt = make_rt(outbox={"lease_s": 1})
    fire(rt, "crash")
    child = subprocess.run(
        [sys.executable, "-c", CHILD, rt.config.database_url, "crash"],
        env={**os.environ, "GONGLUN_CONFIG": str(tmp_path / "none.toml")},
        capture_output=True, text=True, timeout=60,
    )
    assert child.returncode == 9, child.stderr
    assert state_of(rt, "crash") == "pending"
    assert rt.outbox.consume("crash") == "skipped"  # its lease still holds

    calls: list[dict[str, Any]] = []
    rt.pm.register(recorder(calls), "recorder")
    time.sleep(1.2)  # the dead worker's lease runs out
    with rt.db.write() as session:
        session.execute(text("UPDATE outbox SET next_attempt_at = created_at"))
    assert rt.outbox.sweep() == 1
    drain(rt)
    assert calls == [{"user_id": 7, "n": 1}]
    assert state_of(rt, "crash") == "done"


def test_an_event_that_keeps_failing_is_left_failed(make_rt: Any) -> None:
    rt = make_rt(outbox={"max_retries": 2})
    calls: list[dict[str, Any]] = []
    rt.pm.register(recorder(calls, fail_times=10), "broken")
    fire(rt, "doomed")
    from gonglun.hooks.deferred import DeferredFailure

    with pytest.raises(DeferredFailure):
        rt.outbox.consume("doomed")
    assert state_of(rt, "doomed") == "pending"
    assert rt.outbox.consume("doomed") == "failed"
    assert state_of(rt, "doomed") == "failed"
    assert rt.outbox.consume("doomed") == "skipped"
    with rt.db.read() as session:
        error = session.execute(select(OutboxEvent.last_error)).scalar()
    assert "transient failure" in error
