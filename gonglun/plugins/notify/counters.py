"""Clock, Asia/Shanghai days and the daily counters behind caps, code intervals and alarms.

A counter is one row moved by a conditional UPDATE inside the caller's transaction: the cap
check and the delivery it admits commit (or roll back) together, and two workers racing for
the last slot of a cap get one slot between them on every backend.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from gonglun.db import insert_ignore, utcnow
from gonglun.plugins.notify.models import Counter

SHANGHAI = ZoneInfo("Asia/Shanghai")
_C = Counter.__table__


def now(rt: Any) -> dt.datetime:
    """The notify plugin's clock: UTC now, unless a test set ``rt.notify_clock``."""
    clock = rt.__dict__.get("notify_clock")
    return clock() if clock is not None else utcnow()


def day_of(when: dt.datetime) -> str:
    """The Asia/Shanghai calendar day of ``when`` (DECISIONS.md 4)."""
    return when.astimezone(SHANGHAI).strftime("%Y-%m-%d")


_KEY = _C.c.key == bindparam("k")
_COUNT = {"used": _C.c.used + 1, "last_at": bindparam("at")}
# Built once per shape: a fan-out takes several per notification.
_TAKE = {
    (False, False): _C.update().where(_KEY).values(**_COUNT),
    (True, False): _C.update().where(_KEY, _C.c.used < bindparam("limit")).values(**_COUNT),
    (False, True): _C.update().where(_KEY, or_(_C.c.last_at.is_(None),
                                              _C.c.last_at <= bindparam("since")))
    .values(**_COUNT),
}
_TAKE[(True, True)] = _TAKE[(True, False)].where(
    or_(_C.c.last_at.is_(None), _C.c.last_at <= bindparam("since")))


def take(session: Session, key: str, day: str, *, limit: int | None = None,
         at: dt.datetime | None = None, interval_s: float = 0) -> bool:
    """Count one under ``key`` unless ``limit`` is reached or the last count is more recent
    than ``interval_s``; True when counted."""
    insert_ignore(session, _C, {"key": key, "used": 0, "day": day, "last_at": None})
    at = at or utcnow()
    params: dict[str, Any] = {"k": key, "at": at, "limit": limit,
                              "since": at - dt.timedelta(seconds=interval_s)}
    statement = _TAKE[(limit is not None, interval_s > 0)]
    return bool(session.connection().execute(statement, params).rowcount == 1)


def give_back(session: Session, key: str) -> None:
    """Undo one ``take`` of this transaction (what it admitted did not happen after all)."""
    session.execute(_C.update().where(_C.c.key == key, _C.c.used > 0)
                    .values(used=_C.c.used - 1))


def bump(session: Session, key: str, day: str) -> int:
    """Count one under ``key`` and return the new count (the row stays locked to us until
    commit on PostgreSQL and MariaDB; SQLite writers are serialised)."""
    take(session, key, day)
    return int(session.scalar(select(Counter.used).where(Counter.key == key)) or 0)


def last_at(session: Session, key: str) -> dt.datetime | None:
    return session.scalar(select(Counter.last_at).where(Counter.key == key))
