"""The provider emulators (Tencent Cloud SMS, WeChat official account, JPush) against the
vendors' real SDKs: signatures, answers and error codes as the vendors give them, what was
received, and failures on command."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gonglun.sandbox.tencentcloud.tc3 import TcError, verify
from tests.sandbox.conftest import Env

PHONE = "+8613800138000"
OPENID = "oGonglunSandbox0000000000001"
TEMPLATE = "NyqU2_oGQYHG6NW71NFjom29OQsCHKmwHaIJdX-Lyg4"


def sms_client(env: Env, **keys: str) -> Any:
    from gonglun.plugins.notify.providers.tencent import TencentSmsProvider

    return TencentSmsProvider({**env.keyset["tencentcloud"], **keys,
                               "gateway": env.base}).client()


def send_sms(client: Any, env: Env, **params: Any) -> Any:
    from tencentcloud.sms.v20210111 import models

    tc = env.keyset["tencentcloud"]
    body = {"PhoneNumberSet": [PHONE], "SmsSdkAppId": tc["sms_sdk_app_id"],
            "SignName": tc["sms_sign_name"], "TemplateId": "2207734",
            "TemplateParamSet": ["商品", "1元,退款原因:测试"], **params}
    request = models.SendSmsRequest()
    request.from_json_string(json.dumps(body))
    return client.SendSms(request)


def sdk_error(fn: Any, *args: Any, **kwargs: Any) -> str:
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
        TencentCloudSDKException,
    )

    with pytest.raises(TencentCloudSDKException) as caught:
        fn(*args, **kwargs)
    return str(caught.value.get_code())


def test_sms_signed_requests_are_answered_and_recorded(env: Env) -> None:
    answer = send_sms(sms_client(env), env, SessionContext="ctx-1")
    (status,) = answer.SendStatusSet
    assert (status.Code, status.Message, status.PhoneNumber) == ("Ok", "send success", PHONE)
    assert status.SerialNo.startswith("2433:") and status.Fee == 2 and status.IsoCode == "CN"
    assert status.SessionContext == "ctx-1"
    (seen,) = env.http.get("/sandbox/tencentcloud/requests").json()["data"]
    assert seen["action"] == "SendSms" and seen["region"] == "ap-guangzhou"
    assert seen["request"]["TemplateParamSet"] == ["商品", "1元,退款原因:测试"]
    assert "secret_key" not in json.dumps(env.http.get("/sandbox/info").json())


@pytest.mark.parametrize(("number", "iso"), [
    ("+12025550123", "US"), ("+14165550123", "US"), ("+85291234567", "HK"),
    ("+447911123456", "GB"), ("+6591234567", "SG"), ("+9991234567", "DEF")])
def test_sms_iso_codes_as_tencent_documents_them(env: Env, number: str, iso: str) -> None:
    """``SendStatus.IsoCode``: the number's country or region (ISO 3166-1, "US" for +1),
    "DEF" when it is not recognised, as the SDK's model documents it."""
    answer = send_sms(sms_client(env), env, PhoneNumberSet=[number], SignName="")
    (status,) = answer.SendStatusSet
    assert (status.Code, status.PhoneNumber, status.IsoCode) == ("Ok", number, iso)
    bad = send_sms(sms_client(env), env, PhoneNumberSet=["+12"], SignName="")
    assert bad.SendStatusSet[0].IsoCode == "DEF"


def test_sms_refuses_bad_keys_templates_and_parameters(env: Env) -> None:
    client = sms_client(env)
    assert sdk_error(send_sms, sms_client(env, secret_key="x" * 32), env) == (
        "AuthFailure.SignatureFailure")
    assert sdk_error(send_sms, sms_client(env, secret_id="AKIDnobody"), env) == (
        "AuthFailure.SecretIdNotFound")
    for params, code in (
        ({"TemplateId": "999"}, "FailedOperation.TemplateIncorrectOrUnapproved"),
        ({"TemplateParamSet": ["only one"]},
         "FailedOperation.TemplateParamSetNotMatchApprovedTemplate"),
        ({"TemplateId": "1667287", "TemplateParamSet": ["12ab56"]},
         "InvalidParameterValue.TemplateParameterFormatError"),
        ({"SignName": "别人的签名"}, "FailedOperation.SignatureIncorrectOrUnapproved"),
        ({"SmsSdkAppId": "1400000000"}, "InvalidParameterValue.SdkAppIdNotExist"),
        ({"PhoneNumberSet": []}, "MissingParameter.EmptyPhoneNumberSet"),
        ({"PhoneNumberSet": [PHONE] * 201}, "LimitExceeded.PhoneNumberCountLimit"),
        ({"PhoneNumberSet": [PHONE, "+14155550100"]},
         "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber"),
    ):
        assert sdk_error(send_sms, client, env, **params) == code
    # A bad number fails inside SendStatusSet while the call succeeds, as Tencent does it.
    mixed = send_sms(client, env, PhoneNumberSet=[PHONE, "12345"])
    assert [s.Code for s in mixed.SendStatusSet] == [
        "Ok", "InvalidParameterValue.IncorrectPhoneNumber"]
    assert mixed.SendStatusSet[1].SerialNo == "" and mixed.SendStatusSet[1].Fee == 0


def test_tc3_checks_the_clock_and_the_header() -> None:
    headers = {"Authorization": "TC3-HMAC-SHA256 Credential=AKID/2020-01-01/sms/tc3_request, "
                                "SignedHeaders=content-type;host, Signature=" + "0" * 64,
               "X-TC-Timestamp": "1577836800", "Content-Type": "application/json",
               "Host": "x"}
    with pytest.raises(TcError, match=r"AuthFailure\.SignatureExpire"):
        verify("POST", "/", "", headers, b"{}", {"AKID": "k"}, now=1577836800 + 301)
    with pytest.raises(TcError, match=r"AuthFailure\.SignatureFailure"):
        verify("POST", "/", "", headers, b"{}", {"AKID": "k"}, now=1577836800)
    with pytest.raises(TcError, match=r"AuthFailure\.InvalidAuthorization"):
        verify("POST", "/", "", {**headers, "Authorization": "Basic x"}, b"", {"AKID": "k"})


def test_sms_faults_on_command(env: Env) -> None:
    client = sms_client(env)
    env.http.post("/sandbox/faults", json={"channel": "tencentcloud",
                                           "error": "RequestLimitExceeded", "count": 2})
    assert env.http.get("/sandbox/faults").json()["data"]["tencentcloud"]["error"][
        "remaining"] == 2
    assert sdk_error(send_sms, client, env) == "RequestLimitExceeded"
    assert sdk_error(send_sms, client, env) == "RequestLimitExceeded"
    assert send_sms(client, env).SendStatusSet[0].Code == "Ok"
    env.http.post("/sandbox/faults", json={"channel": "tencentcloud",
                                           "status": "LimitExceeded.PhoneNumberDailyLimit"})
    assert send_sms(client, env).SendStatusSet[0].Code == "LimitExceeded.PhoneNumberDailyLimit"
    env.http.post("/sandbox/faults", json={"channel": "tencentcloud", "http": "500"})
    assert sdk_error(send_sms, client, env) == "ServerNetworkError"
    for bad in ({"channel": "tencentcloud"}, {"channel": "tencentcloud", "error": "x y"},
                {"channel": "tencentcloud", "error": "A", "count": 0},
                {"channel": "tencentcloud", "error": "A", "nope": 1}):
        answer = env.http.post("/sandbox/faults", json=bad)
        assert (answer.status_code, answer.json()["error"]) == (400, "sandbox.bad_fault")


def test_templates_are_approved_through_the_control_api(env: Env) -> None:
    client = sms_client(env)
    approved = env.http.post("/sandbox/tencentcloud/templates",
                             json={"id": "3300001", "params": 1, "text": "告警:{1}"})
    assert approved.status_code == 201
    assert send_sms(client, env, TemplateId="3300001",
                    TemplateParamSet=["x"]).SendStatusSet[0].Code == "Ok"
    for bad in ({"id": "abc", "params": 1}, {"id": "1", "params": -1}, [1]):
        answer = env.http.post("/sandbox/tencentcloud/templates", json=bad)
        assert answer.status_code == 400
    env.http.post("/sandbox/reset")
    assert sdk_error(send_sms, client, env, TemplateId="3300001",
                     TemplateParamSet=["x"]) == "FailedOperation.TemplateIncorrectOrUnapproved"
    assert env.http.get("/sandbox/tencentcloud/requests").json()["data"][0]["error"] == (
        "FailedOperation.TemplateIncorrectOrUnapproved")


def wechat(env: Env) -> Any:
    import fakeredis

    from gonglun.plugins.notify.providers.wechat import WeChatTemplateProvider

    return WeChatTemplateProvider({**env.keyset["wechat"], "gateway": env.base},
                                  fakeredis.FakeRedis(), "t:wechat")


def test_wechat_tokens_and_template_messages(env: Env) -> None:
    from wechatpy.exceptions import WeChatClientException

    client = wechat(env).client
    sent = client.message.send_template(OPENID, TEMPLATE, {"thing1": {"value": "x"}},
                                        url="https://m.example.com/x")
    assert sent["errcode"] == 0 and sent["msgid"] > 0
    first = client.access_token
    client.fetch_access_token()  # a new token: the old one keeps working for five minutes
    assert client.access_token != first
    raw = env.http.post("/cgi-bin/message/template/send", params={"access_token": first},
                        json={"touser": OPENID, "template_id": TEMPLATE, "data": {}})
    assert raw.json()["errcode"] == 0
    for params, body, code in (
        ({}, {}, 41001),
        ({"access_token": "forged"}, {}, 40001),
        ({"access_token": client.access_token}, {"touser": "x", "template_id": TEMPLATE,
                                                 "data": {}}, 40003),
        ({"access_token": client.access_token}, {"touser": OPENID, "template_id": "short",
                                                 "data": {}}, 40037),
        ({"access_token": client.access_token}, {"touser": OPENID, "template_id": TEMPLATE,
                                                 "data": {"k": "v"}}, 47003),
    ):
        answer = env.http.post("/cgi-bin/message/template/send", params=params, json=body)
        assert (answer.status_code, answer.json()["errcode"]) == (200, code)
    for query, code in (({"grant_type": "password"}, 40002),
                        ({"appid": "wx0000000000000000"}, 40013),
                        ({"secret": "0" * 32}, 40001), ({"secret": "short"}, 40125)):
        base = {"grant_type": "client_credential", "appid": env.keyset["wechat"]["appid"],
                "secret": env.keyset["wechat"]["secret"]}
        answer = env.http.get("/cgi-bin/token", params={**base, **query})
        assert answer.json()["errcode"] == code
    env.http.post("/sandbox/faults", json={"channel": "wechat", "error": 43004})
    with pytest.raises(WeChatClientException) as caught:
        client.message.send_template(OPENID, TEMPLATE, {"thing1": {"value": "x"}})
    assert caught.value.errcode == 43004
    recorded = env.http.get("/sandbox/wechat/requests", params={"action": "token"}).json()
    assert all(r["response"].get("access_token", "...").startswith("...")
               for r in recorded["data"])  # tokens are secrets: never recorded whole


#: Spellings of an openid: WeChat issues 28 URL-safe characters, nothing else.
OPENIDS = [(OPENID, True), ("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", True),
           ("o6_bmasdasdsad6_2sgVt7hMZ-Pf", True), ("openid", False),
           ("oGonglun0000000001", False), ("o" * 27, False), ("o" * 29, False),
           ("oUpF8uMuAJO_M2pxb1Q9zNjWeS6=", False), ("oUpF8uMuAJO M2pxb1Q9zNjWeS6o", False)]


@pytest.mark.parametrize(("openid", "valid"), OPENIDS)
def test_sign_in_and_template_messages_agree_on_what_an_openid_is(env: Env, openid: str,
                                                                  valid: bool) -> None:
    """One rule (the sandbox's common ``is_openid``) for the sign-in emulator and the
    template-message one, through wechatpy."""
    from wechatpy.exceptions import WeChatClientException
    from wechatpy.oauth import WeChatOAuth

    appid, secret = env.keyset["wechat"]["appid"], env.keyset["wechat"]["secret"]
    issued = env.http.post("/sandbox/wechat/oauth/codes", json={"appid": appid,
                                                                 "openid": openid})
    client = wechat(env).client
    if valid:
        assert issued.status_code == 201, issued.text
        oauth = WeChatOAuth(appid, secret, "", scope="snsapi_userinfo")
        oauth.API_BASE_URL = env.base + "/"
        assert oauth.fetch_access_token(issued.json()["data"]["code"])["openid"] == openid
        sent = client.message.send_template(openid, TEMPLATE, {"thing1": {"value": "x"}})
        assert sent["errcode"] == 0
    else:
        assert (issued.status_code, issued.json()["error"]) == (400, "sandbox.bad_openid")
        with pytest.raises(WeChatClientException) as caught:
            client.message.send_template(openid, TEMPLATE, {"thing1": {"value": "x"}})
        assert caught.value.errcode == 40003


def jpush_provider(env: Env, **keys: str) -> Any:
    from gonglun.plugins.notify.providers.jpush import JPushProvider

    return JPushProvider({**env.keyset["jpush"], **keys, "gateway": env.base})


def test_jpush_pushes_errors_and_auth(env: Env) -> None:
    import jpush
    from jpush import common

    provider = jpush_provider(env)
    push = provider.client.create_push()
    push.platform = jpush.all_
    push.audience = jpush.audience(jpush.alias("u1"))
    push.notification = jpush.notification(alert="你好")
    push.options = {"sendno": 42}
    answer = push.send()
    assert answer.status_code == 200 and answer.payload["sendno"] == "42"
    (seen,) = env.http.get("/sandbox/jpush/requests").json()["data"]
    assert seen["alias"] == "u1" and seen["request"]["notification"]["alert"] == "你好"

    stranger = jpush_provider(env, master_secret="0" * 24).client.create_push()
    stranger.platform, stranger.audience = jpush.all_, "all"
    stranger.notification = jpush.notification(alert="x")
    with pytest.raises(common.Unauthorized):
        stranger.send()
    env.http.post("/sandbox/faults", json={"channel": "jpush", "error": 2002})
    with pytest.raises(common.JPushFailure) as caught:
        push.send()
    assert caught.value.error_code == 2002 and caught.value.response.status_code == 429
    auth = (env.keyset["jpush"]["app_key"], env.keyset["jpush"]["master_secret"])
    for body, status, code in (
        ({"platform": "all", "notification": {"alert": "x"}}, 400, 1002),
        ({"platform": ["symbian"], "audience": "all", "notification": {}}, 400, 1003),
        ({"platform": "all", "audience": {"alias": []}, "notification": {}}, 400, 1003),
        ({"platform": "all", "audience": "all"}, 400, 1002),
        ({"platform": "all", "audience": "all", "message": {"msg_content": "x" * 5000}}, 400,
         1005),
    ):
        answer = httpx.post(f"{env.base}/v3/push", json=body, auth=auth, trust_env=False)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)
