"""Heartbeats of the scheduler and the workers, read by ``/v1/health`` and ``gonglun doctor``.

The scheduler beats on every loop turn it survives; workers beat when they run the
``gonglun.heartbeat`` job the scheduler enqueues every ``health.worker_beat_s`` seconds. A role
never seen is reported as such (a fresh deployment, or tests); a role seen and then silent for
longer than ``health.stale_s`` is unhealthy: a scheduler whose thread stopped, workers that no
longer consume.
"""

from __future__ import annotations

import time
from typing import Any

ROLES = ("scheduler", "worker")


def beat(rt: Any, role: str) -> None:
    """Record that ``role`` is alive now (raises on a Redis error: the caller decides)."""
    rt.redis.set(rt.keys("heartbeat", role), f"{time.time():.3f}", ex=7 * 86400)


def heartbeats(rt: Any) -> dict[str, dict[str, Any]]:
    """``role -> {"ok", "seen", "age_s"}``; Redis errors propagate to the health probe."""
    stale = float(rt.config.get("health.stale_s", 60))
    out: dict[str, dict[str, Any]] = {}
    values = rt.redis.mget([rt.keys("heartbeat", role) for role in ROLES])
    for role, raw in zip(ROLES, values, strict=True):
        if raw is None:
            out[role] = {"ok": True, "seen": False}
            continue
        age = max(0.0, time.time() - float(raw))
        out[role] = {"ok": age <= stale, "seen": True, "age_s": round(age, 1)}
    return out
