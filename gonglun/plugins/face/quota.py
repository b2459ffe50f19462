"""The ``face_number`` quota (FACE-04..06, PAY-14) in user meta, changed only through keyed
events: a payment credits once (``payment:<id>``), the free grant happens once per user
(``free:<id>``), a completed comparison uses one unit once (``use:<verification>``). The meta
value moves by compare-and-set, so racing writers never lose an update or go below zero."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from gonglun.accounts.models import UserMeta
from gonglun.db import insert_ignore
from gonglun.plugins.face.clock import now
from gonglun.plugins.face.models import FaceQuotaEvent

META = "face_number"


def _value(raw: str | None) -> int:
    try:
        return max(0, int(raw or 0))
    except ValueError:
        return 0


def read(session: Session, user_id: int) -> int:
    from gonglun.accounts import get_meta

    return _value(get_meta(session, user_id, META))


def _move(session: Session, user_id: int, delta: int) -> int:
    """Add ``delta`` (never below 0); answers the units actually moved."""
    from gonglun.accounts import get_meta

    for _ in range(10):
        raw = get_meta(session, user_id, META)
        if raw is None:
            if delta <= 0:
                return 0
            if insert_ignore(session, UserMeta.__table__,
                             {"user_id": user_id, "key": META, "value": str(delta)}):
                return delta
            continue
        current = _value(raw)
        target = max(0, current + delta)
        if target == current:
            return 0
        done = session.execute(
            update(UserMeta).where(UserMeta.user_id == user_id, UserMeta.key == META,
                                   UserMeta.value == raw).values(value=str(target)),
            execution_options={"synchronize_session": False}).rowcount
        if done:
            return target - current
    raise RuntimeError(f"face_number of user {user_id} kept changing under us")


def apply(rt: Any, session: Session, user_id: int, key: str, delta: int) -> bool:
    """Record event ``key`` and move the quota by ``delta``; False when ``key`` was done."""
    if not insert_ignore(session, FaceQuotaEvent.__table__, {
            "key": key, "user_id": user_id, "delta": delta, "created_at": now(rt)}):
        return False
    moved = _move(session, user_id, delta)
    if moved != delta:
        session.execute(update(FaceQuotaEvent).where(FaceQuotaEvent.key == key)
                        .values(delta=moved), execution_options={"synchronize_session": False})
    return True


def grant_free(rt: Any, session: Session, user_id: int) -> bool:
    """``face.free_number`` units, once per user (FACE-05)."""
    units = int(rt.config.get("face.free_number", 0) or 0)
    return units > 0 and apply(rt, session, user_id, f"free:{user_id}", units)


def credit_payment(rt: Any, payment: dict[str, Any]) -> bool:
    """A paid ``face_number`` order adds ``face.units_per_payment`` (1) to its user, once."""
    user_id = payment.get("user_id")
    if payment.get("scene") != META or payment.get("state") not in ("ok",) or not user_id:
        return False
    units = int(rt.config.get("face.units_per_payment", 1) or 1)
    with rt.db.write() as session:
        return apply(rt, session, int(user_id), f"payment:{int(payment['id'])}", units)


def consume(rt: Any, session: Session, user_id: int, verification_id: int) -> bool:
    return apply(rt, session, user_id, f"use:{verification_id}", -1)
