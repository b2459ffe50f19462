"""The unified refund (REF, CORE-10..13, DECISIONS.md 8-14): one way to give money back.

Safety comes from the payment row's state machine, never from the lock (REF-05 keeps a Redis
lock as an optimisation only):

* **balance payments**: one transaction: ``ok → refund`` by conditional update, the refund
  record, the ledger's reverse transfers (the scene's ``refund_reverse``) and the deferred
  ``refund_ok`` commit together (DECISIONS.md 14);
* **channel payments**: first a claim is committed: ``ok → wait_refund`` with the refund
  number, the record ``refunding`` *and the ledger's reversal* (so a seller who cannot cover a
  settled order is refused before the channel pays anybody, REF-08); then the channel is asked
  with that number (retrying the same number is idempotent at both channels); then its answer
  is applied by ``settle``. Whatever the timing, a payment has one refund number and the ledger
  moves its money once (the transfers' keys are the refund number's).

A refusal by the channel (nothing moved) gives the claim back: ``wait_refund → ok`` and the
reversal undone transfer by transfer (code ``refund_void``). An answer that never came
(timeout, 5xx, Alipay ``ACQ.SYSTEM_ERROR``) is queried at once; still unknown, the claim stays
and the confirmation job settles it (``confirm.py``). A refund the channel accepted but could
not pay out (``ABNORMAL``, a pending refund that failed, a system refund over its failure cap)
is ``fail_refund``: its money is held in ``escrow`` under the refund number until one exit
takes it (``exits.py``: a manual payout, a retry, the channel's own success), each claimed by a
conditional update before any outside call. A refund the channel keeps reporting PROCESSING is
not failed: it waits, shown stuck at the channel.

Here: the request, its checks and the claim, and the catalog's answer. Imported one way below
it: the channel's answer (``answers.py``: ``settle``), the channel's exits of ``fail_refund``
(``channel_exits.py``; the staff's exits, ``exits.py``, sit beside this module), the ledger's
reversal and hold (``books.py``), the payment's state moves and the refund's dict
(``state.py``).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import update

from gonglun.db import utcnow
from gonglun.errors import GonglunError
from gonglun.plugins.refund import checks
from gonglun.plugins.refund.answers import settle
from gonglun.plugins.refund.books import book, rebook, release_hold
from gonglun.plugins.refund.models import FAILED, REFUNDING, SUCCESS, Refund
from gonglun.plugins.refund.state import (
    after,
    announce_ok,
    dumps,
    meta_with,
    move_payment,
    payment_api,
    refund_dict,
    snapshot,
)

log = logging.getLogger(__name__)

MSG_OK = "订单退款成功"
MSG_WX_PROCESSING = "订单退款请求已提交\n如果超过三天未到账,请联系平台客服进行处理"
MSG_ALIPAY_PENDING = "订单退款请求已成功提交\n,如果超过三天未到账,请联系平台客服进行处理。"
MSG_ABNORMAL = "订单退款请求已提交\n,需要平台手动进行退款(72小时完成处理)"
MSG_CLOSED = "退款失败:返回状态(CLOSED:退款已关闭)"
MSG_UNKNOWN = "退款失败:支付渠道暂时无法确认结果,系统将自动确认,请勿重复提交"


# -- the entry point -----------------------------------------------------------------------------


def request_refund(rt: Any, ask: checks.Ask) -> dict[str, Any]:
    """Check, claim, ask the channel, apply its answer; the catalog's answer or its refusal."""
    pay = payment_api()
    checks.gate(rt, ask)  # who asks, before anything is looked up
    checks.amount_of(ask.amount)
    with rt.db.read() as session:  # REF-33: authoritative reads, never the cache
        payment = pay.resolve(session, ask.ref)
        if payment is None:
            raise GonglunError("refund.payment_not_found", checks.MSG_NOT_FOUND, status=404)
        amount, way, reason = checks.check(rt, ask, payment)
        errors = rt.hooks.apply_filters("refund_guard", [], session=session,
                                        payment=pay.payment_dict(payment),
                                        request={"amount": amount, "way": way,
                                                 "reason": reason})
        if errors:
            raise errors[0]
        payment_id, method = payment.id, payment.method
    from gonglun.kv import Lock

    lock = Lock(rt.redis, rt.keys("refund", payment_id), 30.0)
    try:
        got = lock.acquire()
    except Exception:  # Redis down: the state machine alone keeps it safe
        log.warning("refund %s: lock unavailable, going on without it", payment_id)
        got, lock = True, None
    if not got:
        raise GonglunError("refund.locked", checks.MSG_LOCKED, status=409)
    try:
        if method == "money":
            return _refund_balance(rt, payment_id, amount, way, reason, ask)
        return _refund_channel(rt, payment_id, amount, way, reason, ask)
    finally:
        if lock is not None:
            try:
                lock.release()
            except Exception:
                log.warning("refund %s: lock release failed (it expires)", payment_id)


# -- claims ----------------------------------------------------------------------------------------


def _conflict(session: Any, payment_id: int) -> GonglunError:
    """The claim lost a race: answer as if the winner had finished first."""
    from gonglun.plugins.payment import Payment

    current = session.get(Payment, payment_id, populate_existing=True)
    try:
        checks.state_allows(current)
    except GonglunError as exc:
        return exc
    return GonglunError("refund.locked", checks.MSG_LOCKED, status=409)


def _record(session: Any, payment: Any, refund_order: str, amount: int, way: str, reason: str,
            ask: checks.Ask, status: int) -> Refund:
    now = utcnow()
    request = {"amount": amount, "way": way, "reason": reason,
               "user_id": ask.user.id if ask.user else None, "ip": ask.ip}
    row = Refund(payment_id=payment.id, payment_order=payment.payment_order,
                 refund_order=refund_order, method=payment.method, scene=payment.scene, way=way,
                 user_id=request["user_id"], ip=(ask.ip or None), amount=amount,
                 total=payment.amount, reason=reason, status=status, booked=False,
                 request=dumps(request), checks=0, created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return row


def _claim(rt: Any, payment_id: int, amount: int, way: str, reason: str, ask: checks.Ask,
           *, to: str, late: bool = False) -> tuple[Refund, dict[str, Any]]:
    """``ok → to`` (a late payment: ``close → to``) with a new refund number, the refund record
    and the ledger's reversal, in one transaction. A wallet that cannot cover its part (the
    seller way on a settled order) refuses it all here, before any channel is asked."""
    pay = payment_api()
    from gonglun.plugins.payment import Payment

    refund_order = pay.new_order_number()
    try:
        with rt.db.write() as session:
            payment = session.get(Payment, payment_id)
            now = utcnow()
            meta = meta_with(payment, way=way, user_id=ask.user.id if ask.user else None,
                              ip=ask.ip, time=now.isoformat())
            state = (Payment.state == "close") & Payment.late.is_(True) if late else (
                Payment.state == "ok")
            claimed = session.execute(
                update(Payment)
                .where(Payment.id == payment_id, state, Payment.refund_order.is_(None))
                .values(state=to, refund_order=refund_order, refund_time=now,
                        refund_reason=reason, meta=meta, version=Payment.version + 1)
                .execution_options(synchronize_session=False)
            ).rowcount
            if not claimed:
                raise _conflict(session, payment_id)
            row = _record(session, payment, refund_order, amount, way, reason, ask,
                          SUCCESS if to == "refund" else REFUNDING)
            book(rt, session, row)
            if to == "refund":
                row.success_time = now
                announce_ok(rt, session, row)
            data = snapshot(session, payment_id, row)
    except GonglunError as exc:
        if exc.error == "ledger.insufficient_balance":  # REF-08: never the platform's loss
            raise GonglunError("refund.balance_short", "退款失败:账户余额不足,无法扣回退款金额",
                               status=409, data=exc.data) from exc
        raise
    return row, data


# -- balance payments (REF-09) -------------------------------------------------------------------


def _refund_balance(rt: Any, payment_id: int, amount: int, way: str, reason: str,
                    ask: checks.Ask) -> dict[str, Any]:
    _, data = _claim(rt, payment_id, amount, way, reason, ask, to="refund")
    after(rt, data["payment"])
    return {"msg": MSG_OK, **data}


# -- channel payments (REF-10..16) ---------------------------------------------------------------


def _refund_channel(rt: Any, payment_id: int, amount: int, way: str, reason: str,
                    ask: checks.Ask, *, late: bool = False) -> dict[str, Any]:
    pay = payment_api()
    row, data = _claim(rt, payment_id, amount, way, reason, ask, to="wait_refund", late=late)
    after(rt, data["payment"])
    channel = pay.get_channel(rt, row.method)
    try:
        result = channel.refund(data["payment"], row.refund_order, amount, reason)
    except pay.ChannelError as exc:
        log.warning("refund %s: %s", row.refund_order, exc)
        result = pay.RefundResult("UNKNOWN", "error", str(exc)[:200])
    if result.status == "UNKNOWN":
        result = _ask_again(rt, row, result)
    return answer(rt, settle(rt, row.id, result, source="request"), result)


def _ask_again(rt: Any, row: Refund, first: Any) -> Any:
    """No answer: the request may or may not have reached the channel. Ask; a channel that
    does not know the refund (yet) is sent the same request again (see ``send_again``). Only a
    definite answer is applied: silence, or "not found" right after a timeout, voids nothing
    (the first request may still land, and the payment must not be refundable meanwhile)."""
    pay = payment_api()
    channel = pay.get_channel(rt, row.method)
    try:
        again = channel.refund_query(
            {"payment_order": row.payment_order, "amount": row.total}, row.refund_order)
    except pay.ChannelError as exc:
        log.warning("refund %s: query after an unknown outcome failed: %s", row.refund_order, exc)
        return first
    if again.status == "NOT_FOUND":
        again = send_again(channel, row)
    return again if again.status not in ("UNKNOWN", "NOT_FOUND") else first


def send_again(channel: Any, row: Refund) -> Any:
    """The same refund request again, under the same refund number: both channels take a
    number once (WeChat's ``out_refund_no``, Alipay's ``out_request_no``; both vendors say to
    retry a system error so), so a first request that lands late pays nothing more. The answer
    decides: accepted, or refused in so many words (4xx: nothing moved); else ``UNKNOWN``."""
    pay = payment_api()
    try:
        return channel.refund({"payment_order": row.payment_order, "amount": row.total},
                              row.refund_order, row.amount, row.reason)
    except pay.ChannelError as exc:
        log.warning("refund %s: sent again, no answer: %s", row.refund_order, exc)
        return pay.RefundResult("UNKNOWN", "error", str(exc)[:200])


def answer(rt: Any, outcome: dict[str, Any], result: Any) -> dict[str, Any]:
    """The catalog's answer for what ``settle`` did (REF-11, REF-13, REF-15)."""
    kind = outcome["outcome"]
    if kind == "unchanged":
        # Another path (the channel's notification, a confirmation) applied the answer first:
        # answer from what the refund is now.
        status = outcome["data"]["refund"]["status"]
        kind = {SUCCESS: "refunded", REFUNDING: "processing", FAILED: "failed"}.get(status, kind)
    if kind == "refunded":
        return {"msg": MSG_OK, **outcome["data"]}
    if kind == "processing":
        msg = MSG_ALIPAY_PENDING if outcome["data"]["refund"]["method"] == "alipay" \
            else MSG_WX_PROCESSING
        return {"msg": msg, **outcome["data"]}
    if kind == "failed":
        msg = MSG_OK if outcome.get("capped") else MSG_ABNORMAL
        return {"msg": msg, **outcome["data"]}
    if kind == "unknown":
        raise GonglunError("refund.outcome_unknown", MSG_UNKNOWN, status=502)
    if result.status == "CLOSED":
        raise GonglunError("refund.channel_closed", MSG_CLOSED, status=422,
                           data={"code": result.code})
    text = f"退款失败:{result.msg}" if result.msg else "退款失败:支付渠道拒绝退款"
    status = 502 if result.status in ("UNKNOWN", "REFUSED") and result.code in (
        "error", "ACQ.SYSTEM_ERROR", "SYSTEM_ERROR", "FREQUENCY_LIMITED") else 422
    raise GonglunError("refund.channel_refused", text[:200], status=status,
                       data={"code": result.code})


def system_refund(rt: Any, payment_id: int, amount: int | None, reason: str) -> dict[str, Any]:
    """A refund the platform itself decides (late payments, appraisal closes, red packets):
    the ``system`` way, inside the process, without the HTTP refund key. ``amount`` None: the
    whole payment. A payment that arrived after we closed its order (``late``) is refunded
    from the hold its money waits in."""
    from gonglun.plugins.payment import Payment

    with rt.db.read() as session:
        payment = session.get(Payment, payment_id)
        if payment is None:
            raise GonglunError("refund.payment_not_found", checks.MSG_NOT_FOUND, status=404)
        late = payment.late and payment.state == "close"
        if not late:
            checks.state_allows(payment)
        method, whole = payment.method, payment.amount
    amount = checks.amount_of(whole if amount is None else amount)
    ask = checks.Ask(ref=str(payment_id), amount=amount, way="system", reason=reason)
    if method == "money":
        return _refund_balance(rt, payment_id, amount, "system", reason, ask)
    return _refund_channel(rt, payment_id, amount, "system", reason, ask, late=late)


#: Also the helpers whose homes are ``state.py`` and ``books.py``, still importable from here.
__all__ = ["after", "announce_ok", "answer", "dumps", "move_payment", "rebook", "refund_dict",
           "release_hold", "request_refund", "settle", "snapshot", "system_refund"]
