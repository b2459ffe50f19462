"""Ledger fixtures: a runtime on a fresh database of each configured kind, core tables created.

Databases: SQLite, or PostgreSQL when GONGLUN_TEST_DATABASE_URL is set (as in tests/conftest.py),
plus MariaDB when GONGLUN_TEST_MARIADB_URL is set. Each test gets a fresh database
(``gonglun.testing.fresh_database``: random name, dropped afterwards) and a bare plugin manager,
so a test registers exactly the plugins it is about.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from gonglun.accounts import create_user, passwords
from gonglun.hooks import PluginManager
from gonglun.testing import cleanup_redis, fresh_database, isolated_config

#: Backend name → server URL handed to ``fresh_database`` (None: a SQLite file).
SERVERS: dict[str, str | None] = {"main": os.environ.get("GONGLUN_TEST_DATABASE_URL") or None}
if os.environ.get("GONGLUN_TEST_MARIADB_URL"):
    SERVERS["mariadb"] = os.environ["GONGLUN_TEST_MARIADB_URL"]


def schema(rt: Any) -> None:
    """Create the core tables for a test runtime."""
    from gonglun.migrate import upgrade

    upgrade(rt)


def make_runtime(url: str, tmp: Path, pm: PluginManager | None = None, **sections: Any) -> Any:
    from gonglun.runtime import Runtime

    return Runtime(isolated_config(url, tmp, **sections), pm=pm or PluginManager())


@pytest.fixture(autouse=True)
def cheap_passwords() -> Iterator[None]:
    """Argon2 at its cheapest: these tests are about money, not about hashing cost."""
    old = passwords.use(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    yield
    passwords.use(old)


@pytest.fixture(params=sorted(SERVERS))
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(SERVERS[request.param], tmp_path) as url:
        yield url


@pytest.fixture
def rt(db_url: str, tmp_path: Path) -> Iterator[Any]:
    runtime = make_runtime(db_url, tmp_path)
    schema(runtime)
    yield runtime
    cleanup_redis(runtime)
    runtime.close()


@pytest.fixture
def new_user(rt: Any) -> Callable[..., int]:
    """Create a user and return its id (each call a new login)."""
    count = [0]

    def make(login: str | None = None) -> int:
        count[0] += 1
        with rt.db.write() as session:
            return create_user(session, login or f"user{count[0]}", "password123").id

    return make


@pytest.fixture
def admin(new_user: Callable[..., int], rt: Any) -> int:
    """An admin: the operator ``manual`` transfers need."""
    from sqlalchemy import update

    from gonglun.accounts.models import User

    uid = new_user("staff")
    with rt.db.write() as session:
        session.execute(update(User).where(User.id == uid).values(role="admin"))
    return uid


@pytest.fixture
def fund(rt: Any, admin: int) -> Callable[..., Any]:
    """``fund(user_id, amount)``: a staff credit from ``manual`` (with note and admin)."""
    from gonglun.ledger import MANUAL, transfer, wallet

    count = [0]

    def give(user_id: int, amount: int) -> Any:
        count[0] += 1
        with rt.db.write() as session:
            return transfer(rt, session, debit=MANUAL, credit=wallet(user_id), amount=amount,
                            code="admin_adjust", key=f"fund:{count[0]}", ref="", remark="补款",
                            operator_id=admin)

    return give
