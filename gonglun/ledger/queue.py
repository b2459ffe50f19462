"""Group commit for standalone transfers: many callers, one transaction, one lock per wallet.

A transfer made inside a business transaction (a payment, a refund) uses ``transfer_many`` in
that transaction. A transfer that *is* the whole event (a red packet share credited, a payout,
a batch of rewards) may go through ``submit`` instead: concurrent callers' requests are
gathered and applied together by ``engine.apply_requests`` in one transaction, so a hot wallet
is locked once per batch instead of once per transfer (TigerBeetle's batching, the outbox's
group commit). Each request still stands or falls alone: a refused one gets its error, the
others commit. If the batch's transaction itself fails (a deadlock, a key raced by a transfer
outside the queue), every request is retried alone, so one bad request never sinks others.

Leader/follower: the caller that finds the queue idle runs a batch of what is waiting, then
hands the lead to the oldest waiting caller, whose own request is in the next batch; nobody
waits longer than the batch before theirs plus their own. Per process and runtime.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gonglun.errors import GonglunError
from gonglun.ledger.engine import Request, apply_requests
from gonglun.ledger.moves import Move, TransferResult

log = logging.getLogger(__name__)

MAX_BATCH = 256


@dataclass
class _Waiter:
    request: Request
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    failure: BaseException | None = None


class TransferQueue:
    def __init__(self, rt: Any, max_batch: int = MAX_BATCH):
        self.rt = rt
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Waiter] = []
        self._busy = False

    def submit(self, moves: Sequence[Move], *, operator_id: int | None = None
               ) -> list[TransferResult]:
        """Like ``transfer_many`` in a transaction of its own, batched with other callers."""
        from gonglun.ledger.transfers import prepare, results

        me = _Waiter(Request(prepare(self.rt, moves), operator_id))
        with self._lock:
            self._waiting.append(me)
            lead, self._busy = not self._busy, True
        if not lead:
            me.done.wait()
        if lead or me.lead:
            self._run_batch()
        if me.failure is not None:
            raise me.failure
        if me.request.error is not None:
            raise me.request.error
        return results(me.request)

    def _run_batch(self) -> None:
        with self._lock:
            batch = self._waiting[:self.max_batch]
            del self._waiting[:self.max_batch]
        try:
            self._apply(batch)
        finally:
            with self._lock:
                if self._waiting:
                    nxt = self._waiting[0]
                    nxt.lead = True
                    nxt.done.set()
                else:
                    self._busy = False
            for w in batch:
                if not w.lead:
                    w.done.set()

    def _apply(self, batch: list[_Waiter]) -> None:
        from gonglun.ledger.failures import logged_failures
        from gonglun.ledger.transfers import check_operator, ids_for

        rt = self.rt
        try:
            with rt.db.write() as session:
                live = []
                for w in batch:
                    try:
                        check_operator(session, w.request.moves, w.request.operator_id)
                        live.append(w)
                    except GonglunError as exc:
                        w.request.error = exc
                ids = ids_for(rt, session, [m for w in live for m in w.request.moves])
                # NOTE: optimistic: a repeated key (a caller's retry) is rare; it fails the
                # batch's INSERT and the requests are redone one by one below.
                apply_requests(rt, session, [w.request for w in live], ids, optimistic=True)
            return
        except Exception as exc:  # the batch failed as a whole: each request alone below
            log.info("transfer batch of %d failed (%s: %s); each request alone", len(batch),
                     type(exc).__name__, str(exc)[:200])
        for w in batch:
            w.request = Request(w.request.moves, w.request.operator_id)
            try:
                with logged_failures(rt, w.request.moves), rt.db.write() as session:
                    check_operator(session, w.request.moves, w.request.operator_id)
                    ids = ids_for(rt, session, w.request.moves)
                    apply_requests(rt, session, [w.request], ids)
                    if w.request.error is not None:
                        raise w.request.error
            except GonglunError as exc:
                w.request.error = exc
            except Exception as exc:
                w.failure = exc


def transfer_queue(rt: Any) -> TransferQueue:
    """The runtime's queue (one per process and runtime)."""
    queue = rt.__dict__.get("_transfer_queue")
    if queue is None:
        with _create_lock:
            queue = rt.__dict__.setdefault("_transfer_queue", TransferQueue(rt))
    return queue


_create_lock = threading.Lock()


def submit(rt: Any, moves: Sequence[Move], *, operator_id: int | None = None
           ) -> list[TransferResult]:
    """Make ``moves`` (one event: all or none) in a group-committed transaction of their own."""
    return transfer_queue(rt).submit(moves, operator_id=operator_id)
