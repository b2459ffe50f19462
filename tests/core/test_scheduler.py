"""The scheduler: one enqueue per job period, whatever the number of schedulers."""

from __future__ import annotations

import threading
from typing import Any

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
