"""A user's own sessions (live tokens): list, revoke one, note when each was last used."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gonglun.accounts.models import ApiToken
from gonglun.accounts.service import token_hash
from gonglun.accounts.signout import mark
from gonglun.db import utcnow
from gonglun.errors import not_found

log = logging.getLogger(__name__)
#: ``last_seen_at`` is written at most this often per token (a Redis key gates the write).
SEEN_EVERY_S = 300


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def list_sessions(session: Session, user_id: int, current: str | None) -> list[dict[str, Any]]:
    now = utcnow()
    mine = token_hash(current) if current else None
    rows = session.scalars(select(ApiToken).where(
        ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None), ApiToken.expires_at > now,
    ).order_by(ApiToken.id.desc()).limit(200))
    return [{"id": t.id, "method": t.label, "platform": t.platform, "user_agent": t.user_agent,
             "ip": t.ip, "created_at": _iso(t.created_at), "last_seen_at": _iso(t.last_seen_at),
             "expires_at": _iso(t.expires_at), "current": t.token_hash == mine} for t in rows]


def revoke_session(session: Session, user_id: int, session_id: int) -> None:
    """Revoke one of the user's own live tokens; anybody else's (or none) is a 404."""
    done = session.execute(
        update(ApiToken).where(ApiToken.id == session_id, ApiToken.user_id == user_id,
                               ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow()), execution_options={"synchronize_session": False}).rowcount
    if not done:
        raise not_found("account.session_not_found", "会话不存在或已退出")
    mark(session, user_id)  # its open websockets close after commit


def touch(rt: Any, token: str) -> None:
    """Record that ``token`` was used now, at most once per ``SEEN_EVERY_S``; never raises."""
    digest = token_hash(token)
    try:
        if not rt.redis.set(rt.keys("seen", digest[:32]), "1", nx=True, ex=SEEN_EVERY_S):
            return
        with rt.db.write() as session:
            session.execute(update(ApiToken).where(ApiToken.token_hash == digest)
                            .values(last_seen_at=utcnow()),
                            execution_options={"synchronize_session": False})
    except Exception:
        log.warning("could not record a token's last use", exc_info=True)
