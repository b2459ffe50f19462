"""An order refused because its channel is unavailable leaves nothing behind (issue 17, 9):
no keys (503), a gateway answering 500 or timing out (502). Through HTTP, the real SDKs and
the sandbox's faults; an Idempotency-Key retried after the refusal creates the order then."""

from __future__ import annotations

from typing import Any

import pytest

from gonglun.plugins.payment.models import Payment
from tests.payment.conftest import Live, wait_until
from tests.payment.test_edge import count
from tests.payment.test_orders import refused

WX = {"scene": "recharge_money", "amount": 300, "method": "wxpay", "channel": "native"}
GUEST = {"scene": "face_number", "amount": 100, "method": "wxpay", "channel": "native"}


def nothing_left(live: Live, headers: dict[str, str]) -> None:
    assert count(live, Payment) == 0
    assert count(live, Payment, Payment.state == "wait_pay") == 0
    mine = live.http.get("/v1/payments", headers=headers).json()["data"]["payments"]
    assert mine == []


def rebuild_channels(live: Live) -> None:
    live.rt.__dict__.pop("_payment_channels", None)  # adapters are built once per runtime


@pytest.mark.parametrize("method", ["wxpay", "alipay"])
def test_a_channel_without_keys_leaves_no_order(live: Live, method: str) -> None:
    """Keys named only in part: the channel is unavailable, refused before anything is
    written, for a user, a guest and a keyed request alike."""
    live.rt.config.data["payment"][method] = {"app_id" if method == "alipay" else "mchid": "1"}
    rebuild_channels(live)
    _, headers = live.user()
    body = {**WX, "method": method, "channel": "page" if method == "alipay" else "native"}
    refused(live, live.create(headers, **body), 503, "payment.channel_unavailable")
    keyed = {**headers, "Idempotency-Key": "no-keys-1"}
    refused(live, live.http.post("/v1/payments", headers=keyed, json=body), 503,
            "payment.channel_unavailable")
    refused(live, live.create(None, **{**GUEST, "method": method, "channel": body["channel"]}),
            503, "payment.channel_unavailable")
    nothing_left(live, headers)


@pytest.mark.parametrize("fault", [{"http": "500"}, {"http": "timeout", "delay_s": 2.0}],
                         ids=["500", "timeout"])
def test_a_failing_gateway_leaves_no_order(live: Live, fault: dict[str, Any]) -> None:
    live.rt.config.data["payment"]["wxpay"] = {"timeout": 0.5}
    rebuild_channels(live)
    _, headers = live.user()
    keyed = {**headers, "Idempotency-Key": "gateway-down-1"}
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", **fault, "count": 3})
    refused(live, live.create(headers, **WX), 502, "payment.channel_error")
    refused(live, live.http.post("/v1/payments", headers=keyed, json=WX), 502,
            "payment.channel_error")
    refused(live, live.create(None, **GUEST), 502, "payment.channel_error")
    nothing_left(live, headers)
    assert live.sb.get("/sandbox/wxpay/trades").json()["data"] == []
    # The same key, once the gateway is back: the order is made now, payable, and only once.
    made = live.http.post("/v1/payments", headers=keyed, json=WX)
    assert made.status_code == 201, made.text
    again = live.http.post("/v1/payments", headers=keyed, json=WX)
    assert again.json()["data"]["payment"]["id"] == made.json()["data"]["payment"]["id"]
    payment = made.json()["data"]["payment"]
    assert "code_url" in made.json()["data"]["pay_params"]
    paid = live.sb.post(f"/sandbox/wxpay/transactions/{payment['payment_order']}/pay")
    assert paid.status_code == 200, paid.text
    wait_until(lambda: live.payment(payment["id"], headers)["state"] == "ok", what="paid")
    assert count(live, Payment) == 1
