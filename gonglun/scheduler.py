"""Periodic jobs: enqueue Dramatiq actors on a schedule, one active scheduler across processes.

A job's periods are the slots ``floor(now / every_s)``. Each period is enqueued at most once,
whatever the number of schedulers and whatever happens to Redis:

* a leader lease in Redis (``SET NX PX`` renewed by its token) lets only one process tick, and
  ``SET NX`` on ``sched:<job>:<slot>`` filters the ticks of a period already seen; both only save
  work;
* the database decides: before enqueueing, a period is claimed by inserting ``(job, slot)`` into
  ``scheduler_runs`` under a unique constraint. An empty Redis (a restart, a flush, a failover)
  or two processes both believing they lead cannot run a period twice. A failed enqueue deletes
  the claim, so the period is retried on the next tick;
* a job never runs twice within half its interval: a period first run late (the scheduler was
  down) is followed by the next one only once half an interval has passed since that run (a
  run recorded "in the future", by a clock ahead of ours, does not hold the job up).

Missed periods are not replayed: after downtime the current period runs once. A scheduler that
dies between its claim and the enqueue loses that one period; the next runs on time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from sqlalchemy import BigInteger, String, UniqueConstraint, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from gonglun.accounts.models import ID
from gonglun.db import Base, insert_ignore
from gonglun.tasks import PeriodicJob

log = logging.getLogger(__name__)

#: Periods of each job kept in ``scheduler_runs``, newest first (older rows are deleted as new
#: ones come).
KEEP_PERIODS = 8


class SchedulerRun(Base):
    """One period of one job, claimed before it was enqueued (the decisive record)."""

    __tablename__ = "scheduler_runs"
    __table_args__ = (UniqueConstraint("job", "slot"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(128))
    #: ``floor(ran_ms / 1000 / every_s)``
    slot: Mapped[int] = mapped_column(BigInteger)
    #: when the period was claimed, epoch milliseconds
    ran_ms: Mapped[int] = mapped_column(BigInteger)
    #: the scheduler that claimed it (host:pid:random)
    owner: Mapped[str] = mapped_column(String(128))


_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""


class Scheduler:
    def __init__(self, rt: Any, jobs: list[PeriodicJob] | None = None):
        self.rt = rt
        self.jobs = list(jobs if jobs is not None else rt.periodic_jobs())
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_ms = int(float(rt.config.get("scheduler.lease_s", 10)) * 1000)
        self.tick_s = float(rt.config.get("scheduler.tick_s", 1.0))
        self._renew = rt.redis.register_script(_RENEW)
        self._stop = threading.Event()

    def is_leader(self) -> bool:
        """Take or renew the leader lease; True while this process holds it."""
        try:
            return bool(self._renew(keys=[self.rt.keys("sched", "leader")],
                                    args=[self.token, self.lease_ms]))
        except Exception:
            log.warning("scheduler: Redis unavailable, not ticking", exc_info=True)
            return False

    def tick(self, now: float | None = None) -> list[str]:
        """Enqueue every job whose current period has not been claimed yet."""
        now = time.time() if now is None else now
        enqueued = []
        for job in self.jobs:
            slot = int(now // job.every_s)
            marker = self.rt.keys("sched", job.name, slot)
            ttl = max(2, int(job.every_s * 2) + 1)
            if not self.rt.redis.set(marker, self.token, nx=True, ex=ttl):
                continue  # seen by this or another scheduler: no need to ask the database
            try:
                wait = self._claim(job, slot, now)
            except Exception:
                self.rt.redis.delete(marker)
                log.warning("scheduler: could not claim %s", job.name, exc_info=True)
                continue
            if wait is None:
                continue  # the database says this period already ran (Redis was emptied)
            if wait > 0:  # too soon after the last run: ask again on the next tick
                self.rt.redis.delete(marker)
                continue
            try:
                self.rt.actor(job.actor).send(**job.kwargs)
                enqueued.append(job.name)
            except Exception:
                # Release the claim so the next tick (here or elsewhere) retries this period.
                log.warning("scheduler: could not enqueue %s", job.name, exc_info=True)
                self._release(job, slot)
                self.rt.redis.delete(marker)
        return enqueued

    def _claim(self, job: PeriodicJob, slot: int, now: float) -> float | None:
        """Claim ``slot`` of ``job`` in the database: 0 when claimed, None when the period is
        already taken, else the seconds to wait (the job ran less than half an interval ago)."""
        now_ms = int(now * 1000)
        with self.rt.db.write() as session:
            last = session.execute(
                select(SchedulerRun.slot, SchedulerRun.ran_ms).where(SchedulerRun.job == job.name)
                .order_by(SchedulerRun.ran_ms.desc()).limit(1)).first()
            if last is not None:
                if last.slot == slot:
                    return None
                gap = (now_ms - last.ran_ms) / 1000
                # A run "in the future" was claimed by a clock ahead of ours (skew, a clock
                # stepped back): it does not hold the job up; the periods' rows still decide.
                if 0 <= gap < job.every_s / 2:
                    return job.every_s / 2 - gap
            if not insert_ignore(session, SchedulerRun.__table__, {
                    "job": job.name, "slot": slot, "ran_ms": now_ms, "owner": self.token}):
                return None
            oldest_kept = session.scalar(
                select(SchedulerRun.ran_ms).where(SchedulerRun.job == job.name)
                .order_by(SchedulerRun.ran_ms.desc()).offset(KEEP_PERIODS - 1).limit(1))
            if oldest_kept is not None:
                session.execute(delete(SchedulerRun).where(
                    SchedulerRun.job == job.name, SchedulerRun.ran_ms < oldest_kept))
        return 0.0

    def _release(self, job: PeriodicJob, slot: int) -> None:
        try:
            with self.rt.db.write() as session:
                session.execute(delete(SchedulerRun).where(
                    SchedulerRun.job == job.name, SchedulerRun.slot == slot,
                    SchedulerRun.owner == self.token))
        except Exception:  # the period is lost, not doubled; the next one runs on time
            log.warning("scheduler: could not release %s period %d", job.name, slot,
                        exc_info=True)

    def run(self) -> None:
        """Tick until stopped; no error of Redis or the broker ends the loop (it is retried on
        the next turn, and the heartbeat tells ``/v1/health`` whether turns still happen)."""
        from gonglun.heartbeat import beat

        log.info("scheduler %s: %d job(s)", self.token, len(self.jobs))
        while not self._stop.is_set():
            try:
                if self.is_leader():
                    self.tick()
                beat(self.rt, "scheduler")
            except Exception:
                log.warning("scheduler: tick failed; retrying next turn", exc_info=True)
            self._stop.wait(self.tick_s)

    def stop(self) -> None:
        self._stop.set()

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="gonglun-scheduler", daemon=True)
        thread.start()
        return thread
