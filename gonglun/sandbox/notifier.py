"""Asynchronous notification delivery with the channels' retry behaviour, on a short clock.

A notification is enqueued by the request that caused it (a payment, a refund) and sent from a
background task, so the merchant's handler can call back into the sandbox (query the order)
while the sandbox is still answering. Alipay counts only the literal body ``success`` as an
acknowledgement and WeChat only a 200/204; anything else, a timeout or a refused connection is
retried on ``retry_schedule`` (seconds between attempts) until it runs out. Every attempt is
logged for ``GET /sandbox/notifications``.

The sandbox signs money notifications, so it sends them only to hosts on an allowlist
(:class:`HostAllowlist`: loopback by default). A delivery to any other host is recorded as
``refused`` with its reason and never attempted or retried; redirects are never followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx

from .common import now, wechat_time
from .faults import Faults
from .store import ALIPAY, Delivery, Store

log = logging.getLogger(__name__)

#: Real Alipay waits 4m, 10m, 10m, 1h, 2h, 6h, 15h and WeChat 15s, 15s, 30s, 3m, 10m...; the
#: sandbox keeps the shape (growing gaps, bounded attempts) on a clock tests can wait for.
DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (1, 2, 5, 10, 30, 60)
DEFAULT_NOTIFY_TIMEOUT = 5.0
#: Concurrent HTTP attempts. httpx's pool slows down sharply with hundreds of requests
#: waiting on it, so a burst of notifications queues here instead.
MAX_IN_FLIGHT = 8
REPLY_LIMIT = 500

#: Where notifications may go unless the sandbox is told otherwise: this machine, any port.
LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
REFUSED_HOST = "refused: host not allowed"
REFUSED_URL = "refused: not an http(s) URL"

#: Computes the headers of one attempt (WeChat re-signs every attempt with a fresh timestamp).
HeaderSigner = Callable[[Delivery], dict[str, str]]


def acknowledged(channel: str, status: int, text: str) -> bool:
    if channel == ALIPAY:
        return status == 200 and text.strip() == "success"
    return status in (200, 204)


def url_target(url: str) -> tuple[str, int] | None:
    """``(host, port)`` an http(s) URL connects to, parsed as httpx (the sender) parses it;
    None for anything else."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return None
    return parsed.host.lower(), parsed.port or (443 if parsed.scheme == "https" else 80)


def host_entry(entry: str) -> tuple[str, int | None]:
    """Parse an allowlist entry: ``host``, ``host:port``, ``::1`` or ``[::1]:port``."""
    text = entry.strip().lower()
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad notify host {entry!r}")
        port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not host or "/" in host or "@" in host or (port and not port.isdigit()) or (
        port and not 0 < int(port) < 65536
    ):
        raise ValueError(f"bad notify host {entry!r}: give host or host:port")
    return host, int(port) if port else None


class HostAllowlist:
    """The hosts notifications may be sent to; an entry without a port allows any port."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.entries: frozenset[tuple[str, int | None]] = frozenset(
            host_entry(e) for e in entries)

    @classmethod
    def for_sandbox(cls, notify_hosts: Iterable[str] | None,
                    notify_urls: Mapping[str, str]) -> HostAllowlist:
        """``notify_hosts`` (default: loopback) plus the host and port of each configured
        notify URL."""
        allowed = cls(LOOPBACK_HOSTS if notify_hosts is None else notify_hosts)
        targets = {url_target(url) for url in notify_urls.values()}
        allowed.entries |= {t for t in targets if t is not None}
        return allowed

    def refusal(self, url: str) -> str | None:
        """None when ``url`` may be notified, else why not."""
        target = url_target(url)
        if target is None:
            return REFUSED_URL
        host, port = target
        if (host, None) in self.entries or (host, port) in self.entries:
            return None
        return REFUSED_HOST

    def describe(self) -> list[str]:
        def show(host: str, port: int | None) -> str:
            name = f"[{host}]" if ":" in host and port is not None else host
            return name if port is None else f"{name}:{port}"

        return sorted(show(h, p) for h, p in self.entries)


class Notifier:
    def __init__(
        self,
        store: Store,
        faults: Faults,
        *,
        retry_schedule: Sequence[float] = DEFAULT_RETRY_SCHEDULE,
        timeout: float = DEFAULT_NOTIFY_TIMEOUT,
        allowlist: HostAllowlist | None = None,
    ) -> None:
        self.store = store
        self.faults = faults
        self.allowlist = allowlist if allowlist is not None else HostAllowlist(LOOPBACK_HOSTS)
        self.retry_schedule: tuple[float, ...] = tuple(float(s) for s in retry_schedule)
        self.timeout = timeout
        self.signers: dict[str, HeaderSigner] = {}
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def ensure_started(self) -> None:
        """Bind to the running loop (idempotent) and resume deliveries left pending.

        Called from every sandbox responder, so the embedding application need not call
        ``start()``; a new loop (a restarted server) gets a fresh client and resumes."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._client is not None:
            return
        self._loop = loop
        self._tasks = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._client = httpx.AsyncClient(
            timeout=self.timeout,
            trust_env=False,  # never route a local merchant through an environment proxy
            follow_redirects=False,  # the allowlist holds for the address actually reached
            limits=httpx.Limits(max_connections=MAX_IN_FLIGHT,
                                max_keepalive_connections=MAX_IN_FLIGHT),
        )
        for delivery in list(self.store.deliveries.values()):
            if delivery.state == "pending":
                self._spawn(delivery, max(0.0, delivery.next_at - now()))

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._client is not None:
            await self._client.aclose()
        self._client = None
        self._loop = None

    @property
    def busy(self) -> int:
        """Deliveries currently waiting or in flight (the benchmark waits for zero)."""
        return len(self._tasks)

    # --- enqueue -------------------------------------------------------------------------

    def enqueue(
        self,
        *,
        channel: str,
        event: str,
        url: str,
        body: str,
        headers: dict[str, str],
        summary: dict[str, Any],
        notify_id: str,
    ) -> list[str]:
        """Queue one notification, applying any armed ``notify`` fault; returns delivery ids.

        A URL off the allowlist gives one ``refused`` delivery, and leaves the fault armed."""
        self.ensure_started()
        allowed = self.allowlist.refusal(url) is None
        fault = self.faults.take(channel, "notify") if allowed else None
        mode = fault.mode if fault else "normal"
        copies = 2 if mode == "duplicate" else 1
        ids: list[str] = []
        for _ in range(copies):
            delivery = Delivery(
                id=uuid.uuid4().hex,
                channel=channel,
                event=event,
                url=url,
                body=body,
                headers=headers,
                summary=summary,
                notify_id=notify_id,
                created_at=now(),
            )
            ids.append(delivery.id)
            if self._refused(delivery):
                continue
            if mode == "drop":
                delivery.state = "dropped"
                self.store.save_delivery(delivery)
                self._log(delivery, status=None, reply="", error=None, outcome="dropped")
                continue
            delay = fault.delay_s if (fault and mode == "delay") else 0.0
            delivery.next_at = now() + delay
            self.store.save_delivery(delivery)
            self._spawn(delivery, delay)
        return ids

    def report(self, ids: list[str] | None) -> dict[str, Any]:
        """What a control answer says about the notification it caused: the delivery ids
        (None: nothing to notify), whether one is on its way, and if not, why."""
        if ids is None:
            return {"notification": None, "notified": False,
                    "notification_note": "no notification sent: the trade has no notify URL"}
        deliveries = [self.store.deliveries[i] for i in ids if i in self.store.deliveries]
        out: dict[str, Any] = {"notification": ids,
                               "notified": any(d.state in ("pending", "acked")
                                               for d in deliveries)}
        if not out["notified"]:
            reasons = sorted({d.reason or d.state for d in deliveries})
            out["notification_note"] = "no notification sent: " + ", ".join(reasons)
        return out

    def _refused(self, delivery: Delivery) -> bool:
        """Refuse (record, never attempt) a delivery whose URL is off the allowlist.

        Checked on enqueue and again before every attempt, so a delivery resumed after a
        restart under a narrower allowlist is refused too."""
        reason = self.allowlist.refusal(delivery.url)
        if reason is None:
            return False
        delivery.state = "refused"
        delivery.reason = reason
        self.store.save_delivery(delivery)
        self._log(delivery, status=None, reply="", error=reason, outcome="refused")
        log.warning("sandbox notification to %s refused: %s", delivery.url, reason)
        return True

    def _spawn(self, delivery: Delivery, delay: float) -> None:
        task = asyncio.get_running_loop().create_task(self._run(delivery, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- delivery ------------------------------------------------------------------------

    async def _run(self, delivery: Delivery, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        while delivery.state == "pending":
            if self._refused(delivery):
                return
            ok = await self._attempt(delivery)
            if ok:
                delivery.state = "acked"
            elif delivery.attempts > len(self.retry_schedule):
                delivery.state = "failed"
            else:
                gap = self.retry_schedule[delivery.attempts - 1]
                delivery.next_at = now() + gap
            self.store.save_delivery(delivery)
            if delivery.state == "pending":
                await asyncio.sleep(max(0.0, delivery.next_at - now()))

    async def _attempt(self, delivery: Delivery) -> bool:
        assert self._client is not None and self._slots is not None
        async with self._slots:
            return await self._attempt_now(delivery, self._client)

    async def _attempt_now(self, delivery: Delivery, client: httpx.AsyncClient) -> bool:
        delivery.attempts += 1
        headers = dict(delivery.headers)
        signer = self.signers.get(delivery.channel)
        if signer is not None:
            headers.update(signer(delivery))
        status: int | None = None
        reply = ""
        error: str | None = None
        try:
            response = await client.post(
                delivery.url, content=delivery.body.encode("utf-8"), headers=headers
            )
            status = response.status_code
            reply = response.text[:REPLY_LIMIT]
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:REPLY_LIMIT]
        ok = status is not None and acknowledged(delivery.channel, status, reply)
        last = delivery.attempts > len(self.retry_schedule)
        outcome = "acked" if ok else ("failed" if last else "retry")
        self._log(delivery, status=status, reply=reply, error=error, outcome=outcome)
        return ok

    def _log(
        self,
        delivery: Delivery,
        *,
        status: int | None,
        reply: str,
        error: str | None,
        outcome: str,
    ) -> None:
        self.store.add_attempt(
            {
                "delivery_id": delivery.id,
                "notify_id": delivery.notify_id,
                "channel": delivery.channel,
                "event": delivery.event,
                "url": delivery.url,
                "attempt": delivery.attempts,
                "time": wechat_time(now()),
                "ts": now(),
                "status": status,
                "reply": reply,
                "error": error,
                "outcome": outcome,
                "summary": delivery.summary,
                "body": delivery.body,
            }
        )
