"""Payment money flows without HTTP: orders paid by balance through the ordinary create path,
channel orders paid through the ordinary apply path (a channel adapter answering from memory,
installed through the ``channel_adapter`` hook as any replacement adapter is), the deferred
``payment_success``/``payment_late`` run from the outbox, and a refund as the refund plugin
will make one (conditional update, then ``refund_transfers`` in the same transaction)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update

from gonglun.db import utcnow
from gonglun.hooks import hookimpl
from gonglun.plugins.payment.channels import ChannelPayment, CloseResult, RefundResult
from gonglun.plugins.payment.models import Payment
from gonglun.plugins.payment.records import new_order_number, payment_dict

MERCHANT = "memory-merchant"


@dataclass
class MemoryChannel:
    """What a channel says about its trades; ``refunded`` marks trades refunded over there."""

    method: str
    merchant_id: str = MERCHANT
    paid: dict[str, int] = field(default_factory=dict)
    refunded: set[str] = field(default_factory=set)

    def query(self, payment_order: str) -> ChannelPayment:
        amount = self.paid.get(payment_order)
        status = "REFUND" if payment_order in self.refunded else "SUCCESS" if amount else "NOTPAY"
        return ChannelPayment(payment_order, paid=amount is not None, trade_no=f"T{payment_order}",
                              amount=amount, merchant_id=self.merchant_id, status=status)

    def close(self, payment_order: str) -> CloseResult:
        return CloseResult(payment_order not in self.paid, "ok")

    def refund_query(self, payment: dict[str, Any], refund_order: str) -> RefundResult:
        """Refunds here are made by ``refund`` below, never at this channel."""
        return RefundResult("NOT_FOUND")


class MemoryChannels:
    """A plugin answering ``channel_config``/``channel_adapter`` first for both methods."""

    def __init__(self) -> None:
        self.channels = {m: MemoryChannel(m) for m in ("alipay", "wxpay")}

    @hookimpl(priority=1)
    def channel_config(self, method: str) -> Any:
        return {"memory": True} if method in self.channels else None

    @hookimpl(priority=1)
    def channel_adapter(self, method: str, settings: dict[str, Any]) -> Any:
        return self.channels.get(method) if settings.get("memory") else None


def install(rt: Any) -> MemoryChannels:
    plugin = MemoryChannels()
    rt.pm.register(plugin, "memory-channels")
    rt.__dict__.pop("_payment_channels", None)
    return plugin


def user(rt: Any, login: str, role: str = "user") -> Any:
    from gonglun.accounts import create_user

    with rt.db.write() as session:
        return create_user(session, login, "long enough password", role=role)


def pay_by_balance(rt: Any, buyer: Any, scene: str, amount: int,
                   seller: int | None = None) -> dict[str, Any]:
    from gonglun.plugins.payment.orders import create_payment, parse_request

    body: dict[str, Any] = {"scene": scene, "amount": amount, "method": "money"}
    if seller is not None:
        body["seller_id"] = seller
    payment, _, _ = create_payment(rt, parse_request(rt, body, buyer), buyer, ip=None,
                                   fingerprint=None)
    return payment


def channel_order(rt: Any, payer: int | None, scene: str, amount: int, method: str = "alipay",
                  seller: int | None = None) -> dict[str, Any]:
    """A committed ``wait_pay`` order, as order creation leaves it before the channel call."""
    now = utcnow()
    values = {"payment_order": new_order_number(now), "user_id": payer, "seller_id": seller,
              "scene": scene, "title": scene, "amount": amount, "method": method,
              "channel": "page" if method == "alipay" else "native", "state": "wait_pay",
              "created_at": now, "close_deadline": now + dt.timedelta(minutes=30),
              "refund_amount": 0, "income": 0, "meta": "{}", "version": 0, "late": False}
    with rt.db.write() as session:
        row = session.connection().execute(
            Payment.__table__.insert().returning(*Payment.__table__.c), values).first()
        return payment_dict(row)


def channel_pays(rt: Any, channels: MemoryChannels, payment: dict[str, Any]) -> str:
    """The channel reports the payment (as a notification would) and the worker runs."""
    from gonglun.plugins.payment.apply import apply

    channel = channels.channels[payment["method"]]
    channel.paid[payment["payment_order"]] = payment["amount"]
    outcome = apply(rt, payment["method"], channel.query(payment["payment_order"]),
                    source="notify")
    for key in (f"payment_success:{payment['id']}", f"payment_late:{payment['id']}"):
        rt.outbox.consume(key)
    return outcome


def close(rt: Any, payment: dict[str, Any]) -> None:
    with rt.db.write() as session:
        session.execute(update(Payment).where(Payment.id == payment["id"])
                        .values(state="close", closed_at=utcnow()))


def refund(rt: Any, payment_id: int, amount: int, way: str, refund_order: str,
           *, keep_state: bool = False) -> list[Any]:
    """What the refund plugin will do: one transaction, state first, then the money."""
    from gonglun.plugins.payment import refund_transfers

    values: dict[str, Any] = {"refund_amount": Payment.refund_amount + amount,
                              "refund_order": refund_order, "refund_time": utcnow()}
    if not keep_state:
        values["state"] = "refund"
    with rt.db.write() as session:
        changed = session.execute(
            update(Payment).where(Payment.id == payment_id,
                                  Payment.refund_amount + amount <= Payment.amount)
            .values(**values)).rowcount
        assert changed == 1
        return refund_transfers(rt, session, payment_id, amount=amount, way=way,
                                refund_order=refund_order)


def reload(rt: Any, payment_id: int) -> dict[str, Any]:
    with rt.db.read() as session:
        row = session.get(Payment, payment_id)
        return {**payment_dict(row), "income": row.income}
