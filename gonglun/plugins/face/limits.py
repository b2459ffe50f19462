"""``idcard_face`` (FACE-03): per address and per ID number, at most 10 requests in 5 minutes
(then locked for 300 s) and at least 5 s apart; recovery lookups are limited the same way.
Exact sliding logs on Redis, failing closed: every check is a paid call or a guess at an ID
number. The refusal says when the next attempt is allowed."""

from __future__ import annotations

import math
from typing import Any

from gonglun.errors import GonglunError
from gonglun.kv import RateLimiter
from gonglun.plugins.face.clock import now


def _limiter(rt: Any) -> RateLimiter:
    limiter = rt.__dict__.get("_face_limiter")
    if limiter is None:
        limiter = rt.__dict__["_face_limiter"] = RateLimiter(
            rt.redis, rt.keys, algorithm="log", fail_open=False,
            clock=lambda: now(rt).timestamp())
    return limiter


def address(ip: str) -> str:
    """The per-address subject: an IPv6 client counts as its /64."""
    from gonglun.accounts.throttle import address_bucket

    return f"ip:{address_bucket(ip)}"


def daily(rt: Any, scene: str, user_id: int, count: int) -> None:
    """At most ``count`` checks of ``scene`` a day against one account, whoever asks: a guest
    who knows someone's name and ID number can then burn at most that much of their quota
    (and create at most that many unpaid orders on it) a day. 0: no daily limit."""
    if count <= 0:
        return
    decision = _limiter(rt).hit(f"face_daily:{scene}:user:{user_id}", count, 86400.0)
    if not decision.allowed:
        wait = max(1, math.ceil(decision.retry_after_s))
        raise GonglunError("face.daily_limit", "今日验证次数已达上限, 请明天再试", status=429,
                           data={"retry_after": wait}, headers={"Retry-After": str(wait)})


def check(rt: Any, rule: str, *subjects: str) -> None:
    """Count one request of ``rule`` against each subject (``ip:1.2.3.4``, ``id:<index>``).
    A limit set to 0 is off: ``face.min_interval_s`` (no gap), ``face.limit_count`` or
    ``face.limit_window_s`` (no count), ``face.limit_lock_s`` (no lock after the count)."""
    limiter = _limiter(rt)
    count = int(rt.config.get("face.limit_count"))
    window = float(rt.config.get("face.limit_window_s"))
    lock = max(0.0, float(rt.config.get("face.limit_lock_s")))
    gap = float(rt.config.get("face.min_interval_s"))
    for subject in subjects:
        key = f"{rule}:{subject}"
        decision = limiter.hit(key + ":gap", 1, gap) if gap > 0 else None
        if (decision is None or decision.allowed) and count > 0 and window > 0:
            decision = limiter.hit(key, count, window, block_s=lock)
        if decision is not None and not decision.allowed:
            wait = max(1, math.ceil(decision.retry_after_s))
            raise GonglunError("face.too_fast", f"操作过于频繁, 请{wait}秒后再试",
                               status=429, data={"retry_after": wait},
                               headers={"Retry-After": str(wait)})
