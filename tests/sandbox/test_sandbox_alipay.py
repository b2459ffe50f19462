"""python-alipay-sdk end to end against the sandbox's /gateway.do."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from alipay import AliPay
from alipay.exceptions import AliPayException, AliPayValidationError

from gonglun.sandbox.alipay import compact
from gonglun.sandbox.clients import alipay_client
from gonglun.sandbox.testing import NotifyReceiver

from .conftest import Env


def open_cashier(env: Env, order_string: str, *, as_json: bool = True) -> httpx.Response:
    """What a browser does with the order string: GET gateway?<order string>."""
    headers = {"Accept": "application/json"} if as_json else {"Accept": "text/html"}
    return env.http.get("/gateway.do?" + order_string, headers=headers)


def paid_trade(env: Env, ali: AliPay, no: str, amount: str = "100.00") -> None:
    r = open_cashier(env, ali.api_alipay_trade_page_pay("藏品", no, amount))
    assert r.json()["code"] == "10000"
    r = env.control("POST", f"/sandbox/alipay/trades/{no}/pay", json={})
    assert r.status_code == 200, r.text


def form_of(text: str) -> dict[str, str]:
    return dict(parse_qsl(text, keep_blank_values=True))


@pytest.mark.parametrize("api", ["api_alipay_trade_page_pay", "api_alipay_trade_wap_pay",
                                 "api_alipay_trade_app_pay"])
def test_order_strings_open_the_cashier(env: Env, ali: AliPay, api: str) -> None:
    no = "2024010100000000" + api[-8:-4].replace("_", "0")
    assert ali.api_alipay_trade_query(out_trade_no=no)["sub_code"] == "ACQ.TRADE_NOT_EXIST"
    r = open_cashier(env, getattr(ali, api)("青花瓷 {一}", no, "12.34"))
    body = r.json()
    assert body["code"] == "10000" and body["trade_status"] == "WAIT_BUYER_PAY"
    answer = ali.api_alipay_trade_query(out_trade_no=no)
    assert answer["code"] == "10000"
    assert answer["trade_status"] == "WAIT_BUYER_PAY"
    assert answer["total_amount"] == "12.34"
    assert ali.api_alipay_trade_query(trade_no=body["trade_no"])["out_trade_no"] == no
    html = open_cashier(env, getattr(ali, api)("青花瓷 {一}", no, "12.34"), as_json=False)
    assert "text/html" in html.headers["content-type"] and "12.34" in html.text


def test_cashier_refuses_a_tampered_order_string(env: Env, ali: AliPay) -> None:
    order = ali.api_alipay_trade_page_pay("x", "202401010000000099", "1.00")
    tampered = order.replace("1.00", "0.01")
    assert open_cashier(env, tampered).json()["alipay_trade_page_pay_response"]["sub_code"] == \
        "isv.invalid-signature"
    assert ali.api_alipay_trade_query(out_trade_no="202401010000000099")["code"] == "40004"


def test_wrong_app_key_is_refused_like_the_real_gateway(env: Env,
                                                       stranger_keypair: tuple[str, str]) -> None:
    bad = alipay_client(env.keyset_with("alipay", app_private_key=stranger_keypair[0]), env.base)
    with pytest.raises(AliPayException) as info:
        bad.api_alipay_trade_query(out_trade_no="202401010000000001")
    assert "code:40002" in str(info.value)
    assert "isv.invalid-signature" in str(info.value)
    other_app = alipay_client(env.keyset_with("alipay", app_id="2021000000000000"), env.base)
    with pytest.raises(AliPayException, match=r"isv\.invalid-app-id"):
        other_app.api_alipay_trade_query(out_trade_no="202401010000000001")


def test_responses_are_signed_with_the_gateway_key(env: Env,
                                                   stranger_keypair: tuple[str, str]) -> None:
    trusting_wrong_key = alipay_client(
        env.keyset_with("alipay", alipay_public_key=stranger_keypair[1]), env.base)
    with pytest.raises(AliPayValidationError):
        trusting_wrong_key.api_alipay_trade_query(out_trade_no="202401010000000001")


def test_post_form_is_accepted_too(env: Env, ali: AliPay) -> None:
    data = ali.build_body("alipay.trade.query", {"out_trade_no": "202401010000000001"})
    signed = ali.sign_data(data)
    r = env.http.post("/gateway.do", content=signed,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    answer = ali._verify_and_return_sync_response(r.text, "alipay_trade_query_response")
    assert answer["sub_code"] == "ACQ.TRADE_NOT_EXIST"


def test_braces_in_values_do_not_break_the_sdk_brace_matcher(env: Env, ali: AliPay) -> None:
    inner = {"code": "10000", "msg": "Success", "subject": "瓷 {x} }{", "list": [{"a": "}"}]}
    text = env.sandbox.alipay.signed("alipay.trade.query", inner)
    assert json.loads(text)["alipay_trade_query_response"] == inner
    assert ali._verify_and_return_sync_response(text, "alipay_trade_query_response") == inner
    assert "{" not in compact("}{")


def test_close(env: Env, ali: AliPay) -> None:
    open_cashier(env, ali.api_alipay_trade_page_pay("x", "202401010000000010", "5.00"))
    answer = ali.api_alipay_trade_close(out_trade_no="202401010000000010")
    assert answer["code"] == "10000"
    assert ali.api_alipay_trade_query(out_trade_no="202401010000000010")["trade_status"] == \
        "TRADE_CLOSED"
    assert ali.api_alipay_trade_close(out_trade_no="nope")["sub_code"] == "ACQ.TRADE_NOT_EXIST"
    paid_trade(env, ali, "202401010000000011")
    assert ali.api_alipay_trade_close(out_trade_no="202401010000000011")["sub_code"] == \
        "ACQ.TRADE_STATUS_ERROR"


def test_refund_rules(env: Env, ali: AliPay) -> None:
    no = "202401010000000020"
    assert ali.api_alipay_trade_refund("1.00", out_trade_no=no)["sub_code"] == \
        "ACQ.TRADE_NOT_EXIST"
    open_cashier(env, ali.api_alipay_trade_page_pay("x", no, "100.00"))
    assert ali.api_alipay_trade_refund("1.00", out_trade_no=no, out_request_no="r0")[
        "sub_code"] == "ACQ.TRADE_STATUS_ERROR"
    env.control("POST", f"/sandbox/alipay/trades/{no}/pay", json={})

    partial_without_number = ali.api_alipay_trade_refund("10.00", out_trade_no=no)
    assert partial_without_number["sub_code"] == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    over = ali.api_alipay_trade_refund("100.01", out_trade_no=no, out_request_no="r1")
    assert over["sub_code"] == "ACQ.REASON_TRADE_REFUND_FEE_ERR"

    first = ali.api_alipay_trade_refund("30.00", out_trade_no=no, out_request_no="r1")
    assert (first["code"], first["fund_change"], first["refund_fee"]) == ("10000", "Y", "30.00")
    again = ali.api_alipay_trade_refund("30.00", out_trade_no=no, out_request_no="r1")
    assert (again["code"], again["fund_change"], again["refund_fee"]) == ("10000", "N", "30.00")
    different = ali.api_alipay_trade_refund("31.00", out_trade_no=no, out_request_no="r1")
    assert different["sub_code"] == "ACQ.DISCORDANT_REPEAT_REQUEST"

    # the cap is cumulative: 30 refunded, 70.01 more is too much, 70 is exactly the rest
    assert ali.api_alipay_trade_refund("70.01", out_trade_no=no, out_request_no="r2")[
        "sub_code"] == "ACQ.REASON_TRADE_REFUND_FEE_ERR"
    rest = ali.api_alipay_trade_refund("70.00", out_trade_no=no, out_request_no="r2")
    assert (rest["fund_change"], rest["refund_fee"]) == ("Y", "100.00")
    assert ali.api_alipay_trade_query(out_trade_no=no)["trade_status"] == "TRADE_CLOSED"

    query = ali.api_alipay_trade_fastpay_refund_query("r1", out_trade_no=no)
    assert query["refund_status"] == "REFUND_SUCCESS"
    assert (query["refund_amount"], query["total_amount"]) == ("30.00", "100.00")
    unknown = ali.api_alipay_trade_fastpay_refund_query("r9", out_trade_no=no)
    assert unknown == {"code": "10000", "msg": "Success"}


def test_full_refund_without_request_number(env: Env, ali: AliPay) -> None:
    no = "202401010000000021"
    paid_trade(env, ali, no, "8.88")
    answer = ali.api_alipay_trade_refund("8.88", out_trade_no=no)
    assert (answer["fund_change"], answer["refund_fee"]) == ("Y", "8.88")
    assert ali.api_alipay_trade_refund("8.88", out_trade_no=no)["fund_change"] == "N"
    assert ali.api_alipay_trade_fastpay_refund_query(no, out_trade_no=no)["refund_status"] == \
        "REFUND_SUCCESS"


def test_notifications_verify_with_the_sdk(env: Env, ali: AliPay,
                                           receiver: NotifyReceiver) -> None:
    no = "202401010000000030"
    paid_trade(env, ali, no, "12.34")
    got = receiver.wait_for(1)[0]
    assert got.path == "/notify/alipay"
    assert got.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    form = form_of(got.text)
    assert form["trade_status"] == "TRADE_SUCCESS" and form["total_amount"] == "12.34"
    assert form["notify_type"] == "trade_status_sync" and form["sign_type"] == "RSA2"
    assert all(v != "" for v in form.values())
    signature = form.pop("sign")
    assert ali.verify(dict(form), signature)
    tampered = dict(form, total_amount="0.01")
    assert not ali.verify(tampered, signature)

    ali.api_alipay_trade_refund("2.34", out_trade_no=no, out_request_no="r1")
    refund_note = form_of(receiver.wait_for(2)[1].text)
    assert (refund_note["out_biz_no"], refund_note["refund_fee"]) == ("r1", "2.34")
    assert refund_note["trade_status"] == "TRADE_SUCCESS"
    assert ali.verify(refund_note, refund_note.pop("sign"))


def test_return_url_is_signed(env: Env, ali: AliPay) -> None:
    no = "202401010000000031"
    order = ali.api_alipay_trade_page_pay("x", no, "1.00", return_url="http://shop.test/back")
    open_cashier(env, order)
    data = env.control("POST", f"/sandbox/alipay/trades/{no}/pay", json={}).json()["data"]
    url = urlsplit(data["return_url"])
    assert url.netloc == "shop.test"
    params = form_of(url.query)
    assert params["out_trade_no"] == no
    assert ali.verify(params, params.pop("sign"))


def test_expired_trade_closes(env: Env, ali: AliPay) -> None:
    no = "202401010000000032"
    order = ali.api_alipay_trade_page_pay("x", no, "1.00", time_expire="2020-01-01 00:00:00")
    open_cashier(env, order)
    assert ali.api_alipay_trade_query(out_trade_no=no)["trade_status"] == "TRADE_CLOSED"
    assert env.control("POST", f"/sandbox/alipay/trades/{no}/pay", json={}).status_code == 409


def test_pay_an_order_whose_cashier_was_never_opened(notifying_env: Env,
                                                     receiver: NotifyReceiver) -> None:
    env = notifying_env
    ali = alipay_client(env.keyset, env.base, timeout=5)
    no = "202401010000000040"
    r = env.control("POST", f"/sandbox/alipay/trades/{no}/pay", json={})
    assert r.status_code == 404
    assert r.json()["error"] == "sandbox.trade_not_found"
    r = env.control("POST", f"/sandbox/alipay/trades/{no}/pay", json={"total_amount": "12.34"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["notified"] is True
    assert ali.api_alipay_trade_query(out_trade_no=no)["trade_status"] == "TRADE_SUCCESS"
    note = receiver.wait_for(1)[0]
    assert note.path == "/notify/alipay"  # the sandbox's configured notify URL
    form = form_of(note.text)
    assert form["out_trade_no"] == no and ali.verify(form, form.pop("sign"))


def test_unknown_method_is_an_error_response(env: Env, ali: AliPay) -> None:
    answer = ali.server_api("alipay.trade.nonexistent", {"a": "b"})
    assert answer["sub_code"] == "isv.invalid-method"


def test_precreate_gives_a_qr_code(env: Env, ali: AliPay) -> None:
    answer = ali.api_alipay_trade_precreate("x", "202401010000000060", "2.00")
    assert answer["code"] == "10000" and answer["qr_code"]
    assert ali.api_alipay_trade_query(out_trade_no="202401010000000060")["trade_status"] == \
        "WAIT_BUYER_PAY"
