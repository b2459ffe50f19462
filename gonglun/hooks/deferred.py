"""Deferred hooks through a transactional outbox.

``Hooks.defer(session, "payment_success", key=..., payment=...)`` inserts an outbox row in the
caller's transaction; nothing reaches the broker unless that transaction commits. After commit
the relay sends the row's key to the ``gonglun.deferred`` actor. If the broker is down at that
moment the row simply stays pending: the sweeper (a periodic job, also run at worker start)
re-sends every pending row whose ``next_attempt_at`` has passed. Delivery is therefore
at-least-once, and the consumer makes it effectively once:

* a row is claimed with a conditional UPDATE and a lease, so two deliveries never run it at the
  same time (a worker that dies lets the lease expire and the sweeper re-sends);
* each implementation's completion is recorded in ``outbox_done`` (unique on row and
  implementation: plugin, module and function, so two implementations of one hook in one
  plugin are two records), and a retry after a partial failure runs only the implementations
  that have not completed;
* an event whose implementations keep failing is left ``failed`` after ``outbox.max_retries``
  deliveries, never ``done``, with an ``alarm`` and the failing implementations in
  ``last_error`` (``gonglun outbox --failed`` lists them; ``gonglun outbox --retry ID`` re-arms).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from contextvars import ContextVar
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from gonglun.db import Base, UTCDateTime, insert_ignore, insert_ignore_many, utcnow

log = logging.getLogger(__name__)

ACTOR = "gonglun.deferred"
#: One message for the events of one transaction: a batch commit relays in one broker call.
BATCH_ACTOR = "gonglun.deferred_batch"
BATCH = 100
SESSION_KEYS = "gonglun_outbox_keys"
#: The key of the deferred event whose implementation runs in this context: an implementation
#: with effects of its own (a notification fanned out) keys them on it, so a redelivered event
#: finds them done.
CURRENT_KEY: ContextVar[str | None] = ContextVar("gonglun_outbox_key", default=None)


def current_key() -> str | None:
    """The outbox key of the deferred event being run here; None outside the consumer."""
    return CURRENT_KEY.get()


def _call_keyed(rt: Any, key: str, hook: str, impl: Any, kwargs: dict[str, Any]) -> None:
    token = CURRENT_KEY.set(key)
    try:
        rt.hooks.call_one(hook, impl, kwargs)
    finally:
        CURRENT_KEY.reset(token)


class OutboxEvent(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    key: Mapped[str] = mapped_column(String(191), unique=True)
    hook: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class OutboxDone(Base):
    """One row per (event, implementation) that completed: the consumer's idempotency record."""

    __tablename__ = "outbox_done"
    __table_args__ = (UniqueConstraint("outbox_id", "impl"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    outbox_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    impl: Mapped[str] = mapped_column(String(191))
    done_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


_O, _D = OutboxEvent.__table__, OutboxDone.__table__
# Built once: every deferred hook runs these (parameters carry the values).
_CLAIM = (
    _O.update()
    .where(_O.c.key == bindparam("k"), _O.c.state == "pending",
           (_O.c.claimed_until.is_(None)) | (_O.c.claimed_until < bindparam("now")))
    .values(claimed_until=bindparam("until"), attempts=_O.c.attempts + 1)
)
_ROW = select(_O.c.id, _O.c.hook, _O.c.payload, _O.c.attempts).where(_O.c.key == bindparam("k"))
_DONE = select(_D.c.impl).where(_D.c.outbox_id == bindparam("i"))
_FINISH = (
    _O.update()
    .where(_O.c.id == bindparam("i"), _O.c.state == "pending")
    .values(state=bindparam("state"), claimed_until=None, last_error=bindparam("error"),
            done_at=bindparam("done"))
)


class Outbox:
    """Writes, relays, sweeps and consumes deferred hook calls for one runtime."""

    def __init__(self, rt: Any):
        self.rt = rt
        self.grace = dt.timedelta(seconds=float(rt.config.get("outbox.sweep_s", 5)) * 2)
        self.lease = dt.timedelta(seconds=float(rt.config.get("outbox.lease_s", 60)))
        self.max_attempts = int(rt.config.get("outbox.max_retries", 20))

    # -- producer side ---------------------------------------------------------------------

    def _row(self, hook: str, key: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        now = utcnow()
        return {
            "key": key or f"{hook}:{uuid.uuid4().hex}",
            "hook": hook,
            "payload": json.dumps(kwargs, ensure_ascii=False, separators=(",", ":"),
                                  default=_json),
            "state": "pending",
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now + self.grace,
        }

    def defer(self, session: Session, hook: str, *, key: str | None, kwargs: dict[str, Any]) -> str:
        """Insert the call in ``session``'s transaction; a repeated ``key`` is a no-op."""
        row = self._row(hook, key, kwargs)
        if insert_ignore(session, OutboxEvent.__table__, row):
            session.info.setdefault(SESSION_KEYS, []).append(row["key"])
        return str(row["key"])

    def defer_many(self, session: Session, calls: list[tuple[str, str, dict[str, Any]]]) -> None:
        """``defer`` for many ``(hook, key, kwargs)`` in one statement (group commits).

        Keys already present are skipped by the database; they are relayed anyway, which is
        harmless: the consumer finds them claimed or done.
        """
        rows = [self._row(hook, key, kwargs) for hook, key, kwargs in calls]
        insert_ignore_many(session, OutboxEvent.__table__, rows)
        session.info.setdefault(SESSION_KEYS, []).extend(r["key"] for r in rows)

    def after_commit(self, session: Session) -> None:
        """Session hook: hand the committed keys to the broker; failures wait for the sweeper.
        A savepoint's release fires it too (SQLAlchemy): its keys wait for the real commit."""
        if session.in_nested_transaction():
            return
        keys = session.info.pop(SESSION_KEYS, None)
        if keys:
            self.send(keys)

    def after_rollback(self, session: Session) -> None:
        session.info.pop(SESSION_KEYS, None)

    def send(self, keys: list[str]) -> int:
        sent = 0
        try:
            if len(keys) == 1:
                self.rt.actor(ACTOR).send(keys[0])
                return 1
            batch = self.rt.actor(BATCH_ACTOR)
            for start in range(0, len(keys), BATCH):
                chunk = keys[start : start + BATCH]
                batch.send(chunk)
                sent += len(chunk)
        except Exception:
            log.warning("outbox relay: broker unavailable, %d event(s) left to the sweeper",
                        len(keys) - sent, exc_info=True)
        return sent

    def sweep(self, limit: int = 500) -> int:
        """Re-send pending events whose time has come; returns how many were sent."""
        now = utcnow()
        with self.rt.db.write() as session:
            rows = session.execute(
                select(OutboxEvent.id, OutboxEvent.key, OutboxEvent.attempts)
                .where(OutboxEvent.state == "pending", OutboxEvent.next_attempt_at <= now)
                .order_by(OutboxEvent.id)
                .limit(limit)
            ).all()
            for row in rows:
                backoff = min(3600, 5 * 2 ** min(row.attempts, 10))
                session.execute(
                    update(OutboxEvent)
                    .where(OutboxEvent.id == row.id, OutboxEvent.state == "pending")
                    .values(next_attempt_at=now + dt.timedelta(seconds=backoff))
                )
        return self.send([r.key for r in rows]) if rows else 0

    # -- consumer side ---------------------------------------------------------------------

    def consume_many(self, keys: list[str]) -> None:
        """Run every event of a batch; retry the message if any failed (done ones are skipped)."""
        failures = []
        for key in keys:
            try:
                self.consume(key)
            except DeferredFailure as exc:
                failures.append(str(exc))
        if failures:
            raise DeferredFailure("; ".join(failures)[:2000])

    def consume(self, key: str) -> str:
        """Run one deferred call. Returns done, skipped or missing; raises to ask for a retry."""
        now = utcnow()
        with self.rt.db.write() as session:
            conn = session.connection()
            claimed = conn.execute(_CLAIM, {"k": key, "now": now, "until": now + self.lease})
            row = conn.execute(_ROW, {"k": key}).first()
            if row is None:
                return "missing"
            if not claimed.rowcount:
                return "skipped"
            done = {r.impl for r in conn.execute(_DONE, {"i": row.id})}
        kwargs = json.loads(row.payload)
        failures: list[str] = []
        for impl in self.rt.hooks.implementations(row.hook):
            ident = impl.ident
            # ``impl.plugin`` alone: completion recorded by an older release, per plugin.
            if ident in done or impl.plugin in done:
                continue
            try:
                _call_keyed(self.rt, key, row.hook, impl, kwargs)
            except Exception as exc:
                log.exception("deferred %s (%s): %s failed", row.hook, key, ident)
                failures.append(f"{ident}: {type(exc).__name__}: {exc}")
                continue
            # Recorded at once, so a retry after a later failure never repeats this one.
            with self.rt.db.write() as session:
                insert_ignore(session, OutboxDone.__table__,
                              {"outbox_id": row.id, "impl": ident, "done_at": utcnow()})
        # ``attempts`` was read after this delivery's claim counted it.
        gave_up = bool(failures) and row.attempts >= self.max_attempts
        with self.rt.db.write() as session:
            finished = session.connection().execute(_FINISH, {
                "i": row.id, "now": utcnow(),
                "state": "failed" if gave_up else ("pending" if failures else "done"),
                "error": "\n".join(failures)[:4000] if failures else None,
                "done": None if failures else utcnow(),
            }).rowcount
            if gave_up and finished and row.hook != "alarm":
                # A human must look; the alarm is itself deferred (and never about itself).
                self.rt.hooks.defer(
                    session, "alarm", key=f"alarm:outbox_failed:{row.id}", kind="outbox_failed",
                    message=f"延迟任务多次失败已放弃: {row.hook} ({key})",
                    data={"outbox_id": row.id, "hook": row.hook, "attempts": row.attempts,
                          "errors": failures[:5]})
        if not failures:
            return "done"
        if gave_up:
            log.error("deferred %s (%s) failed %d times; left as failed", row.hook, key,
                      row.attempts)
            return "failed"
        raise DeferredFailure(f"{row.hook} ({key}): " + "; ".join(failures))


class DeferredFailure(RuntimeError):
    """Some implementations of a deferred hook failed; the message is retried."""


def _json(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"deferred hook arguments must be JSON primitives, not {type(value).__name__}")
