"""Redis fixtures: every test runs on the in-process server and, when GONGLUN_TEST_REDIS_URL is
set, again on that real Redis. Each test works under its own random prefix and deletes what it
wrote."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis as redis_py

from gonglun.kv import Keys, make_redis

REAL_URL = os.environ.get("GONGLUN_TEST_REDIS_URL", "")


@pytest.fixture(params=["fakeredis", "redis"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """ "" selects the in-process server (``make_redis``'s embedded default)."""
    if request.param == "fakeredis":
        return ""
    if not REAL_URL:
        pytest.skip("real Redis: set GONGLUN_TEST_REDIS_URL=redis://127.0.0.1:6379/0")
    return REAL_URL


@pytest.fixture
def new_client(redis_url: str) -> Iterator[Callable[[], redis_py.Redis]]:
    """A factory of clients on the backend under test (one per thread in contention tests)."""
    made: list[redis_py.Redis] = []

    def make() -> redis_py.Redis:
        client = make_redis(redis_url)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def redis(new_client: Callable[[], redis_py.Redis]) -> redis_py.Redis:
    return new_client()


@pytest.fixture
def keys(redis: redis_py.Redis) -> Iterator[Keys]:
    prefix = f"gltest:{uuid.uuid4().hex}:"
    yield Keys(prefix)
    leftover = list(redis.scan_iter(match=prefix + "*", count=1000))
    if leftover:
        redis.delete(*leftover)
