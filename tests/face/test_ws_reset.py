"""A face account reset signs every session out, and their open websockets close at once
(issue 17, 7; the other kinds of sign-out are in tests/accounts/test_ws_signout.py)."""

from __future__ import annotations

from tests.accounts.sockets import open_socket, receives_push, signed_out
from tests.face.conftest import ID_A, NAME_A, FaceLive


def test_an_account_reset_closes_the_old_sockets(face: FaceLive) -> None:
    face.rt.config.data.setdefault("auth", {})["ws_recheck_s"] = 60.0  # the message does it
    uid, old = face.user("erin", quota=2)
    assert face.verify(old, "pass", name=NAME_A, code=ID_A)["status"] == "ok"
    ws = open_socket(face.base, headers={"Authorization": old["Authorization"]})
    receives_push(face.rt, ws, uid, 1)
    face.tick(6)
    found = face.http.post("/v1/account/recovery/lookup", json={"code": ID_A},
                           headers=face.headers())
    assert found.status_code == 200, found.text
    [candidate] = found.json()["data"]
    passed = face.verify(face.headers(), "pass", type="retrieve", id=candidate["id"],
                         name=NAME_A, code=ID_A)
    assert passed["status"] == "ok", passed
    signed_out(ws)
    assert face.http.get("/v1/me", headers=old).status_code == 401
