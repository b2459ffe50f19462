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
sharing its interpreter. Only what was verified counts: after the clock stops, every
notification received is checked with the SDK (Alipay's RSA2 signature, WeChat Pay's signed
headers and encrypted resource) and must name one of the trades paid, each exactly once; an
SDK call counts only when it answered the trade. Anything else exits 1.

Runs in well under a minute: ``.venv-test/bin/python bench/bench_sandbox.py [--smoke]``.
Prints the figures and writes ``bench/results/sandbox.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from wechatpayv3 import WeChatPayType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checks import Checks, write_results

from gonglun.sandbox.clients import alipay_client, wechat_client
from gonglun.sandbox.keys import load_keyset
from gonglun.sandbox.testing import UvicornThread

THREADS = 8
#: Concurrent control calls paying orders (each causes one notification).
CONCURRENCY = 4


class CountingReceiver:
    """A minimal ASGI merchant endpoint: reads the body, answers ``success``, counts."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.done = threading.Event()
        #: (headers, body) of each notification, checked after the clock stops
        self.received: list[tuple[dict[str, str], bytes]] = []

    def expect(self, n: int) -> None:
        self.count = 0
        self.target = n
        self.received = []
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
        more, body = True, b""
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.received.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
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
                        tag: str, verify: Any) -> dict[str, Any]:
    receiver.expect(n)
    prefix = f"B{tag}{channel[:2].upper()}"
    start = time.perf_counter()
    asyncio.run(_pay_many(base, channel, n, prefix))
    enqueued = time.perf_counter() - start
    receiver.done.wait(60)
    elapsed = time.perf_counter() - start
    expected = {f"{prefix}{i:08d}" for i in range(n)}
    trades = [verify(headers, body) for headers, body in receiver.received]
    good = [t for t in trades if t in expected]
    verified = len(set(good)) if len(good) == len(trades) == len(set(good)) else 0
    return {"notifications": n, "received": len(trades), "verified": verified,
            "seconds": round(elapsed, 3), "per_second": round(verified / elapsed, 1),
            "enqueue_seconds": round(enqueued, 3)}


def alipay_verifier(ali: Any) -> Any:
    """The paid trade an Alipay notification names, when its RSA2 signature holds."""

    def verify(_headers: dict[str, str], body: bytes) -> str | None:
        form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        sign = form.pop("sign", "")
        ok = ali.verify(form, sign) and form.get("trade_status") == "TRADE_SUCCESS"
        return form.get("out_trade_no") if ok else None

    return verify


def wechat_verifier(wx: Any) -> Any:
    """The paid trade a WeChat Pay notification names, when its headers' signature holds and
    its resource decrypts."""

    def verify(headers: dict[str, str], body: bytes) -> str | None:
        data = wx.callback(headers, body)
        resource = (data or {}).get("resource") or {}
        return resource.get("out_trade_no") if resource.get("trade_state") == "SUCCESS" else None

    return verify


def bench_calls(call: Any, seconds: float, threads: int) -> dict[str, Any]:
    """``call`` answers whether the SDK call succeeded; only successes are counted."""
    deadline = time.perf_counter() + seconds
    counts, failed = [0] * threads, [0] * threads

    def loop(slot: int) -> None:
        while time.perf_counter() < deadline:
            try:
                ok = call()
            except Exception:
                ok = False
            counts[slot] += 1 if ok else 0
            failed[slot] += 0 if ok else 1

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(loop, range(threads)))
    elapsed = time.perf_counter() - start
    total = sum(counts)
    return {"threads": threads, "calls": total, "failed": sum(failed),
            "seconds": round(elapsed, 3), "per_second": round(total / elapsed, 1)}


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
        deadline = time.monotonic() + 120  # a busy machine starts it slowly
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=int(os.environ.get(
        "BENCH_SANDBOX_NOTIFICATIONS", "1000")), help="notifications per channel")
    parser.add_argument("--sdk-seconds", type=float, default=float(os.environ.get(
        "BENCH_SANDBOX_SDK_SECONDS", "4")))
    parser.add_argument("--smoke", action="store_true", help="a tiny run (CI)")
    args = parser.parse_args(argv)
    n, sdk_seconds, warm = (20, 0.3, 5) if args.smoke else (args.n, args.sdk_seconds, 50)
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    checks = Checks()
    receiver = CountingReceiver()
    receiver_server = UvicornThread(receiver)
    receiver_url = receiver_server.start()
    with tempfile.TemporaryDirectory() as tmp, sandbox_process(tmp, receiver_url) as base:
        keyset = load_keyset(tmp)
        ali = alipay_client(keyset, base)
        wx = wechat_client(keyset, base, notify_url=receiver_url + "/notify")
        verifiers = {"alipay": alipay_verifier(ali), "wxpay": wechat_verifier(wx)}
        for channel in ("alipay", "wxpay"):
            bench_notifications(base, receiver, channel, warm, "W", verifiers[channel])
            figures = bench_notifications(base, receiver, channel, n, "M", verifiers[channel])
            results[f"notify_{channel}"] = figures
            checks.expect(f"{channel}_notifications", figures["verified"], n)
            print(f"{channel:6} notifications: {figures['per_second']:8.1f}/s "
                  f"({figures['verified']} of {n} signed, delivered and verified in "
                  f"{figures['seconds']} s)")

        order = ali.api_alipay_trade_page_pay("bench", "BENCH000000000001", "1.00")
        httpx.get(base + "/gateway.do?" + order, trust_env=False)
        wx.pay(description="bench", out_trade_no="BENCHWX000000001", amount={"total": 1},
               pay_type=WeChatPayType.NATIVE)

        def ali_query() -> bool:
            answer = ali.api_alipay_trade_query(out_trade_no="BENCH000000000001")
            return answer.get("code") == "10000"

        def wx_query() -> bool:
            return wx.query(out_trade_no="BENCHWX000000001")[0] == 200

        for name, call in (("alipay_trade_query", ali_query), ("wechat_query", wx_query)):
            for threads in (1, THREADS):
                figures = bench_calls(call, sdk_seconds, threads)
                results[f"sdk_{name}_{threads}t"] = figures
                checks.expect(f"sdk_{name}_{threads}t", figures["calls"],
                              figures["calls"] + figures["failed"])
                print(f"{name:18} x{threads}: {figures['per_second']:8.1f} calls/s "
                      f"({figures['calls']} in {figures['seconds']} s, "
                      f"{figures['failed']} failed)")
    receiver_server.stop()
    results.update(checks.report())
    print(f"wrote {write_results('sandbox', results)}")
    return checks.exit_code()


if __name__ == "__main__":
    raise SystemExit(main())
