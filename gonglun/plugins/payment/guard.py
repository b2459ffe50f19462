"""PAY-24: before escrow pays a seller, the channel confirms the payment.

The channel is asked that the trade exists, is paid in full, and has been refunded no more than
we refunded: settlement moves what escrow holds for the order (its amount less our refunds), so
a refund made at the channel behind our back (the merchant console, another system) would
otherwise be paid to the seller as well as to the buyer.

What each channel can say about a trade's refunds:

- **Alipay**: ``alipay.trade.query`` has no refund amount; a trade refunded in full is
  ``TRADE_CLOSED``. ``alipay.trade.fastpay.refund.query`` answers for a refund number we know
  (our own), and every refund Alipay settles is announced on the trade's notification URL
  with ``refund_fee``, the trade's refunded total; those notices are kept verified
  (``payment_notifications``), so the highest ``refund_fee`` among them is what Alipay said.
- **WeChat Pay**: the order query's ``trade_state`` is ``REFUND`` once any refund was made,
  without an amount; the refund query answers for a refund number we know, and every refund
  WeChat pays out is announced (``REFUND.SUCCESS``, its ``out_refund_no`` and amount) on our
  notification URL; those notices are kept verified too.

A channel that says more was refunded than we did (or ``REFUND`` while we know of no refund)
blocks the settlement: ``payment.settle_guard`` (409), an ``alarm`` and an open
reconciliation item ``refund_at_channel`` for staff, who find out what happened at the channel;
nothing moves. What neither channel can tell (a partial refund at the channel under a number
we never saw, whose notice never reached us, or one still being paid out) is left to the
daily statement
(``refund_missing_local``, ``refund_amount_mismatch``), whose open items block settlement too.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from gonglun.db import insert_ignore, utcnow
from gonglun.errors import GonglunError

#: Open reconciliation items that say the channel refunded what we did not.
REFUND_KINDS = ("refund_missing_local", "refund_amount_mismatch", "status_mismatch")
#: Refund answers that mean the money left (or is leaving) the merchant at the channel.
LEAVING = ("SUCCESS", "PROCESSING", "ABNORMAL")


@dataclass(frozen=True)
class Finding:
    """What the channel says about a paid trade: ``refunded`` fen (None: refunded, amount not
    given) and ``problem`` when it disagrees with us (None: settle)."""

    status: str
    amount: int | None
    refunded: int | None
    problem: str | None = None
    refund_difference: bool = False


def guard(rt: Any, payment: dict[str, Any]) -> None:
    """Refuse settlement (``payment.settle_guard``) when the channel disagrees with us."""
    if payment["method"] == "money":
        return  # the local state, checked already, is the balance payment's only record
    from gonglun.plugins.payment.channels import ChannelError, get_channel

    channel = get_channel(rt, payment["method"])
    try:
        finding = examine(rt, channel, payment)
    except ChannelError as exc:
        raise GonglunError("payment.channel_error", "支付渠道查询失败,请稍后重试", status=502,
                           data={"detail": str(exc)[:200]}) from exc
    if finding.problem is None:
        finding = _reconciliation(rt, payment, finding)
    if finding.problem is None:
        return
    if finding.refund_difference:
        _open_item(rt, payment, finding)
    raise GonglunError("payment.settle_guard", f"结算前校验失败({finding.problem}),已阻止结算",
                       status=409, data={"channel_status": finding.status,
                                         "channel_amount": finding.amount,
                                         "channel_refunded": finding.refunded,
                                         "refund_amount": payment["refund_amount"]})


def examine(rt: Any, channel: Any, payment: dict[str, Any]) -> Finding:
    """Ask the channel about the trade and the refunds it knows of."""
    cp = channel.query(payment["payment_order"])
    local = int(payment["refund_amount"] or 0)
    refunded = channel_refunded(rt, channel, payment, cp)
    base = {"status": cp.status, "amount": cp.amount, "refunded": refunded}
    if refunded is None or refunded > local:
        said = "有退款" if refunded is None else f"已退款 {refunded} 分"
        return Finding(**base, problem=f"渠道查询:订单{said},本地只退款 {local} 分",
                       refund_difference=True)
    if not cp.paid or cp.closed:
        return Finding(**base, problem="渠道查询:订单未支付或已关闭")
    if cp.amount != payment["amount"]:
        return Finding(**base, problem="渠道查询:支付金额与订单金额不一致")
    return Finding(**base)


def channel_refunded(rt: Any, channel: Any, payment: dict[str, Any], cp: Any) -> int | None:
    """What the channel says has been refunded of the trade (fen), as far as it can say; None
    when it says "refunded" without an amount we can account for."""
    known = 0
    if payment.get("refund_order"):
        answer = channel.refund_query(payment, payment["refund_order"])
        if answer.status in LEAVING:
            known = answer.amount if answer.amount is not None else payment["refund_amount"]
    notices = _notices(rt, payment["method"], payment["payment_order"])
    if payment["method"] == "alipay":
        if cp.status == "TRADE_CLOSED" and cp.trade_no:  # closed after paying: refunded in full
            return payment["amount"]
        return max(known, _alipay_notified(notices))
    by_number = _wxpay_notified(channel, notices)
    if known:
        by_number[payment["refund_order"]] = known
    total = sum(by_number.values())
    if cp.status == "REFUND" and not total:
        return None  # refunded, by a refund we know nothing of
    return total


def _notices(rt: Any, method: str, payment_order: str) -> list[str]:
    """The bodies of the channel's verified refund notices for the trade (not those refused as
    another merchant's)."""
    from gonglun.plugins.payment.models import ChannelNotification

    n = ChannelNotification
    with rt.db.read() as session:
        return list(session.scalars(select(n.body).where(
            n.channel == method, n.payment_order == payment_order, n.verified.is_(True),
            n.outcome.like("refund:%"), ~n.outcome.like("refund:rejected:%"))))


def _alipay_notified(bodies: list[str]) -> int:
    """The highest ``refund_fee`` (the trade's refunded total) among Alipay's notices."""
    from gonglun.plugins.payment.money import yuan_to_fen

    best = 0
    for body in bodies:
        fee = dict(urllib.parse.parse_qsl(body)).get("refund_fee")
        try:
            best = max(best, yuan_to_fen(fee)) if fee else best
        except ValueError:
            continue
    return best


def _wxpay_notified(channel: Any, bodies: list[str]) -> dict[str, int]:
    """``out_refund_no`` → refunded fen of WeChat's ``REFUND.SUCCESS`` notices, their resource
    decrypted (as the SDK does on receipt) with the merchant's APIv3 key."""
    import json

    from wechatpayv3.utils import aes_decrypt

    out: dict[str, int] = {}
    key = (getattr(channel, "settings", None) or {}).get("apiv3_key")
    for body in bodies if key else ():
        try:
            resource = json.loads(body)["resource"]
            plain = aes_decrypt(resource["nonce"], resource["ciphertext"],
                                resource.get("associated_data") or "", key)
            refund = json.loads(plain) if plain else {}
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        amount = (refund.get("amount") or {}).get("refund")
        if refund.get("refund_status") == "SUCCESS" and isinstance(amount, int) and not \
                isinstance(amount, bool) and refund.get("out_refund_no"):
            out[str(refund["out_refund_no"])] = amount
    return out


def _reconciliation(rt: Any, payment: dict[str, Any], finding: Finding) -> Finding:
    """An open reconciliation item that says the channel refunded the order differently."""
    from gonglun.plugins.payment.models import ReconItem

    with rt.db.read() as session:
        item = session.execute(select(ReconItem.id, ReconItem.kind).where(
            ReconItem.payment_order == payment["payment_order"], ReconItem.status == "open",
            ReconItem.kind.in_(REFUND_KINDS))).first()
    if item is None:
        return finding
    return Finding(finding.status, finding.amount, finding.refunded,
                   problem=f"对账差异 {item.id} ({item.kind}) 未处理")


def _open_item(rt: Any, payment: dict[str, Any], finding: Finding) -> None:
    """A reconciliation item for staff (once per order and day) and an alarm."""
    from gonglun.plugins.payment.models import ReconItem
    from gonglun.plugins.payment.money import SHANGHAI
    from gonglun.plugins.payment.recon_base import REFUND_AT_CHANNEL

    now = utcnow()
    with rt.db.write() as session:
        insert_ignore(session, ReconItem.__table__, {
            "bill_date": now.astimezone(SHANGHAI).date().isoformat(),
            "channel": payment["method"], "kind": REFUND_AT_CHANNEL,
            "payment_order": payment["payment_order"], "trade_no": payment.get("pay_order"),
            "local_amount": payment["refund_amount"], "channel_amount": finding.refunded,
            "local_state": payment["state"], "channel_state": finding.status[:32] or None,
            "status": "open", "created_at": now})
        rt.hooks.defer(session, "alarm",
                       key=f"alarm:settle_guard:{payment['id']}:{finding.refunded}",
                       kind="settle_blocked", message=f"结算被阻止: {finding.problem}",
                       data={"payment_id": payment["id"], "channel": payment["method"],
                             "channel_refunded": finding.refunded,
                             "refund_amount": payment["refund_amount"]})
