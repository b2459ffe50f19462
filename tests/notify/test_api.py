"""The inbox, notification settings and the delivery log over HTTP: paging, ownership,
stable error ids for bad input, and nothing changed by a refused request."""

from __future__ import annotations

import json
from typing import Any

import pytest
from falcon import testing

from gonglun.api import create_app
from tests.notify.conftest import REFUND_DATA


def make_user(rt: Any, login: str, role: str = "user") -> tuple[int, dict[str, str]]:
    from gonglun.accounts import create_user, issue_token

    with rt.db.write() as session:
        user = create_user(session, login, "long enough password", role=role)
        return user.id, {"Authorization": f"Bearer {issue_token(session, user.id)}"}


def notify_now(rt: Any, user_id: int, n: int) -> None:
    """Fan a refund notice out and run its deliveries here (inbox and websocket work without
    any vendor; the vendor channels are unavailable in this configuration)."""
    from gonglun.plugins.notify import delivery
    from gonglun.plugins.notify.service import service

    with rt.db.write() as session:
        ids = service(rt).fan_out(session, "payment_refund", user_id,
                                  {**REFUND_DATA, "refund_id": n}, f"api:{n}")
    for delivery_id in ids:
        assert delivery.deliver(rt, delivery_id) == "sent"


@pytest.fixture
def api(rt: Any) -> Any:
    return testing.TestClient(create_app(rt=rt))


def test_messages_are_paged_counted_and_private(rt: Any, api: Any) -> None:
    alice, auth_a = make_user(rt, "alice")
    bob, auth_b = make_user(rt, "bob")
    for n in range(5):
        notify_now(rt, alice, n)
    notify_now(rt, bob, 99)
    first = api.simulate_get("/v1/me/messages", headers=auth_a, params={"limit": 2}).json["data"]
    assert first["unread"] == 5 and len(first["messages"]) == 2
    more = api.simulate_get("/v1/me/messages", headers=auth_a,
                            params={"limit": 2, "before": first["next_before"]}).json["data"]
    ids = [m["id"] for m in first["messages"] + more["messages"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4
    bobs = api.simulate_get("/v1/me/messages", headers=auth_b).json["data"]["messages"]
    assert len(bobs) == 1 and bobs[0]["id"] not in ids

    # Marking: another user's id is ignored, not an error and not an oracle.
    marked = api.simulate_post("/v1/me/messages/read", headers=auth_a,
                               json={"ids": [ids[0], bobs[0]["id"]]}).json["data"]
    assert marked == {"marked": 1, "unread": 4}
    unread = api.simulate_get("/v1/me/messages", headers=auth_a,
                              params={"unread": "true"}).json["data"]
    assert ids[0] not in [m["id"] for m in unread["messages"]]
    assert api.simulate_get("/v1/me/messages", headers=auth_b).json["data"]["unread"] == 1
    everything = api.simulate_post("/v1/me/messages/read", headers=auth_a, json={"all": True})
    assert everything.json["data"] == {"marked": 4, "unread": 0}
    assert api.simulate_get("/v1/me/messages").status_code == 401


@pytest.mark.parametrize(("body", "status", "error"), [
    ({}, 400, "request.missing_field"),
    ({"ids": []}, 400, "request.missing_field"),
    ({"ids": "1"}, 400, "request.missing_field"),
    ({"ids": ["1"]}, 400, "request.invalid_type"),
    ({"ids": [True]}, 400, "request.invalid_type"),
    ({"ids": [0]}, 400, "request.invalid_type"),
    ({"ids": [2**63]}, 400, "request.invalid_type"),
    ({"ids": list(range(1, 502))}, 400, "request.invalid_type"),
    ({"all": "yes"}, 400, "request.invalid_type"),
    ("not json", 400, "request.invalid_json"),
    ({"ids": [1], "pad": "x" * 2_000_000}, 413, "request.too_large"),
])
def test_marking_refuses_bad_input_and_changes_nothing(rt: Any, api: Any, body: Any,
                                                       status: int, error: str) -> None:
    user_id, auth = make_user(rt, "carol")
    notify_now(rt, user_id, 1)
    raw = body if isinstance(body, str) else json.dumps(body)
    answer = api.simulate_post("/v1/me/messages/read", headers=auth, body=raw)
    assert (answer.status_code, answer.json["error"]) == (status, error)
    assert api.simulate_get("/v1/me/messages", headers=auth).json["data"]["unread"] == 1


@pytest.mark.parametrize(("params", "error"), [
    ({"limit": "0"}, "request.out_of_range"), ({"limit": "101"}, "request.out_of_range"),
    ({"before": "-1"}, "request.out_of_range"), ({"before": "x"}, "request.invalid_type"),
    ({"unread": "maybe"}, "request.invalid_choice"),
    ({"scene": "A;drop"}, "request.invalid_choice"),
])
def test_message_listing_refuses_bad_parameters(rt: Any, api: Any, params: dict[str, str],
                                                error: str) -> None:
    _, auth = make_user(rt, "dave")
    answer = api.simulate_get("/v1/me/messages", headers=auth, params=params)
    assert (answer.status_code, answer.json["error"]) == (400, error)


def test_settings_lock_money_and_security_notices(rt: Any, api: Any) -> None:
    _, auth = make_user(rt, "erin")
    view = api.simulate_get("/v1/me/notification-settings", headers=auth).json["data"]
    scenes = {s["scene"]: s for s in view["scenes"]}
    assert set(scenes) == {"payment_refund", "payment_success", "identify_close",
                           "identify_timeout_close", "account_reset",
                           "login_alert"}  # no staff, no codes
    assert scenes["payment_refund"]["locked"] is True
    assert scenes["identify_close"]["channels"]["app"] == {"enabled": True, "locked": False}
    assert scenes["identify_close"]["channels"]["inbox"] == {"enabled": True, "locked": True}

    changed = api.simulate_put("/v1/me/notification-settings", headers=auth,
                               json={"scenes": {"identify_close": {"app": False}}})
    assert changed.status_code == 200
    after = {s["scene"]: s for s in changed.json["data"]["scenes"]}
    assert after["identify_close"]["channels"]["app"]["enabled"] is False
    again = api.simulate_put("/v1/me/notification-settings", headers=auth,
                             json={"scenes": {"identify_close": {"app": True}}})
    assert {s["scene"]: s for s in again.json["data"]["scenes"]}["identify_close"][
        "channels"]["app"]["enabled"] is True


@pytest.mark.parametrize(("scenes", "error"), [
    ({"payment_refund": {"email": False}}, "notify.setting_locked"),
    ({"identify_close": {"inbox": False}}, "notify.setting_locked"),
    ({"identify_close": {"app": False}, "account_reset": {"app": False}},
     "notify.setting_locked"),
    ({"alarm": {"sms": False}}, "notify.unknown_scene"),  # staff only
    ({"wechat_reg": {"sms": False}}, "notify.unknown_scene"),
    ({"nope": {"app": False}}, "notify.unknown_scene"),
    ({"identify_close": {"sms": False}}, "notify.unknown_channel"),
    ({"identify_close": {"app": "off"}}, "request.invalid_type"),
    ({"identify_close": {}}, "request.invalid_type"),
    ({"identify_close": ["app"]}, "request.invalid_type"),
])
def test_settings_refuse_bad_changes_whole(rt: Any, api: Any, scenes: dict[str, Any],
                                           error: str) -> None:
    _, auth = make_user(rt, "fred")
    before = api.simulate_get("/v1/me/notification-settings", headers=auth).json["data"]
    answer = api.simulate_put("/v1/me/notification-settings", headers=auth,
                              json={"scenes": scenes})
    assert (answer.status_code, answer.json["error"]) == (400, error)
    assert api.simulate_get("/v1/me/notification-settings", headers=auth).json["data"] == before


def test_staff_see_the_alarm_scene(rt: Any, api: Any) -> None:
    _, auth = make_user(rt, "gina", role="admin")
    view = api.simulate_get("/v1/me/notification-settings", headers=auth).json["data"]
    assert "alarm" in {s["scene"] for s in view["scenes"]}
    answer = api.simulate_put("/v1/me/notification-settings", headers=auth,
                              json={"scenes": {"alarm": {"email": False}}})
    assert answer.status_code == 200


def test_the_delivery_log_is_for_admins(rt: Any, api: Any) -> None:
    user_id, auth = make_user(rt, "hank")
    _, admin = make_user(rt, "ivy", role="admin")
    notify_now(rt, user_id, 3)
    assert api.simulate_get("/v1/notifications/deliveries").status_code == 401
    forbidden = api.simulate_get("/v1/notifications/deliveries", headers=auth)
    assert (forbidden.status_code, forbidden.json["error"]) == (403, "auth.forbidden")
    log = api.simulate_get("/v1/notifications/deliveries", headers=admin,
                           params={"user_id": str(user_id)}).json["data"]["deliveries"]
    by_channel = {d["channel"]: d for d in log}
    assert by_channel["inbox"]["status"] == "sent"
    assert by_channel["sms"]["status"] == "unavailable"
    assert "no keys" in by_channel["sms"]["reason"]
    unavailable = api.simulate_get("/v1/notifications/deliveries", headers=admin,
                                   params={"status": "unavailable", "channel": "email"})
    assert [d["channel"] for d in unavailable.json["data"]["deliveries"]] == ["email"]
    for params, error in (({"status": "lost"}, "request.invalid_choice"),
                          ({"channel": "fax"}, "request.invalid_choice"),
                          ({"scene": "../x"}, "request.invalid_choice"),
                          ({"limit": "501"}, "request.out_of_range"),
                          ({"user_id": "abc"}, "request.invalid_type")):
        answer = api.simulate_get("/v1/notifications/deliveries", headers=admin, params=params)
        assert (answer.status_code, answer.json["error"]) == (400, error)
