"""Disabling the notify plugin leaves payments working: nothing in the money path needs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dramatiq
import httpx

from gonglun.api import create_app
from gonglun.sandbox.testing import UvicornThread, running_sandbox
from tests.payment.conftest import wait_until


def test_payments_work_without_the_notify_plugin(make_rt: Any, tmp_path: Path) -> None:
    from gonglun.accounts import create_user, issue_token

    keys = tmp_path / "sandbox"
    with running_sandbox(keys) as (sandbox_url, _sandbox, _keyset):
        rt = make_rt(plugins={"disabled": ["notify"]},
                     payment={"gateway_url": sandbox_url, "keyset": str(keys / "sandbox.json")})
        assert rt.pm.get_plugin("notify") is None
        assert rt.hooks.implementations("notify") == ()
        server = UvicornThread(create_app(rt=rt))
        base = server.start()
        rt.config.data["server"]["public_url"] = base
        rt.__dict__.pop("_payment_channels", None)
        worker = dramatiq.Worker(rt.broker, worker_threads=2, worker_timeout=100)
        worker.start()
        try:
            with rt.db.write() as session:
                user = create_user(session, "payer", "long enough password")
                auth = {"Authorization": f"Bearer {issue_token(session, user.id)}"}
            http = httpx.Client(base_url=base, timeout=30, trust_env=False)
            made = http.post("/v1/payments", headers=auth, json={
                "scene": "recharge_money", "amount": 2500, "method": "wxpay",
                "channel": "native"})
            assert made.status_code == 201, made.text
            order = made.json()["data"]["payment"]["payment_order"]
            paid = httpx.post(f"{sandbox_url}/sandbox/wxpay/transactions/{order}/pay",
                              trust_env=False)
            assert paid.status_code == 200, paid.text
            wait_until(lambda: http.get("/v1/me", headers=auth).json()["data"]["balance"]
                       == 2500, 30, "the recharge")
            assert http.get("/v1/me/messages", headers=auth).status_code == 404
            # Alarms and notices still leave the outbox: nobody is listening, nothing is stuck.
            with rt.db.write() as session:
                rt.hooks.defer(session, "alarm", key="alarm:off", kind="refund", message="x",
                               data={})
                rt.hooks.defer(session, "notify", key="notify:off", scene="payment_refund",
                               user_id=user.id, data={})
            from sqlalchemy import func, select

            from gonglun.hooks.deferred import OutboxEvent

            def pending() -> int:
                with rt.db.read() as session:
                    return int(session.scalar(select(func.count()).where(
                        OutboxEvent.state == "pending")) or 0)

            wait_until(lambda: pending() == 0, 30, "the outbox")
            http.close()
        finally:
            worker.stop()
            server.stop()
