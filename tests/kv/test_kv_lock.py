"""Token locks: one winner under contention, no release or extension after losing the lease."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import redis as redis_py

from gonglun.errors import GonglunError
from gonglun.kv import Keys, Lock, LockBusy, lock_or_fail


def _contend(clients: list[redis_py.Redis], key: str) -> list[Lock]:
    """Every client tries ``key`` at the same instant; returns the locks that got it."""
    barrier = threading.Barrier(len(clients))
    winners: list[Lock] = []
    guard = threading.Lock()

    def contend(client: redis_py.Redis) -> None:
        lock = Lock(client, key, ttl_s=10)
        barrier.wait()
        if lock.acquire():
            with guard:
                winners.append(lock)

    threads = [threading.Thread(target=contend, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return winners


def test_only_one_of_many_threads_wins(
    new_client: Callable[[], redis_py.Redis], keys: Keys
) -> None:
    clients = [new_client() for _ in range(8)]
    for round_ in range(5):
        winners = _contend(clients, keys("lock", "refund", round_))
        assert len(winners) == 1
        assert winners[0].owned()
        assert winners[0].release()


def test_blocking_acquire_waits_for_the_holder(
    new_client: Callable[[], redis_py.Redis], keys: Keys
) -> None:
    key = keys("lock", "job")
    holder = Lock(new_client(), key, ttl_s=10)
    assert holder.acquire()
    waiter = Lock(new_client(), key, ttl_s=10)
    assert not waiter.acquire(blocking=True, timeout=0.1)

    releaser = threading.Timer(0.2, holder.release)
    releaser.start()
    started = time.monotonic()
    assert waiter.acquire(blocking=True, timeout=5)
    assert 0.15 < time.monotonic() - started < 4
    releaser.join()
    assert waiter.release()


def test_expired_holder_cannot_release_the_new_holders_lock(
    redis: redis_py.Redis, keys: Keys
) -> None:
    key = keys("lock", "refund", 7)
    old = Lock(redis, key, ttl_s=0.1)
    assert old.acquire()
    time.sleep(0.25)
    new = Lock(redis, key, ttl_s=10)
    assert new.acquire()

    assert old.release() is False
    assert old.extend(10) is False
    assert new.owned()
    assert redis.get(key) == new.token.encode()
    assert new.release() is True
    assert redis.exists(key) == 0


def test_release_after_plain_expiry_is_refused(redis: redis_py.Redis, keys: Keys) -> None:
    lock = Lock(redis, keys("lock", "x"), ttl_s=0.05)
    assert lock.acquire()
    time.sleep(0.15)
    assert lock.release() is False
    assert lock.release() is False  # nothing held any more


def test_extend_resets_the_lease(redis: redis_py.Redis, keys: Keys) -> None:
    key = keys("lock", "long-job")
    lock = Lock(redis, key, ttl_s=0.2)
    assert lock.acquire()
    assert lock.extend(30)
    assert 25_000 < redis.pttl(key) <= 30_000
    time.sleep(0.3)
    assert not Lock(redis, key, ttl_s=1).acquire()
    assert lock.extend()  # back to the lock's own TTL
    assert redis.pttl(key) <= 200
    assert lock.release()


def test_release_survives_a_flushed_script_cache(
    redis_url: str, redis: redis_py.Redis, keys: Keys
) -> None:
    # After a Redis restart the scripts are gone; register_script re-sends them on NOSCRIPT.
    if redis_url:
        pytest.skip("SCRIPT FLUSH is server-wide; not done to a shared Redis")
    lock = Lock(redis, keys("lock", "restart"), ttl_s=5)
    assert lock.acquire()
    redis.script_flush()
    assert lock.release()


def test_lock_or_fail_raises_a_409_and_always_releases(redis: redis_py.Redis, keys: Keys) -> None:
    key = keys("lock", "refund", 42)
    with lock_or_fail(redis, key, 30, msg="退款失败:重复请求(订单锁)") as held:
        assert held.owned()
        with (
            pytest.raises(LockBusy) as busy,
            lock_or_fail(redis, key, 30, msg="退款失败:重复请求(订单锁)"),
        ):
            pytest.fail("a second holder got in")
        assert isinstance(busy.value, GonglunError)
        assert busy.value.status == 409
        assert busy.value.key == key
        assert busy.value.to_dict()["msg"] == "退款失败:重复请求(订单锁)"
    assert redis.exists(key) == 0

    with pytest.raises(RuntimeError), lock_or_fail(redis, key, 30):
        raise RuntimeError("channel call failed")
    assert redis.exists(key) == 0  # released on the error path too (CORE-23)


def test_lock_object_as_context_manager(redis: redis_py.Redis, keys: Keys) -> None:
    key = keys("lock", "identify-timeout", 3)
    with Lock(redis, key, ttl_s=300) as lock:
        assert redis.pttl(key) > 299_000
        with pytest.raises(LockBusy), Lock(redis, key, ttl_s=300):
            pass
        assert lock.owned()
    assert redis.exists(key) == 0


def test_ttl_must_be_positive(redis: redis_py.Redis, keys: Keys) -> None:
    with pytest.raises(ValueError):
        Lock(redis, keys("lock", "bad"), ttl_s=0)
