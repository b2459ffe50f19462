"""Account recovery: candidates by ID number, the reset (FACE-14) and the reset token
(decision 16: 256 random bits, stored hashed, single use, 2 h, bound to the user, the face
check, the address, the agent and the fingerprint). Any mismatch answers 非法请求."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gonglun.errors import GonglunError
from gonglun.plugins.face import limits, trail
from gonglun.plugins.face.clock import now
from gonglun.plugins.face.crypto import keys
from gonglun.plugins.face.idcard import normalize_code
from gonglun.plugins.face.identities import candidates
from gonglun.plugins.face.messages import MSG_NOT_BOUND, refuse_retrieve
from gonglun.plugins.face.models import FaceResetToken, FaceVerification
from gonglun.plugins.face.trail import Caller

RESET_META = ("login_security", "login_address_security")
MSG_ILLEGAL = "非法请求"


def lookup(rt: Any, caller: Caller, code: Any) -> list[dict[str, Any]]:
    limits.check(rt, "recovery_lookup", limits.address(caller.ip))
    outcome = "ok"
    try:
        refuse_retrieve(rt, caller)
        number = normalize_code(code)
        limits.check(rt, "recovery_lookup", f"id:{keys(rt).index(number)}")
        with rt.db.read() as session:
            found = candidates(rt, session, number)
        if not found:
            raise GonglunError("face.idcard_not_bound", MSG_NOT_BOUND, status=404)
        return found
    except GonglunError as exc:
        outcome = exc.error
        raise
    finally:
        trail.record(rt, caller, "lookup", "retrieve", outcome)


def reset_account(rt: Any, session: Session, user_id: int) -> None:
    """FACE-14: phone and email unbound through the binding hooks, login restrictions removed,
    every session signed out; ``account_reset`` follows the commit with the old contacts."""
    from gonglun.accounts import delete_meta, revoke_all_tokens
    from gonglun.accounts.bindings import change_binding
    from gonglun.accounts.models import User

    user = session.get(User, user_id)
    assert user is not None
    # Read before the unbinding: the old phone and email are told of the reset (FACE-13).
    contacts = {kind: str(getattr(user, kind)) for kind in ("phone", "email")
                if getattr(user, kind) is not None}
    for kind in contacts:
        change_binding(rt, session, user_id, kind, "unbind")
    for key in RESET_META:
        delete_meta(session, user_id, key)
    revoke_all_tokens(session, user_id)
    rt.hooks.defer(session, "account_reset", key=f"account_reset:face:{user_id}:"
                   f"{secrets.token_hex(8)}", user_id=user_id, contacts=contacts)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(rt: Any, session: Session, face: FaceVerification, caller: Caller) -> str:
    token = secrets.token_urlsafe(32)
    at = now(rt)
    ttl = float(rt.config.get("face.reset_token_ttl_s", 7200))
    session.execute(FaceResetToken.__table__.insert(), {
        "token_hash": _digest(token), "user_id": face.user_id, "verification_id": face.id,
        "ip": caller.ip[:64], "ua_hash": caller.ua_hash, "fingerprint": caller.fingerprint,
        "created_at": at, "expires_at": at + dt.timedelta(seconds=ttl), "used_at": None})
    return token


def _same(a: str | None, b: str | None) -> bool:
    return hmac.compare_digest((a or "").encode(), (b or "").encode())


def redeem(rt: Any, caller: Caller, token: Any, password: Any) -> dict[str, Any]:
    """``POST /v1/account/reset``: the new password, once, from where the face check passed."""
    from gonglun.accounts import revoke_all_tokens, set_password
    from gonglun.accounts.models import User

    outcome, user_id = "face.reset_invalid", None
    try:
        if caller.user is not None or not isinstance(token, str) or not 20 <= len(token) <= 64:
            raise GonglunError("face.reset_invalid", MSG_ILLEGAL, status=403)
        at = now(rt)
        with rt.db.write() as session:
            row = session.scalar(select(FaceResetToken).where(
                FaceResetToken.token_hash == _digest(token)))
            if row is None or row.used_at is not None or row.expires_at <= at or not (
                    _same(row.ip, caller.ip) and _same(row.ua_hash, caller.ua_hash)
                    and _same(row.fingerprint, caller.fingerprint)):
                raise GonglunError("face.reset_invalid", MSG_ILLEGAL, status=403)
            user_id = row.user_id
            face = session.get(FaceVerification, row.verification_id)
            user = session.get(User, row.user_id)
            if face is None or face.status != "ok" or face.user_id != row.user_id or (
                    user is None or user.status != "active"):
                raise GonglunError("face.reset_invalid", MSG_ILLEGAL, status=403)
            set_password(session, row.user_id, password)  # refuses a weak one, changing nothing
            used = session.execute(
                update(FaceResetToken).where(FaceResetToken.id == row.id,
                                             FaceResetToken.used_at.is_(None))
                .values(used_at=at), execution_options={"synchronize_session": False}).rowcount
            if not used:
                raise GonglunError("face.reset_invalid", MSG_ILLEGAL, status=403)
            revoke_all_tokens(session, row.user_id)
            login = user.login
        outcome = "ok"
        return {"login": login, "user_id": user_id}
    except GonglunError as exc:
        outcome = exc.error
        raise
    finally:
        trail.record(rt, caller, "reset", "retrieve", outcome, user_id=user_id)
