"""Staff alarms (NTF-12, OPS-03): thresholds per kind and day, admins on their channels."""

from __future__ import annotations

from typing import Any

from tests.notify.conftest import NotifyLive

ALARM_SMS = "3300001"
ALARM_WECHAT = "AlarmTemplate_0123456789abcdefghijklmnopqrs"


def alarm_live(live_factory: Any, **alarms: Any) -> NotifyLive:
    live = live_factory(
        scenes={"alarm": {"channels": {"sms": {"template_id": ALARM_SMS},
                                       "wechat": {"template_id": ALARM_WECHAT}}}},
        alarms=alarms)
    # The operator's alarm template, approved at Tencent Cloud (here: by the sandbox).
    approved = live.sb.post("/sandbox/tencentcloud/templates",
                            json={"id": ALARM_SMS, "params": 2, "text": "宫论告警:{1},{2}"})
    assert approved.status_code == 201, approved.text
    return live


def fire_alarm(live: NotifyLive, n: int, kind: str = "refund") -> None:
    with live.rt.db.write() as session:
        live.rt.hooks.defer(session, "alarm", key=f"alarm:test:{kind}:{n}", kind=kind,
                            message=f"微信退款失败: 订单 {n}",
                            data={"payment_id": n, "channel": "wxpay"})


def outcomes(live: NotifyLive, kind: str) -> list[str]:
    from sqlalchemy import select

    from gonglun.plugins.notify.models import Alarm

    with live.rt.db.read() as session:
        # In the order they were counted (concurrent workers may insert them in another).
        return list(session.scalars(select(Alarm.outcome).where(Alarm.kind == kind)
                                    .order_by(Alarm.day, Alarm.number)))


def test_refund_errors_alarm_every_third_at_most_three_a_day(live_factory: Any) -> None:
    live = alarm_live(live_factory)
    admins = [live.user(f"admin{i}", role="admin", phone=f"1390013900{i}")[0] for i in range(2)]
    live.user("customer")  # not staff: never alarmed
    for n in range(12):
        fire_alarm(live, n)
    live.settle()
    assert outcomes(live, "refund") == ["counted", "counted", "sent"] * 3 + [
        "counted", "counted", "suppressed"]
    for admin in admins:
        sent = {d.channel: 0 for d in live.deliveries(user_id=admin)}
        for d in live.deliveries(user_id=admin):
            assert d.status == "sent", (d.channel, d.error, d.reason)
            sent[d.channel] += 1
        assert sent == {"inbox": 3, "sms": 3, "email": 3, "wechat": 3, "app": 3}
    assert len(live.deliveries(scene="alarm")) == 30
    sms = live.requests("tencentcloud", template_id=ALARM_SMS)
    assert len(sms) == 6
    kind, message = sms[0]["request"]["TemplateParamSet"]  # workers run alarms in any order
    assert kind == "refund" and message.startswith("微信退款失败: 订单 ")
    assert sms[0]["text"] == f"【宫论】宫论告警:refund,{message}"
    mails = live.mail.wait(6)
    from gonglun.db import utcnow
    from gonglun.plugins.notify.counters import day_of

    assert mails[0]["Subject"] == f"【宫论告警】refund ({day_of(utcnow())} 第 3 次)"
    assert "微信退款失败: 订单 " in mails[0].get_body(("plain",)).get_content()

    live.shift_clock(days=1)  # a new day counts from zero
    for n in range(12, 15):
        fire_alarm(live, n)
    live.settle()
    assert outcomes(live, "refund")[-3:] == ["counted", "counted", "sent"]


def test_other_kinds_alarm_at_once_and_configured_kinds_as_configured(
        live_factory: Any) -> None:
    live = alarm_live(live_factory, late_payment={"threshold": 2, "max_per_day": 1})
    live.user("boss", role="superadmin")
    for n in range(2):
        fire_alarm(live, n, kind="reconciliation")
    for n in range(5):
        fire_alarm(live, n, kind="late_payment")
    live.settle()
    assert outcomes(live, "reconciliation") == ["sent", "sent"]
    assert outcomes(live, "late_payment") == ["counted", "sent", "counted", "suppressed",
                                              "counted"]


def test_a_redelivered_alarm_counts_once(live_factory: Any) -> None:
    from gonglun.hooks.deferred import CURRENT_KEY
    from gonglun.plugins.notify.alarms import raise_alarm

    live = alarm_live(live_factory)
    live.user("ops", role="admin")
    token = CURRENT_KEY.set("alarm:same-event")
    try:
        assert raise_alarm(live.rt, "refund_abnormal", "退款异常", {"id": 1}) == "sent"
        assert raise_alarm(live.rt, "refund_abnormal", "退款异常", {"id": 1}) == "duplicate"
    finally:
        CURRENT_KEY.reset(token)
    live.settle()
    assert len(live.deliveries(scene="alarm", channel="inbox")) == 1


def test_refund_abnormal_alarms_finance(notify_live: NotifyLive) -> None:
    live = notify_live
    admin, auth = live.user("finance", role="admin")
    with live.rt.db.write() as session:
        live.rt.hooks.defer(session, "refund_abnormal", key="refund_abnormal:1", channel="wxpay",
                            refund_order="50300000012026113012345678901",
                            payment={"id": 5, "payment_order": "202611300000000005",
                                     "refund_amount": 100})
    live.settle()
    inbox = live.http.get("/v1/me/messages", headers=auth).json()["data"]["messages"]
    assert [m["title"] for m in inbox] == ["系统告警: refund_abnormal"]
    assert "50300000012026113012345678901" in inbox[0]["body"]
    assert admin


def test_an_alarm_nobody_can_receive_is_undelivered_and_doctor_says_why(
        notify_live: NotifyLive) -> None:
    """No admin: the alarm is recorded ``undelivered`` (not ``sent`` with no delivery), it
    does not use the day's quota, and ``gonglun doctor`` warns; with an admin it is sent."""
    from gonglun.doctor import run

    live = notify_live
    live.user("customer")  # not staff
    for n in range(2):
        fire_alarm(live, n, kind="reconciliation")
    live.settle()
    assert outcomes(live, "reconciliation") == ["undelivered", "undelivered"]
    assert live.deliveries(scene="alarm") == []
    found = {f.check: f for f in run(live.rt)}
    assert found["admins"].level == "warning" and "no active admin" in found["admins"].message
    live.user("ops", role="admin", phone="13900139001")
    fire_alarm(live, 2, kind="reconciliation")
    live.settle()
    assert outcomes(live, "reconciliation")[-1] == "sent"
    assert len(live.deliveries(scene="alarm", channel="inbox")) == 1
    assert {f.check: f for f in run(live.rt)}["admins"].level == "ok"
