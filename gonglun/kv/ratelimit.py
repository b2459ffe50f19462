"""Rate limits on Redis (SEC-06): fixed window, sliding-window counter, sliding log; blocks.

- ``"fixed"``: one counter per aligned window (``INCRBY`` + ``PEXPIRE`` in one script). Cheap
  and exact inside a window, but a client may get up to twice the limit across a window edge.
- ``"sliding"`` (default): Cloudflare's sliding-window counter. It keeps the previous and the
  current window's counts and estimates the last ``window_s`` seconds as
  ``previous × (1 - elapsed fraction) + current``; two keys per rule, no burst at the edge, and
  Cloudflare measured 0.003% wrong decisions against an exact log. It assumes the previous
  window's hits were spread evenly, so for "1 per 5 s" it refuses a hit exactly 5 s after one
  made at the very start of a window.
- ``"log"``: a sliding log (a sorted set of hit times). Exact, memory grows with ``limit``;
  the right tool for small limits and minimum spacings (face checks: "at least 5 s apart").

Only allowed hits are counted, so a client that keeps hammering while refused gets in again as
soon as its earlier traffic ages out. ``block_s`` adds SEC-06's "then a 5-minute block": the
first refused hit blocks the key for ``block_s`` seconds, and every hit meanwhile is refused
without being counted.

Time comes from the caller's clock (``clock``, default ``time.time``) and travels into the
scripts as milliseconds, so tests can move time and every API process cuts windows at the same
instants; a clock skew of some milliseconds between hosts only blurs the edges.

When Redis cannot be reached the limiter decides by ``fail_open`` and marks the decision
``degraded``. The default is to fail open, as Stripe does: a bill lookup should not go down with
Redis. Limits that guard money or a paid third party (SMS sends, face checks billed per call,
password/reset attempts) should be built with ``fail_open=False``.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from redis import Redis
from redis.exceptions import ConnectionError, TimeoutError

from gonglun.errors import GonglunError
from gonglun.kv.client import Keys

log = logging.getLogger(__name__)

Algorithm = Literal["fixed", "sliding", "log"]

#: Shared head of both scripts. ARGV: 1 now_ms, 2 limit, 3 cost, 4 counter TTL ms, 5 block_ms,
#: 6 block end ms (caller clock), then the algorithm's own. The last key is the block key. Every
#: number handed back to redis.call comes from ARGV: Lua would format computed doubles as
#: "1e+12", which PEXPIRE and friends refuse.
_BLOCK_CHECK = """
local now = tonumber(ARGV[1])
local until_ms = tonumber(redis.call('GET', KEYS[#KEYS]) or '0')
if until_ms > now then
    return {0, 0, 0, until_ms - now, 1}
end
local function block(prev, cur, wait)
    local block_ms = tonumber(ARGV[5])
    if block_ms > 0 then
        redis.call('SET', KEYS[#KEYS], ARGV[6], 'PX', ARGV[5])
        return {0, prev, cur, block_ms, 1}
    end
    return {0, prev, cur, wait, 0}
end
"""

#: KEYS: window counter, block.
FIXED_LUA = (
    _BLOCK_CHECK
    + """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur + tonumber(ARGV[3]) > tonumber(ARGV[2]) then
    return block(0, cur, -1)
end
cur = redis.call('INCRBY', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, 0, cur, 0, 0}
"""
)

#: KEYS: current window, previous window, block. ARGV 7: window_ms, 8: elapsed ms in the current
#: window. The estimate is compared multiplied by window_ms so every number stays an integer
#: (exact in Lua's doubles up to 2^53).
SLIDING_LUA = (
    _BLOCK_CHECK
    + """
local limit, cost, w, e = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[7]), tonumber(ARGV[8])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
if prev * (w - e) + (cur + cost) * w > limit * w then
    return block(prev, cur, -1)
end
cur = redis.call('INCRBY', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, prev, cur, 0, 0}
"""
)

#: KEYS: sorted set of hit times, block. ARGV 7: window_ms, 8: a member prefix unique to this
#: hit, 9: the cutoff (now - window_ms; entries at or before it have aged out).
LOG_LUA = (
    _BLOCK_CHECK
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[9])
local limit, cost = tonumber(ARGV[2]), tonumber(ARGV[3])
local n = redis.call('ZCARD', KEYS[1])
if n + cost > limit then
    -- The hit fits once the (n + cost - limit) oldest hits have aged out.
    local nth = redis.call('ZRANGE', KEYS[1], n + cost - limit - 1, n + cost - limit - 1,
                           'WITHSCORES')
    return block(0, n, tonumber(nth[2]) + tonumber(ARGV[7]) - now)
end
for i = 1, cost do
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[8] .. i)
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, 0, n + cost, 0, 0}
"""
)


@dataclass(frozen=True)
class Decision:
    """The answer for one hit."""

    allowed: bool
    #: Further hits of cost 1 allowed right now (0 when refused, or when degraded).
    remaining: int
    #: Seconds until a hit of the same cost could be allowed (0.0 when allowed).
    retry_after_s: float
    #: Refused because of an active ``block_s`` block.
    blocked: bool = False
    #: Redis was unreachable; ``allowed`` is the configured fail-open/fail-closed answer.
    degraded: bool = False


class RateLimited(GonglunError):
    """HTTP 429 with ``Retry-After``, raised by ``RateLimiter.require``."""

    def __init__(self, decision: Decision, error: str = "rate_limited", msg: str = "请求过于频繁"):
        retry = max(1, math.ceil(decision.retry_after_s))
        super().__init__(error, msg, status=429, headers={"Retry-After": str(retry)})
        self.decision = decision


class RateLimiter:
    """Limits per caller-chosen key, e.g. ``"payment_query:" + ip`` (SEC-06)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        algorithm: Algorithm = "sliding",
        fail_open: bool = True,
        clock: Callable[[], float] = time.time,
    ):
        if algorithm not in ("fixed", "sliding", "log"):
            raise ValueError(f"unknown rate-limit algorithm {algorithm!r}")
        self.redis = redis
        self.keys = keys
        self.algorithm: Algorithm = algorithm
        self.fail_open = fail_open
        self.clock = clock
        self._fixed = redis.register_script(FIXED_LUA)
        self._sliding = redis.register_script(SLIDING_LUA)
        self._log = redis.register_script(LOG_LUA)

    def _key(self, key: str, window_ms: int, *parts: object) -> str:
        # One hash tag per limited key: all of a rule's keys sit in one Redis Cluster slot. The
        # window length is in the name so two rules on one key (10 per 300 s and 1 per 5 s for
        # face checks) count separately.
        return self.keys("rl", "{" + key + "}", f"{self.algorithm[0]}{window_ms}", *parts)

    def hit(
        self,
        key: str,
        limit: int,
        window_s: float,
        *,
        block_s: float = 0.0,
        cost: int = 1,
        fail_open: bool | None = None,
    ) -> Decision:
        """Count one hit of ``cost`` against ``limit`` per ``window_s`` seconds for ``key``.

        With ``block_s``, the first refused hit blocks ``key`` for that long. ``fail_open``
        overrides the limiter's setting for this call.
        """
        if not 1 <= cost <= limit:
            raise ValueError(f"need 1 <= cost <= limit, got cost={cost} limit={limit}")
        window_ms = int(window_s * 1000)
        if window_ms <= 0 or block_s < 0:
            raise ValueError("window_s must be positive and block_s not negative")
        now_ms = round(self.clock() * 1000)
        index, elapsed = divmod(now_ms, window_ms)
        block_ms = int(block_s * 1000)
        block_key = self._key(key, window_ms, "block")
        # The counter outlives its use by a second: fixed windows are read until their end,
        # sliding ones also through the next window as "previous".
        args = [now_ms, limit, cost, 0, block_ms, now_ms + block_ms]
        try:
            if self.algorithm == "fixed":
                args[3] = window_ms - elapsed + 1000
                keys = [self._key(key, window_ms, index), block_key]
                raw = self._fixed(keys=keys, args=args)
            elif self.algorithm == "log":
                args[3] = window_ms + 1000
                keys = [self._key(key, window_ms, "log"), block_key]
                member = f"{now_ms}:{secrets.token_hex(4)}:"
                raw = self._log(keys=keys, args=[*args, window_ms, member, now_ms - window_ms])
            else:
                args[3] = 2 * window_ms - elapsed + 1000
                keys = [
                    self._key(key, window_ms, index),
                    self._key(key, window_ms, index - 1),
                    block_key,
                ]
                raw = self._sliding(keys=keys, args=[*args, window_ms, elapsed])
        except (ConnectionError, TimeoutError):
            allow = self.fail_open if fail_open is None else fail_open
            log.warning(
                "rate limit %s: Redis unreachable, failing %s",
                key,
                "open" if allow else "closed",
                exc_info=True,
            )
            return Decision(allow, 0, 0.0 if allow else window_s, degraded=True)
        allowed, prev, cur, wait_ms, blocked = (int(x) for x in raw)
        if allowed:
            return Decision(True, self._remaining(limit, prev, cur, window_ms, elapsed), 0.0)
        if wait_ms < 0:
            wait_ms = self._wait_ms(limit, cost, prev, cur, window_ms, elapsed)
        return Decision(False, 0, wait_ms / 1000, blocked=bool(blocked))

    def require(
        self,
        key: str,
        limit: int,
        window_s: float,
        *,
        block_s: float = 0.0,
        cost: int = 1,
        fail_open: bool | None = None,
        error: str = "rate_limited",
        msg: str = "请求过于频繁",
    ) -> Decision:
        """``hit`` that raises ``RateLimited`` (HTTP 429) when refused."""
        decision = self.hit(key, limit, window_s, block_s=block_s, cost=cost, fail_open=fail_open)
        if not decision.allowed:
            raise RateLimited(decision, error, msg)
        return decision

    def reset(self, key: str, window_s: float) -> None:
        """Forget ``key``'s counts and block for the rule with ``window_s`` (admin unblock)."""
        window_ms = int(window_s * 1000)
        index = round(self.clock() * 1000) // window_ms
        self.redis.delete(
            self._key(key, window_ms, index),
            self._key(key, window_ms, index - 1),
            self._key(key, window_ms, "log"),
            self._key(key, window_ms, "block"),
        )

    # -- arithmetic of the answers -----------------------------------------------------------

    def _remaining(self, limit: int, prev: int, cur: int, w: int, e: int) -> int:
        if self.algorithm != "sliding":
            return max(0, limit - cur)
        return max(0, (limit * w - prev * (w - e) - cur * w) // w)

    def _wait_ms(self, limit: int, cost: int, prev: int, cur: int, w: int, e: int) -> int:
        """Milliseconds until a hit of ``cost`` fits again, if nobody else hits meanwhile.

        Only for the counters; the log's script answers from the hit times it holds.

        Exact to the millisecond: one millisecond earlier the same hit is still refused.
        Integer arithmetic throughout (``w - (a * w) // b`` is ``ceil(w - a * w / b)``).
        """
        if self.algorithm == "fixed":
            return w - e
        room = limit - cost - cur
        if room >= 0:
            # Fits in this window once the previous window's weight falls low enough:
            # prev * (w - e') <= room * w. A refusal with room >= 0 implies prev > 0.
            return max(1, w - (room * w) // prev - e)
        # Fits only once the current window has become the previous one:
        # cur * (w - e'') <= (limit - cost) * w, e'' into the next window.
        return (w - e) + w - ((limit - cost) * w) // cur
