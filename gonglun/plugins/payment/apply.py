"""Applying what a channel says (notification or query) to an order, exactly once.

Business success is decided only here, from a verified notification or an active query
(DECISIONS.md 5, PAY-09). Every change is a conditional UPDATE on the state, so duplicates,
reordering and concurrent deliveries change the order at most once; ``payment_success`` is
deferred with the key ``payment_success:<id>`` in the same transaction.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from sqlalchemy import bindparam, select, update

from gonglun.db import insert_ignore, utcnow
from gonglun.plugins.payment.channels import ChannelPayment, get_channel
from gonglun.plugins.payment.models import ChannelNotification, Payment
from gonglun.plugins.payment.records import payment_dict

log = logging.getLogger(__name__)

APPLIED, DUPLICATE, LATE, PENDING = "applied", "duplicate", "late", "pending"


def record_notification(
    rt: Any, method: str, body: bytes, outcome: str, *, verified: bool,
    payment_order: str | None = None, session: Any = None,
) -> None:
    """Keep every notification received (idempotent on the body's digest)."""
    values = notification_row(method, body, outcome, verified=verified,
                              payment_order=payment_order)
    if session is not None:
        record_rows(session, [values])
        return
    with rt.db.write() as s:
        record_rows(s, [values])


_N = ChannelNotification.__table__
#: A body first refused (a stale timestamp, say) and then delivered verified: the verified
#: outcome replaces the refusal's record, which would otherwise win the unique digest.
_UPGRADE = (
    update(_N)
    .where(_N.c.channel == bindparam("u_channel"), _N.c.digest == bindparam("u_digest"),
           _N.c.verified.is_(False))
    .values(verified=True, outcome=bindparam("u_outcome"), body=bindparam("u_body"),
            payment_order=bindparam("u_order"))
)


def record_rows(session: Any, rows: list[dict[str, Any]]) -> None:
    """Insert notification records; verified ones replace an unverified record of their body."""
    from gonglun.db import insert_ignore_many

    insert_ignore_many(session, _N, rows)
    verified = [{"u_channel": r["channel"], "u_digest": r["digest"], "u_outcome": r["outcome"],
                 "u_body": r["body"], "u_order": r["payment_order"]}
                for r in rows if r["verified"]]
    if verified:
        session.connection().execute(_UPGRADE, verified)


def prune_unverified(rt: Any, days: int | None = None) -> int:
    """Forget refused, unverified notifications after ``payment.unverified_keep_days`` (7)."""
    import datetime as dt

    from sqlalchemy import delete

    days = int(days if days is not None else rt.config.get("payment.unverified_keep_days", 7))
    cutoff = utcnow() - dt.timedelta(days=days)
    with rt.db.write() as session:
        return int(session.execute(
            delete(ChannelNotification)
            .where(ChannelNotification.verified.is_(False),
                   ChannelNotification.created_at < cutoff)
            .execution_options(synchronize_session=False)
        ).rowcount)


#: Bytes of an unverified body kept in the record and the packet log: enough to read what it
#: was, never a store for whatever anybody posts.
UNVERIFIED_KEEP = 2048


def notification_row(
    method: str, body: bytes, outcome: str, *, verified: bool, payment_order: str | None
) -> dict[str, Any]:
    digest = hashlib.sha256(body).hexdigest()
    return {
        "channel": method,
        "digest": digest,
        "kind": "payment",
        "payment_order": payment_order[:64] if payment_order else None,
        "verified": verified,
        "outcome": outcome[:64],
        "body": body.decode("utf-8", "replace") if verified else bounded_text(body, digest),
        "created_at": utcnow(),
    }


def bounded_text(body: bytes, digest: str | None = None) -> str:
    """At most ``UNVERIFIED_KEEP`` bytes of ``body``, with its size and digest when cut."""
    if len(body) <= UNVERIFIED_KEEP:
        return body.decode("utf-8", "replace")
    digest = digest or hashlib.sha256(body).hexdigest()
    head = body[:UNVERIFIED_KEEP].decode("utf-8", "ignore")
    return f"{head}...[truncated: {len(body)} bytes, sha256 {digest}]"


def late_policy(rt: Any) -> str:
    policy = str(rt.config.get("payment.late_payment", "review"))
    return policy if policy in ("review", "accept", "refund") else "review"


def apply(
    rt: Any, method: str, cp: ChannelPayment, *, source: str, body: bytes | None = None,
    require_merchant: bool = False,
) -> str:
    """Apply ``cp`` to its order; returns applied, duplicate, late, pending or rejected:<why>."""
    channel = get_channel(rt, method)
    with rt.db.write() as session:
        fast = mark_paid(rt, session, channel, cp, method, require_merchant)
        if fast is not None:
            outcome, changed = APPLIED, fast
            rt.hooks.defer(session, "payment_success", key=f"payment_success:{fast['id']}",
                           payment=fast)
        else:
            payment = session.execute(
                select(Payment).where(Payment.payment_order == cp.payment_order)
            ).scalar()
            outcome = _decide(rt, session, channel, payment, cp, method, require_merchant)
            changed = payment_dict(payment) if outcome in (APPLIED, LATE) else None
        if body is not None:
            record_notification(rt, method, body, outcome, verified=True,
                                payment_order=cp.payment_order, session=session)
    if changed is not None:
        from gonglun.plugins.payment.cache import invalidate

        invalidate(rt, changed)
    if outcome.startswith("rejected"):
        log.warning("payment %s from %s via %s: %s", cp.payment_order, method, source, outcome)
    return outcome


_T = Payment.__table__
#: Built once: the hot path of every notification. Parameters carry the values.
_PAY = (
    update(_T)
    .where(_T.c.payment_order == bindparam("p_order"), _T.c.method == bindparam("p_method"),
           _T.c.amount == bindparam("p_amount"), _T.c.state == "wait_pay")
    .values(state="ok", pay_order=bindparam("p_trade_no"), paid_at=bindparam("p_paid_at"),
            paid_amount=bindparam("p_amount"), version=_T.c.version + 1)
    .returning(*_T.c)
)


def parties_problem(channel: Any, cp: ChannelPayment, strict: bool) -> str | None:
    """Why a verified payment is not for this merchant (``merchant_mismatch``, ``appid_mismatch``,
    ``seller_mismatch``), or None. ``strict`` (notifications): missing parties are a mismatch;
    otherwise (our own queries) only the parties the answer names are checked."""
    if not strict and not cp.merchant_id:
        return None
    check = getattr(channel, "check_parties", None)
    if check is not None:
        return check(cp)
    return None if cp.merchant_id == channel.merchant_id else "merchant_mismatch"


def mark_paid(
    rt: Any, session: Any, channel: Any, cp: ChannelPayment, method: str, require_merchant: bool,
) -> dict[str, Any] | None:
    """The common case in one statement: an unpaid order whose checks all hold becomes paid.

    Returns the paid order; the caller defers ``payment_success`` for it.

    ``UPDATE ... WHERE payment_order AND method AND amount AND state='wait_pay' RETURNING``;
    anything else (duplicate, late, mismatch) falls through to the classifying path. Backends
    without UPDATE ... RETURNING (MariaDB) always take that path.
    """
    if not cp.paid or not session.get_bind().dialect.update_returning:
        return None
    if parties_problem(channel, cp, require_merchant) is not None:
        return None
    row = session.connection().execute(_PAY, {
        "p_order": cp.payment_order, "p_method": method, "p_amount": cp.amount,
        "p_trade_no": cp.trade_no, "p_paid_at": cp.paid_at or utcnow(),
    }).first()
    return payment_dict(row) if row is not None else None


def _decide(
    rt: Any, session: Any, channel: Any, payment: Payment | None, cp: ChannelPayment,
    method: str, require_merchant: bool,
) -> str:
    why = parties_problem(channel, cp, require_merchant)
    if why is None and payment is None:
        why = "unknown_order"
    elif why is None and payment is not None and payment.method != method:
        why = "method_mismatch"
    if why is None and not cp.paid:
        return PENDING
    if why is None and payment is not None and cp.amount != payment.amount:
        why = "amount_mismatch"
    if why is not None:
        if not cp.paid:
            return f"rejected:{why}"  # news about an order that is not ours: nothing was paid
        return hold_for_review(rt, session, method, cp, why, payment)
    assert payment is not None
    now = utcnow()
    paid_at = cp.paid_at or now
    changed = session.execute(
        update(Payment)
        .where(Payment.id == payment.id, Payment.state == "wait_pay")
        .values(state="ok", pay_order=cp.trade_no, paid_at=paid_at, paid_amount=cp.amount,
                version=Payment.version + 1)
    ).rowcount
    if changed:
        # The ORM UPDATE synchronised the loaded row (synchronize_session="auto"): no re-read.
        rt.hooks.defer(session, "payment_success", key=f"payment_success:{payment.id}",
                       payment=payment_dict(payment))
        return APPLIED
    session.refresh(payment)
    if payment.state != "close":
        return DUPLICATE
    return _late(rt, session, payment, cp, paid_at)


def hold_for_review(
    rt: Any, session: Any, method: str, cp: ChannelPayment, why: str, payment: Payment | None,
) -> str:
    """A verified payment we cannot apply (DECISIONS.md 26): never dropped. It becomes an open
    reconciliation item of today (``notification_rejected``, the reason in ``channel_state``)
    and an alarm, in the transaction that records the notification."""
    from gonglun.plugins.payment.models import ReconItem
    from gonglun.plugins.payment.money import SHANGHAI

    now = utcnow()
    order = (cp.payment_order or "?")[:64]
    insert_ignore(session, ReconItem.__table__, {
        "bill_date": now.astimezone(SHANGHAI).strftime("%Y-%m-%d"), "channel": method,
        "kind": REVIEW_KIND, "payment_order": order, "trade_no": (cp.trade_no or None),
        "local_amount": payment.amount if payment is not None else None,
        "channel_amount": cp.amount, "local_state": payment.state if payment else None,
        "channel_state": why[:32], "status": "open", "created_at": now,
    })
    rt.hooks.defer(session, "alarm", key=f"alarm:review:{method}:{order}:{why}", kind=why,
                   message=f"已验签的渠道付款无法入账({why}): {method} {order}",
                   data={"payment_order": order, "channel": method, "reason": why,
                         "channel_amount": cp.amount, "trade_no": cp.trade_no,
                         "payment_id": payment.id if payment is not None else None})
    return f"rejected:{why}"


#: Reconciliation item kind of verified payments held for review.
REVIEW_KIND = "notification_rejected"


def _late(rt: Any, session: Any, payment: Payment, cp: ChannelPayment, paid_at: Any) -> str:
    """A verified payment for an order we closed (DECISIONS.md 7): never ignored."""
    policy = late_policy(rt)
    values: dict[str, Any] = {"late": True, "pay_order": cp.trade_no, "paid_at": paid_at,
                              "paid_amount": cp.amount, "version": Payment.version + 1}
    if policy == "accept":
        values["state"] = "ok"
    changed = session.execute(
        update(Payment)
        .where(Payment.id == payment.id, Payment.state == "close", Payment.late.is_(False))
        .values(**values)
    ).rowcount
    if not changed:
        return DUPLICATE
    session.refresh(payment)
    data = payment_dict(payment)
    rt.hooks.defer(session, "payment_late", key=f"payment_late:{payment.id}", payment=data,
                   resolution=policy)
    rt.hooks.defer(session, "alarm", key=f"alarm:late:{payment.id}", kind="late_payment",
                   message=f"订单关闭后收到付款: {payment.payment_order} ({policy})",
                   data={"payment_id": payment.id, "policy": policy, "amount": cp.amount})
    if policy == "accept":
        rt.hooks.defer(session, "payment_success", key=f"payment_success:{payment.id}",
                       payment=data)
    return LATE
