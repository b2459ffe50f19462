"""A live deployment for payment tests: the API served over HTTP, the gateway sandbox as a
separate server speaking the real protocols, and a Dramatiq worker for deferred hooks."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pytest

from gonglun.api import create_app
from gonglun.sandbox.testing import UvicornThread, running_sandbox


@dataclass
class Live:
    rt: Any
    base: str
    sandbox_url: str
    sandbox: Any
    keyset: dict[str, Any]
    http: httpx.Client
    sb: httpx.Client

    def user(self, login: str = "buyer", role: str = "user") -> tuple[int, dict[str, str]]:
        from gonglun.accounts import create_user, issue_token

        with self.rt.db.write() as session:
            user = create_user(session, login, "long enough password", role=role, nickname=login)
            return user.id, {"Authorization": f"Bearer {issue_token(session, user.id)}"}

    def create(self, headers: dict[str, str] | None, **body: Any) -> httpx.Response:
        return self.http.post("/v1/payments", json=body, headers=headers or {})

    def balance(self, headers: dict[str, str]) -> int:
        return self.http.get("/v1/me", headers=headers).json()["data"]["balance"]

    def payment(self, ref: Any, headers: dict[str, str]) -> dict[str, Any]:
        return self.http.get(f"/v1/payments/{ref}", headers=headers).json()["data"]["payment"]

    def attempts(self, order: str) -> list[dict[str, Any]]:
        out = self.sb.get("/sandbox/notifications", params={"out_trade_no": order})
        return out.json()["data"]

    def settle_outbox(self, timeout: float = 20) -> None:
        """Wait until every deferred hook has run."""
        from sqlalchemy import func, select

        from gonglun.hooks.deferred import OutboxEvent

        def pending() -> int:
            with self.rt.db.read() as session:
                return session.scalar(
                    select(func.count()).where(OutboxEvent.state == "pending")
                )

        wait_until(lambda: pending() == 0, timeout, "deferred hooks still pending")


def wait_until(check: Callable[[], Any], timeout: float = 15, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def live(make_rt: Any, tmp_path: Path) -> Iterator[Live]:
    keys = tmp_path / "sandbox"
    with running_sandbox(keys) as (sandbox_url, sandbox, keyset):
        rt = make_rt(payment={"gateway_url": sandbox_url, "keyset": str(keys / "sandbox.json"),
                              "drop_after_s": 0},
                     # WeChat sign-in against the sandbox too (the fuzzer reaches it).
                     accounts={"gateway_url": sandbox_url,
                               "keyset": str(keys / "sandbox.json")})
        server = UvicornThread(create_app(rt=rt))
        base = server.start()
        rt.config.data["server"]["public_url"] = base
        rt.__dict__.pop("_payment_channels", None)  # built at start-up, before the port was known
        worker = dramatiq.Worker(rt.broker, worker_threads=2, worker_timeout=100)
        worker.start()
        http = httpx.Client(base_url=base, timeout=30)
        sb = httpx.Client(base_url=sandbox_url, timeout=30)
        try:
            yield Live(rt, base, sandbox_url, sandbox, keyset, http, sb)
        finally:
            http.close()
            sb.close()
            worker.stop()
            server.stop()


@pytest.fixture
def day_over(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconciliation runs only for days that are over; a test that reconciles what it just did
    (with the sandbox serving today's partial statement, ``partial_bills``) runs the reconciler
    as if today were over, as it is tomorrow."""
    import datetime as dt

    from gonglun.plugins.payment import reconcile

    today = reconcile.beijing_today
    monkeypatch.setattr(reconcile, "beijing_today", lambda: today() + dt.timedelta(days=1))
