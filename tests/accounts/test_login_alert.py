"""The remote-login alert (OPS-09): another province, turned on, not for the skipped kinds.

Each alert is followed to the user's inbox (the notify plugin's ``login_alert`` scene, run by
a Dramatiq worker); every skipped login is checked against the outbox, where an alert would be
queued first.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from tests.accounts.conftest import BJ, GD, SH, Live
from tests.accounts.test_sessions import account
from tests.accounts.test_wechat_login import oid, signin
from tests.payment.conftest import wait_until

pytestmark = pytest.mark.usefixtures("worker")


def alerts(live: Live, user_id: int) -> list[Any]:
    from gonglun.hooks.deferred import OutboxEvent

    with live.rt.db.read() as session:
        return list(session.scalars(select(OutboxEvent.payload).where(
            OutboxEvent.key.like(f"login_alert:{user_id}:%"))))


def inbox(live: Live, token: str, count: int) -> list[dict[str, Any]]:
    """The user's ``login_alert`` messages, once ``count`` of them have been delivered."""
    def delivered() -> list[dict[str, Any]] | None:
        answer = live.http.get("/v1/me/messages", params={"scene": "login_alert"},
                               headers=live.bearer(token))
        assert answer.status_code == 200, answer.text
        messages = answer.json()["data"]["messages"]
        return messages if len(messages) >= count else None

    messages: list[dict[str, Any]] = wait_until(delivered, what="the login alert delivered")
    assert len(messages) == count
    return messages


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
    (message,) = inbox(live, token, 1)
    assert "广东" in str(message) and "北京" in str(message)
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
    assert "上海" in str(inbox(live, token, 2)[0])  # newest first


def test_a_wechat_login_does_not_alert(live: Live) -> None:
    phone, token = account(live)
    user_id = live.http.get("/v1/me", headers=live.bearer(token)).json()["data"]["id"]
    on = live.http.put("/v1/me/login-alert", json={"enabled": True},
                       headers=live.bearer(token))
    assert on.status_code == 200, on.text
    # Bind a WeChat of the app platform (not a WeChat client: only the method is skipped).
    openid = oid("a")
    ticket = signin(live, "app", live.wechat_code("app", openid)).json()["data"]["ticket"]
    bound = live.http.post("/v1/registrations", json={
        "type": "wechat_bind", "ticket": ticket, "phone": phone,
        "code": live.sms(phone, "wechat_bind")})
    assert bound.status_code == 201, bound.text
    login_from(live, phone, GD)
    wechat = live.http.post("/v1/sessions/wechat", headers={"X-Forwarded-For": BJ}, json={
        "platform": "app", "code": live.wechat_code("app", openid)})
    assert wechat.status_code == 201, wechat.text
    assert wechat.json()["data"]["user"]["id"] == user_id
    assert alerts(live, user_id) == []
    # The WeChat login moved the last province on: a password login from GD now alerts.
    login_from(live, phone, GD)
    assert len(alerts(live, user_id)) == 1
    (message,) = inbox(live, token, 1)
    assert "广东" in str(message) and "北京" in str(message)
