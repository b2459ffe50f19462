"""Caps, retries by error class, disabled channels, and exactly-once delivery."""

from __future__ import annotations

from typing import Any

from tests.notify.conftest import REFUND_DATA, NotifyLive, poll


def refund(n: int) -> dict[str, Any]:
    return {**REFUND_DATA, "refund_id": n, "payment_order": f"2026113014050012345{n:05d}"}


def test_the_sixth_refund_email_of_a_day_waits_for_the_next_day(notify_live: NotifyLive) -> None:
    live = notify_live
    user_id, _ = live.user("capped")
    _, admin = live.user("finance", role="admin", phone=None)
    for n in range(6):
        live.fire("payment_refund", user_id, refund(n))
    live.settle()
    statuses = [d.status for d in live.deliveries(user_id=user_id, channel="email")]
    assert (statuses.count("sent"), statuses.count("capped")) == (5, 1)
    assert len(live.mail.messages) == 5
    # The log says why, to an admin and in the CLI's source alike.
    log = live.http.get("/v1/notifications/deliveries", headers=admin,
                        params={"user_id": user_id, "status": "capped"}).json()["data"]
    (capped,) = log["deliveries"]
    assert capped["channel"] == "email"
    assert "daily cap of 5 email messages" in capped["reason"]
    assert capped["address"] == "c***@example.com"
    # The other channels have their own caps (SMS 10/day): all six went out.
    assert len(live.requests("tencentcloud")) == 6
    assert len(live.deliveries(user_id=user_id, channel="inbox", status="sent")) == 6

    live.shift_clock(days=1)  # the next Asia/Shanghai day
    live.fire("payment_refund", user_id, refund(6))
    live.settle()
    assert len(live.mail.wait(6)) == 6
    assert live.deliveries(user_id=user_id, channel="email")[-1].status == "sent"


def test_a_failing_provider_is_retried_without_holding_up_the_others(live_factory: Any) -> None:
    live = live_factory(max_attempts=12)  # the SMTP server stays down for several attempts
    user_id, _ = live.user("patient")
    live.mail.down()  # SMTP down: connection refused
    live.fault(channel="tencentcloud", error="RequestLimitExceeded", count=2)  # SMS throttled
    live.fire("payment_refund", user_id, REFUND_DATA)

    def others_sent() -> bool:
        done = {d.channel: d.status for d in live.deliveries(user_id=user_id)}
        return all(done.get(c) == "sent" for c in ("inbox", "wechat", "app", "websocket"))

    def email_failed_once() -> bool:
        email = live.deliveries(user_id=user_id, channel="email")
        return bool(email) and (email[0].error or "").startswith("smtp_unreachable")

    poll(others_sent, what="the healthy channels")
    poll(email_failed_once, what="a failed email attempt")
    assert live.deliveries(user_id=user_id, channel="email")[0].status in ("retry", "sending")
    live.mail.up()
    live.settle()
    rows = {d.channel: d for d in live.deliveries(user_id=user_id)}
    assert {d.status for d in rows.values()} == {"sent"}
    assert rows["email"].attempts >= 2 and len(live.mail.messages) == 1
    assert rows["sms"].attempts == 3
    sms = live.requests("tencentcloud")
    assert [s["error"] for s in sms] == ["RequestLimitExceeded", "RequestLimitExceeded", ""]


def test_a_permanent_error_is_not_retried(notify_live: NotifyLive) -> None:
    live = notify_live
    user_id, _ = live.user("unfollowed")
    live.fault(channel="wechat", error=43004)  # the user does not follow the account
    live.fault(channel="jpush", error=1011)  # no device under the alias
    live.fire("payment_refund", user_id, REFUND_DATA)
    live.settle()
    rows = {d.channel: d for d in live.deliveries(user_id=user_id)}
    for channel, code in (("wechat", "wechat_43004"), ("app", "jpush_1011")):
        assert rows[channel].status == "failed" and rows[channel].attempts == 1
        assert rows[channel].reason == "permanent error"
        assert rows[channel].error.startswith(code)
    assert [c["action"] for c in live.requests("wechat")] == ["token", "template_send"]
    assert len(live.requests("jpush")) == 1
    assert rows["sms"].status == "sent" and rows["email"].status == "sent"


def test_a_stale_wechat_token_is_refreshed_once(notify_live: NotifyLive) -> None:
    live = notify_live
    user_id, _ = live.user("stale")
    live.fault(channel="wechat", error=40001)
    live.fire("payment_refund", user_id, REFUND_DATA)
    live.settle()
    assert live.deliveries(user_id=user_id, channel="wechat")[0].status == "sent"
    actions = [(c["action"], c["errcode"]) for c in live.requests("wechat")]
    assert actions == [("token", "0"), ("template_send", "40001"), ("token", "0"),
                       ("template_send", "0")]


def test_a_disabled_channel_sends_nothing(live_factory: Any) -> None:
    live = live_factory(scenes={"payment_refund": {"channels": {"sms": {"enabled": False},
                                                                "email": False}}})
    user_id, _ = live.user("quiet")
    live.fire("payment_refund", user_id, REFUND_DATA)
    live.settle()
    assert {d.channel for d in live.deliveries(user_id=user_id)} == {
        "inbox", "wechat", "app", "websocket"}
    assert live.requests("tencentcloud") == [] and live.mail.messages == []


def test_a_user_may_switch_off_only_what_is_not_money_or_security(
        notify_live: NotifyLive) -> None:
    live = notify_live
    user_id, auth = live.user("chooser")
    answer = live.http.put("/v1/me/notification-settings", headers=auth,
                           json={"scenes": {"identify_close": {"app": False}}})
    assert answer.status_code == 200, answer.text
    closed = {"number": "2026113000001", "amount": 8800, "reason": "买家关闭",
              "appraiser_id": None}
    live.fire("identify_close", user_id, closed)
    live.settle()
    rows = {d.channel: d for d in live.deliveries(user_id=user_id)}
    assert rows["app"].status == "skipped" and "switched off" in rows["app"].reason
    assert rows["inbox"].status == "sent" and live.requests("jpush") == []


def test_missing_addresses_and_providers_are_logged_not_sent(live_factory: Any) -> None:
    live = live_factory(scenes={"payment_refund": {"channels": {"sms": {"template_id": ""}}}})
    user_id, _ = live.user("nobody", phone=None, email_address=None, openid=None)
    live.fire("payment_refund", user_id, REFUND_DATA)
    live.settle()
    rows = {d.channel: d for d in live.deliveries(user_id=user_id)}
    assert (rows["email"].status, rows["email"].reason) == (
        "skipped", "the user has no email address")
    assert rows["wechat"].status == "skipped"
    assert rows["sms"].status == "unavailable" and "template_id" in rows["sms"].reason
    assert rows["inbox"].status == "sent"


def test_a_worker_killed_mid_delivery_sends_each_message_once(notify_live: NotifyLive) -> None:
    """A worker that claimed deliveries and died (its jobs unacknowledged, its claims held):
    the redelivered jobs find the claims and wait; once the leases run out the sweeper hands
    them over and each message is sent exactly once."""
    import dramatiq

    from gonglun.plugins.notify import delivery
    from gonglun.plugins.notify.service import service

    live = notify_live
    live.worker.stop()  # nothing runs until the "restart"
    users = [live.user(f"killed{i}", phone=f"1380013800{i}")[0] for i in range(4)]
    ids = []
    for n, user_id in enumerate(users):
        with live.rt.db.write() as session:
            ids += service(live.rt).fan_out(session, "payment_refund", user_id, refund(n),
                                            f"kill:{n}")
    assert len(ids) == 24
    dead = [i for i in ids if i % 2]  # the dead worker had claimed half of them
    for delivery_id in dead:
        assert delivery.claim(live.rt, delivery_id) is not None
    service(live.rt).enqueue(ids)  # their jobs, redelivered to the restarted worker
    restarted = dramatiq.Worker(live.rt.broker, worker_threads=4, worker_timeout=100)
    restarted.start()
    live.worker = restarted
    try:
        poll(lambda: len(live.deliveries(status="sent")) == len(ids) - len(dead),
             what="the unclaimed deliveries")
        assert len(live.deliveries(status="sending")) == len(dead)  # leases still held
        live.shift_clock(days=0.001)  # 86 s later: the dead worker's leases ran out
        assert delivery.sweep(live.rt) == len(dead)
        live.settle()
    finally:
        restarted.stop()
    assert len(live.deliveries(status="sent")) == len(ids)
    sms = live.requests("tencentcloud")
    assert sorted(s["request"]["PhoneNumberSet"][0] for s in sms) == sorted(
        f"+861380013800{i}" for i in range(4))
    assert len(live.requests("jpush")) == 4 and len(live.mail.messages) == 4
    assert len([c for c in live.requests("wechat") if c["action"] == "template_send"]) == 4
