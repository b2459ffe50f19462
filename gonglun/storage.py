"""Storage failures said plainly: which failure it is, the API's 503, the write probe.

A database that is down, full or read-only is not a bug: the API answers 503 with an error id
naming the failure (``storage.unavailable``, ``storage.full``, ``storage.read_only``) and
``Retry-After``; the command line prints one line; ``/v1/health`` and start-up prove that the
database accepts writes (``write_probe``), since ``SELECT 1`` succeeds on a full or read-only
one.
"""

from __future__ import annotations

import logging
import os
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gonglun.db import sqlite_path
from gonglun.errors import GonglunError

log = logging.getLogger(__name__)

#: kind -> (Retry-After seconds, message)
KINDS = {
    "unavailable": (5, "数据库暂时不可用,请稍后重试"),
    "full": (60, "存储空间已满,暂时无法写入,请稍后重试"),
    "read_only": (60, "数据库当前只读,暂时无法写入,请稍后重试"),
}
#: SQLite primary result codes (extended codes carry them in the low byte).
_SQLITE = {13: "full", 8: "read_only", 3: "unavailable", 5: "unavailable", 6: "unavailable",
           10: "unavailable", 14: "unavailable", 15: "unavailable"}
#: MySQL / MariaDB error numbers.
_MYSQL = {1021: "full", 1114: "full", 1290: "read_only", 1836: "read_only", 1040: "unavailable",
          1205: "unavailable", 2002: "unavailable", 2003: "unavailable", 2006: "unavailable",
          2013: "unavailable"}


@dataclass(frozen=True)
class StorageFailure:
    kind: str  #: unavailable, full, read_only
    detail: str  #: the driver's first line, for logs and operators (never for clients)

    @property
    def error_id(self) -> str:
        return f"storage.{self.kind}"

    def error(self) -> GonglunError:
        retry, msg = KINDS[self.kind]
        return GonglunError(self.error_id, msg, status=503, data={"retry_after_s": retry},
                            headers={"Retry-After": str(retry)})

    def line(self) -> str:
        """What the command line prints (without the ``gonglun:`` prefix)."""
        what = {"unavailable": "cannot use the database",
                "full": "the database is full (no space left, or its size limit reached)",
                "read_only": "the database does not accept writes (read-only)"}[self.kind]
        todo = {"unavailable": "check database.url (GONGLUN_DATABASE_URL) and that the server "
                               "runs",
                "full": "free space or raise the limit, then start again",
                "read_only": "make the database and its folder (data_dir) writable by this "
                             "user, or point database.url at a writable primary"}[self.kind]
        return f"{what} ({self.detail}): {todo}"


def _kind_of(exc: BaseException) -> str | None:
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, ReadOnlyStorage):
        return "read_only"
    if isinstance(exc, sa_exc.TimeoutError):  # the pool: every connection busy or hanging
        return "unavailable"
    orig = getattr(exc, "orig", None) if isinstance(exc, sa_exc.DBAPIError) else exc
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return "unavailable"
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _SQLITE.get(code & 0xFF)
    state = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "diag", None),
                                                       "sqlstate", None)
    if isinstance(state, str):
        if state == "53100":
            return "full"
        if state == "25006":
            return "read_only"
        if state[:2] in ("08", "53", "57") or state == "40P01":
            return "unavailable"
        return None
    args = getattr(orig, "args", ())
    if type(orig).__module__.startswith("pymysql") and args and isinstance(args[0], int):
        return _MYSQL.get(args[0])
    if isinstance(exc, sa_exc.OperationalError) and "psycopg" in type(orig).__module__:
        return "unavailable"  # psycopg's own connection failures carry no SQLSTATE
    return None


def classify(exc: BaseException | None) -> StorageFailure | None:
    """The storage failure behind ``exc`` (or what it was raised from), or None."""
    seen = 0
    while exc is not None and seen < 6:
        kind = _kind_of(exc)
        if kind:
            orig = getattr(exc, "orig", None) or exc
            text = (str(orig).strip().splitlines() or [type(orig).__name__])[0][:200]
            return StorageFailure(kind, text)
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def write_probe(rt: Any) -> None:
    """Prove the database accepts writes: insert a row large enough to need new pages, then
    roll it back (nothing stays). Raises the driver's error on a full, read-only or down
    database."""
    from gonglun.db import utcnow
    from gonglun.idempotency import IdempotencyKey

    problem = sqlite_read_only(rt)
    if problem:
        raise ReadOnlyStorage(problem)
    now = utcnow()
    session = rt.db.session()
    try:
        options = {"sqlite_begin": "IMMEDIATE"} if rt.db.dialect == "sqlite" else {}
        conn = session.connection(execution_options=options)
        conn.execute(IdempotencyKey.__table__.insert(), {
            "lookup": f"probe-{uuid.uuid4().hex}", "scope": "health", "route": "probe",
            "key": "probe", "fingerprint": "probe", "state": "failed", "status": None,
            # NOTE: more than a page, so a database at its size limit refuses it.
            "response": "x" * 9000, "created_at": now, "locked_until": now})
    finally:
        session.rollback()
        session.close()


def preflight(rt: Any) -> None:
    """Start-up check of a long-running process: the data folder and the database accept
    writes. Raises ``StartupError`` (one line) otherwise."""
    problem = sqlite_read_only(rt)
    if problem:
        raise StartupError(f"{problem}: make it writable by this user (SQLite writes its "
                           f"journal beside the database)")
    try:
        write_probe(rt)
    except Exception as exc:
        failure = classify(exc)
        if failure is None:
            raise
        raise StartupError(failure.line()) from exc


def sqlite_read_only(rt: Any) -> str | None:
    """The SQLite database file or its folder is read-only (for this user, or for everyone:
    ``chmod a-w``, which root would otherwise write through), or None."""
    name = sqlite_path(rt.db.engine.url.database)
    if rt.db.dialect != "sqlite" or name is None:
        return None
    path = Path(name).resolve()
    for what, target in (("folder", path.parent), ("file", path)):
        if target.exists() and (not os.access(target, os.W_OK)
                                or not stat.S_IMODE(target.stat().st_mode) & 0o222):
            return f"the database {what} {target} is read-only"
    return None


class StartupError(RuntimeError):
    """A process cannot start; the message is the one line the operator sees."""


class ReadOnlyStorage(OSError):
    """The database's file or folder is read-only (found before the driver says so)."""


__all__ = ["KINDS", "ReadOnlyStorage", "StartupError", "StorageFailure", "classify", "preflight",
           "sqlite_read_only", "write_probe"]
