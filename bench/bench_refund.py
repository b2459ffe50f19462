"""Refunds: refunds per second across many orders, and the 100-way contention on one order.

Everything goes through HTTP to a live API (uvicorn, in this process's threads) with the
refund plugin in front of the real SDKs and the gateway sandbox (its own server): balance
refunds move money in one transaction; WeChat refunds go to the sandbox through wechatpayv3
(set to settle at once) and back. Then 100 concurrent refund requests for one paid order
(mixed ways and amounts): exactly one wins; the latency of the losers is what the lock and the
state machine cost them.

Only verified refunds count: an order the benchmark pays must be found paid, a refund must
leave its payment ``refund`` with a successful refund record of the amount asked, and the
buyer's balance must move by exactly the refunds (credited for balance payments, taken back
for recharges); the contention must have exactly one winner, refunded once; the ledger audit
must be clean. Anything else exits 1.

Run: ``python bench/bench_refund.py [--smoke]`` (SQLite) or ``python bench/bench_refund.py
--pg`` (PostgreSQL and Redis on 127.0.0.1). Prints figures and writes
bench/results/refund-<db>.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from checks import Checks, per_second, write_results  # noqa: E402

KEY = "bench-refund-key-" + "x" * 32


def users(rt: Any, n: int) -> list[tuple[int, str]]:
    from gonglun.accounts import create_user, issue_token

    out = []
    with rt.db.write() as session:
        for i in range(n):
            user = create_user(session, f"u{i}", "bench password", nickname=f"u{i}")
            out.append((user.id, issue_token(session, user.id)))
    return out


def paid_balance_orders(rt: Any, buyer: int, seller: int, n: int) -> list[int]:
    from gonglun.accounts.models import User
    from gonglun.ledger import post
    from gonglun.plugins.payment.orders import OrderRequest, create_payment
    from gonglun.plugins.payment.scenes import get_scene

    with rt.db.write() as session:
        post(rt, session, user_id=buyer, delta=100 * n, scene="admin_adjust", counter="manual",
             ref="bench", key=f"bench:fund:{n}:{time.time_ns()}", remark="bench",
             operator_id=_admin(rt))
    req = OrderRequest(get_scene(rt, "tao"), 100, "money", "balance", "bench", seller, None,
                       None)
    with rt.db.read() as session:
        buyer_user = session.get(User, buyer)
    ids = []
    for _ in range(n):
        payment, _, _ = create_payment(rt, req, buyer_user, ip="127.0.0.1", fingerprint=None)
        ids.append(payment["id"])
    return ids


def _admin(rt: Any) -> int:
    from sqlalchemy import select

    from gonglun.accounts.models import User

    with rt.db.read() as session:
        return int(session.scalar(select(User.id).where(User.role == "admin")))


def paid_wx_orders(rt: Any, sb: Any, buyer: Any, n: int) -> list[int]:
    """Orders created here, paid at the sandbox by its control API, applied by query."""
    from gonglun.plugins.payment.apply import apply
    from gonglun.plugins.payment.channels import get_channel
    from gonglun.plugins.payment.orders import OrderRequest, create_payment
    from gonglun.plugins.payment.scenes import get_scene

    req = OrderRequest(get_scene(rt, "recharge_money"), 100, "wxpay", "native", "bench", None,
                       None, None)
    channel = get_channel(rt, "wxpay")
    ids = []
    for _ in range(n):
        payment, _, _ = create_payment(rt, req, buyer, ip="127.0.0.1", fingerprint=None)
        sb.post(f"/sandbox/wxpay/transactions/{payment['payment_order']}/pay")
        apply(rt, "wxpay", channel.query(payment["payment_order"]), source="query")
        ids.append(payment["id"])
    return ids


def states(rt: Any, ids: list[int]) -> dict[str, int]:
    """How many of the payments ``ids`` are in each state."""
    from sqlalchemy import func, select

    from gonglun.plugins.payment.models import Payment

    with rt.db.read() as session:
        return dict(session.execute(select(Payment.state, func.count())
                                    .where(Payment.id.in_(ids)).group_by(Payment.state)).all())


def refunded(rt: Any, ids: list[int], amount: int) -> int:
    """Payments of ``ids`` refunded: state ``refund`` and one successful record of ``amount``."""
    from sqlalchemy import func, select

    from gonglun.plugins.payment.models import Payment
    from gonglun.plugins.refund.models import SUCCESS, Refund

    with rt.db.read() as session:
        return int(session.scalar(
            select(func.count(func.distinct(Payment.id))).join(
                Refund, Refund.payment_id == Payment.id).where(
                Payment.id.in_(ids), Payment.state == "refund", Payment.refund_amount == amount,
                Refund.status == SUCCESS, Refund.amount == amount)) or 0)


def wallet(rt: Any, user_id: int) -> int:
    from gonglun.ledger import balance

    with rt.db.read() as session:
        return balance(session, user_id)


def refund_all(http: Any, ids: list[int], headers: dict[str, str], concurrency: int
               ) -> dict[str, Any]:
    errors: dict[str, int] = {}

    def one(pid: int) -> tuple[int, float]:
        started = time.perf_counter()
        r = http.post(f"/v1/payments/{pid}/refunds", headers=headers,
                      json={"amount": 100, "way": "admin", "reason": "bench"})
        if r.status_code != 201:
            key = f"{r.status_code} {r.json().get('error')}"
            errors[key] = errors.get(key, 0) + 1
        return r.status_code, time.perf_counter() - started

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, ids))
    elapsed = time.perf_counter() - started
    ok = sum(1 for s, _ in results if s == 201)
    lat = sorted(t for _, t in results)
    return {"refunds": len(ids), "http_201": ok, "seconds": round(elapsed, 3),
            "p50_ms": round(lat[len(lat) // 2] * 1000, 1),
            "p95_ms": round(lat[int(len(lat) * 0.95)] * 1000, 1), "errors": errors}


def contention(http: Any, pid: int, heads: dict[str, dict[str, str]]) -> dict[str, Any]:
    asks = []
    for n in range(100):
        way = ("admin", "system")[n % 2]
        body = {"amount": 100 if n % 3 else 50, "way": way, "reason": f"c{n}"}
        if way == "system":
            body["refund_key"] = KEY
        asks.append((heads.get(way, {}), body))

    def one(a: tuple[dict[str, str], dict[str, Any]]) -> tuple[int, float]:
        started = time.perf_counter()
        r = http.post(f"/v1/payments/{pid}/refunds", headers=a[0], json=a[1])
        return r.status_code, time.perf_counter() - started

    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        results = list(pool.map(one, asks))
    losers = sorted(t for s, t in results if s != 201)
    winners = [t for s, t in results if s == 201]
    return {"requests": 100, "winners": len(winners),
            "loser_p50_ms": round(statistics.median(losers) * 1000, 1),
            "loser_p95_ms": round(losers[int(len(losers) * 0.95)] * 1000, 1),
            "loser_max_ms": round(losers[-1] * 1000, 1),
            "winner_ms": round(winners[0] * 1000, 1) if winners else None}


def settle_outbox(rt: Any, timeout: float = 120) -> None:
    """Wait for the worker to finish the deferred hooks (the money of the paid orders)."""
    from sqlalchemy import func, select

    from gonglun.hooks.deferred import OutboxEvent

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with rt.db.read() as session:
            if not session.scalar(select(func.count()).where(OutboxEvent.state == "pending")):
                return
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg", action="store_true")
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--smoke", action="store_true", help="a tiny run (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.n, args.concurrency = 6, 4
    checks = Checks()

    import dramatiq
    import httpx

    from gonglun.api import create_app
    from gonglun.ledger import run_audit
    from gonglun.migrate import upgrade
    from gonglun.runtime import Runtime
    from gonglun.sandbox.settings import Settings
    from gonglun.sandbox.testing import UvicornThread, running_sandbox
    from gonglun.testing import cleanup_redis, fresh_database, isolated_config

    if args.pg:
        os.environ.setdefault("GONGLUN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    tmp = Path(tempfile.mkdtemp(prefix="gl-bench-refund-"))
    db_url = "postgresql://postgres@127.0.0.1:5432/test" if args.pg else None
    with fresh_database(db_url, tmp) as url, running_sandbox(
            tmp / "sandbox", settings=Settings(refund_defaults={"wxpay": "SUCCESS"})) as (
            sandbox_url, _, _):
        rt = Runtime(isolated_config(url, tmp, payment={
            "gateway_url": sandbox_url, "keyset": str(tmp / "sandbox" / "sandbox.json"),
            "user_orders_per_min": 10**6, "actions_per_min": 10**6}, refund={"key": KEY}))
        upgrade(rt)
        server = UvicornThread(create_app(rt=rt))
        base = server.start()
        rt.config.data["server"]["public_url"] = base
        rt.__dict__.pop("_payment_channels", None)
        worker = dramatiq.Worker(rt.broker, worker_threads=4)
        worker.start()
        http = httpx.Client(base_url=base, timeout=60, limits=httpx.Limits(max_connections=128))
        sb = httpx.Client(base_url=sandbox_url, timeout=60)
        try:
            people = users(rt, 3)
            (buyer, _), (seller, _), (admin_id, admin_token) = people
            from sqlalchemy import update

            from gonglun.accounts.models import User

            with rt.db.write() as session:
                session.execute(update(User).where(User.id == admin_id).values(role="admin"))
                buyer_user = session.get(User, buyer)
            admin = {"Authorization": f"Bearer {admin_token}"}
            balance_ids = paid_balance_orders(rt, buyer, seller, args.n)
            wx_ids = paid_wx_orders(rt, sb, buyer_user, max(1, args.n // 3))
            settle_outbox(rt)
            checks.expect("balance_orders_paid", states(rt, balance_ids).get("ok", 0), args.n)
            checks.expect("wxpay_orders_paid", states(rt, wx_ids).get("ok", 0), len(wx_ids))
            results = {}
            # Balance refunds credit the buyer; refunds of WeChat recharges take them back.
            for name, ids, sign in (("balance", balance_ids, 1), ("wxpay", wx_ids, -1)):
                before = wallet(rt, buyer)
                figures = refund_all(http, ids, admin, args.concurrency)
                settle_outbox(rt)
                done = refunded(rt, ids, 100)
                moved = (wallet(rt, buyer) - before) * sign
                checks.require(moved == 100 * done, f"{name}: the buyer's balance moved by "
                               f"{moved * sign} fen for {done} refunds of 100")
                verified = checks.expect(f"{name}_refunds", min(done, figures["http_201"]),
                                         len(ids))
                figures.update(verified=verified,
                               per_s=per_second(verified, figures["seconds"]))
                results[name] = figures
                print(f"{name} refunds: {verified} of {len(ids)} verified, "
                      f"{figures['per_s']}/s", flush=True)
            target = paid_wx_orders(rt, sb, buyer_user, 1)[0]
            results["contention"] = contention(http, target, {"admin": admin})
            settle_outbox(rt)
            checks.expect("contention_winner", results["contention"]["winners"], 1)
            checks.require(states(rt, [target]) == {"refund": 1},
                           f"contention: the order ended {states(rt, [target])}")
            results["audit_problems"] = len(run_audit(rt))
            checks.require(results["audit_problems"] == 0,
                           f"audit: {results['audit_problems']} problem(s)")
        finally:
            http.close()
            sb.close()
            worker.stop()
            server.stop()
            cleanup_redis(rt)
            rt.close()
    out = {"backend": "postgresql" if args.pg else "sqlite", "machine": platform.machine(),
           "cpus": os.cpu_count(), "python": platform.python_version(),
           "concurrency": args.concurrency, **results}
    out.update(checks.report())
    print(json.dumps(out, indent=2, ensure_ascii=False))
    backend = out["backend"]
    print(f"wrote {write_results(f'refund-{backend}', out)}")
    return checks.exit_code()


if __name__ == "__main__":
    sys.exit(main())
