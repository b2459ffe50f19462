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

A request in flight holds its key by a lease: the row names its owner (``owner_id``: the
machine, the process id and the process's start time) and ``locked_until``, which the owner
renews every third of ``lock_s`` while the request runs. Another request finding the key in
flight takes it over (one conditional update, so two retries cannot both win) as soon as the
owner is known dead, and never before:

* the owner is a process of this machine (same kernel boot and pid namespace) and that process
  is gone, or its pid now belongs to a process started at another time (a reused pid);
* the owner is this very process and no request of it holds the key (its release failed);
* or the lease lapsed: the owner, wherever it runs, stopped renewing for ``lock_s``.

A slow but alive owner keeps renewing and its process exists, so it is never taken over: the
retry gets 409 ``idempotency.in_progress`` for as long as the first request runs. What a dead
owner had already created is found again through ``Slot.request_key``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, String, Text, delete, select, update
from sqlalchemy.orm import Mapped, mapped_column

from gonglun.accounts.models import ID
from gonglun.concurrency import run_sync
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
    #: The process holding a started key (``owner_id()``); None for rows from before owners.
    owner: Mapped[str | None] = mapped_column(String(96), nullable=True)


def _machine() -> str:
    """This kernel boot and pid namespace: pids are comparable only within it ("" if unknown:
    then only the lease tells)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return hashlib.sha256(f"{boot}/{namespace}".encode()).hexdigest()[:16]


def _started(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), None if there is none (or a
    zombie: it has exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return _unseen(pid)
    return None if fields[0] in ("Z", "X") else fields[19]


#: A process that exists but that /proc will not show us (``hidepid``, another user): alive.
UNSEEN = "unseen"


def _unseen(pid: int) -> str | None:
    """/proc has no entry: gone, or hidden from us. ``kill(pid, 0)`` (which hidepid does not
    affect) tells which; a process we may not look at is taken as alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:
        return UNSEEN
    return UNSEEN


MACHINE = _machine()


_OWNERS: dict[int, str] = {}


def owner_id() -> str:
    """This process: machine, pid, start time (per pid: a fork gets its own)."""
    pid = os.getpid()
    if pid not in _OWNERS:
        _OWNERS[pid] = f"{MACHINE}:{pid}:{_started(pid) or ''}"
    return _OWNERS[pid]


#: Keys this process is running requests under.
_RUNNING: set[str] = set()
_RUNNING_LOCK = threading.Lock()


def owner_dead(owner: str | None, lookup: str) -> bool:
    """Whether the process that holds ``lookup`` is known to be dead (module docstring)."""
    machine, _, rest = (owner or "").partition(":")
    pid_text, _, started = rest.partition(":")
    if not MACHINE or machine != MACHINE or not pid_text.isdigit() or not started:
        return False  # another machine, or not knowable: the lease decides
    if owner == owner_id():
        with _RUNNING_LOCK:
            return lookup not in _RUNNING
    now = _started(int(pid_text))
    return now is None or (now != UNSEEN and now != started)


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
    until = now + dt.timedelta(seconds=lease_s(rt))
    me = owner_id()
    with rt.db.write() as session:
        inserted = insert_ignore(session, IdempotencyKey.__table__, {
            "lookup": lookup, "scope": scope[:80], "route": route[:160], "key": key,
            "fingerprint": print_, "state": "started", "status": None, "response": None,
            "created_at": now, "locked_until": until, "owner": me,
        })
        if inserted:
            return _hold(Slot(lookup, print_))
        row = session.execute(
            select(IdempotencyKey).where(IdempotencyKey.lookup == lookup)).scalar_one()
        if row.fingerprint != print_:
            raise GonglunError(
                "idempotency.mismatch",
                "Idempotency-Key 已用于另一个不同的请求;请换一个新的键",
                status=422)
        if row.state == "done":
            return Replay(int(row.status or 200), json.loads(row.response or "null"))
        open_ = ((IdempotencyKey.state == "started") & (IdempotencyKey.locked_until < now)) \
            | (IdempotencyKey.state == "failed")
        if row.state == "started" and owner_dead(row.owner, lookup):
            log.warning("Idempotency-Key %s: its owner %s is dead; taken over", lookup[:12],
                        row.owner)
            # The dead owner exactly as read: a second retry racing us finds ours instead.
            open_ = open_ | ((IdempotencyKey.state == "started")
                             & (IdempotencyKey.owner == row.owner))
        taken = session.execute(
            update(IdempotencyKey).where(IdempotencyKey.id == row.id, open_)
            .values(state="started", locked_until=until, owner=me)
        ).rowcount
        if not taken:
            raise GonglunError("idempotency.in_progress",
                               "相同 Idempotency-Key 的请求正在处理中,请稍后重试", status=409)
        return _hold(Slot(lookup, print_))


def lease_s(rt: Any) -> float:
    return max(1.0, float(rt.config.get("idempotency.lock_s", LOCK_S)))


def _hold(slot: Slot) -> Slot:
    with _RUNNING_LOCK:
        _RUNNING.add(slot.lookup)
    return slot


def _let_go(slot: Slot) -> None:
    with _RUNNING_LOCK:
        _RUNNING.discard(slot.lookup)


def renew(rt: Any, slot: Slot) -> bool:
    """Extend this process's lease on ``slot``; False when it is no longer ours."""
    until = utcnow() + dt.timedelta(seconds=lease_s(rt))
    with rt.db.write() as session:
        return bool(session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.lookup == slot.lookup, IdempotencyKey.state == "started",
                   IdempotencyKey.owner == owner_id())
            .values(locked_until=until)).rowcount)


async def _keep_leased(rt: Any, slot: Slot) -> None:
    """Renew the lease every third of it while the request runs (the owner is alive)."""
    while True:
        await asyncio.sleep(lease_s(rt) / 3)
        try:
            if not await run_sync(renew, rt, slot):
                return
        except Exception:  # the database is down: the request itself will say so
            log.warning("Idempotency-Key lease not renewed", exc_info=True)


def finish(rt: Any, slot: Slot, status: int, media: Any) -> None:
    """Store a success for replays; anything else leaves the key failed, open to a retry of
    the same request. Only while the key is still ours (a lapsed lease may have passed it on).
    """
    try:
        with rt.db.write() as session:
            if 200 <= status < 300:
                session.execute(
                    update(IdempotencyKey)
                    .where(IdempotencyKey.lookup == slot.lookup,
                           IdempotencyKey.state == "started",
                           IdempotencyKey.owner == owner_id())
                    .values(state="done", status=status,
                            response=json.dumps(media, ensure_ascii=False, default=str))
                )
            else:
                release(session, slot)
    finally:
        _let_go(slot)


def release(session: Any, slot: Slot) -> None:
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.lookup == slot.lookup, IdempotencyKey.state == "started",
               IdempotencyKey.owner == owner_id())
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
    keeper = asyncio.ensure_future(_keep_leased(rt, got))
    try:
        await work(got.request_key)
    except BaseException:
        keeper.cancel()
        await run_sync(_release, rt, got)
        raise
    keeper.cancel()
    await run_sync(finish, rt, got, _status(resp), resp.media)


def _release(rt: Any, slot: Slot) -> None:
    """Best effort (the database may be what failed): a key left started by this live
    process is taken over by its next retry, since no request of ours holds it any more."""
    try:
        with rt.db.write() as session:
            release(session, slot)
    except Exception:
        log.warning("Idempotency-Key %s not released", slot.lookup[:12], exc_info=True)
    finally:
        _let_go(slot)


def _status(resp: Any) -> int:
    status = resp.status
    return int(str(status).split()[0]) if not isinstance(status, int) else status
