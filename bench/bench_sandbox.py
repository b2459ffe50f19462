"""Benchmark of the gateway sandbox.

1. Notifications per second the sandbox signs and delivers to a trivial local receiver, per
   channel: N trades are paid through the control API (concurrently), each producing one signed
   notification (Alipay: RSA2 form; WeChat: AES-256-GCM resource + RSA-signed headers) to the
   receiver (the sandbox runs with ``--notify-base`` pointing at it), and the clock stops when
   the receiver has acknowledged all N.
2. Real-SDK calls per second against the sandbox: ``AliPay.api_alipay_trade_query`` and
   ``WeChatPay.query``, from one thread and from several.

The sandbox runs as its own process (``gonglun sandbox`` via ``python -m
gonglun.sandbox.cli``), so the figures measure it rather than the benchmark's own client
sharing its interpreter. Runs in well under a minute:
``/work/venv/bin/python bench/bench_sandbox.py``. Prints the figures and writes
``bench/results/sandbox.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from wechatpayv3 import WeChatPayType

from gonglun.sandbox.clients import alipay_client, wechat_client
from gonglun.sandbox.keys import load_keyset
from gonglun.sandbox.testing import UvicornThread

NOTIFICATIONS = int(os.environ.get("BENCH_SANDBOX_NOTIFICATIONS", "1000"))
SDK_SECONDS = float(os.environ.get("BENCH_SANDBOX_SDK_SECONDS", "4"))
THREADS = 8
#: Concurrent control calls paying orders (each causes one notification).
CONCURRENCY = 4
RESULTS = Path(__file__).resolve().parent / "results" / "sandbox.json"


class CountingReceiver:
    """A minimal ASGI merchant endpoint: reads the body, answers ``success``, counts."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.done = threading.Event()

    def expect(self, n: int) -> None:
        self.count = 0
        self.target = n
        self.done.clear()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"success"})
        self.count += 1
        if self.count >= self.target:
            self.done.set()


async def _pay_many(base: str, channel: str, n: int, prefix: str) -> None:
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, limits=limits, trust_env=False,
                                 timeout=60) as client:
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> None:
            no = f"{prefix}{i:08d}"
            body: dict[str, Any] = {"out_trade_no": no, "notify": True}
            if channel == "alipay":
                body["total_amount"] = "1.00"
            else:
                body["total"] = 100
            async with sem:
                r = await client.post(f"/sandbox/{channel}/trades", json=body)
                r.raise_for_status()

        await asyncio.gather(*(one(i) for i in range(n)))


def bench_notifications(base: str, receiver: CountingReceiver, channel: str, n: int,
                        tag: str) -> dict[str, Any]:
    receiver.expect(n)
    start = time.perf_counter()
    asyncio.run(_pay_many(base, channel, n, f"B{tag}{channel[:2].upper()}"))
    enqueued = time.perf_counter() - start
    if not receiver.done.wait(60):
        raise RuntimeError(f"only {receiver.count}/{n} notifications arrived")
    elapsed = time.perf_counter() - start
    return {"notifications": n, "seconds": round(elapsed, 3),
            "per_second": round(n / elapsed, 1), "enqueue_seconds": round(enqueued, 3)}


def bench_calls(call: Any, seconds: float, threads: int) -> dict[str, Any]:
    deadline = time.perf_counter() + seconds
    counts = [0] * threads

    def loop(slot: int) -> None:
        while time.perf_counter() < deadline:
            call()
            counts[slot] += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(loop, range(threads)))
    elapsed = time.perf_counter() - start
    total = sum(counts)
    return {"threads": threads, "calls": total, "seconds": round(elapsed, 3),
            "per_second": round(total / elapsed, 1)}


@contextlib.contextmanager
def sandbox_process(directory: str, notify_base: str) -> Iterator[str]:
    """``gonglun sandbox`` in a child process on a free port, notifying control-created
    orders at ``notify_base``; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "gonglun.sandbox.cli", "sandbox", "--port", str(port), "--dir",
         directory, "--memory", "--log-level", "warning", "--retry", "1,2,5",
         "--notify-base", notify_base],
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(base + "/sandbox/info", trust_env=False).raise_for_status()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the sandbox process did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    receiver = CountingReceiver()
    receiver_server = UvicornThread(receiver)
    receiver_url = receiver_server.start()
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(tmp, receiver_url) as base:
        keyset = load_keyset(tmp)
        for channel in ("alipay", "wxpay"):
            bench_notifications(base, receiver, channel, 50, "W")  # warm-up
            figures = bench_notifications(base, receiver, channel, NOTIFICATIONS, "M")
            results[f"notify_{channel}"] = figures
            print(f"{channel:6} notifications: {figures['per_second']:8.1f}/s "
                  f"({figures['notifications']} signed and delivered in {figures['seconds']} s)")

        ali = alipay_client(keyset, base)
        order = ali.api_alipay_trade_page_pay("bench", "BENCH000000000001", "1.00")
        httpx.get(base + "/gateway.do?" + order, trust_env=False)
        wx = wechat_client(keyset, base, notify_url=receiver_url + "/notify")
        wx.pay(description="bench", out_trade_no="BENCHWX000000001", amount={"total": 1},
               pay_type=WeChatPayType.NATIVE)

        def ali_query() -> None:
            assert ali.api_alipay_trade_query(out_trade_no="BENCH000000000001")["code"] == "10000"

        def wx_query() -> None:
            assert wx.query(out_trade_no="BENCHWX000000001")[0] == 200

        for name, call in (("alipay_trade_query", ali_query), ("wechat_query", wx_query)):
            for threads in (1, THREADS):
                figures = bench_calls(call, SDK_SECONDS, threads)
                results[f"sdk_{name}_{threads}t"] = figures
                print(f"{name:18} x{threads}: {figures['per_second']:8.1f} calls/s "
                      f"({figures['calls']} in {figures['seconds']} s)")
    receiver_server.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
