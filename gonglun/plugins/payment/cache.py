"""The unified payment query (CACHE-01..05, CORE-22): ``query_payment(rt, ref)``.

Records are cached under every lookup value (id, merchant, channel and refund order numbers)
and invalidated after every committed change of the order (CACHE-04). Authoritative paths
(notifications, closes, refunds) read the database directly (CACHE-05).
"""

from __future__ import annotations

from typing import Any

from gonglun.kv import RecordCache
from gonglun.plugins.payment.models import Payment
from gonglun.plugins.payment.records import payment_dict, resolve

#: Fields kept in the cache for the bill page but never sent as the public payment object.
PRIVATE = ("shop_type", "shop_order", "payer_ip", "fingerprint", "income", "refund_reason",
           "meta")


def payment_record(p: Payment) -> dict[str, Any]:
    data = payment_dict(p)
    for name in PRIVATE:
        data[name] = getattr(p, name)
    return data


def public(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in PRIVATE}


def payment_cache(rt: Any) -> RecordCache:
    cache = rt.__dict__.get("_payment_cache")
    if cache is None:
        def load(key: Any) -> dict[str, Any] | None:
            with rt.db.read() as session:
                row = resolve(session, str(key))
                return payment_record(row) if row is not None else None

        cache = rt.__dict__["_payment_cache"] = RecordCache(
            rt.redis, rt.keys, "query_payment", load,
            key_fields=("id", "payment_order", "pay_order", "refund_order"),
            ttl_s=int(rt.config.get("payment.cache_ttl_s", 600)),
        )
    return cache


def query_payment(rt: Any, ref: str, *, skip_cache: bool = False) -> dict[str, Any] | None:
    return payment_cache(rt).get(ref, skip_cache=skip_cache)


CACHE_NAME = "query_payment"


def invalidate(rt: Any, *payments: dict[str, Any]) -> None:
    """After commit: drop every cached key of each payment (its own fields, CACHE-02).

    When Redis cannot be reached the invalidation is deferred (``cache_invalidate`` through the
    outbox, retried until Redis answers): a Redis that comes back with its data must not serve
    a paid order as unpaid until the entry's TTL runs out.
    """
    cache = payment_cache(rt)
    values = [str(v) for p in payments for v in cache.lookup_values(p)]
    if values and not cache.invalidate_values(*values):
        import uuid

        try:
            with rt.db.write() as session:
                rt.hooks.defer(session, "cache_invalidate",
                               key=f"cache_invalidate:{uuid.uuid4().hex}", cache=CACHE_NAME,
                               values=values)
        except Exception:  # the database too: the TTL is the last bound
            import logging

            logging.getLogger(__name__).exception("cache invalidation could not be deferred")


def retry_invalidation(rt: Any, cache: str, values: list[str]) -> None:
    """The deferred retry: raise while Redis still fails, so the outbox tries again."""
    if cache == CACHE_NAME and not payment_cache(rt).invalidate_values(*values):
        raise RuntimeError("payment cache invalidation failed: Redis unavailable")
