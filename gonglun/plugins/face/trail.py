"""The recovery audit trail: every attempt and its outcome, written in a transaction of its
own so a refusal (whose business transaction rolls back) is recorded too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from gonglun.plugins.face.clock import now
from gonglun.plugins.face.models import FaceAudit


@dataclass(frozen=True)
class Caller:
    """Who is asking: the logged-in user (or None) and where from."""

    user: Any
    ip: str
    user_agent: str
    fingerprint: str | None

    @property
    def ua_hash(self) -> str:
        import hashlib

        return hashlib.sha256(self.user_agent.encode()).hexdigest()


def record(rt: Any, caller: Caller, action: str, scene: str, outcome: str, *,
           user_id: int | None = None, identity_id: int | None = None,
           verification_id: int | None = None, session: Any = None) -> None:
    row = {"action": action, "scene": scene, "outcome": outcome[:64], "user_id": user_id,
           "requester_id": caller.user.id if caller.user is not None else None,
           "identity_id": identity_id, "verification_id": verification_id,
           "ip": caller.ip[:64], "user_agent": caller.user_agent[:255] or None,
           "fingerprint": caller.fingerprint, "created_at": now(rt)}
    if session is not None:
        session.execute(FaceAudit.__table__.insert(), row)
        return
    with rt.db.write() as own:
        own.execute(FaceAudit.__table__.insert(), row)


def entries(rt: Any, *, user_id: int | None, before: int | None, limit: int) -> list[dict]:
    query = select(FaceAudit).order_by(FaceAudit.id.desc()).limit(limit)
    if user_id is not None:
        query = query.where(FaceAudit.user_id == user_id)
    if before is not None:
        query = query.where(FaceAudit.id < before)
    with rt.db.read() as session:
        return [{c: getattr(row, c) for c in (
            "id", "action", "scene", "outcome", "user_id", "requester_id", "identity_id",
            "verification_id", "ip", "user_agent", "fingerprint")}
            | {"created_at": row.created_at.isoformat()} for row in session.scalars(query)]
