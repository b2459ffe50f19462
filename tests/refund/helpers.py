"""Shared steps of the refund tests: people, paid orders of every kind, refunds, audits."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from gonglun.ledger import run_audit
from gonglun.plugins.payment.models import Payment
from gonglun.plugins.refund.models import Refund
from tests.payment.conftest import Live, wait_until

KEY = "k" * 40


def people(live: Live) -> dict[str, tuple[int, dict[str, str]]]:
    return {name: live.user(name, role=role) for name, role in (
        ("buyer", "user"), ("seller", "user"), ("cs", "admin"), ("boss", "superadmin"))}


def fund(live: Live, user_id: int, amount: int) -> None:
    from gonglun.ledger import post

    with live.rt.db.write() as session:
        post(live.rt, session, user_id=user_id, delta=amount, scene="admin_adjust",
             counter="manual", ref=f"fund{user_id}", key=f"fund:{uuid.uuid4().hex}",
             remark="测试充值", operator_id=_admin(live, session))


def _admin(live: Live, session: Any) -> int:
    from gonglun.accounts.models import User

    return session.scalar(select(User.id).where(User.role.in_(("admin", "superadmin"))))


def paid_tao(live: Live, p: dict[str, Any], amount: int = 1200) -> dict[str, Any]:
    fund(live, p["buyer"][0], amount)
    made = live.create(p["buyer"][1], scene="tao", amount=amount, method="money",
                       seller_id=p["seller"][0], title="青花瓷瓶")
    assert made.status_code == 201, made.text
    return made.json()["data"]["payment"]


def paid_channel(live: Live, headers: dict[str, str], method: str, amount: int,
                 scene: str = "recharge_money", **extra: Any) -> dict[str, Any]:
    """A channel order the sandbox's buyer pays; waits until the money is in place."""
    import httpx

    body = {"scene": scene, "amount": amount, "method": method,
            "channel": "page" if method == "alipay" else "native", **extra}
    made = live.create(headers, **body)
    assert made.status_code == 201, made.text
    data = made.json()["data"]
    order = data["payment"]["payment_order"]
    if method == "alipay":
        assert httpx.get(data["pay_params"]["url"], timeout=10).status_code == 200
        paid = live.sb.post(f"/sandbox/alipay/trades/{order}/pay")
    else:
        paid = live.sb.post(f"/sandbox/wxpay/transactions/{order}/pay")
    assert paid.status_code == 200, paid.text
    wait_until(lambda: live.payment(data["payment"]["id"], headers)["state"] == "ok",
               what="paid")
    live.settle_outbox()
    return live.payment(data["payment"]["id"], headers)


def refund(live: Live, payment: dict[str, Any], headers: dict[str, str] | None, **body: Any
           ) -> Any:
    return live.http.post(f"/v1/payments/{payment['id']}/refunds", json=body,
                          headers=headers or {})


def state(live: Live, payment_id: int) -> tuple[str, int, str | None]:
    with live.rt.db.read() as session:
        row = session.get(Payment, payment_id)
        return row.state, row.refund_amount, row.refund_order


def refunds(live: Live, *where: Any) -> list[Refund]:
    with live.rt.db.read() as session:
        return list(session.scalars(select(Refund).where(*where).order_by(Refund.id)))


def count(live: Live, model: Any) -> int:
    with live.rt.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)))


def audit_clean(live: Live) -> None:
    live.settle_outbox()
    problems = run_audit(live.rt)
    assert problems == [], problems


def settle_wx(live: Live, refund_order: str, status: str = "SUCCESS") -> None:
    done = live.sb.post(f"/sandbox/wxpay/refunds/{refund_order}/settle", json={"status": status})
    assert done.status_code == 200, done.text


def later(live: Live, refund_order: str, hours: int = 1) -> None:
    """The confirmation job's period passes: the last counted check moves back in time."""
    import datetime as dt

    with live.rt.db.write() as session:
        row = session.scalars(select(Refund).where(Refund.refund_order == refund_order)).one()
        if row.checked_at is not None:
            row.checked_at -= dt.timedelta(hours=hours)
