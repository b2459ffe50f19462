"""Shared fixtures: an isolated runtime per test on the embedded default or the real services.

Environment (set by .ci/run for the second pass):
  GONGLUN_TEST_DATABASE_URL  e.g. postgresql://postgres@127.0.0.1:5432/test
  GONGLUN_TEST_REDIS_URL     e.g. redis://127.0.0.1:6379/0
  GONGLUN_TEST_BROKER_URL    e.g. amqp://guest:guest@127.0.0.1:5672/ (or redis://...)
With none set every test runs on SQLite, the in-process Redis and the in-process broker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gonglun.testing import cleanup_broker, cleanup_redis, fresh_database, isolated_config


@pytest.fixture
def make_rt(tmp_path: Path) -> Iterator[Any]:
    """Factory for runtimes on a database of their own; closes and cleans them afterwards."""
    from gonglun.migrate import upgrade
    from gonglun.runtime import Runtime

    made: list[Any] = []
    stack: list[Any] = []

    def factory(migrate: bool = True, pm: Any = None, **sections: Any) -> Any:
        ctx = fresh_database(os.environ.get("GONGLUN_TEST_DATABASE_URL"), tmp_path)
        url = ctx.__enter__()
        stack.append(ctx)
        rt = Runtime(isolated_config(url, tmp_path, **sections), pm=pm)
        if migrate:
            upgrade(rt)
        made.append(rt)
        return rt

    yield factory
    for rt in made:
        cleanup_redis(rt)
        cleanup_broker(rt)
        rt.close()
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


@pytest.fixture
def rt(make_rt: Any) -> Any:
    return make_rt()


@pytest.fixture
def client(rt: Any) -> Any:
    from falcon import testing

    from gonglun.api import create_app

    return testing.TestClient(create_app(rt=rt))
