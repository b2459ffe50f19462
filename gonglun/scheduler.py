"""Periodic jobs: enqueue Dramatiq actors on a schedule, one active scheduler across processes.

Two layers keep a job from being enqueued twice for one period even with several schedulers:
a leader lease in Redis (``SET NX PX`` renewed by its token) lets only one process tick, which
saves work; and each period's enqueue is claimed with ``SET NX`` on ``sched:<job>:<slot>``,
which makes a double enqueue impossible even while two processes both believe they lead (a
paused leader whose lease ran out). The jobs themselves are idempotent regardless.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from gonglun.tasks import PeriodicJob

log = logging.getLogger(__name__)

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
            claim = self.rt.keys("sched", job.name, slot)
            ttl = max(2, int(job.every_s * 2) + 1)
            if not self.rt.redis.set(claim, self.token, nx=True, ex=ttl):
                continue
            try:
                self.rt.actor(job.actor).send(**job.kwargs)
                enqueued.append(job.name)
            except Exception:
                # Release the claim so the next tick (here or elsewhere) retries this period.
                self.rt.redis.delete(claim)
                log.warning("scheduler: could not enqueue %s", job.name, exc_info=True)
        return enqueued

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
