"""Token locks on Redis (CORE-23, SEC-01, SEC-02).

A lock here only saves wasted work: it keeps two workers from calling the refund channel for the
same order at the same moment. It never keeps money safe. A lease can run out while its holder
is paused (GC, swap, a slow channel call), and Redis can lose an acknowledged write on failover,
so two holders are always possible. Correctness comes from the database: conditional updates
(``... WHERE id=? AND state=?``, rowcount checked) and unique idempotency keys.

The value is a random token per acquisition. Release and extend are compare-and-act Lua scripts,
so a holder whose lease expired cannot delete or prolong the lock somebody else now holds.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from redis import Redis, RedisError

from gonglun.errors import GonglunError

log = logging.getLogger(__name__)

#: Delete only if the lock still carries our token.
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

#: Reset the remaining lease only if the lock still carries our token.
EXTEND_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class LockBusy(GonglunError):
    """Somebody else holds the lock: the request is a duplicate or overlaps a running job.

    A ``GonglunError`` (HTTP 409) so an API handler that lets it escape answers the client
    with the caller's message, e.g. SEC-01's 退款失败:重复请求(订单锁).
    """

    def __init__(self, key: str, error: str = "lock.busy", msg: str = "重复请求"):
        super().__init__(error, msg, status=409)
        self.key = key


def _ms(seconds: float) -> int:
    if seconds <= 0:
        raise ValueError(f"lock TTL must be positive, got {seconds!r}")
    return max(1, int(seconds * 1000))


class Lock:
    """A lease on ``key`` for ``ttl_s`` seconds, held under a fresh random token.

    ``key`` is a full Redis key name; build it with ``Keys`` (``keys("lock", "refund", id)``).
    One ``Lock`` object is one would-be holder; it is not reentrant and not shared by threads.
    """

    def __init__(self, redis: Redis, key: str, ttl_s: float, *, retry_interval_s: float = 0.05):
        self.redis = redis
        self.key = key
        self.ttl_s = ttl_s
        self._ttl_ms = _ms(ttl_s)
        self.retry_interval_s = retry_interval_s
        #: The token of the current acquisition; None when this object holds nothing.
        self.token: str | None = None
        # register_script re-sends the source on NOSCRIPT (after a restart or SCRIPT FLUSH).
        self._release = redis.register_script(RELEASE_LUA)
        self._extend = redis.register_script(EXTEND_LUA)

    def acquire(self, blocking: bool = False, timeout: float | None = None) -> bool:
        """Take the lock; with ``blocking``, retry until ``timeout`` seconds (None: forever)."""
        token = secrets.token_hex(16)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.redis.set(self.key, token, nx=True, px=self._ttl_ms):
                self.token = token
                return True
            if not blocking:
                return False
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(self.retry_interval_s, left))
            else:
                time.sleep(self.retry_interval_s)

    def release(self) -> bool:
        """Give the lock back. False when it was no longer ours (lease expired, maybe re-taken)."""
        token, self.token = self.token, None
        if token is None:
            return False
        return bool(self._release(keys=[self.key], args=[token]))

    def extend(self, ttl_s: float | None = None) -> bool:
        """Set the remaining lease to ``ttl_s`` (default: the lock's TTL) if still ours."""
        if self.token is None:
            return False
        ms = self._ttl_ms if ttl_s is None else _ms(ttl_s)
        return bool(self._extend(keys=[self.key], args=[self.token, ms]))

    def owned(self) -> bool:
        """Whether Redis still carries this object's token (a snapshot; it may expire next)."""
        if self.token is None:
            return False
        value = self.redis.get(self.key)
        return value is not None and value.decode() == self.token

    def __enter__(self) -> Lock:
        if not self.acquire():
            raise LockBusy(self.key)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _release_logged(self)


def _release_logged(lock: Lock) -> None:
    # A lease that ran out under us is not an error of the work just done (the database
    # guarded it), but it is worth seeing: the TTL is too short for that job.
    try:
        if not lock.release():
            log.warning("lock %s expired before release; consider a longer TTL", lock.key)
    except RedisError:
        log.warning("lock %s release failed; it expires by TTL", lock.key, exc_info=True)


@contextmanager
def lock_or_fail(
    redis: Redis,
    key: str,
    ttl_s: float,
    *,
    blocking: bool = False,
    timeout: float | None = None,
    error: str = "lock.busy",
    msg: str = "重复请求",
) -> Iterator[Lock]:
    """Hold ``key`` for the ``with`` body, or raise ``LockBusy(key, error, msg)``.

    Released on every exit path (CORE-23), exceptions included.
    """
    lock = Lock(redis, key, ttl_s)
    if not lock.acquire(blocking=blocking, timeout=timeout):
        raise LockBusy(key, error, msg)
    try:
        yield lock
    finally:
        _release_logged(lock)
