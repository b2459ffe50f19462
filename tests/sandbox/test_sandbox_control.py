"""The control API: clear errors, injected trades, statements, config; and mounting."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import falcon
import falcon.asgi
import httpx
import pytest
from alipay import AliPay
from wechatpayv3 import WeChatPay

from gonglun.sandbox import Sandbox, create_sandbox_app
from gonglun.sandbox.clients import alipay_client
from gonglun.sandbox.testing import UvicornThread

from .conftest import Env

TODAY = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d")


@pytest.mark.parametrize(("method", "path", "body", "status", "error"), [
    ("POST", "/sandbox/faults", b"{not json", 400, "sandbox.bad_json"),
    ("POST", "/sandbox/faults", b"[1]", 400, "sandbox.bad_json"),
    ("POST", "/sandbox/faults", b"", 400, "sandbox.bad_json"),
    ("POST", "/sandbox/faults", b'{"channel": "paypal", "http": "500"}', 400, "sandbox.bad_fault"),
    ("POST", "/sandbox/faults", b'{"channel": "alipay"}', 400, "sandbox.bad_fault"),
    ("POST", "/sandbox/faults", b'{"channel": "alipay", "next_refund": "ABNORMAL"}', 400,
     "sandbox.bad_fault"),
    ("POST", "/sandbox/faults", b'{"channel": "wxpay", "notify": "lose"}', 400,
     "sandbox.bad_fault"),
    ("POST", "/sandbox/faults", b'{"channel": "wxpay", "http": "500", "count": 0}', 400,
     "sandbox.bad_fault"),
    ("POST", "/sandbox/faults", b'{"channel": "wxpay", "notify": "delay"}', 400,
     "sandbox.bad_fault"),
    ("POST", "/sandbox/alipay/trades/nope/pay", b"{}", 404, "sandbox.trade_not_found"),
    ("POST", "/sandbox/alipay/trades/nope/pay", b'{"total_amount": "1.234"}', 400,
     "sandbox.bad_amount"),
    ("POST", "/sandbox/wxpay/transactions/nope/pay", b"", 404, "sandbox.trade_not_found"),
    ("POST", "/sandbox/wxpay/transactions/nope/pay", b'{"total": 1.5}', 400,
     "sandbox.bad_amount"),
    ("POST", "/sandbox/wxpay/refunds/nope/settle", b'{"status": "SUCCESS"}', 404,
     "sandbox.refund_not_found"),
    ("POST", "/sandbox/wxpay/refunds/nope/settle", b'{"status": "DONE"}', 400,
     "sandbox.bad_status"),
    ("POST", "/sandbox/alipay/refunds/nope/settle", b"{}", 404, "sandbox.refund_not_found"),
    ("GET", "/sandbox/bills/paypal/2024-01-01", b"", 404, "sandbox.bad_channel"),
    ("GET", "/sandbox/bills/wxpay/2024-01", b"", 400, "sandbox.bad_date"),
    ("GET", "/sandbox/notifications?channel=paypal", b"", 400, "sandbox.bad_channel"),
    ("POST", "/sandbox/config", b'{"retry_schedule": "fast"}', 400, "sandbox.bad_config"),
    ("POST", "/sandbox/alipay/trades", b"{}", 400, "sandbox.bad_amount"),
    ("PATCH", "/sandbox/wxpay/trades/nope", b'{"total": 1}', 404, "sandbox.trade_not_found"),
])
def test_bad_control_input_gets_a_clear_json_error(env: Env, method: str, path: str, body: bytes,
                                                   status: int, error: str) -> None:
    r = env.control(method, path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    payload = r.json()
    assert payload["code"] == status and payload["error"] == error and payload["msg"]


def test_paying_twice_is_a_conflict(env: Env) -> None:
    assert env.control("POST", "/sandbox/wxpay/transactions/WX0000000200/pay",
                       json={"total": 100}).status_code == 200
    r = env.control("POST", "/sandbox/wxpay/transactions/WX0000000200/pay", json={})
    assert (r.status_code, r.json()["error"]) == (409, "sandbox.trade_state")


def test_injected_trades_and_statements(env: Env, ali: AliPay, wx: WeChatPay) -> None:
    # an order paid at the channel that the merchant never created
    r = env.control("POST", "/sandbox/alipay/trades",
                    json={"out_trade_no": "202401010000000300", "total_amount": "9.99"})
    assert r.status_code == 201
    assert ali.api_alipay_trade_query(out_trade_no="202401010000000300")["trade_status"] == \
        "TRADE_SUCCESS"
    r = env.control("POST", "/sandbox/wxpay/trades", json={"out_trade_no": "WX0000000300",
                                                             "total": 500})
    assert r.status_code == 201 and r.json()["data"]["transaction_id"]
    assert json.loads(wx.query(out_trade_no="WX0000000300")[1])["trade_state"] == "SUCCESS"
    assert env.control("POST", "/sandbox/wxpay/trades", json={"out_trade_no": "WX0000000300",
                                                               "total": 1}).status_code == 409

    # an amount mismatch: the channel recorded something else
    r = env.control("PATCH", "/sandbox/wxpay/trades/WX0000000300", json={"total": 499})
    assert r.json()["data"]["amount"]["total"] == 499
    bill = env.control("GET", f"/sandbox/bills/wxpay/{TODAY}", params={"format": "json"})
    records = bill.json()["data"]["records"]
    assert [(x["out_trade_no"], x["amount"], x["type"]) for x in records] == [
        ("WX0000000300", 499, "payment")]
    csv_text = env.control("GET", f"/sandbox/bills/wxpay/{TODAY}").text
    assert "`WX0000000300" in csv_text and "`4.99" in csv_text

    # a payment on another day lands on that day's statement
    env.control("POST", "/sandbox/alipay/trades", json={
        "out_trade_no": "202401010000000301", "amount": 100, "paid_at": "2024-03-01 10:00:00"})
    march = env.control("GET", "/sandbox/bills/alipay/2024-03-01", params={"format": "json"})
    assert [x["out_trade_no"] for x in march.json()["data"]["records"]] == ["202401010000000301"]
    assert env.control("GET", "/sandbox/bills/alipay/2024-03", params={"format": "json"}).json()[
        "data"]["totals"] == {"payments": 1, "payment_amount": 100, "refunds": 0,
                              "refund_amount": 0}
    listed = env.control("GET", "/sandbox/alipay/trades").json()["data"]
    assert {t["out_trade_no"] for t in listed} == {"202401010000000300", "202401010000000301"}
    one = env.control("GET", "/sandbox/alipay/trades/202401010000000301").json()["data"]
    assert one["paid_at"] == "2024-03-01 10:00:00"


def test_config_changes_the_retry_schedule(env: Env) -> None:
    r = env.control("POST", "/sandbox/config", json={"retry_schedule": [0.1], "notify_timeout": 1})
    assert r.json()["data"] == {
        "retry_schedule": [0.1], "notify_timeout": 1.0, "partial_bills": False,
        "bill_url_ttl_s": 30.0, "refund_defaults": {"alipay": "SUCCESS", "wxpay": "PROCESSING"}}
    info = env.control("GET", "/sandbox/info").json()["data"]
    assert info["alipay"]["app_id"] == env.keyset["alipay"]["app_id"]
    assert info["wxpay"]["public_key_id"] == env.keyset["wxpay"]["public_key_id"]


def test_reset_forgets_everything(env: Env, ali: AliPay) -> None:
    env.control("POST", "/sandbox/alipay/trades", json={"out_trade_no": "202401010000000400",
                                                         "total_amount": "1.00"})
    env.control("POST", "/sandbox/faults", json={"channel": "alipay", "http": "500"})
    assert env.control("POST", "/sandbox/reset").status_code == 200
    assert ali.api_alipay_trade_query(out_trade_no="202401010000000400")["code"] == "40004"


def test_routes_mount_beside_an_application(tmp_path: Path, keyset: dict) -> None:
    """The embedded default: one app serves /v1 and the sandbox on one base URL."""

    class Health:
        async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            resp.media = {"code": 0, "msg": "ok", "data": {"ok": True}}

    app = falcon.asgi.App()
    app.add_route("/v1/health", Health())
    Sandbox(keyset).add_routes(app)
    server = UvicornThread(app)
    base = server.start()
    try:
        assert httpx.get(base + "/v1/health", trust_env=False).json()["data"] == {"ok": True}
        ali = alipay_client(keyset, base)
        assert ali.api_alipay_trade_query(out_trade_no="202401010000000500")["code"] == "40004"
    finally:
        server.stop()


def test_create_sandbox_app_exposes_its_sandbox(keyset: dict) -> None:
    app = create_sandbox_app(keyset)
    assert isinstance(app, falcon.asgi.App)
    assert isinstance(app.sandbox, Sandbox)
