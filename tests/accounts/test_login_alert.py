"""The remote-login alert (OPS-09): another province, turned on, not for the skipped kinds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tests.accounts.conftest import BJ, GD, SH, Live
from tests.accounts.test_sessions import account


def alerts(live: Live, user_id: int) -> list[Any]:
    from gonglun.hooks.deferred import OutboxEvent

    with live.rt.db.read() as session:
        return list(session.scalars(select(OutboxEvent.payload).where(
            OutboxEvent.key.like(f"login_alert:{user_id}:%"))))


def login_from(live: Live, phone: str, ip: str, **extra: Any) -> Any:
    headers = {"X-Forwarded-For": ip, **extra.pop("headers", {})}
    answer = live.http.post("/v1/sessions", json={"login": phone, "password": "a long password",
                                                  **extra}, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()["data"]


def test_alert_for_another_province_only_when_turned_on(live: Live) -> None:
    phone, token = account(live)
    user_id = live.http.get("/v1/me", headers=live.bearer(token)).json()["data"]["id"]
    login_from(live, phone, GD)
    login_from(live, phone, BJ)  # another province, but the alert is off
    assert alerts(live, user_id) == []
    on = live.http.put("/v1/me/login-alert", json={"enabled": True},
                       headers=live.bearer(token))
    assert on.status_code == 200, on.text
    login_from(live, phone, BJ)  # same province as last time
    assert alerts(live, user_id) == []
    login_from(live, phone, GD)
    (sent,) = alerts(live, user_id)
    assert "广东" in sent and "北京" in sent and "login_alert" in sent
    # Skipped: WeChat clients (the WeChat browser, mini programs) and SMS logins.
    login_from(live, phone, SH, headers={"User-Agent": "Mozilla/5.0 MicroMessenger/8.0"})
    login_from(live, phone, BJ, platform="mini")
    code = live.sms(phone, "login")
    sms = live.http.post("/v1/sessions", json={"phone": phone, "code": code},
                         headers={"X-Forwarded-For": GD})
    assert sms.status_code == 201, sms.text
    assert len(alerts(live, user_id)) == 1
    # An address the database does not know: no alert, the last province stays.
    login_from(live, phone, "8.8.8.8")
    login_from(live, phone, SH)
    assert len(alerts(live, user_id)) == 2
