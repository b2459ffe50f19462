"""Registration refusals (ACC-04..06): each with its message and error id, nothing changed."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.accounts.conftest import Live
from tests.accounts.test_wechat_login import nick, oid, register_wechat, signin


def ticket_for(live: Live, platform: str = "mp", openid: str | None = None,
               unionid: str | None = None) -> str:
    answer = signin(live, platform, live.wechat_code(platform, openid or oid(), unionid))
    return str(answer.json()["data"]["ticket"])


def refused(live: Live, body: Any, error: str, msg: str | None = None,
            status: int = 400) -> dict[str, Any]:
    before = live.counts()
    answer = live.http.post("/v1/registrations", json=body)
    assert answer.status_code == status, answer.text
    data = answer.json()
    assert data["error"] == error, data
    if msg is not None:
        assert data["msg"] == msg
    assert live.counts() == before  # nothing changed
    return data


def test_phone_registration_and_password_login(live: Live) -> None:
    phone = live.phone()
    code = live.sms(phone, "register")
    made = live.http.post("/v1/registrations", json={
        "type": "phone", "phone": phone, "code": code, "nickname": nick(),
        "password": "a long password"})
    assert made.status_code == 201, made.text
    by_phone = live.http.post("/v1/sessions", json={"login": phone,
                                                    "password": "a long password"})
    assert by_phone.status_code == 201, by_phone.text
    # SMS-code login (scene login); the code is single use.
    code = live.sms(phone, "login")
    ok = live.http.post("/v1/sessions", json={"phone": phone, "code": code})
    assert ok.status_code == 201, ok.text
    again = live.http.post("/v1/sessions", json={"phone": phone, "code": code})
    assert again.status_code == 401 and again.json()["error"] == "account.invalid_code"
    # One account per phone.
    code = live.sms(phone, "register")
    refused(live, {"type": "phone", "phone": phone, "code": code, "nickname": nick()},
            "account.phone_taken", status=409)


def test_every_refusal_of_wechat_registration(live: Live) -> None:
    phone = live.phone()
    ticket = ticket_for(live)
    code = live.sms(phone, "wechat_reg")
    good = {"type": "wechat", "ticket": ticket, "phone": phone, "code": code,
            "nickname": nick()}
    refused(live, {}, "account.incomplete", "传递信息不完整")
    refused(live, {**good, "nickname": None}, "account.register_incomplete", "注册参数不完整")
    refused(live, {**good, "ticket": ""}, "account.ticket_expired", "微信令牌过期,请重新进行授权")
    refused(live, {**good, "phone": "12345"}, "account.invalid_phone",
            "手机号格式错误,目前仅支持国内号码")
    for phone_attack in (13912345678, [phone], {"p": phone}, "1" * 100_000, True):
        refused(live, {**good, "phone": phone_attack}, "account.invalid_phone")
    refused(live, {**good, "nickname": "  "}, "account.nickname_empty", "注册昵称不得为空")
    for bad in ("<b>x</b>", "藏友😀", "a" * 17, "a", "x y", "<script>", "名\u200b字"):
        refused(live, {**good, "nickname": bad}, "account.invalid_nickname")
    refused(live, {**good, "code": "000000" if code != "000000" else "111111"},
            "account.invalid_code", "验证码错误")
    refused(live, {**good, "code": 123456}, "account.invalid_code")
    refused(live, {**good, "type": "bind"}, "request.invalid_choice")
    # After all that the good request still works (the code had attempts left).
    made = live.http.post("/v1/registrations", json=good)
    assert made.status_code == 201, made.text
    # Replaying the ticket: refused, nothing changed.
    refused(live, good, "account.invalid_ticket")
    # The nickname is now taken.
    taken = {**good, "ticket": ticket_for(live), "phone": live.phone(),
             "nickname": made.json()["data"]["user"]["nickname"]}
    refused(live, taken, "account.nickname_taken", status=409)


def test_wechat_already_bound_and_bind_refusals(live: Live) -> None:
    _, phone, _ = register_wechat(live, "mp", unionid=oid("u"))
    # Another sign-in of the same openid logs in; a ticket for it cannot register again.
    forged_openid_ticket = ticket_for(live, "mp", oid())
    other_phone = live.phone()
    # wechat_bind: phone without an account.
    refused(live, {"type": "wechat_bind", "ticket": forged_openid_ticket,
                   "phone": other_phone, "code": "123456"},
            "account.phone_not_found", "绑定失败: 该手机未关联平台账户", status=404)
    refused(live, {"type": "wechat_bind", "ticket": forged_openid_ticket, "phone": phone},
            "account.bind_incomplete", "绑定参数不完整")
    # wechat_bind to an account that already has an official-account WeChat.
    refused(live, {"type": "wechat_bind", "ticket": forged_openid_ticket, "phone": phone,
                   "code": "123456"}, "account.wechat_bound",
            "微信号已绑定其它账户,无法完成注册", status=409)


def _tamper(ticket: str, **changes: Any) -> str:
    payload, mac = ticket.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body.update(changes)
    raw = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{raw}.{mac}"


@pytest.mark.parametrize("change", [{"o": "oStolenOpenid000"}, {"p": "app"}, {"e": 2**40}])
def test_tampered_tickets_are_refused(live: Live, change: dict[str, Any]) -> None:
    phone = live.phone()
    code = live.sms(phone, "wechat_reg")
    body = {"type": "wechat", "ticket": _tamper(ticket_for(live), **change), "phone": phone,
            "code": code, "nickname": nick()}
    refused(live, body, "account.invalid_ticket", "微信令牌无效,请重新进行授权")


def test_expired_and_garbage_tickets(live: Live) -> None:
    ticket = ticket_for(live)
    phone = live.phone()
    body = {"type": "wechat", "ticket": ticket, "phone": phone, "code": "123456",
            "nickname": nick()}
    live.rt.accounts_clock = lambda: __import__("time").time() + 301
    try:
        refused(live, body, "account.ticket_expired")
    finally:
        del live.rt.accounts_clock
    for junk in ("x", "a.b", "a.b.c", "é.é", 42, ["x"]):
        refused(live, {**body, "ticket": junk}, "account.invalid_ticket")


def test_registration_throttle(live: Live) -> None:
    key = live.rt.keys("register", "127.0.0.1")
    live.rt.redis.set(key, 100_000)
    try:
        phone = live.phone()
        code = live.sms(phone, "register")
        data = refused(live, {"type": "phone", "phone": phone, "code": code,
                              "nickname": nick()}, "account.register_throttled", status=429)
        assert data["msg"] == "注册过于频繁,请稍后再试"
    finally:
        live.rt.redis.delete(key)


def test_asking_who_has_an_account_spends_the_registration_budget(live: Live) -> None:
    """"Phone taken" answers before any code is proven (ACC-04's order): from one address,
    each such answer counts against its registration budget, so numbers cannot be harvested."""
    phone = live.phone()
    code = live.sms(phone, "register")
    made = live.http.post("/v1/registrations", json={"type": "phone", "phone": phone,
                                                     "code": code, "nickname": nick()})
    assert made.status_code == 201, made.text
    key = live.rt.keys("register", "127.0.0.1")
    live.rt.redis.set(key, 99_999)
    try:
        probe = {"type": "phone", "phone": phone, "code": "000000", "nickname": nick()}
        refused(live, probe, "account.phone_taken", status=409)  # the budget's last unit
        refused(live, probe, "account.register_throttled", status=429)
        assert int(live.rt.redis.get(key)) > 100_000
    finally:
        live.rt.redis.delete(key)


def test_sms_code_brute_force_dies_after_max_attempts(live: Live) -> None:
    phone = live.phone()
    code = live.sms(phone, "register")
    body = {"type": "phone", "phone": phone, "nickname": nick()}
    wrong = [f"{n:06d}" for n in range(6) if f"{n:06d}" != code][:5]
    for guess in wrong:
        refused(live, {**body, "code": guess}, "account.invalid_code")
    # Five wrong guesses: the right code is dead too.
    refused(live, {**body, "code": code}, "account.invalid_code")


def test_code_requests_are_limited_per_address_before_any_lookup(live: Live) -> None:
    """Many numbers from one address, and "is this phone registered?" (the ``login`` scene
    refuses unbound phones) cost the address's budget; past it every answer is the same 429."""
    notify = live.rt.config.data["notify"]
    notify["code_ip_limit"] = 2
    here = {"X-Forwarded-For": "203.0.113.77"}
    try:
        first = live.http.post("/v1/codes", json={"to": live.phone(), "scene": "register"},
                               headers=here)
        unbound = live.http.post("/v1/codes", json={"to": live.phone(), "scene": "login"},
                                 headers=here)
        assert first.status_code == 201 and unbound.status_code == 400, unbound.text
        for scene in ("login", "register", "wechat_reg"):
            limited = live.http.post("/v1/codes", json={"to": live.phone(), "scene": scene},
                                     headers=here)
            assert limited.status_code == 429, limited.text
            assert limited.json()["error"] == "notify.code_ip_limited"
        elsewhere = live.http.post("/v1/codes", json={"to": live.phone(), "scene": "register"},
                                   headers={"X-Forwarded-For": "203.0.113.78"})
        assert elsewhere.status_code == 201, elsewhere.text
    finally:
        notify["code_ip_limit"] = 100_000


def test_an_ipv6_client_counts_as_its_64(live: Live) -> None:
    notify = live.rt.config.data["notify"]
    notify["code_ip_limit"] = 1
    try:
        first = live.http.post("/v1/codes", json={"to": live.phone(), "scene": "register"},
                               headers={"X-Forwarded-For": "2001:db8:7:1::1"})
        same_64 = live.http.post("/v1/codes", json={"to": live.phone(), "scene": "register"},
                                 headers={"X-Forwarded-For": "2001:db8:7:1:ffff::2"})
        other_64 = live.http.post("/v1/codes", json={"to": live.phone(), "scene": "register"},
                                  headers={"X-Forwarded-For": "2001:db8:7:2::1"})
        assert [first.status_code, same_64.status_code, other_64.status_code] == [201, 429, 201]
    finally:
        notify["code_ip_limit"] = 100_000
