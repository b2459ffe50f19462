"""Where a payment's money goes: the transfers of each scene (docs/ledger.md).

A payment's money leaves its **source** (the payer's wallet for ``money``, the channel's clearing
account ``channel:<method>`` otherwise) for the account its scene implies (``Scene.funds``):

- ``payer`` (``recharge_money``): the payer's wallet (BAL-03);
- ``escrow`` (scenes with ``settle``, e.g. ``tao``): held until settlement moves it to the
  seller's wallet less the scene's commission, which goes to ``income``;
- ``income`` (``face_number``): platform revenue.

A refund (the refund plugin, DECISIONS.md 9 and 27) takes the money back from wherever it is
now and returns it to the source: ``refund_moves`` computes those transfers. Every key and code
here is what ``gonglun audit`` expects (``ledger_audit.py``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gonglun.errors import GonglunError
from gonglun.ledger import ESCROW, INCOME, Move, TransferResult, transfer, transfer_many, wallet
from gonglun.plugins.payment.scenes import Scene

SETTLE, COMMISSION, LATE = "settle", "commission", "late_payment"
#: A refund leg from a system account (escrow, income) is ``refund`` (BAL-04); one taken back
#: from a wallet (the seller after settlement, the payer of a recharge) is ``refund_reverse``,
#: one of the codes ``ledger.negative_scenes`` lets go negative for admin/system refunds.
REFUND, REFUND_REVERSE = "refund", "refund_reverse"
#: The refund plugin undoing a reversal the channel never paid (same accounts, other way).
REFUND_VOID = "refund_void"
FIXED_CODES = (SETTLE, COMMISSION, LATE, REFUND, REFUND_REVERSE, REFUND_VOID)
#: Refund ways that may drive a wallet negative (REF-08, BAL-05/06): never the seller's own.
ADVANCING_WAYS = ("admin", "system")
BASIS = 10_000


def source(payment: dict[str, Any]) -> str:
    """The account the payer's money came from."""
    if payment["method"] == "money":
        return wallet(payment["user_id"])
    return f"channel:{payment['method']}"


def destination(scene: Scene, payment: dict[str, Any]) -> str:
    """The account a paid order's money goes to (before any settlement)."""
    if scene.funds == "payer":
        if not payment.get("user_id"):
            raise GonglunError("payment.no_payer", "充值订单没有付款用户", status=409)
        return wallet(payment["user_id"])
    return ESCROW if scene.funds == "escrow" else INCOME


def collect_key(payment: dict[str, Any]) -> str:
    """Balance payments are keyed by order number (the row has no id yet when they move)."""
    if payment["method"] == "money":
        return f"pay:{payment['payment_order']}"
    return f"payment:{payment['id']}"


def collect(rt: Any, session: Session, payment: dict[str, Any], scene: Scene) -> TransferResult:
    """The payment's money to its scene's account, once (the key is the payment's)."""
    if scene.funds == "payer":
        remark = "账户余额充值"  # BAL-03
    elif payment["method"] == "money":
        remark = f"余额支付:{scene.name}"
    else:
        remark = scene.name
    return transfer(rt, session, debit=source(payment), credit=destination(scene, payment),
                    amount=payment["amount"], code=scene.key, key=collect_key(payment),
                    ref=payment["payment_order"], remark=remark)


def pay_from_balance(rt: Any, session: Session, scene: Scene, *, user_id: int, amount: int,
                     order: str) -> TransferResult:
    """A balance payment at order creation (BAL-07): refuses an overdraft, rolling it all back."""
    payment = {"method": "money", "user_id": user_id, "amount": amount, "payment_order": order}
    return collect(rt, session, payment, scene)


def hold_late(rt: Any, session: Session, payment: dict[str, Any]) -> TransferResult:
    """A payment that arrived after we closed the order (DECISIONS.md 7, 26): its money waits
    in escrow for review or refund instead of going unrecorded. (Only a payment of the order's
    amount gets this far: a different amount is refused and alarmed before.)"""
    return transfer(rt, session, debit=source(payment), credit=ESCROW,
                    amount=payment["amount"], code=LATE,
                    key=f"late:{payment['id']}", ref=payment["payment_order"],
                    remark="订单关闭后收到的付款,待处理")


def commission_of(scene: Scene, amount: int) -> int:
    """The platform's cut in fen, rounded down (the seller keeps the odd fen)."""
    return amount * scene.commission // BASIS


def settlement_split(amount: int, income: int, refunded: int) -> tuple[int, int]:
    """What settlement moves from escrow, ``(to the seller, to income)``, for an order of
    ``amount`` whose commission is ``income`` and of which ``refunded`` went back before
    settlement: exactly what settling first and refunding after would leave each of them
    (DECISIONS.md 27), so the order of the two never changes who ends with what. The two add
    up to ``amount - refunded``, all that escrow still holds for the order."""
    back = income_returned(refunded, amount, income)
    return amount - income - (refunded - back), income - back


def settlement_moves(scene: Scene, payment: dict[str, Any]) -> tuple[list[Move], int, int]:
    """escrow → seller (what is left less its commission) and escrow → income (that
    commission); returns the moves, the order's commission (``payments.income``) and what
    goes to the seller now."""
    income = commission_of(scene, payment["amount"])
    seller, commission = settlement_split(payment["amount"], income,
                                          int(payment.get("refund_amount") or 0))
    order, pid = payment["payment_order"], payment["id"]
    moves = []
    if seller:
        moves.append(Move(ESCROW, wallet(payment["seller_id"]), seller,
                          SETTLE, f"settle:{pid}", order, f"结算:{scene.name}"))
    if commission:
        moves.append(Move(ESCROW, INCOME, commission, COMMISSION, f"commission:{pid}", order,
                          f"平台佣金:{scene.name}"))
    return moves, income, seller


def income_returned(refunded: int, amount: int, income: int) -> int:
    """How much of the commission a refund total of ``refunded`` gives back (DECISIONS.md 27):
    in proportion, rounded down, so neither the seller nor ``income`` ever returns more than
    the order gave them, whatever the partial refunds."""
    return refunded * income // amount


def refund_moves(scene: Scene, payment: dict[str, Any], *, amount: int, way: str,
                 refund_order: str, late_hold: bool = False) -> list[Move]:
    """The transfers of a refund of ``amount`` on top of ``payment["refund_amount"]`` already
    refunded: from wherever the money is now back to its source. ``late_hold``: the payment
    arrived after we closed the order and its money waits in escrow (``hold_late``)."""
    before = int(payment.get("refund_amount") or 0)
    if not 0 < amount <= payment["amount"] - before:
        raise GonglunError("refund.invalid_amount", "退款金额超出可退范围",
                           data={"amount": amount, "refundable": payment["amount"] - before})
    to, order = source(payment), payment["payment_order"]
    advance = way in ADVANCING_WAYS

    def back(holder: str, value: int) -> Move:
        from_wallet = holder.startswith("user:")
        return Move(holder, to, value, REFUND_REVERSE if from_wallet else REFUND,
                    f"refund:{refund_order}:{holder}", order, "退款",
                    allow_negative=from_wallet and advance)

    if late_hold:
        return [back(ESCROW, amount)]
    if not payment.get("settled_at"):
        return [back(destination(scene, payment), amount)]
    income = int(payment.get("income") or 0)
    from_income = (income_returned(before + amount, payment["amount"], income)
                   - income_returned(before, payment["amount"], income))
    moves = [back(wallet(payment["seller_id"]), amount - from_income)] if amount > from_income \
        else []
    if from_income:
        moves.append(back(INCOME, from_income))
    return moves


def refund_transfers(rt: Any, session: Session, payment_id: int, *, amount: int, way: str,
                     refund_order: str) -> list[TransferResult]:
    """Move a refund's money, for the refund plugin (issue 9), inside its transaction.

    Call it *after* the conditional UPDATE that added ``amount`` to the payment's
    ``refund_amount`` (and changed its state), in the same transaction: the row is re-read here,
    locked by that update, so a concurrent settlement cannot slip between. The seller's or the
    payer's wallet may go negative only for the ``admin`` and ``system`` ways (REF-08); a
    ``seller`` refund the wallet cannot cover is refused with ``ledger.insufficient_balance``.
    """
    from gonglun.plugins.payment.models import Payment
    from gonglun.plugins.payment.records import payment_dict
    from gonglun.plugins.payment.scenes import scenes_for

    row = session.execute(select(Payment).where(Payment.id == payment_id)).scalar()
    if row is None:
        raise GonglunError("payment.not_found", "支付订单不存在", status=404)
    payment = {**payment_dict(row), "income": row.income,
               "refund_amount": row.refund_amount - amount}
    scene = scenes_for(rt).get(row.scene)
    if scene is None:
        raise GonglunError("payment.unknown_scene", f"支付场景不存在: {row.scene}")
    late_hold = row.late and not _exists(session, f"payment:{row.id}")
    moves = refund_moves(scene, payment, amount=amount, way=way, refund_order=refund_order,
                         late_hold=late_hold)
    return transfer_many(rt, session, moves)


def _exists(session: Session, key: str) -> bool:
    from gonglun.ledger import Transfer

    return session.scalar(select(Transfer.id).where(Transfer.idempotency_key == key)) is not None
