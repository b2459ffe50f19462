"""Signing a user out reaches their open websockets (issue 17, 7).

Every revocation (logout, one session, every session: ban, password, account reset, delete,
``other_accounts``) marks the user in its database session; once that transaction commits,
``SignOutNotices`` publishes on the user's sign-out channel, and each of their sockets checks
its own session at once (``still_valid``) and closes when it no longer works. The sockets
also check every ``auth.ws_recheck_s`` seconds and before each push, so a lost message (a
Redis restart, a command run in another process) still closes them within seconds and no push
reaches a revoked session.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from gonglun.accounts.models import ApiToken, User
from gonglun.db import utcnow

log = logging.getLogger(__name__)

#: ``Session.info`` key: the users signed out in this transaction.
SIGNED_OUT = "gonglun.signed_out"


def mark(session: Session, user_id: int) -> None:
    """Note that ``user_id`` lost sessions in this transaction (told after commit)."""
    session.info.setdefault(SIGNED_OUT, set()).add(int(user_id))


def channel(rt: Any, user_id: int) -> str:
    return str(rt.keys("signout", user_id))


class SignOutNotices:
    """After commit, one message per signed-out user; a failure is left to the re-checks."""

    def __init__(self, rt: Any):
        self.rt = rt

    def listen(self, factory: Any) -> None:
        event.listen(factory, "after_commit", self.after_commit)

    def after_commit(self, session: Session) -> None:
        if session.in_nested_transaction():  # a savepoint released: wait for the commit
            return
        for user_id in session.info.pop(SIGNED_OUT, None) or ():
            try:
                self.rt.redis.publish(channel(self.rt, user_id), "signed_out")
            except Exception:
                log.warning("sign-out of user %s not published; sockets re-check anyway",
                            user_id, exc_info=True)


def usable(user: User | None) -> bool:
    """An active user, or one whose ban is over."""
    if user is None:
        return False
    if user.status == "active":
        return True
    return (user.status == "banned" and user.banned_until is not None
            and user.banned_until <= utcnow())


def still_valid(rt: Any, user_id: int, digest: str | None) -> bool:
    """Does the session a socket was opened with still work? ``digest``: its token's SHA-256.

    A token the core issued must be live (not revoked, not expired) and the user's; a token
    only a plugin knows (``resolve_token``, no row here) follows its user's status.
    """
    with rt.db.read() as session:
        if digest:
            token = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
            if token is not None and (token.user_id != user_id or token.revoked_at is not None
                                      or token.expires_at <= utcnow()):
                return False
        return usable(session.get(User, user_id))


__all__ = ["SIGNED_OUT", "SignOutNotices", "channel", "mark", "still_valid", "usable"]
