"""Group commit for verified notifications.

Under load, notifications that arrive while a transaction is committing wait and are then
applied together: one transaction, one commit (one WAL flush), one broker message for all their
``payment_success`` events. Nothing waits on purpose: a lone notification is a batch of one,
so latency at low load is unchanged. Each request is answered only after the batch committed,
so an acknowledgement still means "durably applied".

Only the common case is batched (an unpaid order whose checks hold, ``apply.mark_paid``).
Everything else, and every item of a batch whose transaction failed, is applied one by one by
``apply.apply``, which classifies duplicates, late payments and mismatches.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from gonglun.api.util import run_sync
from gonglun.plugins.payment.apply import APPLIED, apply, mark_paid, notification_row, record_rows
from gonglun.plugins.payment.channels import ChannelPayment, get_channel

log = logging.getLogger(__name__)

MAX_BATCH = 64


@dataclass
class Item:
    cp: ChannelPayment
    body: bytes
    future: asyncio.Future[str] = field(repr=False)


class NotificationBatcher:
    """One per channel and event loop; ``submit`` returns the outcome once committed."""

    def __init__(self, rt: Any, method: str):
        self.rt = rt
        self.method = method
        self.queue: asyncio.Queue[Item] | None = None
        self.task: asyncio.Task[None] | None = None

    async def submit(self, cp: ChannelPayment, body: bytes) -> str:
        if self.queue is None or self.task is None or self.task.done():
            self.queue = asyncio.Queue()
            self.task = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait(Item(cp, body, future))
        return await future

    async def _run(self) -> None:
        assert self.queue is not None
        while True:
            items = [await self.queue.get()]
            while len(items) < MAX_BATCH and not self.queue.empty():
                items.append(self.queue.get_nowait())
            try:
                outcomes = await run_sync(self.apply_batch, [(i.cp, i.body) for i in items])
            except Exception as exc:  # never lose the loop; each waiter gets the error
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            for item, outcome in zip(items, outcomes, strict=True):
                if not item.future.done():
                    item.future.set_result(outcome)

    def apply_batch(self, items: list[tuple[ChannelPayment, bytes]]) -> list[str]:
        rt, method = self.rt, self.method
        channel = get_channel(rt, method)
        outcomes: list[str | None] = [None] * len(items)
        changed: list[dict[str, Any]] = []
        try:
            with rt.db.write() as session:
                records = []
                for n, (cp, body) in enumerate(items):
                    payment = mark_paid(rt, session, channel, cp, method, True)
                    if payment is None:
                        continue
                    records.append(notification_row(method, body, APPLIED, verified=True,
                                                    payment_order=cp.payment_order))
                    outcomes[n] = APPLIED
                    changed.append(payment)
                record_rows(session, records)
                rt.hooks.defer_many(session, [
                    ("payment_success", f"payment_success:{p['id']}", {"payment": p})
                    for p in changed
                ])
        except Exception:
            log.warning("notification batch of %d failed; applying one by one", len(items),
                        exc_info=True)
            outcomes = [None] * len(items)
            changed = []
        if changed:
            from gonglun.plugins.payment.cache import invalidate

            invalidate(rt, *changed)
        for n, (cp, body) in enumerate(items):
            if outcomes[n] is None:
                outcomes[n] = apply(rt, method, cp, source="notify", body=body,
                                    require_merchant=True)
        return [o or "error" for o in outcomes]
