"""Login throttling per account and per client address, with a growing lockout.

Every attempt is counted *before* the password is checked, so a burst of guesses against one
account (or from one address) is refused after ``auth.login_failures`` (per address:
``auth.login_ip_failures``) attempts in ``auth.login_window_s`` without spending an Argon2 hash
on each. The refusal blocks the key for ``auth.lockout_s`` seconds, doubling with each further
block up to ``auth.lockout_max_s``; the answer is 429 with ``Retry-After``. A successful login
clears its account's count and backoff. Unknown logins are counted like real ones, so the
limiter says nothing about which accounts exist.

Redis unreachable: refused (fail closed, as the rate-limit module says password attempts must
be); the embedded default's Redis is in-process and cannot be unreachable.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any

from redis.exceptions import RedisError

from gonglun.errors import GonglunError

log = logging.getLogger(__name__)

MSG = "登录尝试过于频繁,请{}秒后再试"

#: KEYS: block, counter, block count. ARGV: limit, window ms, base block ms, max block ms.
#: Returns 0 when the attempt may proceed, else the milliseconds to wait.
CHARGE_LUA = """
local left = redis.call('PTTL', KEYS[1])
if left > 0 then return left end
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
if n <= tonumber(ARGV[1]) then return 0 end
local blocks = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], 86400)
local ms = tonumber(ARGV[3]) * (2 ^ (blocks - 1))
if ms > tonumber(ARGV[4]) then ms = tonumber(ARGV[4]) end
redis.call('SET', KEYS[1], '1', 'PX', math.floor(ms))
redis.call('DEL', KEYS[2])
return math.floor(ms)
"""


class LoginThrottle:
    def __init__(self, rt: Any):
        self.rt = rt
        get = rt.config.get
        self.window_ms = int(float(get("auth.login_window_s", 300)) * 1000)
        self.limits = {"acct": int(get("auth.login_failures", 5)),
                       "ip": int(get("auth.login_ip_failures", 20))}
        self.base_ms = int(float(get("auth.lockout_s", 60)) * 1000)
        self.max_ms = int(float(get("auth.lockout_max_s", 3600)) * 1000)
        self._charge = rt.redis.register_script(CHARGE_LUA)

    def _keys(self, kind: str, who: str) -> list[str]:
        tag = hashlib.sha256(who.encode("utf-8", "replace")).hexdigest()[:32]
        return [self.rt.keys("login", kind, tag, name) for name in ("block", "n", "blocks")]

    @staticmethod
    def account(login: Any) -> str:
        return login.strip().lower()[:64] if isinstance(login, str) else ""

    def charge(self, login: Any, ip: str) -> None:
        """Count an attempt for the account and the address; 429 when either is over."""
        for kind, who in (("acct", self.account(login)), ("ip", ip or "?")):
            try:
                wait_ms = int(self._charge(keys=self._keys(kind, who), args=[
                    self.limits[kind], self.window_ms, self.base_ms, self.max_ms]))
            except RedisError:
                log.warning("login throttle: Redis unreachable; refusing", exc_info=True)
                wait_ms = 1000
            if wait_ms > 0:
                retry = max(1, math.ceil(wait_ms / 1000))
                raise GonglunError("auth.too_many_attempts", MSG.format(retry), status=429,
                                   headers={"Retry-After": str(retry)},
                                   data={"retry_after": retry})

    def succeeded(self, login: Any) -> None:
        """A correct password: the account's count and backoff start over."""
        block, n, blocks = self._keys("acct", self.account(login))
        try:
            self.rt.redis.delete(n, blocks)
        except RedisError:
            log.warning("login throttle: could not reset %s", block, exc_info=True)
