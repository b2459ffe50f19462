"""Acceptance: one ``payment_refund`` reaches every channel, through the real SDKs and a real
SMTP server, with the catalog's texts (NTF-04..10, NTF-15)."""

from __future__ import annotations

import json

from websockets.sync.client import connect

from tests.notify.conftest import REFUND_DATA, NotifyLive, poll

SMS_TEXT = ("【宫论】尊敬的用户,您购买的商品 (【淘货】民国景德镇出产的红彩山水纹碟) 已完成退款,"
            "退款金额为 33.2元,退款原因:系统超时自动退款 。支付金额已原路退回,请注意查收。"
            "如有任何疑问,请联系客户服务。感谢您的理解与支持。")
EMAIL_BODY = ("您好, 您的付款订单 202611301405001234567890 已经达成退款。 "
              "商品:【淘货】民国景德镇出产的红彩山水纹碟 退款金额:33.2元 "
              "【退款原因:系统超时自动退款】。支付金额已原路退回,请注意查收。"
              "如有任何疑问,请联系客户服务。感谢您的理解与支持。")


def test_a_refund_reaches_every_channel(notify_live: NotifyLive) -> None:
    live = notify_live
    user_id, auth = live.user("buyer", openid="oGonglunBuyer000000000000001")
    ws_url = live.base.replace("http://", "ws://") + "/v1/ws"
    with connect(ws_url, additional_headers=auth, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"event": "hello", "user_id": user_id}
        live.fire("payment_refund", user_id, REFUND_DATA, key="notify:refund:7")
        pushed = json.loads(ws.recv(timeout=30))
    assert pushed["event"] == "notification" and pushed["scene"] == "payment_refund"
    assert pushed["title"] == "💰 订单退款通知"
    assert pushed["body"] == "你支付的订单发生了退款,退款金额:33.2元"
    live.settle()

    # One inbox message with NTF-05's fields, from the refund service account (NTF-04).
    inbox = live.http.get("/v1/me/messages", headers=auth).json()["data"]
    assert inbox["unread"] == 1
    message = inbox["messages"][0]
    assert message["account"] == "refund" and message["account_name"] == "退款通知"
    assert message["category"] == "资金变动通知"
    assert message["title"] == "💰 订单退款通知"
    assert message["first"] == "【淘货】民国景德镇出产的红彩山水纹碟"
    assert message["body"] == "你支付的订单发生了退款,退款金额:33.2元"
    assert message["rows"] == [["订单", "1234567890"], ["付款金额", "50元"],
                               ["退款金额", "33.2元"], ["退款时间", "2026-11-30 14:05"]]
    assert message["remark"] == "退款原因:系统超时自动退款"
    assert message["link"].endswith("/pay_details.php?order=202611301405001234567890")

    # One email received by a real SMTP server: NTF-08's subject and body, text and HTML.
    (mail,) = live.mail.wait(1)
    assert mail["Subject"] == "宫论提醒您:退款已经成功"
    assert mail["To"] == "buyer@example.com"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert text.startswith(EMAIL_BODY)
    assert "商品:【淘货】民国景德镇出产的红彩山水纹碟" in html and "查看详情" in html

    # The SMS through Tencent Cloud's SDK: template 2207734 (NTF-07) and its two parameters.
    (sms,) = live.requests("tencentcloud", action="SendSms")
    assert sms["request"]["TemplateId"] == "2207734"
    assert sms["request"]["PhoneNumberSet"] == ["+8613800138000"]
    assert sms["request"]["TemplateParamSet"] == ["【淘货】民国景德镇出产的红彩山水纹碟",
                                                  "33.2元,退款原因:系统超时自动退款"]
    assert sms["request"]["SignName"] == live.keyset["tencentcloud"]["sms_sign_name"]
    assert sms["text"] == SMS_TEXT
    assert sms["response"]["SendStatusSet"][0]["Code"] == "Ok"

    # The WeChat template message through wechatpy (NTF-09), after fetching a token.
    calls = live.requests("wechat")
    assert [c["action"] for c in calls] == ["token", "template_send"]
    sent = calls[1]["request"]
    assert sent["template_id"] == "NyqU2_oGQYHG6NW71NFjom29OQsCHKmwHaIJdX-Lyg4"
    assert sent["touser"] == "oGonglunBuyer000000000000001"
    assert sent["data"] == {"thing1": {"value": "【淘货】民国景德镇出产的红彩山水纹碟"},
                            "thing2": {"value": "退款金额:33.2元"}}
    assert sent["url"].endswith("/pay_details.php?order=202611301405001234567890")

    # The APP push through JPush's client (NTF-10), to the user's alias.
    (push,) = live.requests("jpush")
    body = push["request"]
    assert body["audience"] == {"alias": [f"u{user_id}"]}
    assert body["notification"]["android"]["title"] == "💰 订单退款通知"
    assert body["notification"]["alert"] == "你支付的订单发生了退款,退款金额:33.2元"
    assert body["notification"]["android"]["extras"]["link"] == message["link"]

    # The delivery log: one row per channel, each with the provider's id.
    rows = {d.channel: d for d in live.deliveries(user_id=user_id)}
    assert set(rows) == {"inbox", "email", "sms", "wechat", "app", "websocket"}
    assert {d.status for d in rows.values()} == {"sent"}
    assert rows["sms"].provider_id == sms["response"]["SendStatusSet"][0]["SerialNo"]
    assert rows["app"].provider_id == push["response"]["msg_id"]
    assert rows["websocket"].provider_id == "1 connection(s)"


def test_a_redelivered_event_sends_nothing_twice(notify_live: NotifyLive) -> None:
    """The same outbox event run again (a redelivery) finds its deliveries: no second message."""
    from gonglun.plugins.notify.service import service

    live = notify_live
    user_id, _ = live.user("again")
    live.fire("payment_refund", user_id, REFUND_DATA, key="notify:refund:8")
    live.settle()
    from gonglun.hooks.deferred import CURRENT_KEY

    token = CURRENT_KEY.set("notify:refund:8")
    try:
        assert service(live.rt).notify("payment_refund", user_id, REFUND_DATA) == []
    finally:
        CURRENT_KEY.reset(token)
    live.settle()
    assert len(live.deliveries(user_id=user_id)) == 6
    assert len(live.requests("tencentcloud")) == 1 and len(live.mail.messages) == 1


def test_notify_hook_is_safe_with_bad_input(notify_live: NotifyLive) -> None:
    """An unknown scene, a missing user, data the templates cannot use: logged and recorded,
    never retried forever, never a half-filled message."""
    live = notify_live
    user_id, _ = live.user("odd")
    live.fire("no_such_scene", user_id, {})
    live.fire("payment_refund", 10**12, REFUND_DATA)
    live.fire("payment_refund", user_id, {"amount": "12.5"})  # no title, amount not fen
    live.settle()
    rows = live.deliveries(user_id=user_id)
    assert {d.channel: d.status for d in rows} == {
        "inbox": "failed", "email": "failed", "sms": "failed", "wechat": "failed",
        "app": "failed", "websocket": "failed"}
    assert all(d.reason == "template error" and d.error for d in rows)
    assert live.requests("tencentcloud") == [] and live.mail.messages == []
    poll(lambda: live.http.get("/v1/health").status_code in (200, 503))
