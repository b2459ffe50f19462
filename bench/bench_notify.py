"""Notification fan-out: notifications delivered per second, one scene on five channels.

Each notification is a ``payment_refund`` fired through the outbox (as the refund plugin fires
it) to its own user, delivered on inbox, SMS (Tencent Cloud SDK), WeChat template (wechatpy),
APP push (jpush) and websocket; email is off (no SMTP server in the sandbox). The vendors are
the gateway sandbox, run as its own process (``gonglun sandbox --memory``), reached over HTTP by
the real SDKs. The clock runs from the first notification committed to the last delivery
recorded ``sent``.

Only verified deliveries count: each channel must have one ``sent`` delivery per notification,
and the vendors must have received them (the sandbox's records: one accepted SMS per phone,
one template message per openid, one push per alias). Anything else, or nothing sent, exits 1.

Run: ``python bench/bench_notify.py [--smoke]`` (embedded default: SQLite, the in-process Redis
     equivalent and an in-process worker, as ``gonglun serve`` runs them)
     ``python bench/bench_notify.py --pg`` (PostgreSQL and Redis on 127.0.0.1, the Redis broker,
     2 ``gonglun worker`` processes)
Prints figures and writes bench/results/notify-<backend>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from checks import Checks, per_second, write_results  # noqa: E402

CHANNELS = ("inbox", "sms", "wechat", "app", "websocket")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def make_users(rt: Any, n: int) -> list[int]:
    """``n`` users with a phone and an official-account openid, inserted in bulk (no password
    hashing: it is not what is measured)."""
    from sqlalchemy import insert, select

    from gonglun.accounts.models import User, UserMeta
    from gonglun.db import utcnow

    now = utcnow()
    tag = secrets.token_hex(3)
    with rt.db.write() as session:
        session.execute(insert(User), [
            {"login": f"n{tag}{i}", "password_hash": "-", "role": "user", "status": "active",
             "phone": f"139{i:08d}", "created_at": now, "updated_at": now} for i in range(n)])
        ids = list(session.scalars(select(User.id).where(User.login.like(f"n{tag}%"))
                                   .order_by(User.id)))
        session.execute(insert(UserMeta), [
            {"user_id": uid, "key": "weixin_uid", "value": f"oBench{uid:022d}"} for uid in ids])
    return ids


def refund_data(n: int) -> dict[str, Any]:
    """What the refund plugin passes (docs/notify.md)."""
    return {"refund_id": n, "payment_id": n, "payment_order": f"2026113014050{n:011d}",
            "pay_order": f"42000012342026113{n:011d}",
            "title": "【淘货】民国景德镇出产的红彩山水纹碟",
            "amount": 3320, "pay_amount": 5000, "reason": "系统超时自动退款", "method": "wxpay",
            "payment_scene": "tao", "refund_time": "2026-11-30T06:05:00+00:00", "way": "system"}


def fire(rt: Any, users: list[int], batch: int) -> float:
    """Defer one notification per user, ``batch`` per transaction; answers the first commit."""
    started = 0.0
    for start in range(0, len(users), batch):
        with rt.db.write() as session:
            rt.hooks.defer_many(session, [
                ("notify", f"notify:bench:{uid}",
                 {"scene": "payment_refund", "user_id": uid, "data": refund_data(uid)})
                for uid in users[start:start + batch]])
        started = started or time.perf_counter()
    return started


def progress(rt: Any) -> tuple[int, int]:
    from sqlalchemy import func, select

    from gonglun.plugins.notify.models import Delivery

    with rt.db.read() as session:
        rows = dict(session.execute(select(Delivery.status, func.count())
                                    .group_by(Delivery.status)).all())
    return int(rows.get("sent", 0)), sum(int(v) for k, v in rows.items() if k != "sent")


def latencies(rt: Any) -> dict[str, float]:
    from sqlalchemy import select

    from gonglun.plugins.notify.models import Delivery

    with rt.db.read() as session:
        waits = sorted((sent - created).total_seconds() for created, sent in session.execute(
            select(Delivery.created_at, Delivery.sent_at).where(Delivery.status == "sent")))

    def pick(q: float) -> float:
        return round(waits[min(len(waits) - 1, int(q * len(waits)))] * 1000, 1)

    return {"p50_ms": pick(0.5), "p95_ms": pick(0.95), "max_ms": pick(1.0)} if waits else {}


def sent_by_channel(rt: Any) -> dict[str, int]:
    from sqlalchemy import func, select

    from gonglun.plugins.notify.models import Delivery

    with rt.db.read() as session:
        rows = session.execute(select(Delivery.channel, func.count(func.distinct(
            Delivery.user_id))).where(Delivery.status == "sent").group_by(Delivery.channel))
        return {channel: int(count) for channel, count in rows}


def received_by_vendors(sandbox: str) -> dict[str, int]:
    """Distinct recipients each vendor accepted a message for (its sandbox records)."""
    import httpx

    def records(vendor: str, **match: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{sandbox}/sandbox/{vendor}/requests", params=match, timeout=60,
                           trust_env=False)
        answer.raise_for_status()
        return list(answer.json()["data"])

    sms = {str(r["request"].get("PhoneNumberSet")) for r in records(
        "tencentcloud", action="SendSms", error="")}
    wechat = {r["touser"] for r in records("wechat", action="template_send", errcode="0")}
    app = {r["alias"] for r in records("jpush", action="push", status="200")}
    return {"sms": len(sms), "wechat": len(wechat), "app": len(app)}


def verify(rt: Any, sandbox: str, results: dict[str, Any], n: int) -> Checks:
    checks = Checks()
    sent = sent_by_channel(rt)
    received = received_by_vendors(sandbox)
    for channel in CHANNELS:
        done = min(sent.get(channel, 0), received.get(channel, n))
        checks.expect(f"{channel}_deliveries", done, n)
    verified = sum(checks.verified.values())
    results.update(deliveries_verified=verified, received_by_vendors=received,
                   deliveries_per_s=per_second(verified, results["seconds"]),
                   notifications_per_s=per_second(min(checks.verified.values()),
                                                  results["seconds"]))
    return checks


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", action="store_true", help="PostgreSQL + Redis, 2 workers")
    parser.add_argument("-n", type=int, default=300, help="notifications (one per user)")
    parser.add_argument("--batch", type=int, default=50, help="notifications per transaction")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (--pg)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker")
    parser.add_argument("--smoke", action="store_true", help="a tiny run (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.n, args.batch, args.workers, args.threads = 10, 5, 1, 4

    from gonglun.config import Config
    from gonglun.migrate import upgrade
    from gonglun.runtime import Runtime
    from gonglun.sandbox.keys import init_keyset
    from gonglun.testing import cleanup_redis, fresh_database

    tmp = Path(tempfile.mkdtemp(prefix="gl-bench-notify-"))
    init_keyset(tmp / "sandbox")
    sandbox_port = free_port()
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "gonglun.cli", "sandbox", "--dir", str(tmp / "sandbox"),
         "--port", str(sandbox_port), "--memory", "--log-level", "warning"],
        cwd=tmp, env={k: v for k, v in os.environ.items() if not k.startswith("GONGLUN_")},
        stderr=subprocess.DEVNULL)
    server = os.environ.get("GONGLUN_BENCH_DATABASE_URL",
                            "postgresql://postgres@127.0.0.1:5432/test") if args.pg else None
    backend = "postgresql" if args.pg else "sqlite"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        wait_port(sandbox_port)
        with fresh_database(server, tmp) as url:
            env = {k: v for k, v in os.environ.items() if not k.startswith("GONGLUN_")}
            env.update({
                "GONGLUN_DATABASE_URL": url, "GONGLUN_DATA_DIR": str(tmp / "var"),
                "GONGLUN_SANDBOX__ENABLED": "false", "GONGLUN_CONFIG": str(tmp / "none.toml"),
                "GONGLUN_REDIS_PREFIX": f"bench{secrets.token_hex(3)}:",
                "GONGLUN_NOTIFY__KEYSET": str(tmp / "sandbox" / "sandbox.json"),
                "GONGLUN_NOTIFY__GATEWAY_URL": f"http://127.0.0.1:{sandbox_port}",
                "GONGLUN_NOTIFY__SCENES__PAYMENT_REFUND__CHANNELS__EMAIL": "false",
                "GONGLUN_NOTIFY__CODE_KEY": "bench key, long enough",
                "GONGLUN_BROKER__WORKER_THREADS": str(args.threads),
            })
            if args.pg:
                env["GONGLUN_REDIS_URL"] = "redis://127.0.0.1:6379/0"
                env["GONGLUN_BROKER_URL"] = "redis://127.0.0.1:6379/1"
                env["GONGLUN_BROKER_NAMESPACE"] = f"bench{secrets.token_hex(3)}"
            rt = Runtime(Config.load(environ=env))
            upgrade(rt)
            users = make_users(rt, args.n)
            worker: Any = None
            if args.pg:
                workers = [subprocess.Popen(
                    [sys.executable, "-m", "gonglun.cli", "worker", "--threads",
                     str(args.threads)], cwd=tmp, env=env, stderr=subprocess.DEVNULL)
                    for _ in range(args.workers)]
                time.sleep(3)  # imports and broker connections
            else:
                import dramatiq

                worker = dramatiq.Worker(rt.broker, worker_threads=args.threads)
                worker.start()
            try:
                results = measure(rt, users, args.batch)
                checks = verify(rt, f"http://127.0.0.1:{sandbox_port}", results, args.n)
            finally:
                if worker is not None:
                    worker.stop()
                cleanup_redis(rt)
                rt.close()
    finally:
        for proc in [*workers, sandbox]:
            proc.send_signal(signal.SIGTERM)
        for proc in [*workers, sandbox]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    results.update({
        "backend": backend, "worker_processes": args.workers if args.pg else 0,
        "worker_threads": args.threads, "channels": list(CHANNELS),
        "machine": f"{platform.platform()} cpus={os.cpu_count()}",
        "date": dt.date.today().isoformat(), **checks.report(),
    })
    print(json.dumps(results, indent=2))
    print(f"wrote {write_results(f'notify-{backend}', results)}")
    return checks.exit_code()


def measure(rt: Any, users: list[int], batch: int) -> dict[str, Any]:
    expected = len(users) * len(CHANNELS)
    started = fire(rt, users, batch)
    fired = time.perf_counter() - started
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        sent, other = progress(rt)
        if sent + other >= expected and (sent == expected or other_final(rt)):
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    sent, other = progress(rt)
    return {
        "notifications": len(users), "deliveries_sent": sent, "deliveries_not_sent": other,
        "seconds": round(elapsed, 2), "fire_seconds": round(fired, 2),
        "notifications_per_s": round(len(users) / elapsed, 1),
        "deliveries_per_s": round(sent / elapsed, 1), "latency": latencies(rt),
    }


def other_final(rt: Any) -> bool:
    from sqlalchemy import func, select

    from gonglun.plugins.notify.models import Delivery

    with rt.db.read() as session:
        return not session.scalar(select(func.count()).where(
            Delivery.status.in_(("queued", "sending", "retry"))))


if __name__ == "__main__":
    sys.exit(main())
