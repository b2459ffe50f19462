"""SMS verification codes (NTF-13, NTF-14): rules, hashing, attempts, the real SMS SDK."""

from __future__ import annotations

from typing import Any

import pytest

from gonglun.errors import GonglunError
from gonglun.plugins.notify import send_code, verify_code
from tests.notify.conftest import NotifyLive

PHONE = "13912345678"


def sent_code(live: NotifyLive) -> str:
    return str(live.requests("tencentcloud", action="SendSms")[-1]["request"][
        "TemplateParamSet"][0])


def refused(fn: Any, *args: Any, **kwargs: Any) -> GonglunError:
    with pytest.raises(GonglunError) as caught:
        fn(*args, **kwargs)
    return caught.value


def test_a_code_is_sent_with_the_catalog_template_and_stored_hashed(
        notify_live: NotifyLive) -> None:
    from sqlalchemy import select

    from gonglun.plugins.notify.models import Delivery, SmsCode

    live = notify_live
    answer = send_code(live.rt, PHONE, "wechat_reg", ip="10.0.0.8")
    assert answer["phone"] == "139****5678" and answer["expires_in"] == 300
    (call,) = live.requests("tencentcloud")
    assert call["request"]["TemplateId"] == "1667287"
    assert call["request"]["PhoneNumberSet"] == ["+8613912345678"]
    code = sent_code(live)
    assert len(code) == 6 and code.isdigit()
    assert call["text"] == f"【宫论】您的注册验证码:{code},如非本人操作,请忽略本短信!"
    with live.rt.db.read() as session:
        stored = session.scalars(select(SmsCode)).one()
        logged = session.scalars(select(Delivery)).one()
    assert code not in stored.code_hash and len(stored.code_hash) == 64
    assert code not in logged.payload and logged.status == "sent"
    assert logged.provider_id == call["response"]["SendStatusSet"][0]["SerialNo"]

    assert verify_code(live.rt, PHONE, "wechat_reg", code) is True
    assert verify_code(live.rt, PHONE, "wechat_reg", code) is False  # single use
    # The decision other plugins ask (CORE-25): only for the plugin's code scenes.
    assert live.rt.hooks.decide("sms_code_check", phone=PHONE, scene="wechat_reg",
                                code=code) is False
    assert live.rt.hooks.decide("sms_code_check", phone=PHONE, scene="payment_refund",
                                code=code) is None


def test_interval_daily_cap_and_the_next_day(notify_live: NotifyLive) -> None:
    live = notify_live
    send_code(live.rt, PHONE, "wechat_reg")
    too_soon = refused(send_code, live.rt, PHONE, "wechat_reg")
    assert (too_soon.error, too_soon.status) == ("notify.code_too_soon", 429)
    assert 55 <= too_soon.data["retry_after"] <= 60
    assert send_code(live.rt, "13912345679", "wechat_reg")  # another phone has its own
    for i in range(1, 5):
        live.shift_clock(days=i * 61 / 86400)
        send_code(live.rt, PHONE, "wechat_reg")
    live.shift_clock(days=5 * 61 / 86400)
    capped = refused(send_code, live.rt, PHONE, "wechat_reg")
    assert (capped.error, capped.status) == ("notify.code_daily_cap", 429)
    assert len(live.requests("tencentcloud")) == 6
    live.shift_clock(days=1)
    assert send_code(live.rt, PHONE, "wechat_reg")


def test_wrong_guesses_kill_the_code_and_codes_expire(notify_live: NotifyLive) -> None:
    live = notify_live
    send_code(live.rt, PHONE, "wechat_reg")
    code = sent_code(live)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    assert verify_code(live.rt, PHONE, "wechat_reg", wrong, consume=False) is False
    assert verify_code(live.rt, PHONE, "wechat_reg", code, consume=False) is True
    for _ in range(3):
        assert verify_code(live.rt, PHONE, "wechat_reg", wrong) is False
    assert verify_code(live.rt, PHONE, "wechat_reg", code) is False  # five attempts used
    for bad in (None, 123456, ["1"], "１２３４５６", "", "1" * 100):
        assert verify_code(live.rt, PHONE, "wechat_reg", bad) is False

    live.shift_clock(days=61 / 86400)
    send_code(live.rt, PHONE, "wechat_reg")
    fresh = sent_code(live)
    live.shift_clock(days=(61 + 301) / 86400)  # past the 300 s validity
    assert verify_code(live.rt, PHONE, "wechat_reg", fresh) is False


def test_scene_rules_and_bad_input_are_refused_before_anything_is_sent(
        notify_live: NotifyLive) -> None:
    live = notify_live
    for phone in (["13912345678"], 13912345678, "12345678901", "+1 415 555 0100", "139123"):
        assert refused(send_code, live.rt, phone, "wechat_reg").error == "notify.invalid_phone"
    assert refused(send_code, live.rt, PHONE, "payment_refund").error == (
        "notify.unknown_code_scene")
    assert refused(send_code, live.rt, PHONE, "wechat_bind").error == "notify.phone_not_bound"
    assert refused(send_code, live.rt, PHONE, "bind_phone").error == "auth.required"
    live.user("bound", phone=PHONE)
    assert send_code(live.rt, PHONE, "wechat_bind")

    def guard(errors: list[Any], phone: str, scene: str) -> list[Any]:
        if scene == "wechat_reg" and phone == "13700000000":
            errors.append(GonglunError("account.wechat_bound", "短信发送失败:该手机号已绑定过微信"))
        return errors

    live.rt.hooks.add_filter("sms_code_guard", guard)
    try:
        assert refused(send_code, live.rt, "13700000000", "wechat_reg").error == (
            "account.wechat_bound")
    finally:
        live.rt.hooks.remove_filter("sms_code_guard", guard)
    assert len(live.requests("tencentcloud")) == 1  # only the bound phone's code


def test_a_refused_sms_kills_its_code(notify_live: NotifyLive) -> None:
    live = notify_live
    live.fault(channel="tencentcloud", status="LimitExceeded.PhoneNumberDailyLimit")
    failed = refused(send_code, live.rt, PHONE, "wechat_reg")
    assert (failed.error, failed.status) == ("notify.sms_failed", 502)
    assert failed.data == {"provider_code": "LimitExceeded.PhoneNumberDailyLimit"}
    (row,) = live.deliveries(channel="sms")
    assert row.status == "failed" and row.error.startswith("LimitExceeded.PhoneNumberDailyLimit")
    from gonglun.plugins.notify import delivery

    assert delivery.sweep(live.rt) == 0  # a code is never re-sent


def test_codes_need_a_shared_key_outside_the_embedded_default(make_rt: Any) -> None:
    keys = {"secret_id": "AKIDexample", "secret_key": "example", "sms_sdk_app_id": "1400000000",
            "sms_sign_name": "宫论"}  # a provider that would send: only the key is missing
    rt = make_rt(notify={"code_key": "", "tencentcloud": keys})
    problem = refused(send_code, rt, PHONE, "wechat_reg")
    assert (problem.error, problem.status) == ("notify.sms_unavailable", 503)
    assert any("notify SMS codes unavailable" in p for p in rt.startup_problems())


def test_email_codes_share_the_rules_and_keep_no_code(notify_live: NotifyLive) -> None:
    import re

    from sqlalchemy import select

    from gonglun.plugins.notify.models import SmsCode

    live = notify_live
    uid, _ = live.user("mailer")
    for bad in (["a@example.com"], "not-an-address", "a@b", "x" * 200 + "@example.com"):
        assert refused(send_code, live.rt, bad, "bind_email",
                       user_id=uid).error == "notify.invalid_email"
    assert refused(send_code, live.rt, "a@example.com", "bind_email").error == "auth.required"
    answer = send_code(live.rt, " New@Example.com ", "bind_email", user_id=uid)
    assert answer["email"] == "n***@example.com"
    [mail] = live.mail.wait(1)
    assert mail["To"].addresses[0].addr_spec == "new@example.com"
    found = re.search(r"验证码: (\d{6})", mail.get_body(preferencelist=("plain",)).get_content())
    assert found
    code = found.group(1)
    (row,) = live.deliveries(channel="email")
    assert row.status == "sent" and code not in row.payload
    too_soon = refused(send_code, live.rt, "new@example.com", "bind_email", user_id=uid)
    assert (too_soon.error, too_soon.status) == ("notify.code_too_soon", 429)
    # An email code does not verify as an SMS scene's, nor another address's.
    assert verify_code(live.rt, "new@example.com", "bind_phone", code) is False
    assert verify_code(live.rt, "other@example.com", "bind_email", code) is False
    assert verify_code(live.rt, "NEW@example.com", "bind_email", code) is True
    with live.rt.db.read() as session:
        stored = session.scalars(select(SmsCode)).one()
    assert stored.attempts == 1 and code not in stored.code_hash
