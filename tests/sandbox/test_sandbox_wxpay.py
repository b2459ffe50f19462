"""wechatpayv3 end to end against the sandbox's /v3 API, in both verification modes."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import pytest
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.utils import aes_decrypt, build_authorization, load_private_key

from gonglun.sandbox.clients import fetch_platform_certificates, wechat_client
from gonglun.sandbox.testing import NotifyReceiver

from .conftest import Env

TODAY = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d")
WECHATPAY_HEADERS = ("Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Timestamp",
                     "Wechatpay-Serial", "Wechatpay-Signature-Type")


def create(wx: WeChatPay, no: str, total: int = 100, kind: WeChatPayType = WeChatPayType.NATIVE,
           **kw: object) -> tuple[int, dict]:
    code, text = wx.pay(description="青花瓷", out_trade_no=no, amount={"total": total},
                        pay_type=kind, **kw)
    return code, json.loads(text)


def paid(env: Env, wx: WeChatPay, no: str, total: int = 100) -> dict:
    assert create(wx, no, total)[0] == 200
    r = env.control("POST", f"/sandbox/wxpay/transactions/{no}/pay", json={})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_pay_in_every_form(env: Env, wx: WeChatPay) -> None:
    code, body = create(wx, "WX0000000001", kind=WeChatPayType.NATIVE)
    assert code == 200 and body["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    code, body = create(wx, "WX0000000002", kind=WeChatPayType.JSAPI,
                        payer={"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"})
    assert code == 200 and body["prepay_id"].startswith("wx")
    code, body = create(wx, "WX0000000003", kind=WeChatPayType.APP)
    assert code == 200 and body["prepay_id"]
    code, body = create(wx, "WX0000000004", kind=WeChatPayType.H5,
                        scene_info={"payer_client_ip": "1.2.3.4", "h5_info": {"type": "Wap"}})
    assert code == 200 and body["h5_url"].startswith(env.base)
    page = env.http.get(body["h5_url"])
    assert page.status_code == 200 and "WX0000000004" in page.text
    code, body = create(wx, "WX0000000005", kind=WeChatPayType.JSAPI, payer={"openid": ""})
    assert (code, body["code"]) == (400, "PARAM_ERROR")


def test_query_close_and_their_errors(env: Env, wx: WeChatPay) -> None:
    create(wx, "WX0000000010", 250)
    code, text = wx.query(out_trade_no="WX0000000010")
    body = json.loads(text)
    assert code == 200 and body["trade_state"] == "NOTPAY"
    assert body["amount"]["total"] == 250 and "transaction_id" not in body
    code, text = wx.query(out_trade_no="WX-missing-1")
    assert (code, json.loads(text)["code"]) == (404, "ORDER_NOT_EXIST")
    code, text = wx.query(transaction_id="4200000000000000000000000000")
    assert (code, json.loads(text)["code"]) == (404, "ORDER_NOT_EXIST")

    assert wx.close("WX0000000010") == (204, b"")
    assert json.loads(wx.query(out_trade_no="WX0000000010")[1])["trade_state"] == "CLOSED"
    code, text = wx.close("WX-missing-1")
    assert (code, json.loads(text)["code"]) == (404, "ORDER_NOT_EXIST")
    assert create(wx, "WX0000000010", 250)[1]["code"] == "ORDERCLOSED"

    data = paid(env, wx, "WX0000000011", 300)
    code, text = wx.query(transaction_id=data["transaction_id"])
    body = json.loads(text)
    assert code == 200 and body["trade_state"] == "SUCCESS" and body["out_trade_no"] == \
        "WX0000000011"
    assert body["amount"]["payer_total"] == 300 and body["success_time"].endswith("+08:00")
    code, text = wx.close("WX0000000011")
    assert (code, json.loads(text)["code"]) == (400, "ORDERPAID")


def test_every_response_is_signed_even_204_and_errors(env: Env, wx: WeChatPay) -> None:
    create(wx, "WX0000000020")
    path = "/v3/pay/transactions/out-trade-no/WX0000000020/close"
    body = json.dumps({"mchid": env.keyset["wxpay"]["mchid"]})
    for method, p, data in (("POST", path, body),
                            ("GET", "/v3/pay/transactions/out-trade-no/nope1234?mchid="
                             + env.keyset["wxpay"]["mchid"], "")):
        auth = build_authorization(
            p, method, env.keyset["wxpay"]["mchid"], env.keyset["wxpay"]["merchant_serial_no"],
            load_private_key(env.keyset["wxpay"]["merchant_private_key"]), data=data or None)
        r = env.http.request(method, p, content=data, headers={
            "Authorization": auth, "Content-Type": "application/json",
            "Wechatpay-Serial": env.keyset["wxpay"]["public_key_id"]})
        assert r.status_code in (204, 404)
        for name in WECHATPAY_HEADERS:
            assert r.headers.get(name), name
        assert r.headers["Wechatpay-Serial"] == env.keyset["wxpay"]["public_key_id"]
        assert wx._core._verify_signature(r.headers, r.text)


def test_wrong_merchant_key_gets_401_sign_error(env: Env,
                                                stranger_keypair: tuple[str, str]) -> None:
    bad = wechat_client(env.keyset_with("wxpay", merchant_private_key=stranger_keypair[0]),
                        env.base)
    code, text = bad.query(out_trade_no="WX0000000030")
    assert (code, json.loads(text)["code"]) == (401, "SIGN_ERROR")
    bad_serial = wechat_client(env.keyset_with("wxpay", merchant_serial_no="0" * 40), env.base)
    assert bad_serial.query(out_trade_no="WX0000000030")[0] == 401
    bad_mch = wechat_client(env.keyset_with("wxpay", mchid="1900000000"), env.base)
    assert bad_mch.query(out_trade_no="WX0000000030")[0] == 401


def test_sdk_rejects_answers_not_signed_by_the_platform(
        env: Env, stranger_keypair: tuple[str, str]) -> None:
    misled = wechat_client(env.keyset_with("wxpay", platform_public_key=stranger_keypair[1]),
                           env.base)
    with pytest.raises(Exception, match="failed to verify the signature"):
        misled.pay(description="x", out_trade_no="WX0000000031", amount={"total": 1},
                   notify_url="http://127.0.0.1:9/n", pay_type=WeChatPayType.NATIVE)


def test_refunds(env: Env, wx: WeChatPay, receiver: NotifyReceiver) -> None:
    no = "WX0000000040"
    refund = {"refund": 40, "total": 100, "currency": "CNY"}
    code, text = wx.refund(out_refund_no="WR40-0", amount=refund, out_trade_no="WX-missing-1")
    assert (code, json.loads(text)["code"]) == (404, "RESOURCE_NOT_EXISTS")
    create(wx, no)
    code, text = wx.refund(out_refund_no="WR40-0", amount=refund, out_trade_no=no)
    assert (code, json.loads(text)["code"]) == (400, "INVALID_REQUEST")
    env.control("POST", f"/sandbox/wxpay/transactions/{no}/pay", json={})

    code, text = wx.refund(out_refund_no="WR40-1", amount=refund, out_trade_no=no)
    body = json.loads(text)
    assert code == 200 and body["status"] == "PROCESSING"  # until the bank settles it
    assert body["amount"]["refund"] == 40 and body["refund_id"]
    again = json.loads(wx.refund(out_refund_no="WR40-1", amount=refund, out_trade_no=no)[1])
    assert again["refund_id"] == body["refund_id"]  # idempotent on out_refund_no
    code, text = wx.refund(out_refund_no="WR40-1", amount=dict(refund, refund=41),
                           out_trade_no=no)
    assert (code, json.loads(text)["code"]) == (400, "INVALID_REQUEST")
    code, text = wx.refund(out_refund_no="WR40-2", amount=dict(refund, refund=61),
                           out_trade_no=no)
    assert (code, json.loads(text)["code"]) == (400, "INVALID_REQUEST")  # 40 + 61 > 100
    transaction_id = json.loads(wx.query(out_trade_no=no)[1])["transaction_id"]
    code, text = wx.refund(out_refund_no="WR40-2", amount=dict(refund, refund=60),
                           transaction_id=transaction_id)
    assert code == 200 and json.loads(text)["status"] == "PROCESSING"
    assert json.loads(wx.query(out_trade_no=no)[1])["trade_state"] == "REFUND"
    for out_refund_no in ("WR40-1", "WR40-2"):
        assert env.control("POST", f"/sandbox/wxpay/refunds/{out_refund_no}/settle",
                           json={"status": "SUCCESS"}).status_code == 200

    code, text = wx.query_refund("WR40-2")
    assert code == 200 and json.loads(text)["amount"]["refund"] == 60
    code, text = wx.query_refund("WR-missing")
    assert (code, json.loads(text)["code"]) == (404, "RESOURCE_NOT_EXISTS")

    # deliveries run concurrently: like the real channels, no order is promised
    notes = [wx.callback(n.headers, n.body) for n in receiver.wait_for(3)]
    assert sorted(n["event_type"] for n in notes) == [
        "REFUND.SUCCESS", "REFUND.SUCCESS", "TRANSACTION.SUCCESS"]
    refund_note = next(n["resource"] for n in notes
                       if n["resource"].get("out_refund_no") == "WR40-1")
    assert refund_note["refund_status"] == "SUCCESS" and refund_note["amount"]["refund"] == 40


def test_callback_decrypts_and_refuses_tampering(env: Env, wx: WeChatPay,
                                                 receiver: NotifyReceiver) -> None:
    paid(env, wx, "WX0000000050", 123)
    note = receiver.wait_for(1)[0]
    assert note.path == "/notify/wxpay"
    result = wx.callback(note.headers, note.body)
    assert result["event_type"] == "TRANSACTION.SUCCESS"
    assert result["resource_type"] == "encrypt-resource"
    assert result["resource"]["out_trade_no"] == "WX0000000050"
    assert result["resource"]["amount"]["total"] == 123
    raw = json.loads(note.body)
    assert raw["resource"]["algorithm"] == "AEAD_AES_256_GCM"
    assert len(raw["resource"]["nonce"]) == 12 and raw["resource"]["original_type"] == \
        "transaction"
    tampered = note.text.replace('"支付成功"', '"支付失败"')
    assert tampered != note.text
    assert wx.callback(note.headers, tampered) is None
    forged = dict(note.headers, **{"Wechatpay-Signature": "AAAA" + note.headers[
        "Wechatpay-Signature"][4:]})
    assert wx.callback(forged, note.body) is None


def test_certificates_decrypt_with_the_sdk_helper(env: Env, tmp_path: Path) -> None:
    wxk = env.keyset["wxpay"]
    auth = build_authorization("/v3/certificates", "GET", wxk["mchid"], wxk["merchant_serial_no"],
                               load_private_key(wxk["merchant_private_key"]))
    r = env.http.get("/v3/certificates", headers={"Authorization": auth})
    assert r.status_code == 200
    item = r.json()["data"][0]
    enc = item["encrypt_certificate"]
    pem = aes_decrypt(enc["nonce"], enc["ciphertext"], enc["associated_data"], wxk["apiv3_key"])
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    assert r.headers["Wechatpay-Serial"] == item["serial_no"]  # certificate mode: cert serial
    assert fetch_platform_certificates(env.keyset, env.base, str(tmp_path)) == [item["serial_no"]]
    assert (tmp_path / f"{item['serial_no']}.pem").read_text() == pem


def test_certificate_mode_client_works_end_to_end(env: Env, receiver: NotifyReceiver,
                                                  tmp_path: Path) -> None:
    wx = wechat_client(env.keyset, env.base, notify_url=receiver.url + "/cert",
                       public_key_mode=False, cert_dir=str(tmp_path / "certs"))
    assert wx._core._certificates  # loaded from the seeded cert_dir, no call to the real host
    code, _ = create(wx, "WX0000000060")
    assert code == 200
    assert json.loads(wx.query(out_trade_no="WX0000000060")[1])["trade_state"] == "NOTPAY"
    env.control("POST", "/sandbox/wxpay/transactions/WX0000000060/pay", json={})
    note = receiver.wait_for(1)[0]
    assert note.headers["Wechatpay-Serial"] == env.sandbox.wxpay.cert_serial
    assert wx.callback(note.headers, note.body)["resource"]["trade_state"] == "SUCCESS"
    assert wx.close("WX0000000060")[0] == 400  # ORDERPAID, and the 4xx is not verified


def paid_and_refunded(env: Env, wx: WeChatPay, no: str, refund_no: str) -> None:
    """12.34 paid, 0.34 of it refunded, today."""
    paid(env, wx, no, 1234)
    wx.refund(out_refund_no=refund_no, amount={"refund": 34, "total": 1234, "currency": "CNY"},
              out_trade_no=no)
    # A refund is on the statement of the day it succeeded: the bank settles it first.
    assert env.control("POST", f"/sandbox/wxpay/refunds/{refund_no}/settle",
                       json={"status": "SUCCESS"}).status_code == 200


def bill_lines(wx: WeChatPay, answer: tuple[int, str]) -> list[str]:
    """The lines of the gzipped bill a bill request's ``download_url`` serves."""
    import hashlib

    code, text = answer
    assert code == 200, text
    found = json.loads(text)
    code, content = wx.download_bill(found["download_url"])
    assert code == 200 and found["hash_type"] == "SHA1"
    assert hashlib.sha1(content).hexdigest() == found["hash_value"]
    return list(gzip.decompress(content).decode("utf-8").splitlines())


def test_trade_bill(env: Env, wx: WeChatPay) -> None:
    paid_and_refunded(env, wx, "WX0000000070", "WR70")
    lines = bill_lines(wx, wx.trade_bill(TODAY))
    header = lines[0].split(",")
    assert header[0] == "交易时间" and "微信订单号" in header and "应结订单金额" in header
    rows = [dict(zip(header, (v.lstrip("`") for v in line.split(",")), strict=True))
            for line in lines[1:3]]
    assert [(r["商户订单号"], r["交易状态"], r["应结订单金额"], r["退款金额"]) for r in rows] == [
        ("WX0000000070", "SUCCESS", "12.34", "0.00"),
        ("WX0000000070", "REFUND", "12.34", "0.34"),
    ]
    assert lines[3].startswith("总交易单数")
    code, text = wx.trade_bill("20240101")
    assert (code, json.loads(text)["code"]) == (400, "PARAM_ERROR")



def test_fundflow_bill(env: Env, wx: WeChatPay) -> None:
    """申请资金账单 as wechatpayv3 calls it: the basic account's movements of the day (the
    payment in, the refund out, the balance after each), then the totals."""
    paid_and_refunded(env, wx, "WX0000000071", "WR71")
    lines = bill_lines(wx, wx.fundflow_bill(TODAY))
    header = lines[0].split(",")
    assert header[:3] == ["记账时间", "微信支付业务单号", "资金流水单号"]
    rows = [dict(zip(header, (v.lstrip("`") for v in line.split(",")), strict=True))
            for line in lines[1:3]]
    assert [(r["业务凭证号"], r["业务类型"], r["收支类型"], r["收支金额(元)"], r["账户结余(元)"])
            for r in rows] == [("WX0000000071", "交易", "收入", "12.34", "12.34"),
                               ("WR71", "退款", "支出", "0.34", "12.00")]
    assert lines[3].split(",")[0] == "资金流水总笔数"
    assert [v.lstrip("`") for v in lines[4].split(",")] == ["2", "1", "12.34", "1", "0.34"]
    # Plain text without tar_type; the fees account did not move; bad input is PARAM_ERROR.
    code, text = wx.fundflow_bill(TODAY, account_type="FEES", tar_type="")
    code, plain = wx.download_bill(json.loads(text)["download_url"])
    assert plain.decode("utf-8").splitlines()[1:] == [
        "资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额", "`0,`0,`0.00,`0,`0.00"]
    for bad in ({"bill_date": "20240101"}, {"bill_date": TODAY, "account_type": "GOLD"}):
        code, text = wx.fundflow_bill(**bad)
        assert (code, json.loads(text)["code"]) == (400, "PARAM_ERROR")


def test_oversized_bodies_are_refused_without_reading_them_whole(env: Env) -> None:
    """The v3 pipeline reads at most its limit, like the control API."""
    answer = env.http.post("/v3/pay/transactions/native", content=b"x" * (2 << 20),
                           headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert answer.json()["code"] == "PARAM_ERROR"
