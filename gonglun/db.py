"""Database engine, sessions and shared column types (SQLAlchemy 2).

SQLite (the embedded default) runs in WAL mode. Its ``SELECT ... FOR UPDATE`` is silently
dropped, so a read-then-write transaction must take the write lock up front: ``Database.write()``
starts with ``BEGIN IMMEDIATE``; ``Database.read()`` starts an ordinary deferred transaction.
On PostgreSQL and MariaDB both are plain transactions and correctness comes from conditional
updates and unique constraints, never from locks held outside the database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base shared by the core and every plugin's models."""

    metadata = MetaData(naming_convention=NAMING)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timestamps stored in UTC and always returned timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        # MySQL/MariaDB's DATETIME keeps whole seconds unless told otherwise: a row read back
        # would then disagree with the answer made from it (a replayed transfer, an ordering by
        # time). Every database keeps microseconds, as PostgreSQL and SQLite do.
        if dialect.name == "mysql":
            from sqlalchemy.dialects.mysql import DATETIME

            return dialect.type_descriptor(DATETIME(fsp=6))
        return dialect.type_descriptor(self.impl_instance)

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC timestamp is required")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name in ("sqlite", "mysql") else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # NOTE: take transaction control away from pysqlite so BEGIN is ours to emit.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def sqlite_path(database: str | None) -> str | None:
    """The file a SQLite database name points at (a ``file:`` URI filename, ``?uri=true``, e.g.
    ``file:path?mode=ro``, is reduced to its path), or None for an in-memory database."""
    name = database or ""
    if name.startswith("file:"):
        name = name[5:].partition("?")[0]
    return None if name in ("", ":memory:") else name


def make_engine(
    url: str, *, echo: bool = False, pool_size: int = 10, pre_ping: bool = False
) -> Engine:
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if parsed.get_backend_name() == "sqlite":
        database = sqlite_path(parsed.database)
        if database:
            Path(database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        # NOTE: no pre-ping by default: it costs a round trip per transaction. A connection
        # that died with the server fails its statement, SQLAlchemy invalidates the pool, and
        # the caller's retry (a channel re-notifying, a Dramatiq retry) gets a fresh one.
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=pre_ping,
                      pool_recycle=3600)
        if parsed.get_backend_name() == "mysql":
            kwargs["isolation_level"] = "READ COMMITTED"
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    elif parsed.drivername in ("mysql", "mariadb"):
        url = parsed.set(drivername="mysql+pymysql").render_as_string(hide_password=False)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _sqlite_setup(engine)
    return engine


class Database:
    """Owns the engine and hands out sessions bound to one transaction each."""

    def __init__(
        self, url: str, *, echo: bool = False, pool_size: int = 10, pre_ping: bool = False
    ):
        self.url = url
        self.engine = make_engine(url, echo=echo, pool_size=pool_size, pre_ping=pre_ping)
        self.dialect = self.engine.dialect.name
        #: The session maker: listen on it for every session's commit or rollback.
        self.session_factory = self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A read-then-write transaction: committed on success, rolled back on any error."""
        with self._factory() as session, session.begin():
            if self.dialect == "sqlite":
                # First use of the session procures the connection, so BEGIN IMMEDIATE is emitted.
                session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only unit of work (still one transaction, so reads are consistent)."""
        with self._factory() as session, session.begin():
            yield session

    def session(self) -> Session:
        """A bare session for callers that manage their own transactions."""
        return self._factory()

    def dispose(self) -> None:
        self.engine.dispose()


_INSERT_IGNORE: dict[tuple[Any, str, bool], Any] = {}


def _insert_ignore_statement(table: Any, dialect: str, returning: bool) -> Any:
    """Built once per table and backend: values travel as parameters (cheap, cached SQL)."""
    key = (table, dialect, returning)
    stmt = _INSERT_IGNORE.get(key)
    if stmt is not None:
        return stmt
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert  # type: ignore
        stmt = dialect_insert(table).on_conflict_do_nothing()
        if returning:
            # NOTE: rowcount is not reliable for INSERT on every driver (psycopg reports -1
            # when SQLAlchemy adds RETURNING for the key); a returned row is.
            stmt = stmt.returning(next(iter(table.primary_key.columns)))
    else:
        from sqlalchemy import insert

        stmt = insert(table).prefix_with("IGNORE")
    _INSERT_IGNORE[key] = stmt
    return stmt


def insert_ignore(session: Session, table: Any, values: dict[str, Any]) -> bool:
    """INSERT a row unless it collides with a unique constraint; True when it was inserted.

    The idempotency primitive: callers put the idempotency key under a unique constraint and
    treat ``False`` as "already done". No savepoint is needed, so the caller's transaction stays
    usable on every backend.
    """
    dialect = session.get_bind().dialect.name
    returning = dialect in ("sqlite", "postgresql")
    # Core execution on the session's connection: no ORM bookkeeping for a plain row insert.
    result = session.connection().execute(
        _insert_ignore_statement(table, dialect, returning), values
    )
    return result.first() is not None if returning else bool(result.rowcount == 1)


def insert_ignore_returning_id(session: Session, table: Any, values: dict[str, Any]) -> Any:
    """``insert_ignore`` answering the new row's primary key, or None when it was a duplicate."""
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        stmt = _insert_ignore_statement(table, dialect, True)
        return session.connection().execute(stmt, values).scalar()
    result = session.connection().execute(_insert_ignore_statement(table, dialect, False), values)
    return result.lastrowid if result.rowcount == 1 else None


def insert_ignore_many(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """``insert_ignore`` for many rows (all with the same columns) in one executemany."""
    if rows:
        dialect = session.get_bind().dialect.name
        session.connection().execute(_insert_ignore_statement(table, dialect, False), rows)
