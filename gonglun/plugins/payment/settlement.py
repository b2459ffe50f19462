"""Settlement of orders that pay a seller (scenes with ``settle``; DECISIONS.md 22, PAY-24).

The money of a paid ``settle`` order waits in ``escrow``. Settling it (an admin through
``POST /v1/payments/{ref}/settle``, the host application through the ``settle_payment`` hook
when the goods arrived, or the ``payment.auto_settle`` job ``settle_after_days`` after payment)
first asks the channel that the payment exists, is paid in full and was refunded no more than
we refunded (PAY-24, ``guard.py``; for a balance payment the local state is the truth), then in
one transaction: a conditional UPDATE claims the order (``settled_at``, ``income``: the scene's
commission on the whole order) in the state and refunded amount the checks saw, and escrow pays
out all it holds for the order: the seller what is left less its commission, ``income`` that
commission. An order refunded in part before settlement (state ``refund``) is settled for what
is left, split as settling first and refunding after would have split it (DECISIONS.md 27), so
nothing stays in escrow and the order of the two never changes who ends with what.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select, update

from gonglun.api.util import ok, run_sync
from gonglun.db import utcnow
from gonglun.errors import GonglunError
from gonglun.plugins.payment.guard import guard
from gonglun.plugins.payment.models import Payment
from gonglun.plugins.payment.records import payment_dict, resolve
from gonglun.plugins.payment.scenes import Scene, scenes_for

log = logging.getLogger(__name__)

BY = ("admin", "host", "auto")


def _refuse(error: str, msg: str, **data: Any) -> GonglunError:
    return GonglunError(error, msg, status=409, data=data or None)


#: States settlement leaves: paid, or refunded in part (the rest still in escrow).
SETTLEABLE = ("ok", "refund")


def _check_local(payment: Payment, scene: Scene | None, *, collected: bool = True) -> Scene:
    if scene is None or not scene.settle:
        raise _refuse("payment.not_settleable", "该订单的支付场景不需要结算",
                      scene=payment.scene)
    if payment.settled_at is not None:
        raise _refuse("payment.already_settled", "订单已结算",
                      settled_at=payment.settled_at.isoformat())
    if payment.state in ("wait_refund", "fail_refund"):
        raise _refuse("payment.settle_refunded", "订单正在退款,退款完成后才能结算",
                      state=payment.state)
    if payment.state == "refund" and payment.refund_amount >= payment.amount:
        raise _refuse("payment.settle_refunded", "订单已全额退款,没有可结算的金额",
                      state=payment.state, refund_amount=payment.refund_amount)
    if payment.state not in SETTLEABLE or not collected:
        # A payment that arrived after we closed the order waits in escrow for review or
        # refund (DECISIONS.md 7), never for the seller.
        raise _refuse("payment.not_paid", "订单未支付,不能结算", state=payment.state,
                      late=bool(payment.late))
    return scene


def _collected(session: Any, payment: Payment) -> bool:
    """The order's money reached its scene's account (not held as a late payment)."""
    if not payment.late or payment.method == "money":
        return True
    from gonglun.ledger import Transfer

    key = f"payment:{payment.id}"
    return session.scalar(select(Transfer.id).where(Transfer.idempotency_key == key)) is not None


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
        scene = _check_local(row, scenes_for(rt).get(row.scene),
                             collected=_collected(session, row))
        data = payment_dict(row)
    guard(rt, data)
    moves, income, seller = settlement_moves(scene, data)
    taken = data["amount"] - data["refund_amount"] - seller  # the commission moved now
    with rt.db.write() as session:
        # The claim: the state and the refunded amount the checks and the guard saw. A refund
        # or a settlement that got there first makes it match nothing.
        changed = session.execute(
            update(Payment)
            .where(Payment.id == payment_id, Payment.state == data["state"],
                   Payment.settled_at.is_(None), Payment.refund_amount == data["refund_amount"])
            .values(settled_at=utcnow(), income=income, version=Payment.version + 1)
        ).rowcount
        row = session.get(Payment, payment_id)
        if not changed:  # settled, refunded or changed since the checks above
            _check_local(row, scene, collected=_collected(session, row))
            raise _refuse("payment.concurrent_update", "订单状态已变化,请重试")
        transfer_many(rt, session, moves, operator_id=operator_id)
        fresh = payment_dict(row)
        rt.hooks.defer(session, "payment_settled", key=f"payment_settled:{payment_id}",
                       payment=fresh, seller_amount=seller, income=taken)
    invalidate(rt, fresh)
    log.info("payment %s settled by %s: seller %s, income %s", payment_id, by, seller, taken)
    return {"payment": fresh, "seller_amount": seller, "income": taken}


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
                .where(Payment.scene == scene.key, Payment.state.in_(SETTLEABLE),
                       Payment.settled_at.is_(None), Payment.refund_amount < Payment.amount,
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
