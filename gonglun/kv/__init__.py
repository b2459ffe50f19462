"""Redis primitives: client selection, locks, counters, rate limits, caches.

With no ``redis.url`` configured the embedded default uses fakeredis's in-process server, which
runs the same commands and Lua scripts, so every code path is the production one. See
``docs/redis.md``.
"""

from gonglun.kv.cache import RecordCache
from gonglun.kv.client import Keys, make_async_redis, make_redis
from gonglun.kv.counters import Counters, CounterView, registered
from gonglun.kv.lock import Lock, LockBusy, lock_or_fail
from gonglun.kv.ratelimit import Decision, RateLimited, RateLimiter

__all__ = [
    "CounterView",
    "Counters",
    "Decision",
    "Keys",
    "Lock",
    "LockBusy",
    "RateLimited",
    "RateLimiter",
    "RecordCache",
    "lock_or_fail",
    "make_async_redis",
    "make_redis",
    "registered",
]
