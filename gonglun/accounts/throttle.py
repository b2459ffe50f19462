"""Login throttling per account and per client address, with a growing lockout.

Three buckets, each counted *before* the password is checked (so a burst of guesses is refused
without spending an Argon2 hash on each) and given back when the login succeeds (so people who
know their password never use up anybody's budget):

* the account from this address: ``auth.login_failures`` (5) per ``auth.login_window_s``;
* the account from anywhere: ``auth.login_account_failures`` (50): a distributed guesser
  cannot try more, while one attacker alone cannot lock the owner out from their own address;
* the address: ``auth.login_ip_failures`` (20), IPv6 counted per /64.

A full bucket blocks its key for ``auth.lockout_s`` seconds, doubling with each further block
up to ``auth.lockout_max_s``; the answer is 429 with ``Retry-After``. Unknown logins are counted
like real ones, so the limiter says nothing about which accounts exist.

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

#: KEYS: counter. Gives one attempt back (a login that succeeded).
REFUND_LUA = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) end
return n
"""

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


def address_bucket(ip: str) -> str:
    """The subject a per-address limit counts: IPv6 clients own a /64, so counting single
    addresses would be no limit at all."""
    import ipaddress

    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        return ip or "?"
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def confirm_password(rt: Any, user_id: int, password: Any, ip: str, *,
                     error: str = "auth.bad_password") -> None:
    """The signed-in user proves it is them again (before changing a phone or email): the
    login throttle's buckets count the attempt, the hash is checked outside any transaction,
    a wrong password is 403 ``error``."""
    from gonglun.accounts.models import User
    from gonglun.accounts.service import check_password

    with rt.db.read() as session:
        user = session.get(User, user_id)
        login, hashed = (user.login, user.password_hash) if user is not None else ("", None)
    throttle = rt.__dict__.get("_login_throttle")
    if throttle is None:
        throttle = rt.__dict__["_login_throttle"] = LoginThrottle(rt)
    throttle.charge(login, ip)
    if not isinstance(password, str) or not check_password(hashed, password):
        raise GonglunError(error, "密码错误", status=403)
    throttle.succeeded(login, ip)


class LoginThrottle:
    def __init__(self, rt: Any):
        self.rt = rt
        get = rt.config.get
        self.window_ms = int(float(get("auth.login_window_s", 300)) * 1000)
        self.limits = {"pair": int(get("auth.login_failures", 5)),
                       "acct": int(get("auth.login_account_failures", 50)),
                       "ip": int(get("auth.login_ip_failures", 20))}
        self.base_ms = int(float(get("auth.lockout_s", 60)) * 1000)
        self.max_ms = int(float(get("auth.lockout_max_s", 3600)) * 1000)
        self._charge = rt.redis.register_script(CHARGE_LUA)
        self._refund = rt.redis.register_script(REFUND_LUA)

    def _keys(self, kind: str, who: str) -> list[str]:
        tag = hashlib.sha256(who.encode("utf-8", "replace")).hexdigest()[:32]
        return [self.rt.keys("login", kind, tag, name) for name in ("block", "n", "blocks")]

    @staticmethod
    def account(login: Any) -> str:
        return login.strip().lower()[:64] if isinstance(login, str) else ""

    @staticmethod
    def address(ip: str) -> str:
        return address_bucket(ip)

    def _buckets(self, login: Any, ip: str) -> list[tuple[str, str]]:
        account, address = self.account(login), self.address(ip)
        return [("pair", f"{account}\x00{address}"), ("acct", account), ("ip", address)]

    def charge(self, login: Any, ip: str) -> None:
        """Count an attempt in each bucket; 429 when any is over."""
        for kind, who in self._buckets(login, ip):
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

    def succeeded(self, login: Any, ip: str) -> None:
        """A correct password: this attempt is given back to the account's and the address's
        buckets, and the account-from-here bucket starts over."""
        try:
            for kind, who in self._buckets(login, ip):
                _, n, blocks = self._keys(kind, who)
                if kind == "pair":
                    self.rt.redis.delete(n, blocks)
                else:
                    self._refund(keys=[n])
        except RedisError:
            log.warning("login throttle: could not give the attempt back", exc_info=True)
