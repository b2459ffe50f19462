"""A refund's rows: the payment's state moves, the refund's dict and the CORE-11 announcement.

The lowest of the refund modules: the claim (``service.py``), the channel's answers
(``answers.py``) and the exits (``channel_exits.py``, ``exits.py``) all build on it; it imports
none of them.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select, update

from gonglun.db import utcnow
from gonglun.errors import GonglunError
from gonglun.plugins.refund.models import REFUNDING, Refund


def payment_api() -> Any:
    """The payment plugin's public API, imported on first use."""
    import gonglun.plugins.payment as payment

    return payment


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)[:8000]


def meta_with(payment: Any, **refund: Any) -> str:
    """REF-07/14: ``meta.refund`` keeps the way, the initiator, the address and failures."""
    data = payment_api().meta(payment.meta)
    data["refund"] = {**(data.get("refund") or {}), **refund}
    return json.dumps(data, ensure_ascii=False)


def snapshot(session: Any, payment_id: int, row: Refund) -> dict[str, Any]:
    from gonglun.plugins.payment import Payment, payment_dict

    session.flush()
    payment = session.get(Payment, payment_id, populate_existing=True)
    return {"payment": payment_dict(payment), "refund": refund_dict(row)}


def refund_dict(row: Refund) -> dict[str, Any]:
    from gonglun.plugins.refund.models import STATUS_NAMES

    return {
        "id": row.id, "payment_id": row.payment_id, "payment_order": row.payment_order,
        "refund_order": row.refund_order, "method": row.method, "scene": row.scene,
        "way": row.way, "amount": row.amount, "total": row.total, "reason": row.reason,
        "status": row.status, "status_name": STATUS_NAMES.get(row.status),
        "channel_status": row.channel_status, "user_id": row.user_id,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "success_time": row.success_time.isoformat() if row.success_time else None,
        "resolved_at": row.resolved_at.isoformat() if row.resolved_at else None,
        "resolution": row.resolution,
        #: ``channel`` or ``manual``: how the money left (None while it has not).
        "paid_by": row.paid_by,
        #: Still refunding while the channel keeps saying PROCESSING: wait for the channel,
        #: never pay it by hand.
        "stuck_at_channel": row.status == REFUNDING and row.stuck_at is not None,
        "stuck_at": row.stuck_at.isoformat() if row.stuck_at else None,
        #: The exit being taken right now (manual, retry), if any.
        "claim": row.claim.split(":")[0] if row.claim else None,
    }


def after(rt: Any, payment: dict[str, Any]) -> None:
    """The payment's cached view is dropped once its transaction committed."""
    payment_api().invalidate_cache(rt, payment)


def move_payment(session: Any, row: Refund, state: str, to: str,
                 meta: dict[str, Any] | None = None) -> None:
    """The payment of ``row`` from ``state`` to ``to``, conditionally: a payment that is not
    there any more (another path moved it) refuses the whole transaction."""
    from gonglun.plugins.payment import Payment

    values: dict[str, Any] = {"state": to, "version": Payment.version + 1}
    if meta:
        values["meta"] = meta_with(session.get(Payment, row.payment_id), **meta)
    moved = session.execute(
        update(Payment)
        .where(Payment.id == row.payment_id, Payment.refund_order == row.refund_order,
               Payment.state == state)
        .values(**values).execution_options(synchronize_session=False)).rowcount
    if not moved:
        raise GonglunError("refund.state_changed", "订单状态已变化,请刷新后重试", status=409,
                           data={"refund_order": row.refund_order})


def to_state(session: Any, row: Refund, payment: Any, state: str) -> None:
    """The payment of ``row`` (still under this refund number) to ``state``."""
    from gonglun.plugins.payment import Payment

    session.execute(
        update(Payment)
        .where(Payment.id == row.payment_id, Payment.refund_order == row.refund_order,
               Payment.state.in_(("wait_refund", "fail_refund", "refund")))
        .values(state=state, refund_time=utcnow(), version=Payment.version + 1)
        .execution_options(synchronize_session=False))


def announce_ok(rt: Any, session: Any, row: Refund) -> None:
    """CORE-11 after commit (counters, notices, logs), once per refund number: a refund
    accepted, then paid, or taken back up after a void is announced a single time."""
    from gonglun.hooks.deferred import OutboxEvent
    from gonglun.plugins.payment import Payment, payment_dict

    key = f"refund_ok:{row.refund_order}"
    if session.scalar(select(OutboxEvent.id).where(OutboxEvent.key == key)) is not None:
        return
    payment = session.get(Payment, row.payment_id, populate_existing=True)
    rt.hooks.defer(session, "refund_ok", key=key,
                   refund=refund_dict(row), payment=payment_dict(payment))


__all__ = ["after", "announce_ok", "dumps", "meta_with", "move_payment", "payment_api",
           "refund_dict", "snapshot", "to_state"]
