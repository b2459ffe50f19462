"""The exits of a ``fail_refund`` (DECISIONS.md 29, REF-27): money leaves once.

A failed refund's money is held in ``escrow`` under its refund number. It leaves by exactly one
of: a manual payout (staff paid the buyer), a retry through the channel, or the channel's own
success (a late notice, a confirmation that finds it paid). Each exit is claimed by one
conditional update of the refund row before any outside call:

* staff exits (``manual``, ``retry``) first take the row's ``claim`` (``status = failed`` and no
  live claim): a second exit racing it answers 409 and calls nobody;
* a manual payout then asks the channel (REF-27): paid there takes the channel exit, processing
  there moves the refund back to waiting (Alipay's unsettled request: refused, the bank may
  still pay it), no answer refuses; only an answer that the channel did
  not pay (ABNORMAL, CLOSED, no such refund) records the payout, on
  condition that the claim is still this one;
* a retry the channel accepts moves the refund back to ``wait_refund`` (the hold goes to the
  channel) on condition of its claim; refused, it gives the claim back;
* the channel's success takes ``failed → refunded`` whatever staff claimed: it is a fact, and
  a manual payout still asking loses to it.

A channel success for a refund already paid by hand is money that left twice: it is booked
(``refund_recover`` owes the channel's clearing account the amount), alarmed, and opened as the
reconciliation item ``refund_paid_twice``; ``gonglun audit`` fails on it until staff resolve the
item (``POST /v1/admin/reconciliation/{id}/resolve``) once the money is recovered.

This module has the staff's exits; the channel's (applied by ``settle``) and the money paid
twice are in ``channel_exits.py``.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any

from sqlalchemy import or_, update

from gonglun.db import utcnow
from gonglun.errors import GonglunError
from gonglun.plugins.refund.answers import settle
from gonglun.plugins.refund.books import release_hold
from gonglun.plugins.refund.channel_exits import CLAIM_TTL_S, RECOVER, TWICE, resume
from gonglun.plugins.refund.models import FAILED, REFUNDING, SUCCESS, Refund
from gonglun.plugins.refund.state import after, move_payment, payment_api, refund_dict, snapshot

log = logging.getLogger(__name__)

MSG_NOT_FAILED = "只有退款失败(需人工处理)的退款可以处理"
MSG_CLAIMED = "该退款正在由另一项操作处理(人工退款或渠道重试),请稍后刷新查看结果"
MSG_PROCESSING = "支付渠道显示该退款仍在处理中,请勿人工退款,请等待渠道结果"
MSG_PAID = "支付渠道显示该退款已到账,无需人工退款(已按渠道退款完成处理)"
MSG_UNCONFIRMED = "暂时无法向支付渠道确认该退款未到账,为避免重复退款,请稍后再试"
MSG_CHANNEL_DOWN = "退款失败:支付渠道暂时不可用,请稍后重试"


# -- claims ----------------------------------------------------------------------------------


def _claim(rt: Any, refund_id: int, kind: str, admin_id: int) -> tuple[str, dict[str, Any]]:
    """Take the exit of a failed refund for ``kind`` (manual, retry): the token and the
    refund's fields the channel call needs; 409 when another exit holds or took it."""
    token, now = f"{kind}:{secrets.token_hex(8)}", utcnow()
    with rt.db.write() as session:
        if session.get(Refund, refund_id) is None:
            raise GonglunError("refund.not_found", "退款记录不存在", status=404)
        free = or_(Refund.claim.is_(None),
                   Refund.claimed_at < now - dt.timedelta(seconds=CLAIM_TTL_S))
        taken = session.execute(
            update(Refund).where(Refund.id == refund_id, Refund.status == FAILED, free)
            .values(claim=token, claimed_at=now, updated_at=now)
            .execution_options(synchronize_session=False)).rowcount
        if not taken:
            raise lost(session, refund_id)
        row = session.get(Refund, refund_id, populate_existing=True)
        info = {**refund_dict(row), "channel_refund_id": row.channel_refund_id,
                "admin_id": admin_id}
    return token, info


def lost(session: Any, refund_id: int) -> GonglunError:
    """Why an exit could not be taken: the refund as it is now."""
    row = session.get(Refund, refund_id, populate_existing=True)
    data = {"status": row.status, "paid_by": row.paid_by}
    if row.status == REFUNDING:
        return GonglunError("refund.channel_processing", MSG_PROCESSING, status=409,
                            data={**data, "stuck_at_channel": row.stuck_at is not None})
    if row.status != FAILED:
        return GonglunError("refund.not_failed", MSG_NOT_FAILED, status=409, data=data)
    return GonglunError("refund.exit_claimed", MSG_CLAIMED, status=409,
                        data={**data, "claim": (row.claim or "").split(":")[0] or None})


def _unclaim(rt: Any, refund_id: int, token: str, note: str | None = None) -> None:
    values: dict[str, Any] = {"claim": None, "claimed_at": None, "updated_at": utcnow()}
    if note:
        values["resolution"] = note[:255]
    with rt.db.write() as session:
        session.execute(update(Refund).where(Refund.id == refund_id, Refund.claim == token)
                        .values(**values).execution_options(synchronize_session=False))


# -- staff exits -----------------------------------------------------------------------------


def _query(rt: Any, info: dict[str, Any]) -> Any:
    """The channel's word on the refund now; None when it gave none."""
    pay = payment_api()
    try:
        result = pay.get_channel(rt, info["method"]).refund_query(
            {"payment_order": info["payment_order"], "amount": info["total"]},
            info["refund_order"])
    except pay.ChannelError as exc:
        log.warning("refund %s: query before a manual payout failed: %s",
                    info["refund_order"], exc)
        return None
    return None if result.status in ("UNKNOWN", "REFUSED") else result


def _not_paid(result: Any) -> bool:
    """The channel says it did not, and will not, pay this refund out. Alipay's request that
    is known but not settled (``UNSETTLED``) is not such an answer: the bank may still pay it
    (its settlement notifies), so a manual payout waits for the channel."""
    return result.status in ("ABNORMAL", "CLOSED", "NOT_FOUND")


def resolve_manual(rt: Any, refund_id: int, note: str, admin_id: int) -> dict[str, Any]:
    """An admin paid the buyer outside the system: the held money leaves through ``manual``,
    the refund and the payment are done (``refund``), once the channel says it did not pay."""
    token, info = _claim(rt, refund_id, "manual", admin_id)
    try:
        result = _query(rt, info)
    except GonglunError:
        _unclaim(rt, refund_id, token)
        raise
    if result is None or not _not_paid(result):
        _unclaim(rt, refund_id, token)
        if result is None:
            raise GonglunError("refund.channel_unconfirmed", MSG_UNCONFIRMED, status=502)
        data = settle(rt, refund_id, result, source="manual_check")["data"]
        if result.status == "SUCCESS":
            raise GonglunError("refund.paid_by_channel", MSG_PAID, status=409, data=data)
        raise GonglunError("refund.channel_processing", MSG_PROCESSING, status=409, data=data)
    now = utcnow()
    with rt.db.write() as session:
        taken = session.execute(
            update(Refund).where(Refund.id == refund_id, Refund.status == FAILED,
                                 Refund.claim == token)
            .values(status=SUCCESS, paid_by="manual", claim=None, claimed_at=None,
                    channel_status=result.status, success_time=now, updated_at=now,
                    resolved_at=now, resolved_by=admin_id,
                    resolution=f"manual: {note}"[:255])
            .execution_options(synchronize_session=False)).rowcount
        if not taken:
            raise lost(session, refund_id)
        row = session.get(Refund, refund_id, populate_existing=True)
        release_hold(rt, session, row, to="manual", note=note, operator_id=admin_id)
        move_payment(session, row, "fail_refund", "refund",
                             meta={"manual": True, "resolved_by": admin_id})
        data = snapshot(session, row.payment_id, row)
    after(rt, data["payment"])
    return data


def retry_channel(rt: Any, refund_id: int, bank: dict[str, Any], admin_id: int
                  ) -> dict[str, Any]:
    """Retry a failed refund through its channel: WeChat's abnormal-refund API for an
    ``ABNORMAL`` refund (to the buyer's or the merchant's bank card), else the same refund
    number again (idempotent at the channel). Claimed before the channel is asked."""
    pay = payment_api()
    token, info = _claim(rt, refund_id, "retry", admin_id)
    try:
        channel = pay.get_channel(rt, info["method"])
        if info["channel_status"] == "ABNORMAL" and info["channel_refund_id"] and hasattr(
                channel, "abnormal_refund"):
            result = channel.abnormal_refund(info["channel_refund_id"], info["refund_order"],
                                             **bank)
        else:
            result = channel.refund({"payment_order": info["payment_order"],
                                     "amount": info["total"]},
                                    info["refund_order"], info["amount"], info["reason"])
    except GonglunError:
        _unclaim(rt, refund_id, token)  # refused before the channel was asked
        raise
    except pay.ChannelError as exc:
        # No answer: the channel may have taken the retry. The claim is kept, so no manual
        # payout can follow at once; the confirmation job frees it after CLAIM_TTL_S, or
        # the channel's PROCESSING/SUCCESS takes the refund back up meanwhile.
        log.warning("refund %s: retry unanswered, claim kept: %s", info["refund_order"], exc)
        raise GonglunError("refund.channel_error", MSG_CHANNEL_DOWN, status=502) from exc
    note = f"retry by {admin_id}: {result.status} {result.code}"
    if result.status == "UNKNOWN":  # the channel could not tell: the same, claim kept
        log.warning("refund %s: retry answered UNKNOWN, claim kept", info["refund_order"])
        raise GonglunError("refund.channel_unconfirmed", MSG_UNCONFIRMED, status=502,
                           data={"code": result.code})
    if result.status == "SUCCESS":
        return settle(rt, refund_id, result, source="retry")["data"]
    if result.processing:
        with rt.db.write() as session:
            row = session.get(Refund, refund_id, populate_existing=True)
            if resume(rt, session, row, token=token):
                row.resolution, row.resolved_by = note[:255], admin_id
            elif row.paid_by != "channel":  # the channel's own success got there first: done
                raise lost(session, refund_id)
            data = snapshot(session, row.payment_id, row)
        after(rt, data["payment"])
        return data
    _unclaim(rt, refund_id, token, note)
    raise GonglunError("refund.channel_refused", f"退款失败:{result.msg or result.status}"[:200],
                       status=422, data={"code": result.code})


__all__ = ["RECOVER", "TWICE", "resolve_manual", "retry_channel"]
