"""Every refund outcome the channels document, through the real SDKs: armed refusals with their
real codes, pending refunds that settle or fail, WeChat's PROCESSING default, abnormal refunds
recovered to a bank card, idempotent retries and the immediate mode tests may opt in to."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qsl

import pytest
from alipay import AliPay
from wechatpayv3 import WeChatPay
from wechatpayv3.type import RequestType

from gonglun.sandbox import Sandbox
from gonglun.sandbox.settings import Settings
from gonglun.sandbox.testing import NotifyReceiver

from .conftest import Env
from .test_sandbox_notify_faults import ali_paid, arm, wx_paid


def form(text: str) -> dict[str, str]:
    return dict(parse_qsl(text, keep_blank_values=True))


def no_more_notifications(receiver: NotifyReceiver, count: int, wait: float = 0.6) -> None:
    time.sleep(wait)
    assert len(receiver.received) == count, [n.text[:80] for n in receiver.received]


def settle(env: Env, channel: str, no: str, status: str, **extra: str) -> dict[str, Any]:
    r = env.control("POST", f"/sandbox/{channel}/refunds/{no}/settle",
                    json={"status": status, **extra})
    assert r.status_code == 200, r.text
    return r.json()["data"]


# --- Alipay --------------------------------------------------------------------------------


@pytest.mark.parametrize(("armed", "sub_code", "sub_msg"), [
    ("SYSTEM_ERROR", "ACQ.SYSTEM_ERROR", "系统错误"),
    ("ACQ.SELLER_BALANCE_NOT_ENOUGH", "ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足"),
    ("reason_trade_been_freezen", "ACQ.REASON_TRADE_BEEN_FREEZEN", "请求退款的交易被冻结"),
    ("BUYER_ERROR", "ACQ.BUYER_ERROR", "买家状态异常"),
])
def test_alipay_refusals_then_a_retry_with_the_same_number(
        env: Env, ali: AliPay, armed: str, sub_code: str, sub_msg: str) -> None:
    no = "202401010000000700"
    ali_paid(env, ali, no, "100.00")
    arm(env, channel="alipay", next_refund=armed)
    refused = ali.api_alipay_trade_refund("10.00", out_trade_no=no, out_request_no="r1")
    assert (refused["code"], refused["msg"], refused["sub_code"], refused["sub_msg"]) == (
        "40004", "Business Failed", sub_code, sub_msg)
    # Nothing was refunded: the query knows no such refund, the trade is untouched.
    assert ali.api_alipay_trade_fastpay_refund_query("r1", out_trade_no=no) == {
        "code": "10000", "msg": "Success"}
    assert ali.api_alipay_trade_query(out_trade_no=no)["trade_status"] == "TRADE_SUCCESS"
    retried = ali.api_alipay_trade_refund("10.00", out_trade_no=no, out_request_no="r1")
    assert (retried["code"], retried["fund_change"], retried["refund_fee"]) == (
        "10000", "Y", "10.00")
    again = ali.api_alipay_trade_refund("10.00", out_trade_no=no, out_request_no="r1")
    assert (again["fund_change"], again["refund_fee"]) == ("N", "10.00")  # refunded once


def test_alipay_trade_past_its_refund_window(env: Env, ali: AliPay) -> None:
    no = "202401010000000701"
    ali_paid(env, ali, no, "100.00")
    assert ali.api_alipay_trade_refund("1.00", out_trade_no=no, out_request_no="r1")[
        "fund_change"] == "Y"
    arm(env, channel="alipay", next_refund="TRADE_HAS_FINISHED")
    refused = ali.api_alipay_trade_refund("2.00", out_trade_no=no, out_request_no="r2")
    assert (refused["sub_code"], refused["sub_msg"]) == ("ACQ.TRADE_HAS_FINISHED", "交易已完结")
    # The trade stays finished: queries say so and every later refund is refused the same way,
    # while a retry of a refund made before still answers idempotently.
    assert ali.api_alipay_trade_query(out_trade_no=no)["trade_status"] == "TRADE_FINISHED"
    assert ali.api_alipay_trade_refund("2.00", out_trade_no=no, out_request_no="r3")[
        "sub_code"] == "ACQ.TRADE_HAS_FINISHED"
    assert ali.api_alipay_trade_refund("1.00", out_trade_no=no, out_request_no="r1")[
        "fund_change"] == "N"

    other = "202401010000000702"
    ali_paid(env, ali, other, "5.00")
    r = env.control("PATCH", f"/sandbox/alipay/trades/{other}",
                    json={"trade_status": "TRADE_FINISHED"})
    assert r.status_code == 200 and r.json()["data"]["trade_status"] == "TRADE_FINISHED"
    assert ali.api_alipay_trade_refund("5.00", out_trade_no=other)["sub_code"] == \
        "ACQ.TRADE_HAS_FINISHED"
    bad = env.control("PATCH", f"/sandbox/alipay/trades/{other}",
                      json={"trade_status": "TRADE_CLOSED"})
    assert (bad.status_code, bad.json()["error"]) == (400, "sandbox.bad_state")


def test_alipay_pending_refund_that_fails(env: Env, ali: AliPay,
                                          receiver: NotifyReceiver) -> None:
    no = "202401010000000710"
    ali_paid(env, ali, no, "100.00")
    receiver.wait_for(1)
    arm(env, channel="alipay", next_refund="PENDING")
    pending = ali.api_alipay_trade_refund("50.00", out_trade_no=no, out_request_no="p1")
    assert (pending["code"], pending["fund_change"], pending["refund_fee"]) == (
        "10000", "N", "0.00")  # refund_fee counts settled refunds only
    query = ali.api_alipay_trade_fastpay_refund_query("p1", out_trade_no=no)
    assert query["refund_amount"] == "50.00" and "refund_status" not in query
    # A retry while pending moves nothing; the pending money still caps further refunds.
    assert ali.api_alipay_trade_refund("50.00", out_trade_no=no, out_request_no="p1")[
        "fund_change"] == "N"
    assert ali.api_alipay_trade_refund("50.01", out_trade_no=no, out_request_no="p2")[
        "sub_code"] == "ACQ.REASON_TRADE_REFUND_FEE_ERR"

    failed = settle(env, "alipay", "p1", "FAILED")
    assert (failed["status"], failed["notified"], failed["notification"]) == (
        "FAILED", False, None)
    assert ali.api_alipay_trade_fastpay_refund_query("p1", out_trade_no=no) == {
        "code": "10000", "msg": "Success"}  # reported as never refunded
    assert ali.api_alipay_trade_query(out_trade_no=no)["trade_status"] == "TRADE_SUCCESS"
    no_more_notifications(receiver, 1)  # no refund notice for a failure
    again = env.control("POST", "/sandbox/alipay/refunds/p1/settle", json={"status": "SUCCESS"})
    assert (again.status_code, again.json()["error"]) == (409, "sandbox.refund_state")

    # Alipay's advice: retry with the same request number; this time the money moves.
    retried = ali.api_alipay_trade_refund("50.00", out_trade_no=no, out_request_no="p1")
    assert (retried["fund_change"], retried["refund_fee"]) == ("Y", "50.00")
    note = form(receiver.wait_for(2)[1].text)
    assert (note["out_biz_no"], note["refund_fee"], note["trade_status"]) == (
        "p1", "50.00", "TRADE_SUCCESS")
    assert ali.verify(note, note.pop("sign"))


def test_alipay_refund_fee_counts_only_settled_refunds(env: Env, ali: AliPay,
                                                       receiver: NotifyReceiver) -> None:
    no = "202401010000000720"
    ali_paid(env, ali, no, "100.00")
    arm(env, channel="alipay", next_refund="processing")  # alias of PENDING
    assert ali.api_alipay_trade_refund("30.00", out_trade_no=no, out_request_no="p1")[
        "refund_fee"] == "0.00"
    settled_now = ali.api_alipay_trade_refund("20.00", out_trade_no=no, out_request_no="r2")
    assert (settled_now["fund_change"], settled_now["refund_fee"]) == ("Y", "20.00")
    data = settle(env, "alipay", "p1", "SUCCESS", out_trade_no=no)
    assert data["status"] == "SUCCESS" and data["notified"] is True
    assert ali.api_alipay_trade_refund("20.00", out_trade_no=no, out_request_no="r2")[
        "refund_fee"] == "50.00"
    fees = sorted(form(n.text).get("refund_fee", "") for n in receiver.wait_for(3))
    assert fees == ["", "20.00", "50.00"]
    bad = env.control("POST", "/sandbox/alipay/refunds/p1/settle", json={"status": "ABNORMAL"})
    assert (bad.status_code, bad.json()["error"]) == (400, "sandbox.bad_status")


# --- WeChat Pay ----------------------------------------------------------------------------


def refund_wx(wx: WeChatPay, no: str, trade: str, refund: int, total: int) -> tuple[int, dict]:
    code, text = wx.refund(out_refund_no=no, out_trade_no=trade,
                           amount={"refund": refund, "total": total, "currency": "CNY"})
    return code, json.loads(text)


def test_wechat_abnormal_refund_recovered_to_the_buyers_bank_card(
        env: Env, wx: WeChatPay, receiver: NotifyReceiver) -> None:
    wx_paid(env, wx, "WX0000000730", 300)
    receiver.wait_for(1)
    code, body = refund_wx(wx, "R1", "WX0000000730", 100, 300)
    assert (code, body["status"], body["user_received_account"]) == (
        200, "PROCESSING", "支付用户零钱")
    code, again = refund_wx(wx, "R1", "WX0000000730", 100, 300)
    assert (code, again["refund_id"], again["status"]) == (200, body["refund_id"], "PROCESSING")
    no_more_notifications(receiver, 1, wait=0.3)  # nothing until the bank settles

    assert settle(env, "wxpay", "R1", "ABNORMAL")["status"] == "ABNORMAL"
    note = wx.callback(receiver.wait_for(2)[1].headers, receiver.received[1].body)
    assert (note["event_type"], note["resource"]["refund_status"]) == (
        "REFUND.ABNORMAL", "ABNORMAL")

    refund_id = body["refund_id"]
    code, text = wx.abnormal_refund(refund_id, "R1", "USER_BANK_CARD", bank_type="ICBC_DEBIT",
                                    bank_account="6222020000001234", real_name="张三")
    recovered = json.loads(text)
    assert (code, recovered["status"], recovered["refund_id"]) == (200, "PROCESSING", refund_id)
    assert (recovered["channel"], recovered["user_received_account"]) == (
        "OTHER_BANKCARD", "工商银行借记卡1234")
    code, text = wx.abnormal_refund(refund_id, "R1", "USER_BANK_CARD", bank_type="ICBC_DEBIT",
                                    bank_account="6222020000001234", real_name="张三")
    assert (code, json.loads(text)["status"]) == (200, "PROCESSING")  # the same request again
    assert json.loads(wx.query_refund("R1")[1])["status"] == "PROCESSING"

    settle(env, "wxpay", "R1", "SUCCESS")
    done = wx.callback(receiver.wait_for(3)[2].headers, receiver.received[2].body)
    assert (done["event_type"], done["resource"]["user_received_account"]) == (
        "REFUND.SUCCESS", "工商银行借记卡1234")
    assert json.loads(wx.query_refund("R1")[1])["status"] == "SUCCESS"


def test_wechat_abnormal_refund_to_the_merchant_and_its_refusals(env: Env,
                                                                 wx: WeChatPay) -> None:
    wx_paid(env, wx, "WX0000000740", 300)
    arm(env, channel="wxpay", next_refund="ABNORMAL")
    refund_id = refund_wx(wx, "R2", "WX0000000740", 100, 300)[1]["refund_id"]

    def apply(ref: str, **body: Any) -> tuple[int, dict]:
        path = f"/v3/refund/domestic/refunds/{ref}/apply-abnormal-refund"
        code, text = wx._core.request(path, method=RequestType.POST, data=body)
        return code, json.loads(text)

    for ref, body, status, error in (
        ("50300000000000000000000000000", {"out_refund_no": "R2", "type": "MERCHANT_BANK_CARD"},
         404, "RESOURCE_NOT_EXISTS"),
        (refund_id, {"out_refund_no": "R9", "type": "MERCHANT_BANK_CARD"}, 400, "PARAM_ERROR"),
        (refund_id, {"out_refund_no": "R2", "type": "WALLET"}, 400, "PARAM_ERROR"),
        (refund_id, {"out_refund_no": "R2", "type": "USER_BANK_CARD"}, 400, "PARAM_ERROR"),
        (refund_id, {"out_refund_no": "R2", "type": "USER_BANK_CARD", "bank_type": "CMB_DEBIT",
                     "bank_account": "6225880000000000", "real_name": "张三"},  # not encrypted
         400, "PARAM_ERROR"),
    ):
        code, answer = apply(ref, **body)
        assert (code, answer["code"]) == (status, error), answer
    code, answer = apply(refund_id, out_refund_no="R2", type="MERCHANT_BANK_CARD")
    assert (code, answer["status"], answer["user_received_account"]) == (
        200, "PROCESSING", "商户结算银行账户")
    # Only an ABNORMAL refund can be redirected.
    code, answer = apply(refund_id, out_refund_no="R2", type="USER_BANK_CARD",
                         bank_type="CMB_DEBIT", bank_account=wx._core.encrypt("6225880000000000"),
                         real_name=wx._core.encrypt("张三"))
    assert (code, answer["code"]) == (400, "INVALID_REQUEST")
    assert settle(env, "wxpay", "R2", "CLOSED")["status"] == "CLOSED"


@pytest.mark.parametrize(("armed", "status", "message"), [
    ("FREQUENCY_LIMITED", 429, "频率限制"),
    ("NOT_ENOUGH", 403, "余额不足"),
    ("USER_ACCOUNT_ABNORMAL", 403, "退款请求失败"),
    ("NO_AUTH", 403, "没有退款权限"),
    ("INVALID_REQUEST", 400, "请求参数符合参数格式，但不符合业务规则"),
    ("SYSTEM_ERROR", 500, "系统超时"),
])
def test_wechat_refund_refusals_have_their_documented_statuses(
        env: Env, wx: WeChatPay, armed: str, status: int, message: str) -> None:
    wx_paid(env, wx, "WX0000000750", 200)
    arm(env, channel="wxpay", next_refund=armed)
    code, body = refund_wx(wx, "R3", "WX0000000750", 200, 200)
    assert (code, body) == (status, {"code": armed, "message": message})
    assert wx.query_refund("R3")[0] == 404  # nothing was recorded
    assert json.loads(wx.query(out_trade_no="WX0000000750")[1])["trade_state"] == "SUCCESS"
    code, body = refund_wx(wx, "R3", "WX0000000750", 200, 200)  # retry, same out_refund_no
    assert (code, body["status"]) == (200, "PROCESSING")


def test_wechat_refunds_succeed_at_once_for_tests_that_opt_in(
        env: Env, wx: WeChatPay, receiver: NotifyReceiver) -> None:
    r = env.control("POST", "/sandbox/config", json={"refund_defaults": {"wxpay": "success"}})
    assert r.json()["data"]["refund_defaults"] == {"alipay": "SUCCESS", "wxpay": "SUCCESS"}
    wx_paid(env, wx, "WX0000000760", 100)
    code, body = refund_wx(wx, "R4", "WX0000000760", 100, 100)
    assert (code, body["status"]) == (200, "SUCCESS") and body["success_time"]
    events = sorted(json.loads(n.body)["event_type"] for n in receiver.wait_for(2))
    assert events == ["REFUND.SUCCESS", "TRANSACTION.SUCCESS"]
    arm(env, channel="wxpay", next_refund="PROCESSING")  # a fault still wins over the default
    wx_paid(env, wx, "WX0000000761", 100)
    assert refund_wx(wx, "R5", "WX0000000761", 100, 100)[1]["status"] == "PROCESSING"


@pytest.mark.parametrize("body", [
    {"refund_defaults": {"wxpay": "ABNORMAL"}},  # not a default: the bank settles later
    {"refund_defaults": {"alipay": "SYSTEM_ERROR"}},
    {"refund_defaults": {"paypal": "SUCCESS"}},
    {"refund_defaults": "SUCCESS"},
    {"partial_bills": "yes"},
    {"bill_url_ttl_s": 0},
    {"partial_bill": True},  # a typo is refused, not ignored
    {"retry_schedule": [0.1], "notify_timeout": -1},  # all or nothing
])
def test_bad_settings_are_refused_and_change_nothing(env: Env, body: dict[str, Any]) -> None:
    before = env.control("GET", "/sandbox/config").json()["data"]
    r = env.control("POST", "/sandbox/config", json=body)
    assert (r.status_code, r.json()["error"]) == (400, "sandbox.bad_config"), r.text
    assert env.control("GET", "/sandbox/config").json()["data"] == before


def test_settings_given_to_the_sandbox(keyset: dict[str, Any]) -> None:
    sandbox = Sandbox(keyset, settings=Settings(refund_defaults={"wxpay": "PENDING"},
                                                partial_bills=True))
    assert sandbox.settings.refund_defaults == {"alipay": "SUCCESS", "wxpay": "PROCESSING"}
    assert sandbox.next_refund("wxpay") == "PROCESSING"
    with pytest.raises(ValueError, match="refund_defaults"):
        Sandbox(keyset, settings=Settings(refund_defaults={"alipay": "CLOSED"}))


def test_refund_faults_speak_each_channels_words(env: Env) -> None:
    for channel, word in (("alipay", "NOT_ENOUGH"), ("wxpay", "SELLER_BALANCE_NOT_ENOUGH"),
                          ("alipay", "ABNORMAL")):
        r = env.control("POST", "/sandbox/faults", json={"channel": channel, "next_refund": word})
        assert (r.status_code, r.json()["error"]) == (400, "sandbox.bad_fault")
        assert word in r.json()["msg"] or "must be one of" in r.json()["msg"]
    assert arm(env, channel="alipay", next_refund="acq.system_error")["alipay"]["refund"][
        "mode"] == "SYSTEM_ERROR"


# --- refunds made at the channel's console (outside the merchant's own system) --------------


def test_console_refunds_are_the_channels_own_refunds(env: Env, ali: AliPay,
                                                      wx: WeChatPay) -> None:
    ali_paid(env, ali, "202401010000000900", "10.00")
    wx_paid(env, wx, "202401010000000901", 1000)
    done = env.control("POST", "/sandbox/alipay/trades/202401010000000900/refund",
                       json={"amount": 300})
    assert done.status_code == 200, done.text
    assert (done.json()["data"]["fund_change"], done.json()["data"]["refund_fee"],
            done.json()["data"]["out_request_no"]) == ("Y", "3.00", "console-1")
    # As any refund: the query by its number, the trade still TRADE_SUCCESS (partial).
    assert ali.api_alipay_trade_fastpay_refund_query(
        "console-1", out_trade_no="202401010000000900")["refund_status"] == "REFUND_SUCCESS"
    assert ali.api_alipay_trade_query(
        out_trade_no="202401010000000900")["trade_status"] == "TRADE_SUCCESS"
    too_much = env.control("POST", "/sandbox/alipay/trades/202401010000000900/refund",
                           json={"amount": 800})
    assert (too_much.status_code, too_much.json()["error"]) == (409, "sandbox.refund_refused")
    assert "ACQ.REASON_TRADE_REFUND_FEE_ERR" in too_much.json()["msg"]

    wx_done = env.control("POST", "/sandbox/wxpay/transactions/202401010000000901/refund",
                          json={"amount": 200})
    assert wx_done.status_code == 200, wx_done.text
    assert (wx_done.json()["data"]["status"], wx_done.json()["data"]["out_refund_no"]) == (
        "PROCESSING", "console-1")
    code, body = wx.query(out_trade_no="202401010000000901")
    assert code == 200 and json.loads(body)["trade_state"] == "REFUND"
    for path, payload, status in (
        ("/sandbox/wxpay/transactions/202401010000000901/refund", {"amount": 0}, 400),
        ("/sandbox/wxpay/transactions/nope/refund", {"amount": 1}, 404),
        ("/sandbox/alipay/trades/202401010000000900/refund", {}, 400),
        ("/sandbox/alipay/trades/nope/refund", {"amount": 1}, 409),
    ):
        assert env.control("POST", path, json=payload).status_code == status, path
