"""Test helpers: a sandbox served by uvicorn on a free port, and a merchant-side receiver.

Both run in background threads, bind 127.0.0.1 port 0, and shut down cleanly on exit, so
tests in other packages can use the real SDKs against a real HTTP server.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import falcon.asgi
import uvicorn

from .app import Sandbox
from .keys import Keyset, init_keyset
from .settings import Settings

#: Short enough that retry tests finish quickly, long enough to observe a retry.
TEST_RETRY_SCHEDULE: tuple[float, ...] = (0.2, 0.4, 0.8)


class UvicornThread:
    """Serve an ASGI app from a background thread on a free local port."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=2, access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.host = host

    def start(self, timeout: float = 10) -> str:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://{self.host}:{port}"

    def stop(self, timeout: float = 10) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


@contextlib.contextmanager
def running_sandbox(
    tmp_dir: str | os.PathLike[str],
    *,
    state_path: str | None = None,
    retry_schedule: Sequence[float] = TEST_RETRY_SCHEDULE,
    notify_timeout: float = 2.0,
    keyset: Keyset | None = None,
    notify_urls: Mapping[str, str] | None = None,
    notify_hosts: Iterable[str] | None = None,
    settings: Settings | None = None,
) -> Iterator[tuple[str, Sandbox, Keyset]]:
    """Run a sandbox; yields ``(base_url, sandbox, keyset)``.

    The keyset is read from ``tmp_dir/sandbox.json`` (written first if missing) unless given.
    ``notify_urls``, ``notify_hosts`` and ``settings`` are the Sandbox's options of the same
    names.
    """
    if keyset is None:
        keyset = init_keyset(tmp_dir)  # an existing file is kept (and gains newer vendors)
    sandbox = Sandbox(keyset, state_path=state_path, retry_schedule=retry_schedule,
                      notify_timeout=notify_timeout, notify_urls=notify_urls,
                      notify_hosts=notify_hosts, settings=settings)
    app = falcon.asgi.App()
    sandbox.add_routes(app)
    server = UvicornThread(app)
    try:
        base_url = server.start()
        yield base_url, sandbox, keyset
    finally:
        server.stop()
        sandbox.close()


# --- the merchant side --------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


Reply = tuple[int, str]


@dataclass
class NotifyReceiver:
    """A trivial merchant endpoint recording what it receives.

    ``replies`` are served in order, then ``default`` forever; each is ``(status, body)``.
    ``default`` may also be a callable ``(Received) -> (status, body)``.
    """

    replies: list[Reply] = field(default_factory=list)
    default: Reply | Callable[[Received], Reply] = (200, "success")
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cond: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._cond = threading.Condition(self._lock)

    def record(self, item: Received) -> Reply:
        with self._cond:
            self.received.append(item)
            self._cond.notify_all()
            if self.replies:
                return self.replies.pop(0)
        return self.default(item) if callable(self.default) else self.default

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        """Block until ``count`` requests arrived; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} notifications, got {len(self.received)}")
                self._cond.wait(left)
            return list(self.received)


@contextlib.contextmanager
def notify_receiver(
    replies: Sequence[Reply] = (),
    default: Reply | Callable[[Received], Reply] = (200, "success"),
) -> Iterator[NotifyReceiver]:
    """Serve a NotifyReceiver on 127.0.0.1:<free port>; ``receiver.url`` is its base URL."""
    receiver = NotifyReceiver(replies=list(replies), default=default)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the sandbox's client expects

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status, text = receiver.record(
                Received(self.path, dict(self.headers.items()), body, time.time()))
            data = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="notify-receiver", daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
