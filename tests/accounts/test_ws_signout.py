"""Signing a user out closes their open websockets within seconds, and no push reaches a
revoked session (issue 17, 7): one session revoked, ``other_accounts``, admin revoke, ban,
password change (the CLI's code path), signing out everywhere, a revocation whose message
was lost. Account reset is in tests/face/test_ws_reset.py. A real websocket client against
the served app."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import update

from gonglun.accounts.models import ApiToken
from gonglun.db import utcnow
from tests.accounts.conftest import Live
from tests.accounts.sockets import open_socket, receives_push, signed_out
from tests.accounts.test_sessions import account, login


@pytest.fixture
def recheck(live: Live) -> Iterator[Any]:
    """Set ``auth.ws_recheck_s`` for one test (long by default: the message must do it)."""
    auth = live.rt.config.data.setdefault("auth", {})
    before = auth.get("ws_recheck_s")

    def set_(seconds: float) -> None:
        auth["ws_recheck_s"] = seconds

    set_(60.0)
    yield set_
    if before is None:
        auth.pop("ws_recheck_s", None)
    else:
        auth["ws_recheck_s"] = before


def url(live: Live) -> str:
    return str(live.http.base_url).rstrip("/")


def me(live: Live, token: str) -> int:
    return int(live.http.get("/v1/me", headers=live.bearer(token)).json()["data"]["id"])


def ticket(live: Live, token: str) -> str:
    made = live.http.post("/v1/ws/tickets", headers=live.bearer(token))
    assert made.status_code == 201, made.text
    return str(made.json()["data"]["ticket"])


def staff(live: Live) -> dict[str, str]:
    from gonglun.accounts import create_user, issue_token

    with live.rt.db.write() as session:
        admin = create_user(session, f"ws-admin-{utcnow().timestamp():.6f}",
                            "long enough password", role="admin")
        return live.bearer(issue_token(session, admin.id))


def test_revoking_one_session_closes_its_sockets_only(live: Live, recheck: Any) -> None:
    phone, first = account(live)
    second = login(live, phone)
    uid = me(live, first)
    by_ticket = open_socket(url(live), ticket=ticket(live, first))
    by_header = open_socket(url(live), headers=live.bearer(first))
    survivor = open_socket(url(live), subprotocol_token=second)
    sessions = live.http.get("/v1/me/sessions", headers=live.bearer(second)).json()["data"]
    other = next(s["id"] for s in sessions["sessions"] if not s["current"])
    gone = live.http.delete(f"/v1/me/sessions/{other}", headers=live.bearer(second))
    assert gone.status_code == 200, gone.text
    signed_out(by_ticket)
    signed_out(by_header)
    receives_push(live.rt, survivor, uid, 1)
    survivor.close()


def test_other_accounts_closes_the_other_devices(live: Live, recheck: Any) -> None:
    phone, first = account(live)
    uid = me(live, first)
    old = open_socket(url(live), ticket=ticket(live, first))
    third = login(live, phone, other_accounts=True)
    signed_out(old)
    fresh = open_socket(url(live), headers=live.bearer(third))
    receives_push(live.rt, fresh, uid, 2)
    fresh.close()


@pytest.mark.parametrize("action", ["tokens/revoke", "ban"])
def test_staff_sign_out_closes_every_socket(live: Live, recheck: Any, action: str) -> None:
    phone, first = account(live)
    second = login(live, phone)
    uid = me(live, first)
    sockets = [open_socket(url(live), ticket=ticket(live, first)),
               open_socket(url(live), headers=live.bearer(second))]
    body = {"reason": "测试封禁"} if action == "ban" else {}
    done = live.http.post(f"/v1/admin/users/{uid}/{action}", json=body, headers=staff(live))
    assert done.status_code == 200, done.text
    for ws in sockets:
        signed_out(ws)


def test_a_password_change_closes_every_socket(live: Live, recheck: Any) -> None:
    """What ``gonglun users passwd`` runs (accounts.admin.set_password)."""
    from gonglun.accounts.admin import find, set_password

    _, first = account(live)
    uid = me(live, first)
    ws = open_socket(url(live), headers=live.bearer(first))
    with live.rt.db.write() as session:
        set_password(session, find(session, uid), "a brand new password",
                     actor=(None, "tester", "cli"))
    signed_out(ws)


def test_a_lost_message_still_closes_within_seconds(live: Live, recheck: Any) -> None:
    """A revocation nobody announced (another process on its own Redis): the periodic check
    closes the socket; a push published meanwhile never reaches it."""
    _, first = account(live)
    uid = me(live, first)
    recheck(1.0)
    quiet = open_socket(url(live), headers=live.bearer(first))
    with live.rt.db.write() as session:
        session.execute(update(ApiToken).where(ApiToken.user_id == uid)
                        .values(revoked_at=utcnow()))
    signed_out(quiet)


def test_no_push_reaches_a_revoked_session(live: Live, recheck: Any) -> None:
    _, first = account(live)
    uid = me(live, first)
    ws = open_socket(url(live), headers=live.bearer(first))
    receives_push(live.rt, ws, uid, 3)
    with live.rt.db.write() as session:  # unannounced, and the next check is a minute away
        session.execute(update(ApiToken).where(ApiToken.user_id == uid)
                        .values(revoked_at=utcnow()))
    live.rt.push(uid, {"event": "paid", "secret": "for the account's owner only"})
    assert signed_out(ws) == []


@pytest.mark.parametrize("keep", [False, True])
def test_signing_out_everywhere_closes_every_socket(live: Live, recheck: Any, keep: bool
                                                    ) -> None:
    """``DELETE /v1/me/sessions``: every session and its sockets; with ``keep_current``
    the caller's own session and socket stay."""
    phone, first = account(live)
    second = login(live, phone)
    uid = me(live, first)
    other = open_socket(url(live), ticket=ticket(live, first))
    mine = open_socket(url(live), headers=live.bearer(second))
    query = "?keep_current=true" if keep else ""
    done = live.http.delete(f"/v1/me/sessions{query}", headers=live.bearer(second))
    assert done.status_code == 200, done.text
    assert done.json()["data"] == {"revoked": 1 if keep else 2, "kept_current": keep}
    signed_out(other)
    assert live.http.get("/v1/me", headers=live.bearer(first)).status_code == 401
    if keep:
        receives_push(live.rt, mine, uid, 4)
        mine.close()
        assert live.http.get("/v1/me", headers=live.bearer(second)).status_code == 200
    else:
        signed_out(mine)
        assert live.http.get("/v1/me", headers=live.bearer(second)).status_code == 401
