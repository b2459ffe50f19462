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
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from sqlalchemy import select, update

from gonglun.db import utcnow
from gonglun.errors import GonglunError
from gonglun.plugins.refund import checks
from gonglun.plugins.refund.models import FAILED, REFUNDING, SUCCESS, VOID, Refund

log = logging.getLogger(__name__)

MSG_OK = "订单退款成功"
MSG_WX_PROCESSING = "订单退款请求已提交\n如果超过三天未到账,请联系平台客服进行处理"
MSG_ALIPAY_PENDING = "订单退款请求已成功提交\n,如果超过三天未到账,请联系平台客服进行处理。"
MSG_ABNORMAL = "订单退款请求已提交\n,需要平台手动进行退款(72小时完成处理)"
MSG_CLOSED = "退款失败:返回状态(CLOSED:退款已关闭)"
MSG_UNKNOWN = "退款失败:支付渠道暂时无法确认结果,系统将自动确认,请勿重复提交"
#: REF-21's reason for an abnormal refund.
ABNORMAL_REASON = "ABNORMAL:退款异常,退款到银行发现用户的卡作废或者冻结了,导致原路退款银行卡失败"
#: The ledger's code for money set aside for a manual payout or a channel retry.
HOLD = "refund_hold"
#: The ledger's code undoing a refund's reversal the channel never paid (the payment plugin
#: lists it among its refund codes).
VOID_CODE = "refund_void"


def _payment_api() -> Any:
    import gonglun.plugins.payment as payment

    return payment


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)[:8000]


# -- the entry point -----------------------------------------------------------------------------


def request_refund(rt: Any, ask: checks.Ask) -> dict[str, Any]:
    """Check, claim, ask the channel, apply its answer; the catalog's answer or its refusal."""
    pay = _payment_api()
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


def _meta_with(payment: Any, **refund: Any) -> str:
    """REF-07/14: ``meta.refund`` keeps the way, the initiator, the address and failures."""
    data = _payment_api().meta(payment.meta)
    data["refund"] = {**(data.get("refund") or {}), **refund}
    return json.dumps(data, ensure_ascii=False)


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
    pay = _payment_api()
    from gonglun.plugins.payment import Payment

    refund_order = pay.new_order_number()
    try:
        with rt.db.write() as session:
            payment = session.get(Payment, payment_id)
            now = utcnow()
            meta = _meta_with(payment, way=way, user_id=ask.user.id if ask.user else None,
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
            _book(rt, session, row)
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


# -- money ----------------------------------------------------------------------------------------


def _book(rt: Any, session: Any, row: Refund) -> None:
    """Add the refund to the payment's ``refund_amount`` and reverse the scene's effect in the
    ledger (the ``refund_reverse`` decision; the payment plugin answers for its scenes)."""
    from gonglun.plugins.payment import Payment, payment_dict

    if row.booked:
        return
    session.execute(
        update(Payment).where(Payment.id == row.payment_id)
        .values(refund_amount=Payment.refund_amount + row.amount)
        .execution_options(synchronize_session=False))
    payment = session.get(Payment, row.payment_id, populate_existing=True)
    done = rt.hooks.decide("refund_reverse", session=session, payment=payment_dict(payment),
                           refund={"refund_order": row.refund_order, "amount": row.amount,
                                   "way": row.way, "payment_id": row.payment_id})
    if done is None:
        raise GonglunError("refund.no_reversal", f"支付场景 {row.scene} 没有退款处理", status=500)
    row.booked = True


def _unbook(rt: Any, session: Any, row: Refund) -> None:
    """The channel never paid: every reversal transfer of the refund is undone exactly (the
    same accounts the other way, code ``refund_void``) and ``refund_amount`` restored."""
    if row.booked:
        _invert(rt, session, row, f"refund:{row.refund_order}:", "refund_void:",
                "退款未成功,撤回", -row.amount)
        row.booked = False


def rebook(rt: Any, session: Any, row: Refund) -> None:
    """A voided refund the channel paid after all: every ``refund_void`` transfer of it is
    undone (keys ``refund_rebook:…``: the reversal stands again) and ``refund_amount``
    counted again."""
    if not row.booked:
        _invert(rt, session, row, f"refund_void:refund:{row.refund_order}:", "refund_rebook:",
                "作废的退款渠道已退款,恢复", row.amount)
        row.booked = True


def _invert(rt: Any, session: Any, row: Refund, keys_from: str, prefix: str, remark: str,
            change: int) -> None:
    """Each transfer whose key starts with ``keys_from`` the other way (its key behind
    ``prefix``), and ``refund_amount`` moved by ``change``."""
    from gonglun.ledger import Move, Transfer, transfer_many, transfers_by_key
    from gonglun.plugins.payment import Payment

    keys = list(session.scalars(select(Transfer.idempotency_key).where(
        Transfer.idempotency_key.like(f"{keys_from}%"))))
    transfer_many(rt, session, [Move(t.credit, t.debit, t.amount, VOID_CODE,
                                     f"{prefix}{t.key}", t.ref, remark)
                                for t in transfers_by_key(session, keys)])
    session.execute(
        update(Payment).where(Payment.id == row.payment_id)
        .values(refund_amount=Payment.refund_amount + change)
        .execution_options(synchronize_session=False))


def _hold(rt: Any, session: Any, row: Refund, remark: str) -> None:
    """A refund the channel could not pay out: its money back from the channel's clearing
    account into ``escrow``, held under the refund number for a manual payout or a retry."""
    from gonglun.ledger import hold

    row.holds += 1
    hold(rt, session, source=f"channel:{row.method}", amount=row.amount, ref=row.refund_order,
         key=f"{HOLD}:{row.refund_order}:{row.holds}", code=HOLD, remark=remark[:255])


# -- balance payments (REF-09) -------------------------------------------------------------------


def _refund_balance(rt: Any, payment_id: int, amount: int, way: str, reason: str,
                    ask: checks.Ask) -> dict[str, Any]:
    _, data = _claim(rt, payment_id, amount, way, reason, ask, to="refund")
    after(rt, data["payment"])
    return {"msg": MSG_OK, **data}


def after(rt: Any, payment: dict[str, Any]) -> None:
    _payment_api().invalidate_cache(rt, payment)


# -- channel payments (REF-10..16) ---------------------------------------------------------------


def _refund_channel(rt: Any, payment_id: int, amount: int, way: str, reason: str,
                    ask: checks.Ask, *, late: bool = False) -> dict[str, Any]:
    pay = _payment_api()
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
    """No answer: ask the channel whether the refund exists before anything else."""
    pay = _payment_api()
    try:
        again = pay.get_channel(rt, row.method).refund_query(
            {"payment_order": row.payment_order, "amount": row.total}, row.refund_order)
    except pay.ChannelError as exc:
        log.warning("refund %s: query after an unknown outcome failed: %s", row.refund_order, exc)
        return first
    if again.status == "NOT_FOUND":  # never reached the channel: a refusal, nothing moved
        return pay.RefundResult("REFUSED", first.code, first.msg, raw=first.raw)
    return again if again.status != "UNKNOWN" else first


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


def settle(rt: Any, refund_id: int, result: Any, *, source: str) -> dict[str, Any]:
    """Apply what the channel says about a refund, once, in one transaction with the money.

    ``source``: request, query (the confirmation job), notice (a channel notification), retry,
    live, manual_check (asked before a manual payout). Returns ``{"outcome": refunded|
    processing|stuck|failed|void|unknown|paid_twice|unchanged, "data": ...}``. The refund row
    is locked for the decision (PostgreSQL; SQLite's write transactions are serial).
    """
    from gonglun.plugins.payment import Payment

    with rt.db.write() as session:
        row = session.execute(select(Refund).where(Refund.id == refund_id)
                              .with_for_update()).scalar_one()
        payment = session.get(Payment, row.payment_id)
        outcome, capped = _transition(rt, session, row, payment, result, source)
        data = snapshot(session, row.payment_id, row)
    if outcome != "unchanged":
        after(rt, data["payment"])
        _log(rt, row, result, source)
    return {"outcome": outcome, "capped": capped, "data": data}


def _transition(rt: Any, session: Any, row: Refund, payment: Any, result: Any,
                source: str) -> tuple[str, bool]:
    from gonglun.plugins.refund import exits

    if row.status == SUCCESS and result.status == "SUCCESS" and row.paid_by == "manual":
        return exits.paid_twice(rt, session, row, result), False  # never "unchanged"
    if row.status == VOID and (result.status == "SUCCESS" or result.processing):
        return exits.after_void(rt, session, row, payment, result), False  # compared
    if row.status in (SUCCESS, VOID):
        return "unchanged", False
    if row.status == FAILED:
        return _failed_answer(rt, session, row, result), False
    now = utcnow()
    #: The channel had taken the refund on before this answer (a later "no such refund" or
    #: CLOSED is then a payout that failed, not a request that never arrived).
    accepted_before = row.channel_status in ("PROCESSING", "ABNORMAL", "SUCCESS") or bool(
        row.channel_refund_id)
    row.channel_status = result.status
    row.updated_at = now
    if result.refund_id:
        row.channel_refund_id = str(result.refund_id)[:64]
    status = result.status
    if status == "NOT_FOUND" and accepted_before:
        status = "UNKNOWN"  # a check that failed to find it: no answer
    if status == "SUCCESS":
        _to(session, row, payment, "refund")
        row.status, row.success_time, row.checks, row.paid_by = SUCCESS, now, 0, "channel"
        row.success = dumps(result.raw)
        announce_ok(rt, session, row)
        return "refunded", False
    if status == "PROCESSING":
        row.success = dumps(result.raw)
        if source == "query":
            return _checked(rt, session, row, payment, result), False
        announce_ok(rt, session, row)  # CORE-11 for an accepted refund (REF-11, REF-13)
        return "processing", False
    if status in ("ABNORMAL", "FAILED") or (status == "CLOSED" and (
            accepted_before or source in ("query", "notice"))):
        why = ABNORMAL_REASON if status == "ABNORMAL" else f"{status}:{result.msg}"
        _fail(rt, session, row, payment, result, why)
        return "failed", False
    if status in ("REFUSED", "CLOSED", "NOT_FOUND"):
        failures = _count_failure(session, row, payment, result)
        cap = int(rt.config.get("refund.system_fail_cap", 3))
        if row.way == "system" and failures >= cap:  # REF-15, DECISIONS.md 12
            _fail(rt, session, row, payment, result, f"系统退款失败{failures}次: {result.msg}")
            return "failed", True
        _void(rt, session, row, payment, result)
        return "void", False
    if source == "query":
        return _checked(rt, session, row, payment, result), False
    return "unknown", False


def _failed_answer(rt: Any, session: Any, row: Refund, result: Any) -> str:
    """A ``fail_refund`` is still asked about until an exit is taken: the channel's success
    is the channel exit; its word that it is paying again puts the refund back to waiting."""
    from gonglun.plugins.refund import exits

    exits.release_stale(session, row)
    if result.status == "SUCCESS":
        return "refunded" if exits.channel_paid(rt, session, row, result) else "unchanged"
    if result.processing and exits.resume(rt, session, row, token=None):
        return "processing"
    return "unchanged"


def _period(rt: Any, method: str) -> float:
    from gonglun.plugins.refund.confirm import SCHEDULE

    every = SCHEDULE.get(method, (600.0, 0))[0]
    return float(rt.config.get(f"refund.confirm_every_s.{method}", every))


def _checked(rt: Any, session: Any, row: Refund, payment: Any, result: Any) -> str:
    """One confirmation (DECISIONS.md 13): counted only when the last counted one is a job
    period old (nine tenths, for the scheduler's jitter), so a job re-run at once cannot fail
    a refund early. The channel's own PROCESSING is no failure: after
    ``refund.confirm_failures`` of them the refund is shown stuck at the channel, with one
    alarm; checks that got no answer (or Alipay's unsettled request) count toward
    ``fail_refund``."""
    now = utcnow()
    pending = "processing" if result.status == "PROCESSING" else "unknown"
    gap = dt.timedelta(seconds=_period(rt, row.method) * 0.9)
    if row.checked_at is not None and now - row.checked_at < gap:
        return pending
    row.checked_at = now
    cap = int(rt.config.get("refund.confirm_failures", 3))
    if result.processing:
        row.checks, row.waits = 0, row.waits + 1
        if row.waits < cap or row.stuck_at is not None:
            return "processing"
        row.stuck_at = now
        rt.hooks.defer(session, "alarm", key=f"alarm:refund_stuck:{row.refund_order}",
                       kind="refund_stuck",
                       message=f"退款 {row.refund_order} 在支付渠道处理中已{row.waits}次确认未到账,"
                               f"请联系渠道, 勿人工退款",
                       data={"refund_order": row.refund_order, "channel": row.method,
                             "payment_order": row.payment_order, "payment_id": row.payment_id})
        return "stuck"
    row.checks += 1
    if row.checks >= cap:
        why = f"{row.checks}次确认未到账" if result.status == "PROCESSING" else (
            f"{row.checks}次确认失败: {result.msg}")
        _fail(rt, session, row, payment, result, why)
        return "failed"
    return pending


def move_payment(session: Any, row: Refund, state: str, to: str,
                 meta: dict[str, Any] | None = None) -> None:
    """The payment of ``row`` from ``state`` to ``to``, conditionally: a payment that is not
    there any more (another path moved it) refuses the whole transaction."""
    from gonglun.plugins.payment import Payment

    values: dict[str, Any] = {"state": to, "version": Payment.version + 1}
    if meta:
        values["meta"] = _meta_with(session.get(Payment, row.payment_id), **meta)
    moved = session.execute(
        update(Payment)
        .where(Payment.id == row.payment_id, Payment.refund_order == row.refund_order,
               Payment.state == state)
        .values(**values).execution_options(synchronize_session=False)).rowcount
    if not moved:
        raise GonglunError("refund.state_changed", "订单状态已变化,请刷新后重试", status=409,
                           data={"refund_order": row.refund_order})


def _to(session: Any, row: Refund, payment: Any, state: str) -> None:
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


def _fail(rt: Any, session: Any, row: Refund, payment: Any, result: Any, why: str) -> None:
    """``fail_refund`` (REF-20, REF-32): the business effect is undone, the buyer has not been
    paid: the money is held for a manual payout or a retry, and finance is told."""
    from gonglun.plugins.payment import Payment

    _to(session, row, payment, "fail_refund")
    _hold(rt, session, row, why)
    payment = session.get(Payment, row.payment_id, populate_existing=True)
    row.status = FAILED
    row.fail = dumps({"status": result.status, "code": result.code, "msg": result.msg,
                       "why": why, "raw": result.raw})
    session.execute(update(Payment).where(Payment.id == row.payment_id).values(
        meta=_meta_with(payment, fail=why[:255], fail_time=utcnow().isoformat()))
        .execution_options(synchronize_session=False))
    announce_ok(rt, session, row)
    from gonglun.plugins.payment import payment_dict

    fresh = session.get(Payment, row.payment_id, populate_existing=True)
    rt.hooks.defer(session, "refund_abnormal", key=f"refund_abnormal:{row.refund_order}",
                   channel=row.method, refund_order=row.refund_order,
                   payment=payment_dict(fresh))


def _count_failure(session: Any, row: Refund, payment: Any, result: Any) -> int:
    """REF-14: ``meta.refund.number`` counts the payment's failed attempts."""
    from gonglun.plugins.payment import Payment, meta

    failures = int((meta(payment.meta).get("refund") or {}).get("number") or 0) + 1
    session.execute(update(Payment).where(Payment.id == row.payment_id).values(
        meta=_meta_with(payment, number=failures, reason=(result.msg or result.code)[:255],
                        time=utcnow().isoformat()))
        .execution_options(synchronize_session=False))
    return failures


def _void(rt: Any, session: Any, row: Refund, payment: Any, result: Any) -> None:
    """Nothing moved: the claim and the reversal are given back, the attempt kept as void."""
    from gonglun.plugins.payment import Payment

    _unbook(rt, session, row)
    session.execute(
        update(Payment)
        .where(Payment.id == row.payment_id, Payment.refund_order == row.refund_order,
               Payment.state == "wait_refund")
        .values(state="ok", refund_order=None, refund_time=None, refund_reason=None,
                version=Payment.version + 1)
        .execution_options(synchronize_session=False))
    row.status = VOID
    row.fail = dumps({"status": result.status, "code": result.code, "msg": result.msg,
                       "raw": result.raw})


def release_hold(rt: Any, session: Any, row: Refund, *, to: str, note: str,
             operator_id: int | None = None) -> None:
    """Pay out the current hold (to ``manual``: staff paid the buyer; to the channel: a retry
    took the money out again)."""
    from gonglun.ledger import release

    release(rt, session, to=to, amount=row.amount, ref=row.refund_order,
            key=f"refund_payout:{row.refund_order}:{row.holds}", code=HOLD,
            remark=note[:255], operator_id=operator_id)


def _log(rt: Any, row: Refund, result: Any, source: str) -> None:
    """OPS-01: every refund action and answer, in the channel's refund log; errors also in
    OPS-04's refund error log, with its alarms (OPS-03)."""
    try:
        _payment_api().write_channel_log(rt, row.method, {
            "refund_order": row.refund_order, "payment_order": row.payment_order,
            "source": source, "status": result.status, "code": result.code, "msg": result.msg,
            "raw": result.raw}, refund=True)
    except OSError:
        log.exception("refund log of %s not written", row.refund_order)
    if result.status in ("REFUSED", "UNKNOWN", "CLOSED", "ABNORMAL"):
        from gonglun.plugins.refund.effects import record_error

        record_error(rt, row.method, f"{result.status}:{result.code} {result.msg}".strip(),
                     row.payment_id)


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


__all__ = ["answer", "refund_dict", "request_refund", "settle", "system_refund"]
