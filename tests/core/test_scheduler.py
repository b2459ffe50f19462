"""The scheduler: one enqueue per job period, whatever the number of schedulers."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from gonglun.scheduler import Scheduler
from gonglun.tasks import ActorSpec, PeriodicJob


def test_two_schedulers_enqueue_each_period_once(make_rt: Any) -> None:
    from types import SimpleNamespace

    from gonglun.hooks import hookimpl

    ran: list[int] = []
    lock = threading.Lock()

    def tick(rt: Any) -> None:
        with lock:
            ran.append(1)

    @hookimpl
    def register_actors(actors: list[Any]) -> list[Any]:
        return [*actors, ActorSpec("test.tick", tick, max_retries=0)]

    rt = make_rt()
    rt.pm.register(SimpleNamespace(register_actors=register_actors), "ticker")
    jobs = [PeriodicJob("tick", 10, "test.tick")]
    a, b = Scheduler(rt, jobs), Scheduler(rt, jobs)
    sent = []
    for now in (1000.0, 1001.0, 1009.9, 1010.0, 1015.0, 1020.5):
        sent += a.tick(now) + b.tick(now)
    assert sent == ["tick", "tick", "tick"]  # periods 100, 101, 102


def test_only_one_leader(make_rt: Any) -> None:
    rt = make_rt()
    a, b = Scheduler(rt, []), Scheduler(rt, [])
    assert a.is_leader()
    assert not b.is_leader()
    assert a.is_leader()  # renewal by the holder
    rt.redis.delete(rt.keys("sched", "leader"))  # the lease ran out
    assert b.is_leader()
    assert not a.is_leader()


def test_core_jobs_are_registered(rt: Any) -> None:
    names = {job.name: job.actor for job in rt.periodic_jobs()}
    assert names["outbox_sweep"] == "gonglun.outbox_sweep"
    assert "gonglun.outbox_sweep" in rt.actor_names


# -- periods are recorded in the database: an empty Redis never re-runs a job early ---------------


def _ticker(rt: Any, every_s: float = 1800.0) -> list[PeriodicJob]:
    from types import SimpleNamespace

    from gonglun.hooks import hookimpl

    @hookimpl
    def register_actors(actors: list[Any]) -> list[Any]:
        return [*actors, ActorSpec("test.tick", lambda rt: None, max_retries=0)]

    rt.pm.register(SimpleNamespace(register_actors=register_actors), f"ticker-{id(rt)}")
    return [PeriodicJob("confirm", every_s, "test.tick")]


def _empty_redis(rt: Any) -> None:
    """What an empty Redis restart leaves: no key under the runtime's prefix (markers, lease)."""
    for key in list(rt.redis.scan_iter(match=f"{rt.keys.prefix}*", count=1000)):
        rt.redis.delete(key)


def test_an_empty_redis_restart_never_reruns_a_period(make_rt: Any) -> None:
    """The fault drill: three empty Redis restarts (each with a scheduler process restart) in
    34 s re-ran the 30-minute job three times. Only the next period runs it again."""
    rt = make_rt()
    jobs = _ticker(rt)
    start = 1_800_000.0 * 1000 + 5.0  # 5 s into a 30-minute period
    assert Scheduler(rt, jobs).tick(start) == ["confirm"]
    for restart in (12.0, 23.0, 34.0):
        _empty_redis(rt)
        scheduler = Scheduler(rt, jobs)  # the process restarted too
        assert scheduler.is_leader()
        assert scheduler.tick(start + restart) == []
        assert scheduler.tick(start + restart + 0.5) == []
    _empty_redis(rt)
    assert Scheduler(rt, jobs).tick(start + 1795.0) == ["confirm"]  # the next period: on time
    assert Scheduler(rt, jobs).tick(start + 1796.0) == []


def test_a_job_never_runs_twice_within_half_its_interval(make_rt: Any) -> None:
    """A period first run late (a scheduler down until just before the next period) is not
    followed by the next period a few seconds later: that one waits until half an interval has
    passed since the last run, then runs (no period is skipped)."""
    rt = make_rt()
    jobs = _ticker(rt, every_s=60.0)
    assert Scheduler(rt, jobs).tick(6058.0) == ["confirm"]  # period 100, 58 s late
    assert Scheduler(rt, jobs).tick(6060.0) == []  # period 101 begins: 2 s after the last run
    _empty_redis(rt)
    assert Scheduler(rt, jobs).tick(6080.0) == []
    assert Scheduler(rt, jobs).tick(6088.0) == ["confirm"]  # 30 s after: period 101 runs
    assert Scheduler(rt, jobs).tick(6119.0) == []
    assert Scheduler(rt, jobs).tick(6120.0) == ["confirm"]  # period 102, on time


def test_a_clock_ahead_does_not_hold_the_job_up(make_rt: Any) -> None:
    """A scheduler whose clock ran a day ahead claimed a period; schedulers with the right time
    still run theirs, each once, and a period the skewed one took is not run again."""
    rt = make_rt()
    jobs = _ticker(rt, 60.0)
    assert Scheduler(rt, jobs).tick(6000.0 + 86400) == ["confirm"]
    assert Scheduler(rt, jobs).tick(6000.0) == ["confirm"]
    _empty_redis(rt)
    assert Scheduler(rt, jobs).tick(6010.0) == []
    assert Scheduler(rt, jobs).tick(6000.0 + 86410) == []


def test_racing_schedulers_each_with_an_empty_redis_enqueue_once(make_rt: Any) -> None:
    """Two scheduler processes that both get past Redis (each flushed, or each believing it
    leads): the database's unique (job, period) decides; one enqueue per period."""
    from gonglun.runtime import Runtime
    from gonglun.testing import isolated_config

    rt = make_rt()
    other = Runtime(isolated_config(rt.db.url, Path(rt.config.get("server.data_dir")).parent))
    try:
        jobs_a, jobs_b = _ticker(rt, 10.0), _ticker(other, 10.0)
        a, b = Scheduler(rt, jobs_a), Scheduler(other, jobs_b)
        sent: list[str] = []
        lock = threading.Lock()
        for period in range(100, 112):
            barrier = threading.Barrier(2)

            def race(s: Scheduler, now: float = period * 10.0 + 1,
                     barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                got = s.tick(now)
                with lock:
                    sent.extend(got)

            threads = [threading.Thread(target=race, args=(s,)) for s in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
        assert sent == ["confirm"] * 12
    finally:
        from gonglun.testing import cleanup_broker, cleanup_redis

        cleanup_redis(other)
        cleanup_broker(other)
        other.close()


def test_a_failed_enqueue_is_retried_in_the_same_period(
    make_rt: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker refusing the message releases the claim (database and Redis): the next tick
    enqueues the same period; a success then holds it."""
    import dramatiq
    from dramatiq.errors import BrokerConnectionError as BrokerDown

    rt = make_rt()
    jobs = _ticker(rt, 60.0)
    scheduler = Scheduler(rt, jobs)
    real_send = dramatiq.Actor.send
    down = {"n": 2}

    def send(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.actor_name == "test.tick" and down["n"] > 0:
            down["n"] -= 1
            raise BrokerDown("broker unavailable")
        return real_send(self, *args, **kwargs)

    monkeypatch.setattr(dramatiq.Actor, "send", send)
    assert scheduler.tick(6000.0) == []
    assert scheduler.tick(6001.0) == []
    assert scheduler.tick(6002.0) == ["confirm"]  # the same period, retried
    _empty_redis(rt)
    assert Scheduler(rt, jobs).tick(6003.0) == []


def test_old_periods_are_pruned(make_rt: Any) -> None:
    from sqlalchemy import func, select

    from gonglun.scheduler import KEEP_PERIODS, SchedulerRun

    rt = make_rt()
    jobs = _ticker(rt, 10.0)
    scheduler = Scheduler(rt, jobs)
    for period in range(100, 100 + 3 * KEEP_PERIODS):
        assert scheduler.tick(period * 10.0) == ["confirm"]
    with rt.db.read() as session:
        kept = session.scalar(select(func.count()).select_from(SchedulerRun))
    assert kept == KEEP_PERIODS
