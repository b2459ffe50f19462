"""Account fixtures: a runtime on a fresh database with the core tables, cheap Argon2.

Same databases as tests/ledger: SQLite, or PostgreSQL with GONGLUN_TEST_DATABASE_URL, plus
MariaDB with GONGLUN_TEST_MARIADB_URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from gonglun.accounts import passwords
from gonglun.hooks import PluginManager
from gonglun.testing import cleanup_redis, fresh_database, isolated_config

SERVERS: dict[str, str | None] = {"main": os.environ.get("GONGLUN_TEST_DATABASE_URL") or None}
if os.environ.get("GONGLUN_TEST_MARIADB_URL"):
    SERVERS["mariadb"] = os.environ["GONGLUN_TEST_MARIADB_URL"]

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def schema(rt: Any) -> None:
    from gonglun.migrate import upgrade

    upgrade(rt)


@pytest.fixture(autouse=True)
def cheap_passwords() -> Iterator[None]:
    old = passwords.use(CHEAP)
    yield
    passwords.use(old)


@pytest.fixture(params=sorted(SERVERS))
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    from gonglun.runtime import Runtime

    with fresh_database(SERVERS[request.param], tmp_path) as url:
        runtime = Runtime(isolated_config(url, tmp_path), pm=PluginManager())
        schema(runtime)
        yield runtime
        cleanup_redis(runtime)
        runtime.close()
