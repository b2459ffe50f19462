"""Notification retries and the fault switches, each for the next ``count`` calls only."""

from __future__ import annotations

import itertools
import json
import socket
import time
import urllib.error
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import requests
from alipay import AliPay
from wechatpayv3 import WeChatPay, WeChatPayType

from gonglun.sandbox.clients import alipay_client, wechat_client
from gonglun.sandbox.testing import (
    TEST_RETRY_SCHEDULE,
    NotifyReceiver,
    notify_receiver,
    running_sandbox,
)

from .conftest import Env


def wait_until(predicate, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def ali_paid(env: Env, ali: AliPay, no: str, amount: str = "10.00") -> None:
    r = env.http.get("/gateway.do?" + ali.api_alipay_trade_page_pay("x", no, amount),
                     headers={"Accept": "application/json"})
    assert r.json()["code"] == "10000"
    assert env.control("POST", f"/sandbox/alipay/trades/{no}/pay", json={}).status_code == 200


def wx_paid(env: Env, wx: WeChatPay, no: str, total: int = 100) -> None:
    code, _ = wx.pay(description="x", out_trade_no=no, amount={"total": total},
                     pay_type=WeChatPayType.NATIVE)
    assert code == 200
    assert env.control("POST", f"/sandbox/wxpay/transactions/{no}/pay", json={}).status_code == 200


def arm(env: Env, **spec: object) -> dict:
    r = env.control("POST", "/sandbox/faults", json=spec)
    assert r.status_code == 200, r.text
    return r.json()["data"]


# --- retries -----------------------------------------------------------------------------


def test_alipay_retries_until_the_literal_success(env: Env) -> None:
    with notify_receiver(replies=[(200, "fail"), (500, "oops"), (200, "SUCCESS!")]) as rcv:
        ali = alipay_client(env.keyset, env.base, notify_url=rcv.url + "/a")
        ali_paid(env, ali, "202401010000000100")
        notes = rcv.wait_for(4)
        assert len({n.text for n in notes}) == 1  # the same signed form every time
        attempts = wait_until(lambda: [a for a in env.attempts(channel="alipay")
                                       if a["outcome"] == "acked"] and env.attempts())
    assert [(a["attempt"], a["status"], a["reply"], a["outcome"]) for a in attempts] == [
        (1, 200, "fail", "retry"), (2, 500, "oops", "retry"), (3, 200, "SUCCESS!", "retry"),
        (4, 200, "success", "acked"),
    ]
    assert all(a["url"] == rcv.url + "/a" and a["summary"]["out_trade_no"] ==
               "202401010000000100" for a in attempts)
    gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(attempts)]
    assert all(g >= s * 0.8 for g, s in zip(gaps, TEST_RETRY_SCHEDULE, strict=True)), gaps


def test_wechat_retries_on_anything_but_200_or_204(env: Env) -> None:
    with notify_receiver(replies=[(500, '{"code":"FAIL"}'), (204, "")]) as rcv:
        wx = wechat_client(env.keyset, env.base, notify_url=rcv.url + "/w")
        wx_paid(env, wx, "WX0000000100")
        notes = rcv.wait_for(2)
        assert all(wx.callback(n.headers, n.body) for n in notes)  # re-signed, still valid
        attempts = wait_until(lambda: len(env.attempts()) == 2 and env.attempts())
    assert [(a["status"], a["outcome"]) for a in attempts] == [(500, "retry"), (204, "acked")]


def test_attempts_are_bounded_and_connection_errors_logged(tmp_path: Path,
                                                          keyset: dict) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/gone"
    with running_sandbox(tmp_path, keyset=keyset, notify_urls={"alipay": dead}) as (base, sb, ks):
        env = Env(base, sb, ks)
        r = env.control("POST", "/sandbox/alipay/trades/202401010000000101/pay",
                        json={"total_amount": "1.00"})
        assert r.status_code == 200
        total = len(TEST_RETRY_SCHEDULE) + 1
        attempts = wait_until(lambda: len(env.attempts()) == total and env.attempts())
        assert [a["outcome"] for a in attempts] == ["retry"] * (total - 1) + ["failed"]
        assert all(a["url"] == dead and a["status"] is None and a["error"] for a in attempts)
        time.sleep(sum(TEST_RETRY_SCHEDULE[-1:]) + 0.3)
        assert len(env.attempts()) == total  # and no more
        env.http.close()


# --- notification faults -------------------------------------------------------------------


def test_drop_then_normal(env: Env, ali: AliPay, receiver: NotifyReceiver) -> None:
    arm(env, channel="alipay", notify="drop")
    ali_paid(env, ali, "202401010000000110")
    ali_paid(env, ali, "202401010000000111")
    first = receiver.wait_for(1)
    time.sleep(0.3)
    assert len(receiver.received) == 1
    assert dict(parse_qsl(first[0].text))["out_trade_no"] == "202401010000000111"
    dropped = env.attempts(out_trade_no="202401010000000110")
    assert [a["outcome"] for a in dropped] == ["dropped"]


def test_duplicate_for_count_notifications(env: Env, wx: WeChatPay,
                                           receiver: NotifyReceiver) -> None:
    assert arm(env, channel="wxpay", notify="duplicate", count=2)["wxpay"]["notify"][
        "remaining"] == 2
    for no in ("WX0000000120", "WX0000000121", "WX0000000122"):
        wx_paid(env, wx, no)
    notes = receiver.wait_for(5)
    time.sleep(0.3)
    assert len(receiver.received) == 5
    ids = [json.loads(n.body)["id"] for n in notes]
    by_order: dict[str, set[str]] = {}
    for n in notes:
        resource = wx.callback(n.headers, n.body)["resource"]
        by_order.setdefault(resource["out_trade_no"], set()).add(json.loads(n.body)["id"])
    assert {k: len(v) for k, v in by_order.items()} == {
        "WX0000000120": 1, "WX0000000121": 1, "WX0000000122": 1}  # duplicates share the id
    assert len(ids) == 5
    assert env.control("GET", "/sandbox/faults").json()["data"] == {}


def test_delay(env: Env, ali: AliPay, receiver: NotifyReceiver) -> None:
    arm(env, channel="alipay", notify="delay", delay_s=0.8)
    start = time.time()
    ali_paid(env, ali, "202401010000000130")
    time.sleep(0.4)
    assert receiver.received == []
    first = receiver.wait_for(1)[0]
    assert first.at - start >= 0.75
    start = time.time()
    ali_paid(env, ali, "202401010000000131")
    second = receiver.wait_for(2)[1]
    assert second.at - start < 0.6


# --- HTTP faults ---------------------------------------------------------------------------


def test_http_500_for_count_calls(env: Env, ali: AliPay, wx: WeChatPay) -> None:
    arm(env, channel="alipay", http="500", count=2)
    for _ in range(2):
        with pytest.raises(urllib.error.HTTPError) as info:
            ali.api_alipay_trade_query(out_trade_no="202401010000000140")
        assert info.value.code == 500
    assert ali.api_alipay_trade_query(out_trade_no="202401010000000140")["code"] == "40004"

    arm(env, channel="wxpay", http="500")
    code, text = wx.query(out_trade_no="WX0000000140")
    assert (code, json.loads(text)["code"]) == (500, "SYSTEM_ERROR")
    assert wx.query(out_trade_no="WX0000000140")[0] == 404


def test_http_timeout(env: Env) -> None:
    ali = alipay_client(env.keyset, env.base, timeout=0.3)
    wx = wechat_client(env.keyset, env.base, timeout=0.3)
    arm(env, channel="alipay", http="timeout", delay_s=0.8)
    with pytest.raises((TimeoutError, urllib.error.URLError, socket.timeout)):
        ali.api_alipay_trade_query(out_trade_no="202401010000000150")
    assert ali.api_alipay_trade_query(out_trade_no="202401010000000150")["code"] == "40004"
    arm(env, channel="wxpay", http="timeout", delay_s=0.8)
    with pytest.raises(requests.exceptions.Timeout):
        wx.query(out_trade_no="WX0000000150")
    assert wx.query(out_trade_no="WX0000000150")[0] == 404


# --- refund outcomes ------------------------------------------------------------------------


def test_wechat_refund_outcomes_and_settlement(env: Env, wx: WeChatPay,
                                               receiver: NotifyReceiver) -> None:
    wx_paid(env, wx, "WX0000000160", 500)
    amount = {"refund": 100, "total": 500, "currency": "CNY"}

    def refund(no: str) -> dict:
        code, text = wx.refund(out_refund_no=no, amount=amount, out_trade_no="WX0000000160")
        assert code == 200, text
        return json.loads(text)

    assert refund("R1")["status"] == "PROCESSING"  # the default, as in production
    arm(env, channel="wxpay", next_refund="SUCCESS")
    assert refund("R2")["status"] == "SUCCESS"
    assert refund("R3")["status"] == "PROCESSING"  # the fault was for one call
    arm(env, channel="wxpay", next_refund="ABNORMAL")
    assert refund("R4")["status"] == "ABNORMAL"
    arm(env, channel="wxpay", next_refund="CLOSED")
    assert refund("R5")["status"] == "CLOSED"

    r = env.control("POST", "/sandbox/wxpay/refunds/R1/settle", json={"status": "SUCCESS"})
    assert r.status_code == 200 and r.json()["data"]["status"] == "SUCCESS"
    assert json.loads(wx.query_refund("R1")[1])["status"] == "SUCCESS"
    assert env.control("POST", "/sandbox/wxpay/refunds/R1/settle",
                       json={"status": "SUCCESS"}).status_code == 409

    notes = receiver.wait_for(5)
    events = sorted(wx.callback(n.headers, n.body)["event_type"] for n in notes)
    assert events == ["REFUND.ABNORMAL", "REFUND.CLOSED", "REFUND.SUCCESS", "REFUND.SUCCESS",
                      "TRANSACTION.SUCCESS"]
    settled = next(wx.callback(n.headers, n.body)["resource"] for n in notes
                   if json.loads(n.body)["event_type"] == "REFUND.SUCCESS"
                   and wx.callback(n.headers, n.body)["resource"]["out_refund_no"] == "R1")
    assert settled["refund_status"] == "SUCCESS"
    assert json.loads(wx.query_refund("R3")[1])["status"] == "PROCESSING"  # no news for R3


def test_wechat_processing_refund_can_settle_abnormal(env: Env, wx: WeChatPay,
                                                      receiver: NotifyReceiver) -> None:
    wx_paid(env, wx, "WX0000000161", 100)
    receiver.wait_for(1)
    arm(env, channel="wxpay", next_refund="PENDING")  # alias of PROCESSING
    wx.refund(out_refund_no="R9", amount={"refund": 100, "total": 100, "currency": "CNY"},
              out_trade_no="WX0000000161")
    env.control("POST", "/sandbox/wxpay/refunds/R9/settle", json={"status": "ABNORMAL"})
    note = receiver.wait_for(2)[1]
    assert wx.callback(note.headers, note.body)["event_type"] == "REFUND.ABNORMAL"
    assert json.loads(wx.query_refund("R9")[1])["status"] == "ABNORMAL"


def test_alipay_pending_refund(env: Env, ali: AliPay, receiver: NotifyReceiver) -> None:
    no = "202401010000000170"
    ali_paid(env, ali, no, "50.00")
    receiver.wait_for(1)
    arm(env, channel="alipay", next_refund="PENDING")
    answer = ali.api_alipay_trade_refund("50.00", out_trade_no=no, out_request_no="p1")
    assert (answer["code"], answer["fund_change"]) == ("10000", "N")
    query = ali.api_alipay_trade_fastpay_refund_query("p1", out_trade_no=no)
    assert query["refund_amount"] == "50.00" and "refund_status" not in query
    assert ali.api_alipay_trade_refund("50.00", out_trade_no=no, out_request_no="p1")[
        "fund_change"] == "N"
    assert ali.api_alipay_trade_query(out_trade_no=no)["trade_status"] == "TRADE_SUCCESS"

    r = env.control("POST", "/sandbox/alipay/refunds/p1/settle", json={})
    assert r.status_code == 200 and r.json()["data"]["status"] == "SUCCESS"
    assert ali.api_alipay_trade_fastpay_refund_query("p1", out_trade_no=no)["refund_status"] == \
        "REFUND_SUCCESS"
    assert ali.api_alipay_trade_query(out_trade_no=no)["trade_status"] == "TRADE_CLOSED"
    note = dict(parse_qsl(receiver.wait_for(2)[1].text))
    assert (note["out_biz_no"], note["trade_status"], note["refund_fee"]) == \
        ("p1", "TRADE_CLOSED", "50.00")
    assert ali.verify(note, note.pop("sign"))
    assert env.control("POST", "/sandbox/alipay/refunds/p1/settle", json={}).status_code == 409
