"""Read-through caches of records reachable by several keys (CACHE-01..05, CORE-22).

A payment is looked up by primary key and by order number, an appraisal by primary key and by
appraisal number. ``RecordCache`` stores the record's JSON under every one of those lookup
values (``query_payment:{5}`` and ``query_payment:{202407051230000001}``) and always derives the
set from the record's own fields, never only from the key that was asked for: refreshing by id
must also replace the entry under the order number (CACHE-02, the bug the seeds fixed).

Lookup values of one cache share one key space, so they must never collide; DECISIONS.md 2
guarantees that (ids have fewer than 10 digits, order numbers at least 18), and the loader
resolves a key by the same rule.

**Stale fills.** A reader that misses, loads the old row and writes it back after a writer has
committed and invalidated would pin stale data until the TTL. Each lookup value therefore has a
generation key holding a random token. The reader reads the token of the key it asks for before
loading; the fill (one Lua script for all the record's keys) only writes if that token is
unchanged. ``invalidate`` and refreshes (``skip_cache=True``) put a fresh token on every lookup
value of the record, so a slower fill started earlier finds the token changed and writes
nothing. A refresh that finds the token changed clears the record's keys instead of giving up:
the fill that beat it may come from an older load (two writers refreshing after each other's
commits). A random token rather than a counter means an expired generation key can never come
back to an old value. The guard holds as long as a load takes less than ``gen_ttl_s``; writers
must invalidate *after* their transaction commits.

A miss for a value no record has is cached as JSON ``null`` for ``negative_ttl_s`` so a client
cannot hammer the database with unknown numbers. Creating the record must invalidate (CACHE-04:
every write invalidates), which removes the negative entry under each of its lookup values.

Redis failures never fail a read: the cache is skipped and the loader answers. A failed
invalidation is logged and reported as False; the TTL bounds how long the entry may stay stale,
and authoritative paths (refunds, closes) read with ``skip_cache=True`` anyway (CACHE-05).

Every key of a record is touched by one script, so on Redis Cluster the lookup values of one
record would have to share a slot; Gonglun runs a single Redis (with replicas) for caches.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from redis import Redis, RedisError

from gonglun.kv.client import Keys

log = logging.getLogger(__name__)

Record = dict[str, Any]
Loader = Callable[[Any], Mapping[str, Any] | None]

#: KEYS[1] generation key of the queried value; then n value keys, then their n generation keys.
#: ARGV: expected token ("" for none), payload, TTL ms, refresh (0/1), new token, generation TTL
#: ms. A refresh that lost a race clears the keys instead: the winner may have been an older load.
FILL_LUA = """
local n = (#KEYS - 1) / 2
local seen = redis.call('GET', KEYS[1]) or ''
if seen ~= ARGV[1] then
    if ARGV[4] == '1' then
        for i = 2, n + 1 do
            redis.call('DEL', KEYS[i])
            redis.call('SET', KEYS[i + n], ARGV[5], 'PX', ARGV[6])
        end
    end
    return 0
end
for i = 2, n + 1 do
    redis.call('SET', KEYS[i], ARGV[2], 'PX', ARGV[3])
    if ARGV[4] == '1' then
        redis.call('SET', KEYS[i + n], ARGV[5], 'PX', ARGV[6])
    end
end
return 1
"""

#: Same key layout as FILL_LUA minus the first; ARGV: new token, generation TTL ms.
INVALIDATE_LUA = """
local n = #KEYS / 2
for i = 1, n do
    redis.call('DEL', KEYS[i])
    redis.call('SET', KEYS[i + n], ARGV[1], 'PX', ARGV[2])
end
return n
"""

NEGATIVE = b"null"


class RecordCache:
    """``get(key)`` for one kind of record, cached under each of ``key_fields``.

    ``name`` is the key namespace (``"query_payment"`` gives ``<prefix>query_payment:{5}``).
    ``loader(key)`` reads the database and returns a JSON-ready mapping (ints for money,
    ISO strings for times) or None; it receives the key exactly as ``get`` was given it.
    """

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        name: str,
        loader: Loader,
        *,
        key_fields: Sequence[str] = ("id",),
        ttl_s: float = 600,
        negative_ttl_s: float = 10,
        gen_ttl_s: float = 120,
    ):
        if not key_fields:
            raise ValueError("a record cache needs at least one key field")
        self.redis = redis
        self.keys = keys
        self.name = name
        self.loader = loader
        self.key_fields = tuple(key_fields)
        self._ttl_ms = int(ttl_s * 1000)
        self._negative_ttl_ms = int(negative_ttl_s * 1000)
        self._gen_ttl_ms = int(gen_ttl_s * 1000)
        self._fill = redis.register_script(FILL_LUA)
        self._invalidate = redis.register_script(INVALIDATE_LUA)

    # -- key names ---------------------------------------------------------------------------

    def value_key(self, value: object) -> str:
        # The braces make the lookup value a hash tag: its value and generation keys share a
        # slot, so the first read fetches both with one MGET.
        return self.keys(self.name, "{" + str(value) + "}")

    def gen_key(self, value: object) -> str:
        return self.keys(self.name, "{" + str(value) + "}", "gen")

    def lookup_values(self, record: Mapping[str, Any]) -> list[str]:
        """The record's own lookup values, in ``key_fields`` order, skipping empty fields."""
        out: list[str] = []
        for field in self.key_fields:
            value = record.get(field)
            if value is not None and value != "" and str(value) not in out:
                out.append(str(value))
        return out

    # -- API ---------------------------------------------------------------------------------

    def get(self, key: str | int, skip_cache: bool = False) -> Record | None:
        """The record for ``key``: from the cache, else from the loader, filling every key.

        ``skip_cache=True`` (CACHE-01/05) reads the loader whatever the cache holds and
        rebuilds every key of the record, superseding fills already under way.
        """
        value = str(key)
        try:
            if skip_cache:
                seen = self.redis.get(self.gen_key(value))
            else:
                raw, seen = self.redis.mget([self.value_key(value), self.gen_key(value)])
                if raw is not None:
                    return None if raw == NEGATIVE else json.loads(raw)
        except RedisError:
            log.warning(
                "cache %s: Redis unavailable, reading %s from the loader",
                self.name,
                value,
                exc_info=True,
            )
            return self._load(key)
        record = self._load(key)
        if record is None:
            values, payload, ttl_ms = [value], NEGATIVE, self._negative_ttl_ms
        else:
            values = self.lookup_values(record)
            if value not in values:
                # Found through an alias the record does not carry: invalidation could never
                # reach an entry under it, so cache nothing rather than something unclearable.
                # A refresh still clears the record's own keys.
                if skip_cache:
                    self.invalidate(record)
                return record
            payload, ttl_ms = _dumps(record), self._ttl_ms
        keys = [
            self.gen_key(value),
            *(self.value_key(v) for v in values),
            *(self.gen_key(v) for v in values),
        ]
        args = [
            seen or b"",
            payload,
            ttl_ms,
            int(skip_cache),
            secrets.token_hex(8),
            self._gen_ttl_ms,
        ]
        try:
            self._fill(keys=keys, args=args)
        except RedisError:
            log.warning("cache %s: fill of %s failed", self.name, value, exc_info=True)
        return record

    def refresh(self, key: str | int) -> Record | None:
        """``get(key, skip_cache=True)``: CACHE-04's refresh after a write."""
        return self.get(key, skip_cache=True)

    def invalidate(self, record: Mapping[str, Any]) -> bool:
        """Drop every key of ``record`` (its own fields, CACHE-02); call after commit."""
        return self.invalidate_values(*self.lookup_values(record))

    def invalidate_values(self, *values: object) -> bool:
        """Drop the entries under these lookup values; False if Redis could not be reached."""
        names = [str(v) for v in values]
        if not names:
            return True
        keys = [*(self.value_key(v) for v in names), *(self.gen_key(v) for v in names)]
        try:
            self._invalidate(keys=keys, args=[secrets.token_hex(8), self._gen_ttl_ms])
        except RedisError:
            log.error(
                "cache %s: invalidation of %s failed; stale up to the TTL",
                self.name,
                names,
                exc_info=True,
            )
            return False
        return True

    def _load(self, key: str | int) -> Record | None:
        found = self.loader(key)
        # One JSON round trip so a miss returns exactly what a later hit will.
        return None if found is None else json.loads(_dumps(found))


def _dumps(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
