"""Idempotency keys with Stripe's semantics (DECISIONS.md 24).

A client sends ``Idempotency-Key: <key>`` on a POST that has a side effect. The key is scoped
to the caller (the user, or a guest's address) and the route, compared whole (1-255 printable
ASCII characters; longer keys are refused, never truncated), and stored with a fingerprint of
the request (method, route, path parameters, the JSON body in canonical form):

* first use: the request runs; a success (2xx) is stored and the key is done;
* same key, same fingerprint, done: the stored answer is returned again (``Idempotent-Replayed:
  true``), without running anything (no second order, no second channel call);
* same key, another fingerprint: 422 ``idempotency.mismatch``, nothing runs;
* same key while the first request still runs: 409 ``idempotency.in_progress``;
* a request that failed (any non-2xx) leaves its key ``failed`` with its fingerprint: the same
  request may be retried under it (and the business layer's own key, ``Slot.request_key``,
  which covers the fingerprint, finds what the failed attempt already created), while another
  body under the key is still a mismatch.

A request whose process died mid-way leaves a started row; after ``lock_s`` a retry takes it
over with a conditional update.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, String, Text, delete, select, update
from sqlalchemy.orm import Mapped, mapped_column

from gonglun.accounts.models import ID
from gonglun.db import Base, UTCDateTime, insert_ignore, utcnow
from gonglun.errors import GonglunError

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY = 255
LOCK_S = 60


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    #: sha256 of scope, route and key: unique, fixed length whatever the key's length.
    lookup: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(80))
    route: Mapped[str] = mapped_column(String(160))
    key: Mapped[str] = mapped_column(String(MAX_KEY))
    fingerprint: Mapped[str] = mapped_column(String(64))
    #: started, done, failed
    state: Mapped[str] = mapped_column(String(16), default="started")
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    locked_until: Mapped[dt.datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True)
class Slot:
    """A key this request holds."""

    lookup: str
    fingerprint: str

    @property
    def request_key(self) -> str:
        """The business layer's key for what this request creates: the caller's key *and* the
        request's content, so nothing made under one body is ever returned for another."""
        return hashlib.sha256(f"{self.lookup}:{self.fingerprint}".encode()).hexdigest()


@dataclass(frozen=True)
class Replay:
    status: int
    media: Any


def key_from(req: Any) -> str | None:
    """The request's key, validated (400 ``idempotency.invalid_key``), or None when absent."""
    raw = req.get_header(HEADER)
    if raw is None:
        return None
    if not 0 < len(raw) <= MAX_KEY or not raw.isascii() or not raw.isprintable():
        raise GonglunError("idempotency.invalid_key",
                           f"Idempotency-Key 须为1-{MAX_KEY}个可打印 ASCII 字符",
                           data={"max_length": MAX_KEY})
    return raw


def fingerprint(method: str, route: str, body: Any) -> str:
    canonical = json.dumps({"m": method, "r": route, "b": body}, sort_keys=True,
                           ensure_ascii=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def lookup_of(scope: str, route: str, key: str) -> str:
    return hashlib.sha256(f"{scope}\x00{route}\x00{key}".encode()).hexdigest()


def begin(rt: Any, scope: str, route: str, key: str, print_: str) -> Slot | Replay:
    """Claim ``key`` for this request, or the stored answer of the first one, or refuse."""
    lookup = lookup_of(scope, route, key)
    now = utcnow()
    until = now + dt.timedelta(seconds=float(rt.config.get("idempotency.lock_s", LOCK_S)))
    with rt.db.write() as session:
        inserted = insert_ignore(session, IdempotencyKey.__table__, {
            "lookup": lookup, "scope": scope[:80], "route": route[:160], "key": key,
            "fingerprint": print_, "state": "started", "status": None, "response": None,
            "created_at": now, "locked_until": until,
        })
        if inserted:
            return Slot(lookup, print_)
        row = session.execute(
            select(IdempotencyKey).where(IdempotencyKey.lookup == lookup)).scalar_one()
        if row.fingerprint != print_:
            raise GonglunError(
                "idempotency.mismatch",
                "Idempotency-Key 已用于另一个不同的请求;请换一个新的键",
                status=422)
        if row.state == "done":
            return Replay(int(row.status or 200), json.loads(row.response or "null"))
        taken = session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == row.id,
                   ((IdempotencyKey.state == "started") & (IdempotencyKey.locked_until < now))
                   | (IdempotencyKey.state == "failed"))
            .values(state="started", locked_until=until)
        ).rowcount
        if not taken:
            raise GonglunError("idempotency.in_progress",
                               "相同 Idempotency-Key 的请求正在处理中,请稍后重试", status=409)
        return Slot(lookup, print_)


def finish(rt: Any, slot: Slot, status: int, media: Any) -> None:
    """Store a success for replays; anything else leaves the key failed, open to a retry of
    the same request."""
    with rt.db.write() as session:
        if 200 <= status < 300:
            session.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.lookup == slot.lookup,
                       IdempotencyKey.state == "started")
                .values(state="done", status=status,
                        response=json.dumps(media, ensure_ascii=False, default=str))
            )
        else:
            release(session, slot)


def release(session: Any, slot: Slot) -> None:
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.lookup == slot.lookup, IdempotencyKey.state == "started")
        .values(state="failed")
    )


def prune(rt: Any, older_than_h: float = 24 * 7) -> int:
    """Forget keys older than a week (Stripe keeps them 24 h); a daily job."""
    cutoff = utcnow() - dt.timedelta(hours=older_than_h)
    with rt.db.write() as session:
        return int(session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff)
            .execution_options(synchronize_session=False)
        ).rowcount)


async def idempotent(rt: Any, req: Any, resp: Any, scope: str, body: Any, work: Any) -> None:
    """Run ``await work()`` (which writes ``resp``) under the request's Idempotency-Key.

    ``work`` receives the slot's ``request_key`` (a stable business key) or None without one.
    """
    from gonglun.api.util import run_sync

    key = key_from(req)
    if key is None:
        await work(None)
        return
    # The path itself, not its template: a key used on one order's route is not another's.
    route = f"{req.method} {req.path}"
    got = await run_sync(begin, rt, scope, route, key, fingerprint(req.method, route, body))
    if isinstance(got, Replay):
        resp.status = got.status
        resp.media = got.media
        resp.set_header("Idempotent-Replayed", "true")
        return
    try:
        await work(got.request_key)
    except BaseException:
        await run_sync(_release, rt, got)
        raise
    await run_sync(finish, rt, got, _status(resp), resp.media)


def _release(rt: Any, slot: Slot) -> None:
    with rt.db.write() as session:
        release(session, slot)


def _status(resp: Any) -> int:
    status = resp.status
    return int(str(status).split()[0]) if not isinstance(status, int) else status
