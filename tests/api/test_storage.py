"""Storage failures said plainly, through HTTP: a full, read-only or unreachable database
answers 503 with an error id naming the failure and Retry-After (never ``500 server.error``),
and ``/v1/health`` proves the database accepts writes."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import pytest
from falcon import testing
from sqlalchemy import create_engine, event, text

from gonglun.api import create_app
from gonglun.db import Database
from tests.api.test_core_api import assert_error, auth, make_user

LOGIN = {"login": "alice", "password": "correct horse battery"}
SERVER = os.environ.get("GONGLUN_TEST_DATABASE_URL", "")


def storage_error(result: Any, kind: str) -> None:
    body = assert_error(result, 503, f"storage.{kind}")
    assert int(result.headers["Retry-After"]) > 0
    assert body["data"]["retry_after_s"] == int(result.headers["Retry-After"])


def health(client: Any, token: str) -> dict[str, Any]:
    result = client.simulate_get("/v1/health", headers=auth(token))
    return {"status": result.status_code, **result.json["data"]["checks"]["database"]}


@pytest.mark.skipif(SERVER.startswith(("postgresql", "mysql")),
                    reason="PRAGMA max_page_count is SQLite's size limit")
def test_a_full_sqlite_database_answers_503_storage_full(rt: Any) -> None:
    client = testing.TestClient(create_app(rt=rt))
    _, admin = make_user(rt, "root", role="admin")
    user_id, _ = make_user(rt)
    limit = {"pages": 0}

    @event.listens_for(rt.db.engine, "connect")
    def _cap(dbapi_conn: Any, _record: Any) -> None:
        if limit["pages"]:
            dbapi_conn.execute(f"PRAGMA max_page_count={limit['pages']}")

    rt.db.engine.dispose()
    with sqlite3.connect(rt.db.engine.url.database, isolation_level=None) as conn:
        conn.execute("VACUUM")  # no free pages left to reuse
        limit["pages"] = conn.execute("PRAGMA page_count").fetchone()[0]
    assert health(client, admin) == {"status": 503, "ok": False, "error": (
        "StorageProblem: storage.full: database or disk is full")}
    stored = fill_tokens(rt, user_id)  # the token pages' slack runs out
    assert stored > 0
    storage_error(client.simulate_post("/v1/sessions", json=LOGIN), "full")
    limit["pages"] = 1 << 30
    rt.db.engine.dispose()
    assert client.simulate_post("/v1/sessions", json=LOGIN).status_code == 201
    assert health(client, admin)["ok"] is True


def fill_tokens(rt: Any, user_id: int) -> int:
    """Sign ``user_id`` in until the database refuses: the count of tokens stored."""
    from sqlalchemy.exc import OperationalError

    from gonglun.accounts import issue_token

    for stored in range(10_000):
        try:
            with rt.db.write() as session:
                issue_token(session, user_id)
        except OperationalError as exc:
            assert "full" in str(exc)
            return stored
    raise AssertionError("the database never filled up")


def test_a_read_only_database_answers_503_storage_read_only(make_rt: Any) -> None:
    rt = make_rt()
    if rt.db.dialect == "mysql":
        pytest.skip("MariaDB's read-only switch is server-wide (read_only): not done to a "
                    "shared server")
    _, admin = make_user(rt, "root", role="admin")
    make_user(rt)
    client = testing.TestClient(create_app(rt=rt))
    assert health(client, admin) == {"status": 200, "ok": True, "dialect": rt.db.dialect,
                                     "writable": True}
    with read_only(rt):
        assert health(client, admin)["error"].startswith("StorageProblem: storage.read_only")
        storage_error(client.simulate_post("/v1/sessions", json=LOGIN), "read_only")
        # Reading still works: the user is shown, not refused.
        assert client.simulate_get("/v1/me", headers=auth(admin)).status_code == 200
    assert client.simulate_post("/v1/sessions", json=LOGIN).status_code == 201


class read_only:
    """The runtime's database opened read-only: SQLite by a read-only open of the same file,
    PostgreSQL by making every new transaction of the database read-only."""

    def __init__(self, rt: Any):
        self.rt, self.saved = rt, rt.db

    def __enter__(self) -> None:
        url = self.rt.db.engine.url
        if self.rt.db.dialect == "sqlite":
            self.rt.db = Database(f"sqlite:///file:{url.database}?mode=ro&uri=true")
        else:
            self._set("on")

    def __exit__(self, *exc: Any) -> None:
        if self.rt.db is not self.saved:
            self.rt.db.dispose()
            self.rt.db = self.saved
        else:
            self._set("off")

    def _set(self, value: str) -> None:
        url = self.rt.db.engine.url
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{url.database}" SET '
                              f"default_transaction_read_only = {value}"))
        admin.dispose()
        self.rt.db.engine.dispose()


def test_an_unreachable_database_answers_503_storage_unavailable(rt: Any) -> None:
    client = testing.TestClient(create_app(rt=rt))
    _, token = make_user(rt)
    saved = rt.db
    rt.db = Database("postgresql://postgres@127.0.0.1:1/gone")  # the server went away
    try:
        storage_error(client.simulate_post("/v1/sessions", json=LOGIN), "unavailable")
        storage_error(client.simulate_get("/v1/me", headers=auth(token)), "unavailable")
        down = client.simulate_get("/v1/health")
        assert down.status_code == 503 and down.json["data"]["checks"]["database"] == {
            "ok": False}
    finally:
        rt.db.dispose()
        rt.db = saved
    assert client.simulate_get("/v1/me", headers=auth(token)).status_code == 200


@pytest.mark.skipif(not SERVER.startswith("postgresql"), reason="PostgreSQL backends")
def test_postgresql_terminated_under_the_pool_answers_503(rt: Any) -> None:
    client = testing.TestClient(create_app(rt=rt))
    _, token = make_user(rt)
    assert client.simulate_get("/v1/me", headers=auth(token)).status_code == 200
    admin = create_engine(rt.db.engine.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        killed = conn.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = :db AND pid <> pg_backend_pid()"),
            {"db": rt.db.engine.url.database}).scalar()
    admin.dispose()
    assert killed
    storage_error(client.simulate_get("/v1/me", headers=auth(token)), "unavailable")
    assert client.simulate_get("/v1/me", headers=auth(token)).status_code == 200
