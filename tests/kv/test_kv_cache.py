"""Record caches: every key of a record filled and cleared together, skip_cache, negative
entries, and no stale fill winning over an invalidation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis as redis_py

from gonglun.kv import Keys, RecordCache, make_redis

ORDER = "202407051230000001"


class PaymentTable:
    """The database side: rows by id, resolved as DECISIONS.md 2 says (AMB-09)."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}
        self.reads = 0
        #: Runs inside a read, after the row was fetched: a writer racing the reader.
        self.during_read: Callable[[], None] | None = None

    def insert(self, **row: Any) -> dict[str, Any]:
        self.rows[row["id"]] = row
        return row

    def load(self, key: str | int) -> dict[str, Any] | None:
        self.reads += 1
        text = str(key)
        if len(text) < 10:
            found = self.rows.get(int(text))
        else:
            found = next(
                (r for r in self.rows.values() if text in (r["payment_order"], r.get("pay_order"))),
                None,
            )
        snapshot = None if found is None else dict(found)
        if self.during_read is not None:
            racing, self.during_read = self.during_read, None
            racing()
        return snapshot


@pytest.fixture
def table() -> PaymentTable:
    return PaymentTable()


@pytest.fixture
def cache(redis: redis_py.Redis, keys: Keys, table: PaymentTable) -> RecordCache:
    return RecordCache(
        redis,
        keys,
        "query_payment",
        table.load,
        key_fields=("id", "payment_order"),
        ttl_s=600,
        negative_ttl_s=0.3,
    )


def test_a_miss_fills_every_key_of_the_record(
    redis: redis_py.Redis, keys: Keys, cache: RecordCache, table: PaymentTable
) -> None:
    row = table.insert(id=5, payment_order=ORDER, state="wait_pay", amount=1234)
    assert cache.get(5) == row
    assert table.reads == 1
    assert redis.exists(keys("query_payment", "{5}"), keys("query_payment", "{" + ORDER + "}")) == 2
    assert 590_000 < redis.pttl(keys("query_payment", "{" + ORDER + "}")) <= 600_000

    assert cache.get(ORDER) == row  # filled by the read by id
    assert cache.get("5") == row
    assert table.reads == 1


def test_refresh_by_id_also_refreshes_the_order_number_key(
    cache: RecordCache, table: PaymentTable
) -> None:
    # CACHE-02: refreshing by id used to leave a stale entry under the merchant number.
    table.insert(id=5, payment_order=ORDER, state="wait_pay", amount=1234)
    assert cache.get(ORDER)["state"] == "wait_pay"
    table.rows[5]["state"] = "ok"

    assert cache.get(5)["state"] == "wait_pay"  # cached, as it should be until refreshed
    assert cache.get(5, skip_cache=True)["state"] == "ok"
    reads = table.reads
    assert cache.get(ORDER)["state"] == "ok"
    assert cache.get(5)["state"] == "ok"
    assert table.reads == reads


def test_skip_cache_always_reads_the_loader(cache: RecordCache, table: PaymentTable) -> None:
    table.insert(id=5, payment_order=ORDER, state="ok", amount=1)
    cache.get(5)
    for _ in range(3):
        cache.get(5, skip_cache=True)
    assert table.reads == 4
    assert cache.refresh(ORDER) == table.rows[5]
    assert table.reads == 5


def test_invalidate_uses_the_records_own_fields(
    redis: redis_py.Redis, keys: Keys, cache: RecordCache, table: PaymentTable
) -> None:
    row = table.insert(id=5, payment_order=ORDER, state="ok", amount=1)
    cache.get(ORDER)
    assert cache.invalidate(row)
    assert redis.exists(keys("query_payment", "{5}"), keys("query_payment", "{" + ORDER + "}")) == 0
    cache.get(5)
    assert table.reads == 2


def test_unknown_keys_are_cached_briefly(cache: RecordCache, table: PaymentTable) -> None:
    assert cache.get("202407059999999999") is None
    assert cache.get("202407059999999999") is None
    assert table.reads == 1  # the second miss did not reach the database
    time.sleep(0.4)  # negative_ttl_s=0.3
    assert cache.get("202407059999999999") is None
    assert table.reads == 2


def test_creating_the_record_clears_its_negative_entries(
    cache: RecordCache, table: PaymentTable
) -> None:
    assert cache.get(ORDER) is None
    assert cache.get(5) is None
    row = table.insert(id=5, payment_order=ORDER, state="wait_pay", amount=1234)
    cache.invalidate(row)  # CACHE-04: every write invalidates, inserts included
    assert cache.get(ORDER) == row
    assert cache.get(5) == row


def test_a_stale_fill_loses_to_a_racing_invalidation(
    cache: RecordCache, table: PaymentTable
) -> None:
    table.insert(id=5, payment_order=ORDER, state="wait_pay", amount=1234)

    def writer() -> None:  # commits while the reader holds the old row, then invalidates
        table.rows[5]["state"] = "ok"
        cache.invalidate(table.rows[5])

    table.during_read = writer
    assert cache.get(5)["state"] == "wait_pay"  # the reader returns what it read...
    assert cache.get(ORDER)["state"] == "ok"  # ...but did not cache it
    assert cache.get(5)["state"] == "ok"


def test_a_stale_fill_loses_to_a_racing_refresh(cache: RecordCache, table: PaymentTable) -> None:
    table.insert(id=5, payment_order=ORDER, state="wait_pay", amount=1234)

    def writer() -> None:  # CACHE-04's mechanism: refresh after the write
        table.rows[5]["state"] = "refund"
        cache.refresh(ORDER)

    table.during_read = writer
    assert cache.get(5)["state"] == "wait_pay"
    reads = table.reads
    assert cache.get(5)["state"] == "refund"
    assert cache.get(ORDER)["state"] == "refund"
    assert table.reads == reads  # the refresh's fill stands


def test_two_refreshes_out_of_order_leave_no_stale_entry(
    redis: redis_py.Redis, keys: Keys, cache: RecordCache, table: PaymentTable
) -> None:
    # Process A refreshes and loads the old row; B commits, refreshes, and A's fill lands
    # between B's token read and B's fill. B must not leave A's older row behind.
    table.insert(id=5, payment_order=ORDER, state="wait_pay", amount=1234)
    a_loaded, a_go = threading.Event(), threading.Event()

    def load_a(key: str | int) -> dict[str, Any] | None:
        row = table.load(key)
        a_loaded.set()
        assert a_go.wait(10)
        return row

    def load_b(key: str | int) -> dict[str, Any] | None:
        row = table.load(key)
        a_go.set()
        a.join(10)  # A fills now, after B read the token
        return row

    def named(loader: Callable[[Any], Any]) -> RecordCache:
        return RecordCache(redis, keys, "query_payment", loader, key_fields=("id", "payment_order"))

    a = threading.Thread(target=named(load_a).refresh, args=(5,))
    a.start()
    assert a_loaded.wait(10)
    table.rows[5]["state"] = "ok"  # B's commit
    assert named(load_b).refresh(ORDER)["state"] == "ok"
    assert not a.is_alive()
    assert cache.get(5)["state"] == "ok"
    assert cache.get(ORDER)["state"] == "ok"


def test_a_stale_negative_fill_loses_to_the_insert(cache: RecordCache, table: PaymentTable) -> None:
    def writer() -> None:
        cache.invalidate(table.insert(id=5, payment_order=ORDER, state="wait_pay", amount=1))

    table.during_read = writer
    assert cache.get(ORDER) is None  # read before the insert committed
    assert cache.get(ORDER) is not None


def test_hits_and_misses_return_the_same_json(cache: RecordCache, table: PaymentTable) -> None:
    table.insert(id=5, payment_order=ORDER, state="ok", amount=1234, tags=("a", "b"), note="瓷器")
    miss = cache.get(5)
    hit = cache.get(5)
    assert (
        miss
        == hit
        == {
            "id": 5,
            "payment_order": ORDER,
            "state": "ok",
            "amount": 1234,
            "tags": ["a", "b"],
            "note": "瓷器",
        }
    )


def test_non_json_records_are_refused(cache: RecordCache, table: PaymentTable) -> None:
    table.insert(id=5, payment_order=ORDER, paid_at=object())
    with pytest.raises(TypeError):
        cache.get(5)


def test_aliases_the_record_does_not_carry_are_not_cached(
    redis: redis_py.Redis, keys: Keys, cache: RecordCache, table: PaymentTable
) -> None:
    # The channel's number resolves through the loader but is not a key field: an entry under
    # it could never be invalidated, so none is written.
    pay_order = "4200001234202407051234567890"
    table.insert(id=5, payment_order=ORDER, pay_order=pay_order, state="ok")
    assert cache.get(pay_order)["id"] == 5
    assert cache.get(pay_order)["id"] == 5
    assert table.reads == 2
    assert not list(redis.scan_iter(match=keys("query_payment") + "*"))


def test_redis_down_falls_back_to_the_loader(keys: Keys, table: PaymentTable) -> None:
    down = make_redis("redis://127.0.0.1:1/0")
    try:
        cache = RecordCache(down, keys, "query_payment", table.load, key_fields=("id",))
        row = table.insert(id=5, payment_order=ORDER, state="ok")
        assert cache.get(5) == row
        assert cache.get(5, skip_cache=True) == row
        assert cache.invalidate(row) is False
    finally:
        down.close()
