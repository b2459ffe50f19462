"""Where notifications go: never to an address a control caller chose (issue 7, part 1).

The control API refuses ``notify_url``; orders it creates notify the sandbox's configured
``notify_urls``; the sender delivers only to allowed hosts (loopback by default), records a
refusal instead of sending, and never follows a redirect.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import falcon
import falcon.asgi
import pytest
from alipay import AliPay
from wechatpayv3 import WeChatPay, WeChatPayType

from gonglun.sandbox import Sandbox
from gonglun.sandbox.clients import alipay_client, wechat_client
from gonglun.sandbox.notifier import REFUSED_HOST, HostAllowlist, host_entry
from gonglun.sandbox.testing import (
    TEST_RETRY_SCHEDULE,
    NotifyReceiver,
    UvicornThread,
    running_sandbox,
)

from .conftest import Env

ALI_WAIT, ALI_NEW = "202401010000000800", "202401010000000801"
WX_WAIT, WX_NEW = "WX0000000800", "WX0000000801"


def open_alipay_cashier(env: Env, ali: AliPay, no: str, amount: str = "1.00") -> None:
    r = env.http.get("/gateway.do?" + ali.api_alipay_trade_page_pay("x", no, amount),
                     headers={"Accept": "application/json"})
    assert r.json()["code"] == "10000", r.text


def create_wx_order(wx: WeChatPay, no: str, total: int = 100) -> None:
    code, _ = wx.pay(description="x", out_trade_no=no, amount={"total": total},
                     pay_type=WeChatPayType.NATIVE)
    assert code == 200


def snapshot(env: Env) -> list[Any]:
    """Everything a control call could change."""
    return [env.control("GET", path).json()["data"] for path in (
        "/sandbox/alipay/trades", "/sandbox/wxpay/trades", "/sandbox/notifications",
        "/sandbox/faults", "/sandbox/config")]


# --- the control API refuses notify_url -----------------------------------------------------

CONTROL_WRITES = [
    ("POST", f"/sandbox/alipay/trades/{ALI_NEW}/pay", {"total_amount": "1.00"}),
    ("POST", f"/sandbox/alipay/trades/{ALI_WAIT}/pay", {}),
    ("POST", f"/sandbox/wxpay/transactions/{WX_NEW}/pay", {"total": 100}),
    ("POST", f"/sandbox/wxpay/transactions/{WX_WAIT}/pay", {}),
    ("POST", "/sandbox/alipay/trades", {"out_trade_no": ALI_NEW, "amount": 100, "notify": True}),
    ("POST", "/sandbox/wxpay/trades", {"out_trade_no": WX_NEW, "total": 100, "notify": True}),
    ("PATCH", f"/sandbox/alipay/trades/{ALI_WAIT}", {"amount": 5}),
    ("PATCH", f"/sandbox/wxpay/trades/{WX_WAIT}", {"total": 5}),
    ("POST", "/sandbox/alipay/refunds/r1/settle", {}),
    ("POST", "/sandbox/wxpay/refunds/r1/settle", {"status": "SUCCESS"}),
    ("POST", "/sandbox/faults", {"channel": "alipay", "notify": "duplicate"}),
    ("POST", "/sandbox/config", {"retry_schedule": [0.1]}),
]


@pytest.mark.parametrize(("method", "path", "body"), CONTROL_WRITES,
                         ids=[f"{m} {p}" for m, p, _ in CONTROL_WRITES])
def test_control_bodies_refuse_notify_url_and_change_nothing(
        env: Env, ali: AliPay, wx: WeChatPay, receiver: NotifyReceiver,
        method: str, path: str, body: dict[str, Any]) -> None:
    open_alipay_cashier(env, ali, ALI_WAIT)
    create_wx_order(wx, WX_WAIT)
    before = snapshot(env)
    r = env.control(method, path, json={**body, "notify_url": receiver.url + "/elsewhere"})
    assert r.status_code == 400, r.text
    payload = r.json()
    assert payload["error"] == "sandbox.notify_url_not_allowed"
    assert "notify_url" in payload["msg"] and "notify_urls" in payload["msg"]
    assert snapshot(env) == before
    time.sleep(0.3)
    assert receiver.received == []


# --- control-created orders notify the configured URLs --------------------------------------


def test_control_created_orders_notify_the_configured_urls(notifying_env: Env,
                                                          receiver: NotifyReceiver) -> None:
    env = notifying_env
    answers = [
        env.control("POST", f"/sandbox/alipay/trades/{ALI_NEW}/pay", json={"amount": 100}),
        env.control("POST", "/sandbox/alipay/trades",
                    json={"out_trade_no": ALI_WAIT, "amount": 200, "notify": True}),
        env.control("POST", f"/sandbox/wxpay/transactions/{WX_NEW}/pay", json={"total": 100}),
        env.control("POST", "/sandbox/wxpay/trades",
                    json={"out_trade_no": WX_WAIT, "total": 200, "notify": True}),
    ]
    for r, channel in zip(answers, ["alipay", "alipay", "wxpay", "wxpay"], strict=True):
        assert r.is_success, r.text
        data = r.json()["data"]
        assert data["notify_url"] == f"{receiver.url}/notify/{channel}"
        assert data["notified"] is True and len(data["notification"]) == 1
    notes = receiver.wait_for(4)
    ali = alipay_client(env.keyset, env.base)
    wx = wechat_client(env.keyset, env.base)
    got = set()
    for note in notes:
        if note.path == "/notify/alipay":
            form = dict(parse_qsl(note.text))
            assert ali.verify(form, form.pop("sign"))
            got.add(form["out_trade_no"])
        else:
            assert note.path == "/notify/wxpay"
            got.add(wx.callback(note.headers, note.body)["resource"]["out_trade_no"])
    assert got == {ALI_NEW, ALI_WAIT, WX_NEW, WX_WAIT}


def test_without_notify_urls_control_orders_notify_nobody(env: Env,
                                                          receiver: NotifyReceiver) -> None:
    for path, body in ((f"/sandbox/alipay/trades/{ALI_NEW}/pay", {"total_amount": "1.00"}),
                       (f"/sandbox/wxpay/transactions/{WX_NEW}/pay", {"total": 100})):
        r = env.control("POST", path, json=body)
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert (data["notify_url"], data["notification"], data["notified"]) == ("", None, False)
        assert "no notification sent" in data["notification_note"]
    time.sleep(0.3)
    assert env.attempts() == [] and receiver.received == []


# --- the sender's allowlist ------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["alipay", "wxpay"])
def test_a_merchant_notify_url_off_the_allowlist_is_stored_not_notified(
        tmp_path: Path, keyset: dict[str, Any], receiver: NotifyReceiver, channel: str) -> None:
    # Loopback is off this allowlist, so the local receiver proves nothing was sent.
    target = receiver.url + "/merchant"
    with running_sandbox(tmp_path, keyset=keyset,
                         notify_hosts=["pay.example"]) as (base, sandbox, ks):
        env = Env(base, sandbox, ks)
        if channel == "alipay":
            open_alipay_cashier(env, alipay_client(ks, base, notify_url=target), ALI_WAIT)
            r = env.control("POST", f"/sandbox/alipay/trades/{ALI_WAIT}/pay", json={})
        else:
            create_wx_order(wechat_client(ks, base, notify_url=target), WX_WAIT)
            r = env.control("POST", f"/sandbox/wxpay/transactions/{WX_WAIT}/pay", json={})
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert data["notify_url"] == target  # stored as the merchant signed it
        assert data["notified"] is False
        assert data["notification_note"] == f"no notification sent: {REFUSED_HOST}"
        expected = [("refused", REFUSED_HOST, target, None, 0)]
        log = env.attempts()
        assert [(a["outcome"], a["error"], a["url"], a["status"], a["attempt"])
                for a in log] == expected
        time.sleep(sum(TEST_RETRY_SCHEDULE[:2]) + 0.2)
        assert len(env.attempts()) == 1  # no retries
        env.http.close()
    assert receiver.received == []


def test_the_default_allowlist_refuses_other_hosts(env: Env, receiver: NotifyReceiver) -> None:
    wx = wechat_client(env.keyset, env.base, notify_url="https://collector.example/notify")
    create_wx_order(wx, WX_WAIT)
    r = env.control("POST", f"/sandbox/wxpay/transactions/{WX_WAIT}/pay", json={})
    assert r.json()["data"]["notified"] is False
    assert [(a["outcome"], a["error"]) for a in env.attempts()] == [("refused", REFUSED_HOST)]
    # and loopback (the receiver) is allowed
    wx = wechat_client(env.keyset, env.base, notify_url=receiver.url + "/ok")
    create_wx_order(wx, WX_NEW)
    r = env.control("POST", f"/sandbox/wxpay/transactions/{WX_NEW}/pay", json={})
    assert r.json()["data"]["notified"] is True
    assert receiver.wait_for(1)[0].path == "/ok"
    info = env.control("GET", "/sandbox/info").json()["data"]["notify"]
    assert info == {"urls": {}, "hosts": ["127.0.0.1", "::1", "localhost"]}


def test_redirects_are_not_followed(tmp_path: Path, keyset: dict[str, Any],
                                    receiver: NotifyReceiver) -> None:
    class Redirect:
        async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
            resp.status = 307
            resp.set_header("Location", receiver.url + "/redirected")

    app = falcon.asgi.App()
    app.add_route("/n", Redirect())
    server = UvicornThread(app)
    url = server.start() + "/n"
    try:
        with running_sandbox(tmp_path, keyset=keyset, retry_schedule=(0.1,),
                             notify_urls={"alipay": url}) as (base, sandbox, ks):
            env = Env(base, sandbox, ks)
            r = env.control("POST", f"/sandbox/alipay/trades/{ALI_NEW}/pay", json={"amount": 1})
            assert r.json()["data"]["notified"] is True
            deadline = time.monotonic() + 10
            while len(env.attempts()) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [(a["status"], a["outcome"]) for a in env.attempts()] == [
                (307, "retry"), (307, "failed")]
            env.http.close()
    finally:
        server.stop()
    assert receiver.received == []


def test_allowlist_rules() -> None:
    default = HostAllowlist.for_sandbox(None, {})
    for url in ("http://127.0.0.1:8000/n", "https://localhost/n", "http://[::1]:9/n",
                "http://LOCALHOST:1/n", "http://user@127.0.0.1:5/n"):
        assert default.refusal(url) is None, url
    for url in ("http://127.0.0.2/n", "http://10.0.0.1/n", "https://example.com/n",
                "http://127.0.0.1.example.com/n", "http://127.0.0.1@evil.example/n",
                "http://127.0.0.1\\@evil.example/n", "http://localhost.evil.example/n"):
        assert default.refusal(url) == REFUSED_HOST, url
    for url in ("ftp://127.0.0.1/n", "file:///etc/passwd", "127.0.0.1:80", "", "http:///n"):
        assert default.refusal(url) == "refused: not an http(s) URL", url

    configured = HostAllowlist.for_sandbox(None, {"alipay": "https://shop.example/v1/notify/a"})
    assert configured.refusal("https://shop.example/v1/notify/wxpay") is None
    assert configured.refusal("https://shop.example:443/other") is None
    assert configured.refusal("http://shop.example/v1/notify/alipay") == REFUSED_HOST  # port 80
    assert configured.refusal("https://shop.example:8443/n") == REFUSED_HOST
    assert configured.refusal("http://127.0.0.1/n") is None
    assert configured.describe() == ["127.0.0.1", "::1", "localhost", "shop.example:443"]

    explicit = HostAllowlist.for_sandbox(["Pay.Example:8000", "[::1]:7000", "hooks.example"], {})
    assert explicit.refusal("http://pay.example:8000/n") is None
    assert explicit.refusal("http://pay.example:8001/n") == REFUSED_HOST
    assert explicit.refusal("https://hooks.example:1234/n") is None
    assert explicit.refusal("http://[::1]:7000/n") is None
    assert explicit.refusal("http://127.0.0.1:8000/n") == REFUSED_HOST  # replaces loopback
    assert HostAllowlist.for_sandbox([], {}).refusal("http://localhost/n") == REFUSED_HOST

    assert host_entry("::1") == ("::1", None)
    assert host_entry(" Example.COM:80 ") == ("example.com", 80)
    for bad in ("", ":80", "host:0", "host:70000", "host:x", "http://host", "a@b", "[::1]x"):
        with pytest.raises(ValueError):
            host_entry(bad)


def test_sandbox_options_are_checked(keyset: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="unknown channel"):
        Sandbox(keyset, notify_urls={"paypal": "http://127.0.0.1/n"})
    with pytest.raises(ValueError, match="http"):
        Sandbox(keyset, notify_urls={"alipay": "ftp://127.0.0.1/n"})
    with pytest.raises(ValueError, match="bad notify host"):
        Sandbox(keyset, notify_hosts=["http://x/"])
    sandbox = Sandbox(keyset, notify_urls={"wxpay": "http://app.internal:8000/v1/notify/wxpay",
                                           "alipay": ""},
                      notify_hosts=["hooks.example"])
    assert sandbox.notify_urls == {"wxpay": "http://app.internal:8000/v1/notify/wxpay"}
    assert sandbox.notifier.allowlist.describe() == ["app.internal:8000", "hooks.example"]
    sandbox.close()
