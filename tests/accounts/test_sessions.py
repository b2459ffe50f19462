"""Sessions: list, revoke, other_accounts (ACC-08), and other users' ids."""

from __future__ import annotations

from tests.accounts.conftest import Live
from tests.accounts.test_register import nick


def account(live: Live) -> tuple[str, str]:
    phone = live.phone()
    code = live.sms(phone, "register")
    made = live.http.post("/v1/registrations", json={
        "type": "phone", "phone": phone, "code": code, "nickname": nick(),
        "password": "a long password"})
    assert made.status_code == 201, made.text
    return phone, str(made.json()["data"]["token"])


def login(live: Live, phone: str, **extra: object) -> str:
    answer = live.http.post("/v1/sessions", json={"login": phone, "password": "a long password",
                                                  **extra},
                            headers={"User-Agent": "GonglunTest/1.0"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["data"]["token"])


def test_list_and_revoke_sessions(live: Live) -> None:
    phone, first = account(live)
    second = login(live, phone, platform="app")
    listed = live.http.get("/v1/me/sessions", headers=live.bearer(second))
    assert listed.status_code == 200, listed.text
    sessions = listed.json()["data"]["sessions"]
    assert len(sessions) == 2
    mine = next(s for s in sessions if s["current"])
    assert mine["platform"] == "app" and mine["user_agent"] == "GonglunTest/1.0"
    assert mine["ip"] == "127.0.0.1" and mine["method"] == "password"
    other = next(s for s in sessions if not s["current"])
    gone = live.http.delete(f"/v1/me/sessions/{other['id']}", headers=live.bearer(second))
    assert gone.status_code == 200, gone.text
    assert live.http.get("/v1/me", headers=live.bearer(first)).status_code == 401
    assert live.http.get("/v1/me", headers=live.bearer(second)).status_code == 200
    again = live.http.delete(f"/v1/me/sessions/{other['id']}", headers=live.bearer(second))
    assert again.status_code == 404


def test_another_users_session_ids_are_404_and_nothing_is_revoked(live: Live) -> None:
    _, victim = account(live)
    _, attacker = account(live)
    victim_id = live.http.get("/v1/me/sessions", headers=live.bearer(victim)).json()[
        "data"]["sessions"][0]["id"]
    before = live.counts()
    for sid in (str(victim_id), "0", "-1", "abc", "9" * 30, "1e3"):
        answer = live.http.delete(f"/v1/me/sessions/{sid}", headers=live.bearer(attacker))
        assert answer.status_code == 404, (sid, answer.text)
    assert live.counts() == before
    assert live.http.get("/v1/me", headers=live.bearer(victim)).status_code == 200
    assert live.http.get("/v1/me/sessions").status_code == 401


def test_other_accounts_signs_out_the_other_devices(live: Live) -> None:
    phone, first = account(live)
    second = login(live, phone)
    third = login(live, phone, other_accounts=True)
    for old in (first, second):
        assert live.http.get("/v1/me", headers=live.bearer(old)).status_code == 401
    assert live.http.get("/v1/me", headers=live.bearer(third)).status_code == 200
    bad = live.http.post("/v1/sessions", json={"login": phone, "password": "a long password",
                                               "other_accounts": "yes"})
    assert bad.status_code == 400 and bad.json()["error"] == "request.invalid_type"
