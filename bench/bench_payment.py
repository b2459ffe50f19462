"""Payment throughput: verified notifications end to end, and order creations, over HTTP.

The API runs as its own uvicorn process(es) on this machine; notifications are genuine Alipay
``trade_status_sync`` messages signed with the gateway key (what the sandbox or Alipay sends),
generated before the clock starts. Each one goes HTTP → SDK signature check → cross-checks →
conditional UPDATE + notification record + outbox row in one transaction → relay to the broker.

Run: ``python bench/bench_payment.py`` (embedded default: SQLite, in-process Redis and broker)
     ``python bench/bench_payment.py --pg`` (PostgreSQL and Redis on 127.0.0.1)
Prints figures and writes bench/results/payment-<backend>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def fire(port: int, requests: list[bytes], concurrency: int) -> list[int]:
    """A lean keep-alive HTTP/1.1 client, so the load generator costs little CPU."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    statuses: list[int] = []

    async def conn() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                try:
                    request = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                writer.write(request)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                statuses.append(status)
        finally:
            writer.close()

    await asyncio.gather(*(conn() for _ in range(concurrency)))
    return statuses


def cpu_seconds(root_pid: int) -> float:
    """User+system CPU of a process tree (the API server), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [root_pid]
    while pids:
        pid = pids.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        pids.extend(int(c) for c in children)
    return total


def http_request(path: str, body: bytes, content_type: str, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", action="store_true", help="PostgreSQL + Redis instead of embedded")
    parser.add_argument("-n", type=int, default=3000, help="notifications")
    parser.add_argument("--orders", type=int, default=1000, help="order creations")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn processes")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    from gonglun.config import Config
    from gonglun.migrate import upgrade
    from gonglun.runtime import Runtime
    from gonglun.sandbox.alipay import signing_string
    from gonglun.sandbox.keys import init_keyset, rsa_sign
    from gonglun.testing import fresh_database

    tmp = Path(tempfile.mkdtemp(prefix="gl-bench-"))
    keyset = init_keyset(tmp / "sandbox")
    server = os.environ.get("GONGLUN_BENCH_DATABASE_URL",
                            "postgresql://postgres@127.0.0.1:5432/test") if args.pg else None
    backend = "postgresql" if args.pg else "sqlite"
    with fresh_database(server, tmp) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GONGLUN_")}
        env.update({
            "GONGLUN_DATABASE_URL": url,
            "GONGLUN_DATA_DIR": str(tmp / "var"),
            "GONGLUN_SANDBOX__DIR": str(tmp / "sandbox"),
            "GONGLUN_SANDBOX__ENABLED": "false",
            "GONGLUN_SERVER__EMBEDDED_SERVICES": "false",
            "GONGLUN_CONFIG": str(tmp / "none.toml"),
            "GONGLUN_REDIS_PREFIX": f"bench{secrets.token_hex(3)}:",
        })
        if args.pg:
            env["GONGLUN_REDIS_URL"] = "redis://127.0.0.1:6379/0"
            env["GONGLUN_BROKER_URL"] = "redis://127.0.0.1:6379/1"
            env["GONGLUN_BROKER_NAMESPACE"] = f"bench{secrets.token_hex(3)}"
        config = Config.load(environ=env)
        rt = Runtime(config)
        upgrade(rt)
        port = free_port()
        env["GONGLUN_SERVER__PORT"] = str(port)
        workers = args.workers if args.pg else 1  # SQLite: one writer process is the honest setup
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app:app", "--port", str(port), "--workers",
             str(workers), "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env=env,
        )
        try:
            results = run(rt, keyset, port, args, signing_string, rsa_sign, proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            from gonglun.testing import cleanup_redis

            cleanup_redis(rt)  # its cache entries and the queued (never consumed) messages
            rt.close()
    results.update({"backend": backend, "uvicorn_workers": workers,
                    "machine": f"{platform.platform()} cpus={os.cpu_count()}",
                    "concurrency": args.concurrency})
    out = ROOT / "bench" / "results" / f"payment-{backend}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


def run(rt: Any, keyset: dict, port: int, args: Any, signing_string: Any, rsa_sign: Any,
        server_pid: int) -> dict:
    from sqlalchemy import func, insert, select

    from gonglun.accounts import create_user, issue_token
    from gonglun.hooks.deferred import OutboxEvent
    from gonglun.plugins.payment.models import Payment
    from gonglun.plugins.payment.records import new_order_number

    for _ in range(100):  # wait for the server
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    with rt.db.write() as session:
        user = create_user(session, "bench", "bench password")
        token = issue_token(session, user.id)
        user_id = user.id
    now = dt.datetime.now(dt.UTC)
    orders = [new_order_number(now) for _ in range(args.n)]
    rows = [{"payment_order": o, "user_id": user_id, "scene": "recharge_money", "title": "充值",
             "amount": 1000 + i % 100, "method": "alipay", "channel": "page", "state": "wait_pay",
             "created_at": now, "close_deadline": now + dt.timedelta(hours=1), "refund_amount": 0,
             "income": 0, "meta": "{}", "version": 0, "late": False}
            for i, o in enumerate(orders)]
    with rt.db.write() as session:
        session.execute(insert(Payment), rows)
    app_id = keyset["alipay"]["app_id"]
    key = keyset["alipay"]["alipay_private_key"]
    requests = []
    for i, order in enumerate(orders):
        amount = 1000 + i % 100
        form = {"notify_type": "trade_status_sync", "notify_id": secrets.token_hex(16),
                "notify_time": "2026-11-22 10:00:00", "app_id": app_id, "charset": "utf-8",
                "version": "1.0", "trade_no": f"2026112222{i:012d}", "out_trade_no": order,
                "trade_status": "TRADE_SUCCESS",
                "total_amount": f"{amount // 100}.{amount % 100:02d}",
                "gmt_payment": "2026-11-22 10:00:00"}
        sign = rsa_sign(key, signing_string(form, exclude=("sign", "sign_type")))
        body = urllib.parse.urlencode({**form, "sign_type": "RSA2", "sign": sign}).encode()
        requests.append(http_request("/v1/notify/alipay", body,
                                     "application/x-www-form-urlencoded"))
    # Warm up every worker process (imports, SDK clients, connection pools).
    asyncio.run(fire(port, [http_request("/v1/notify/alipay", b"x=1",
                                         "application/x-www-form-urlencoded")] * 50, 8))

    cpu0 = cpu_seconds(server_pid)
    started = time.perf_counter()
    statuses = asyncio.run(fire(port, requests, args.concurrency))
    elapsed = time.perf_counter() - started
    server_cpu_ms = (cpu_seconds(server_pid) - cpu0) * 1000 / args.n
    with rt.db.read() as session:
        paid = session.scalar(select(func.count()).where(Payment.state == "ok"))
        events = session.scalar(select(func.count()).where(OutboxEvent.hook == "payment_success"))
    notify = {"notifications": args.n, "seconds": round(elapsed, 3),
              "per_second": round(args.n / elapsed, 1), "http_200": statuses.count(200),
              "orders_paid": paid, "payment_success_events": events,
              "api_cpu_ms_per_notification": round(server_cpu_ms, 2)}
    print(f"notifications: {args.n} in {elapsed:.2f}s = {args.n / elapsed:.0f}/s "
          f"(paid {paid}, events {events}; API CPU {server_cpu_ms:.2f} ms each)")

    body = json.dumps({"scene": "recharge_money", "amount": 1234, "method": "alipay",
                       "channel": "page"}).encode()
    create = [http_request("/v1/payments", body, "application/json",
                           f"Authorization: Bearer {token}\r\n")] * args.orders
    started = time.perf_counter()
    statuses = asyncio.run(fire(port, create, args.concurrency))
    elapsed = time.perf_counter() - started
    orders_out = {"orders": args.orders, "seconds": round(elapsed, 3),
                  "per_second": round(args.orders / elapsed, 1),
                  "http_201": statuses.count(201)}
    print(f"order creations (alipay page, signed order string): {args.orders} in {elapsed:.2f}s "
          f"= {args.orders / elapsed:.0f}/s")
    return {"notify": notify, "create": orders_out}


if __name__ == "__main__":
    main()
