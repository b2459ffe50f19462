"""WeChat sign-in through the real wechatpy client against the sandbox (ACC-01..07)."""

from __future__ import annotations

import secrets
from typing import Any

from tests.accounts.conftest import Live


def oid(prefix: str = "o") -> str:
    """A fresh openid (or unionid) as WeChat issues them: 28 URL-safe characters."""
    return f"{prefix}{secrets.token_urlsafe(21)}"[:28]


def nick() -> str:
    return "藏友" + secrets.token_hex(3)


def signin(live: Live, platform: str, code: str, **extra: Any) -> Any:
    return live.http.post("/v1/sessions/wechat", json={"platform": platform, "code": code,
                                                        **extra})


def register_wechat(live: Live, platform: str = "mp", openid: str | None = None,
                    unionid: str | None = None) -> tuple[dict[str, Any], str, str]:
    """A new WeChat user signs in, registers with phone + code; answers (data, phone, openid)."""
    openid = openid or oid()
    first = signin(live, platform, live.wechat_code(platform, openid, unionid))
    assert first.status_code == 200, first.text
    ticket = first.json()["data"]
    assert ticket["registered"] is False and ticket["openid"] == openid
    phone = live.phone()
    code = live.sms(phone, "wechat_reg")
    answer = live.http.post("/v1/registrations", json={
        "type": "wechat", "ticket": ticket["ticket"], "phone": phone, "code": code,
        "nickname": nick()})
    assert answer.status_code == 201, answer.text
    return answer.json()["data"], phone, openid


def test_register_then_log_in_again_and_link_a_second_platform(live: Live) -> None:
    unionid = oid("u")
    data, phone, openid = register_wechat(live, "mp", unionid=unionid)
    token = data["token"]
    me = live.http.get("/v1/me", headers=live.bearer(token)).json()["data"]
    assert me["phone"] == phone and me["openid"] == openid  # ACC-02: the caller's platform
    assert me["avatar_url"] == "https://img.example/a.png"  # ACC-09: one helper

    again = signin(live, "mp", live.wechat_code("mp", openid, unionid))
    assert again.status_code == 201, again.text
    assert again.json()["data"]["user"]["id"] == data["user"]["id"]
    # A replayed code is refused by WeChat, and so here (nothing logs in).
    code = live.wechat_code("mp", openid, unionid)
    assert signin(live, "mp", code).status_code == 201
    replay = signin(live, "mp", code)
    assert replay.status_code == 400 and replay.json()["error"] == "account.openid_failed"
    assert replay.json()["data"]["wechat_errcode"] == 40163

    # The app's openid differs; the unionid links it to the same account (decision 18).
    app_openid = oid("a")
    linked = signin(live, "app", live.wechat_code("app", app_openid, unionid))
    assert linked.status_code == 201, linked.text
    assert linked.json()["data"]["user"]["id"] == data["user"]["id"]
    app_me = live.http.get("/v1/me", headers=live.bearer(linked.json()["data"]["token"]))
    assert app_me.json()["data"]["openid"] == app_openid
    # The mini program: jscode2session through WeChatClient.wxa.
    mini = signin(live, "mini", live.wechat_code("mini", oid("m"), unionid))
    assert mini.status_code == 201, mini.text
    assert mini.json()["data"]["user"]["id"] == data["user"]["id"]


def test_wechat_bind_to_an_existing_phone_account(live: Live) -> None:
    _, phone, _ = register_wechat(live, "pc")  # has a PC WeChat, not an official-account one
    openid = oid()
    ticket = signin(live, "mp", live.wechat_code("mp", openid)).json()["data"]["ticket"]
    sent = live.http.post("/v1/codes", json={"to": phone, "scene": "wechat_reg"})
    # NTF-14: the phone has an account without an official-account WeChat: a binding code.
    assert sent.status_code == 201 and sent.json()["data"]["bind"] is True
    assert sent.json()["data"]["scene"] == "wechat_bind"
    calls = live.sb.get("/sandbox/tencentcloud/requests", params={"action": "SendSms"})
    code = [c for c in calls.json()["data"]
            if c["request"]["PhoneNumberSet"] == [f"+86{phone}"]][-1]["request"][
                "TemplateParamSet"][0]
    bound = live.http.post("/v1/registrations", json={
        "type": "wechat_bind", "ticket": ticket, "phone": phone, "code": code})
    assert bound.status_code == 201, bound.text
    again = signin(live, "mp", live.wechat_code("mp", openid))
    assert again.json()["data"]["user"]["id"] == bound.json()["data"]["user"]["id"]
    # Now the phone has WeChat: no more registration codes for it (NTF-14).
    refused = live.http.post("/v1/codes", json={"to": phone, "scene": "wechat_reg"})
    assert refused.status_code == 409
    assert refused.json()["error"] == "account.phone_wechat_bound"
    assert refused.json()["msg"] == "短信发送失败:该手机号已绑定过微信"


def test_sandbox_codes_expire_and_belong_to_their_app(live: Live) -> None:
    oauth = live.sandbox.vendors["wechat"].oauth
    code = live.wechat_code("mp", oid())
    other_app = signin(live, "pc", code)
    assert other_app.json()["data"]["wechat_errcode"] == 40029
    clock = oauth.clock
    oauth.clock = lambda: clock() + 301
    try:
        late = signin(live, "mp", code)
    finally:
        oauth.clock = clock
    assert late.status_code == 400 and late.json()["data"]["wechat_errcode"] == 40029
    raw = live.sb.get("/sns/oauth2/access_token", params={
        "appid": live.appid("mp"), "secret": "0" * 32, "code": "x",
        "grant_type": "authorization_code"}).json()
    assert raw == {"errcode": 40125, "errmsg": "invalid appsecret"}
    bad = live.sb.get("/sns/oauth2/access_token", params={
        "appid": live.appid("mp"), "secret": live.keyset["wechat"]["secret"], "code": "nope",
        "grant_type": "authorization_code"}).json()
    assert bad == {"errcode": 40029, "errmsg": "invalid code"}
