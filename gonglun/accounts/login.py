"""Finishing a login, whatever proved who the user is (CORE-25 ``user_login``, ACC-08).

``finish_login`` admits the account (bans, deletion), issues the token with what the session
list shows (platform, user agent, address), and with ``other_accounts`` (or when
``accounts.multi_device`` is off) revokes every other token of the user in the same
transaction: their devices answer 401 from then on. ``user_login`` runs after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from gonglun.accounts.service import (
    _lift_expired_ban,
    _refuse_inactive,
    get_user,
    issue_token,
    revoke_all_tokens,
    user_dict,
)
from gonglun.db import utcnow

#: Token platforms a client may declare; the WeChat ones are also set by WeChat sign-in.
PLATFORMS = ("web", "h5", "app", "pc", "mp", "mini")


@dataclass(frozen=True)
class Client:
    """Who is logging in from where: the request's side of a login."""

    ip: str
    user_agent: str | None = None
    platform: str = "web"
    other_accounts: bool = False


def finish_login(rt: Any, session: Session, user_id: int, method: str,
                 client: Client) -> dict[str, Any]:
    user = get_user(session, user_id)
    if not _lift_expired_ban(session, user, utcnow()):
        raise _refuse_inactive(user)
    ttl = int(rt.config.get("auth.token_ttl_days", 30))
    token = issue_token(session, user.id, ttl_days=ttl, label=method, platform=client.platform,
                        user_agent=client.user_agent, ip=client.ip)
    single = not bool(rt.config.get("accounts.multi_device", True))
    signed_out = 0
    if client.other_accounts or single:
        signed_out = revoke_all_tokens(session, user.id, keep=token)
    return {"token": token, "user": user_dict(user), "signed_out": signed_out}


def announce(rt: Any, user_id: int, method: str, client: Client) -> None:
    """``user_login`` (CORE-25): after the login committed; risk alerts listen (OPS-09)."""
    rt.hooks.do_action("user_login", user_id=user_id, method=method, ip=client.ip,
                       platform=client.platform, user_agent=client.user_agent or "")


def login(rt: Any, user_id: int, method: str, client: Client) -> dict[str, Any]:
    """Finish a login in a transaction of its own, then announce it."""
    with rt.db.write() as session:
        data = finish_login(rt, session, user_id, method, client)
    announce(rt, user_id, method, client)
    return data
