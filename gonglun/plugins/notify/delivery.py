"""Delivery: one ``notify.deliver`` job per message and channel, exactly one sender at a time.

A job claims its row with a conditional UPDATE (``queued``/``retry`` and due, or ``sending``
with its lease run out) that counts the attempt and takes a lease, calls the provider outside
any transaction, and records the outcome only if its claim still holds (same attempt). So a
redelivered job finds the row ``sent`` or claimed and does nothing; a worker killed before
the provider answered leaves a ``sending`` row whose lease runs out, and the sweeper hands it
to another worker. The one window no vendor lets us close is a worker killed after the
provider accepted and before the outcome was written: that message is sent again
(docs/notify.md).

Errors: ``TransientError`` (timeouts, 5xx, rate limits) → ``retry`` after a backoff from
``notify.retry_s`` (or the vendor's window, if longer) until ``notify.max_attempts``;
``PermanentError`` → ``failed`` at once. A channel's failures never hold up another channel's
job.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update

from gonglun.plugins.notify.counters import now
from gonglun.plugins.notify.models import Delivery
from gonglun.plugins.notify.providers import (
    DeliveryError,
    Outbound,
    ProviderUnavailable,
    TransientError,
    get_provider,
)
from gonglun.plugins.notify.scenes import scenes_for
from gonglun.plugins.notify.service import service

log = logging.getLogger(__name__)
D = Delivery


def _due(at: Any, grace: dt.timedelta | None = None) -> Any:
    """Rows a job may take now: queued or due retries, and claims whose lease ran out."""
    return or_(and_(D.status.in_(("queued", "retry")),
                    D.next_attempt_at <= (at - grace if grace else at)),
               and_(D.status == "sending", D.claimed_until < at))


# Built once: every delivery runs these, with values as parameters (the ORM statement
# building and compiling per call cost more than the delivery's own SQL).
_T = Delivery.__table__
_CLAIM = (_T.update()
          .where(_T.c.id == bindparam("i"), _due(bindparam("now")))
          .values(status="sending", attempts=_T.c.attempts + 1,
                  claimed_until=bindparam("until")))
_ROW = select(_T.c.scene, _T.c.user_id, _T.c.channel, _T.c.address, _T.c.key, _T.c.payload,
              _T.c.attempts, _T.c.created_at).where(_T.c.id == bindparam("i"))
_HELD = (_T.c.id == bindparam("i"), _T.c.status == "sending",
         _T.c.attempts == bindparam("attempt"))
_SENT = _T.update().where(*_HELD).values(
    status=bindparam("status"), claimed_until=None, error=bindparam("error"), reason=None,
    sent_at=bindparam("sent_at"), provider_id=bindparam("provider_id"),
    provider=bindparam("provider"))
_UNSENT = _T.update().where(*_HELD).values(
    status=bindparam("status"), claimed_until=None, error=bindparam("error"),
    reason=bindparam("reason"), next_attempt_at=bindparam("next_at"))


def claim(rt: Any, delivery_id: int) -> Any:
    """Take the delivery for one attempt (status ``sending``, a lease); None when it is not
    due, already sent, or claimed by a live attempt."""
    at = now(rt)
    with rt.db.write() as session:
        conn = session.connection()
        until = at + dt.timedelta(seconds=service(rt).lease_s)
        if conn.execute(_CLAIM, {"i": delivery_id, "now": at, "until": until}).rowcount != 1:
            return None
        return conn.execute(_ROW, {"i": delivery_id}).one()


def deliver(rt: Any, delivery_id: int) -> str:
    """Run one delivery; answers sent, retry, failed or skipped (not ours to run now)."""
    row = claim(rt, delivery_id)
    if row is None:
        return "skipped"
    payload = json.loads(row.payload)
    if payload.get("resend") is False:
        return _finish(rt, delivery_id, row.attempts, "failed",
                       error="a verification code is never sent again")
    scene = scenes_for(rt).get(row.scene)
    rule = scene.channels.get(row.channel) if scene is not None else None
    try:
        provider = get_provider(rt, row.channel)
    except ProviderUnavailable as exc:
        return _finish(rt, delivery_id, row.attempts, "failed", error=f"no provider: {exc}")
    extra = {"at": row.created_at}
    if scene is not None:
        extra.update(category=scene.category, account=scene.account,
                     account_name=scene.account_name)
    message = Outbound(delivery_id, row.key, row.scene, row.user_id, row.address, payload,
                       template_id=rule.template_id if rule is not None else "", extra=extra)
    try:
        provider_id = provider.send(rt, message)
    except DeliveryError as exc:
        return _failed(rt, delivery_id, row.attempts, exc)
    except Exception as exc:  # a provider bug or an SDK surprise: retried, and logged loudly
        log.exception("notify: delivery %s (%s) raised", delivery_id, row.channel)
        return _failed(rt, delivery_id, row.attempts,
                       TransientError("unexpected", f"{type(exc).__name__}: {exc}"))
    return _finish(rt, delivery_id, row.attempts, "sent", provider=provider.name,
                   provider_id=str(provider_id)[:128])


def _failed(rt: Any, delivery_id: int, attempt: int, exc: DeliveryError) -> str:
    svc = service(rt)
    error = f"{exc.code}: {exc.message}"[:2000]
    if not exc.transient or attempt >= svc.max_attempts:
        why = "permanent error" if not exc.transient else f"gave up after {attempt} attempts"
        return _finish(rt, delivery_id, attempt, "failed", error=error, reason=why)
    delay = svc.retry_s[min(attempt, len(svc.retry_s)) - 1] if svc.retry_s else 0.0
    delay = max(delay, exc.retry_after or 0.0) * random.uniform(1.0, 1.1)
    status = _finish(rt, delivery_id, attempt, "retry", error=error,
                     reason=f"transient error, attempt {attempt} of {svc.max_attempts}",
                     next_at=now(rt) + dt.timedelta(seconds=delay))
    if status == "retry":
        svc.enqueue([delivery_id], delay_s=delay)
    return status


def _finish(rt: Any, delivery_id: int, attempt: int, status: str, *, error: str | None = None,
            reason: str | None = None, provider: str | None = None,
            provider_id: str | None = None, next_at: dt.datetime | None = None) -> str:
    """Record the outcome if this attempt still holds the claim (a slower, older attempt whose
    lease ran out must not overwrite a newer one)."""
    params: dict[str, Any] = {"i": delivery_id, "attempt": attempt, "status": status,
                              "error": error}
    if status == "sent":
        statement = _SENT
        params.update(sent_at=now(rt), provider_id=provider_id, provider=provider or "")
    else:
        statement = _UNSENT
        params.update(reason=(reason or "")[:255] or None, next_at=next_at or now(rt))
    with rt.db.write() as session:
        changed = session.connection().execute(statement, params).rowcount
    if not changed:
        log.warning("notify: delivery %s attempt %s lost its claim before recording %s",
                    delivery_id, attempt, status)
        return "skipped"
    if status == "failed":
        log.warning("notify: delivery %s failed: %s", delivery_id, error)
    return status


def sweep(rt: Any, limit: int = 500) -> int:
    """Hand over deliveries whose job was lost: queued or due retries past a grace period,
    and claims whose lease ran out (a killed worker)."""
    svc = service(rt)
    at = now(rt)
    with rt.db.read() as session:
        ids = list(session.scalars(
            select(D.id).where(_due(at, dt.timedelta(seconds=svc.grace_s)))
            .order_by(D.id).limit(limit)))
    svc.enqueue(ids)
    return len(ids)


def retry(rt: Any, ids: list[int]) -> int:
    """Re-arm failed deliveries (an operator fixed their cause); answers how many."""
    with rt.db.write() as session:
        changed = session.execute(
            update(D).where(D.id.in_(ids), D.status == "failed")
            .values(status="retry", attempts=0, next_attempt_at=now(rt), error=None,
                    reason="re-armed by an operator"),
            execution_options={"synchronize_session": False}).rowcount
    service(rt).enqueue(list(ids))
    return int(changed)


def clean(rt: Any) -> dict[str, int]:
    """Daily housekeeping: old counters, spent codes, and deliveries past ``notify.keep_days``
    (their inbox messages stay: they are the user's history)."""
    from sqlalchemy import delete

    from gonglun.plugins.notify.counters import day_of
    from gonglun.plugins.notify.models import Counter, SmsCode

    at = now(rt)
    keep = dt.timedelta(days=float(rt.config.get("notify.keep_days")))
    with rt.db.write() as session:
        counters = session.execute(
            delete(Counter).where(Counter.day < day_of(at - dt.timedelta(days=3)))).rowcount
        codes = session.execute(
            delete(SmsCode).where(SmsCode.expires_at < at - dt.timedelta(days=7))).rowcount
        old = session.execute(
            delete(D).where(D.created_at < at - keep,
                            D.status.notin_(("queued", "sending", "retry")))).rowcount
    return {"counters": counters, "codes": codes, "deliveries": old}
