"""Settlement of orders that pay a seller (scenes with ``settle``; DECISIONS.md 22, PAY-24).

The money of a paid ``settle`` order waits in ``escrow``. Settling it (an admin through
``POST /v1/payments/{ref}/settle``, the host application through the ``settle_payment`` hook
when the goods arrived, or the ``payment.auto_settle`` job ``settle_after_days`` after payment)
first asks the channel that the payment exists, is paid in full and is not refunded (PAY-24;
for a balance payment the local state is the truth), then in one transaction: a conditional
UPDATE records ``settled_at`` and ``income`` on the order, and escrow pays the seller the amount
less the scene's commission and ``income`` the commission.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select, update

from gonglun.api.util import ok, run_sync
from gonglun.db import utcnow
from gonglun.errors import GonglunError
from gonglun.plugins.payment.models import Payment
from gonglun.plugins.payment.records import payment_dict, resolve
from gonglun.plugins.payment.scenes import Scene, scenes_for

log = logging.getLogger(__name__)

BY = ("admin", "host", "auto")
#: What a channel query answers for a trade that was refunded (in part or in full).
REFUNDED_STATUSES = frozenset({"REFUND", "TRADE_CLOSED", "CLOSED", "REVOKED"})


def _refuse(error: str, msg: str, **data: Any) -> GonglunError:
    return GonglunError(error, msg, status=409, data=data or None)


def _check_local(payment: Payment, scene: Scene | None) -> Scene:
    if scene is None or not scene.settle:
        raise _refuse("payment.not_settleable", "该订单的支付场景不需要结算",
                      scene=payment.scene)
    if payment.settled_at is not None:
        raise _refuse("payment.already_settled", "订单已结算",
                      settled_at=payment.settled_at.isoformat())
    if payment.refund_amount or payment.state in ("wait_refund", "refund", "fail_refund"):
        raise _refuse("payment.settle_refunded", "订单已退款或正在退款,不能结算",
                      state=payment.state)
    if payment.state != "ok":
        raise _refuse("payment.not_paid", "订单未支付,不能结算", state=payment.state)
    return scene


def guard(rt: Any, payment: dict[str, Any]) -> None:
    """PAY-24: the channel confirms the payment exists, is paid in full and not refunded."""
    if payment["method"] == "money":
        return  # the local state, checked already, is the balance payment's only record
    from gonglun.plugins.payment.channels import ChannelError, get_channel

    try:
        cp = get_channel(rt, payment["method"]).query(payment["payment_order"])
    except ChannelError as exc:
        raise GonglunError("payment.channel_error", "支付渠道查询失败,请稍后重试", status=502,
                           data={"detail": str(exc)[:200]}) from exc
    problem = None
    if not cp.paid or cp.closed:
        problem = "渠道查询:订单未支付或已关闭"
    elif cp.status in REFUNDED_STATUSES:
        problem = "渠道查询:订单已退款"
    elif cp.amount != payment["amount"]:
        problem = "渠道查询:支付金额与订单金额不一致"
    if problem:
        raise _refuse("payment.settle_guard", f"结算前校验失败({problem}),已阻止结算",
                      channel_status=cp.status, channel_amount=cp.amount)


def settle(rt: Any, payment_id: int, *, by: str, operator_id: int | None = None
           ) -> dict[str, Any]:
    """Settle one order; returns ``{"payment", "seller_amount", "income"}``."""
    from gonglun.ledger import transfer_many
    from gonglun.plugins.payment.cache import invalidate
    from gonglun.plugins.payment.funds import settlement_moves

    if by not in BY:
        raise GonglunError("payment.invalid_settle_by", f"结算来源无效, 可选: {', '.join(BY)}")
    with rt.db.read() as session:
        row = session.get(Payment, payment_id)
        if row is None:
            raise GonglunError("payment.not_found", "支付订单不存在", status=404)
        scene = _check_local(row, scenes_for(rt).get(row.scene))
        data = payment_dict(row)
    guard(rt, data)
    moves, income = settlement_moves(scene, data)
    with rt.db.write() as session:
        changed = session.execute(
            update(Payment)
            .where(Payment.id == payment_id, Payment.state == "ok",
                   Payment.settled_at.is_(None), Payment.refund_amount == 0)
            .values(settled_at=utcnow(), income=income, version=Payment.version + 1)
        ).rowcount
        row = session.get(Payment, payment_id)
        if not changed:  # settled, refunded or changed since the checks above
            _check_local(row, scene)
            raise _refuse("payment.concurrent_update", "订单状态已变化,请重试")
        transfer_many(rt, session, moves, operator_id=operator_id)
        fresh = payment_dict(row)
        rt.hooks.defer(session, "payment_settled", key=f"payment_settled:{payment_id}",
                       payment=fresh, seller_amount=data["amount"] - income, income=income)
    invalidate(rt, fresh)
    log.info("payment %s settled by %s: seller %s, income %s", payment_id, by,
             data["amount"] - income, income)
    return {"payment": fresh, "seller_amount": data["amount"] - income, "income": income}


def settle_ref(rt: Any, ref: str, *, by: str, operator_id: int | None = None
               ) -> dict[str, Any] | None:
    """``settle`` by client reference (DECISIONS.md 2); None when no payment has it."""
    with rt.db.read() as session:
        row = resolve(session, str(ref))
        payment_id = row.id if row is not None else None
    if payment_id is None:
        return None
    return settle(rt, payment_id, by=by, operator_id=operator_id)


# -- the automatic settlement job ------------------------------------------------------------


def auto_settle(rt: Any, limit: int = 200) -> dict[str, int]:
    """Settle every order of a scene with ``settle_after_days`` paid that long ago.

    A guard that blocks (refunded at the channel, channel unreachable) leaves the order for the
    next run and raises an ``alarm`` once per order.
    """
    stats = {"settled": 0, "blocked": 0}
    now = utcnow()
    for scene in scenes_for(rt).values():
        if not (scene.settle and scene.settle_after_days):
            continue
        cutoff = now - dt.timedelta(days=scene.settle_after_days)
        with rt.db.read() as session:
            ids = list(session.scalars(
                select(Payment.id)
                .where(Payment.scene == scene.key, Payment.state == "ok",
                       Payment.settled_at.is_(None), Payment.refund_amount == 0,
                       Payment.paid_at <= cutoff)
                .order_by(Payment.paid_at).limit(limit)
            ))
        for payment_id in ids:
            try:
                settle(rt, payment_id, by="auto")
                stats["settled"] += 1
            except GonglunError as exc:
                stats["blocked"] += 1
                _alarm(rt, payment_id, exc)
    return stats


def _alarm(rt: Any, payment_id: int, exc: GonglunError) -> None:
    log.warning("automatic settlement of payment %s blocked: %s", payment_id, exc)
    with rt.db.write() as session:
        rt.hooks.defer(session, "alarm", key=f"alarm:settle:{payment_id}", kind="settle_blocked",
                       message=f"自动结算被阻止: {exc.msg}",
                       data={"payment_id": payment_id, "error": exc.error})


# -- REST ----------------------------------------------------------------------------------


class Settle:
    """``POST /v1/payments/{ref}/settle`` (admin)."""

    auth = "admin"

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_post(self, req: Any, resp: Any, ref: str) -> None:
        """Settle an order that pays a seller: PAY-24 guard, then escrow → seller less the
        scene's commission → income. Super admins also see ``seller_amount`` and ``income``."""
        if not ref.isdigit():
            raise GonglunError("payment.invalid_ref", "订单号必须是数字")
        user = req.context.user
        result = await run_sync(self.rt.hooks.decide, "settle_payment", ref=ref, by="admin",
                                operator_id=user.id)
        if result is None:
            raise GonglunError("payment.not_found", "支付订单不存在", status=404)
        if user.role != "superadmin":  # PAY-22: income is for super admins only
            result = {"payment": result["payment"]}
        ok(resp, result)
