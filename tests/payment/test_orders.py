"""Order creation and lookup: every catalog refusal with its stable id, balance payments,
idempotent retries, visibility and the bill-page detail."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from gonglun.plugins.payment.models import Payment
from tests.payment.conftest import Live


def fund(live: Live, user_id: int, amount: int, *, scene: str = "admin_adjust",
         allow_negative: bool = False) -> None:
    from gonglun.testing import fund_wallet

    fund_wallet(live.rt, user_id, amount, scene=scene, allow_negative=allow_negative)


def count_payments(live: Live) -> int:
    with live.rt.db.read() as session:
        return session.scalar(select(func.count()).select_from(Payment))


def refused(live: Live, response: Any, status: int, error: str, msg: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error, body
    assert body["code"] != 0
    if msg is not None:
        assert body["msg"] == msg


@pytest.mark.parametrize(
    ("body", "login", "status", "error", "msg"),
    [
        ({"scene": "recharge_money", "amount": 100}, True, 400, "payment.method_required",
         "请先选择支付方式"),
        ({"scene": "tao", "amount": 100, "method": "money", "seller_id": 1}, False, 401,
         "payment.balance_login_required", "支付失败:余额支付必须先登录"),
        ({"scene": "face_number", "amount": 100, "method": "wxpay", "channel": "jsapi"}, False,
         401, "payment.wechat_login_required", "支付失败:微信环境需登录后才能支付"),
        ({"scene": "face_number", "amount": 100, "method": "wxpay", "channel": "jsapi"}, True,
         400, "payment.openid_missing", "公众号支付失败:openid获取不到"),
        ({"scene": "nope", "amount": 100, "method": "alipay", "channel": "page"}, True, 400,
         "payment.unknown_scene", None),
        ({"scene": "recharge_money", "amount": 100, "method": "money"}, True, 400,
         "payment.method_not_allowed", None),
        ({"scene": "recharge_money", "amount": 100, "method": "bitcoin"}, True, 400,
         "request.invalid_choice", None),
        ({"scene": "recharge_money", "amount": 100, "method": "alipay", "channel": "native"},
         True, 400, "request.invalid_choice", None),
        ({"scene": "recharge_money", "amount": 12.5, "method": "alipay", "channel": "page"},
         True, 400, "request.invalid_type", None),
        ({"scene": "recharge_money", "amount": "100", "method": "alipay", "channel": "page"},
         True, 400, "request.invalid_type", None),
        ({"scene": "recharge_money", "amount": 0, "method": "alipay", "channel": "page"}, True,
         400, "request.out_of_range", None),
        ({"scene": "recharge_money", "amount": 10**12, "method": "alipay", "channel": "page"},
         True, 400, "payment.amount_out_of_range", None),
        ({"scene": "tao", "amount": 100, "method": "alipay", "channel": "page"}, True, 400,
         "payment.seller_required", None),
        ({"scene": "tao", "amount": 100, "method": "alipay", "channel": "page",
          "seller_id": 999999}, True, 400, "payment.unknown_seller", None),
        ({"scene": "recharge_money", "amount": 100, "method": "alipay", "channel": "page",
          "user_id": 5}, True, 400, "payment.user_id_not_allowed", None),
        ({"scene": "recharge_money", "amount": 100, "method": "alipay", "channel": "page"},
         False, 401, "payment.login_required", None),
    ],
)
def test_creation_refusals(live: Live, body: dict[str, Any], login: bool, status: int,
                           error: str, msg: str | None) -> None:
    _, headers = live.user()
    refused(live, live.create(headers if login else None, **body), status, error, msg)
    assert count_payments(live) == 0


def test_malformed_body(live: Live) -> None:
    _, headers = live.user()
    response = live.http.post("/v1/payments", content=b"{oops", headers=headers)
    refused(live, response, 400, "request.invalid_json")
    assert count_payments(live) == 0


def test_negative_balance_blocks_new_orders(live: Live) -> None:
    user_id, headers = live.user()
    fund(live, user_id, -500, scene="refund_reverse", allow_negative=True)
    response = live.create(headers, scene="face_number", amount=100, method="alipay",
                           channel="page")
    refused(live, response, 403, "payment.negative_balance",
            "订单创建失败:账户余额为负数不允许交易\n请先将账户余额恢复正常,在进行平台交易!")
    assert count_payments(live) == 0
    # A top-up is how the debt is repaid (BAL-05): it stays open.
    topup = live.create(headers, scene="recharge_money", amount=100, method="alipay",
                        channel="page")
    assert topup.status_code == 201, topup.text


def test_balance_payment_debits_once(live: Live) -> None:
    buyer, headers = live.user()
    seller, _ = live.user("seller")
    fund(live, buyer, 1000)
    response = live.create(headers, scene="tao", amount=600, method="money", seller_id=seller,
                           title="青花瓷瓶")
    assert response.status_code == 201, response.text
    payment = response.json()["data"]["payment"]
    assert payment["state"] == "ok" and payment["channel"] == "balance"
    assert live.balance(headers) == 400
    short = live.create(headers, scene="tao", amount=600, method="money", seller_id=seller)
    refused(live, short, 400, "ledger.insufficient_balance", "账户余额不足")
    assert count_payments(live) == 1
    live.settle_outbox()
    from gonglun.ledger import run_audit

    assert run_audit(live.rt) == []


def test_idempotency_key_returns_the_first_order(live: Live) -> None:
    buyer, headers = live.user()
    seller, _ = live.user("seller")
    fund(live, buyer, 1000)
    keyed = {**headers, "Idempotency-Key": "order-42"}
    first = live.http.post("/v1/payments", headers=keyed, json={
        "scene": "tao", "amount": 300, "method": "money", "seller_id": seller})
    second = live.http.post("/v1/payments", headers=keyed, json={
        "seller_id": seller, "method": "money", "amount": 300, "scene": "tao"})
    # Stripe: the replay is the first answer again (same status and body), marked as a replay.
    assert first.status_code == 201 and second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert first.json() == second.json()
    assert live.balance(headers) == 700


def test_guest_may_pay_a_guest_scene(live: Live) -> None:
    response = live.create(None, scene="face_number", amount=100, method="wxpay",
                           channel="native")
    assert response.status_code == 201, response.text
    assert response.json()["data"]["payment"]["user_id"] is None


def test_pay_params_per_channel(live: Live) -> None:
    from gonglun.accounts import set_meta

    user_id, headers = live.user()
    with live.rt.db.write() as session:
        set_meta(session, user_id, "weixin_uid", "o-openid-of-buyer")
    expect = {
        ("alipay", "page"): {"url", "order_string"},
        ("alipay", "wap"): {"url", "order_string"},
        ("alipay", "app"): {"order_string"},
        ("wxpay", "native"): {"code_url"},
        ("wxpay", "h5"): {"h5_url"},
        ("wxpay", "app"): {"appid", "partnerid", "prepayid", "package", "noncestr",
                           "timestamp", "sign"},
        ("wxpay", "jsapi"): {"appId", "timeStamp", "nonceStr", "package", "signType",
                             "paySign"},
    }
    for (method, channel), keys in expect.items():
        response = live.create(headers, scene="recharge_money", amount=100, method=method,
                               channel=channel)
        assert response.status_code == 201, (method, channel, response.text)
        assert set(response.json()["data"]["pay_params"]) == keys, (method, channel)


def test_lookup_refusals_and_visibility(live: Live) -> None:
    owner, headers = live.user()
    _, stranger = live.user("stranger")
    admin_id, admin = live.user("cs", role="admin")
    _, superadmin = live.user("boss", role="superadmin")
    friend_id, friend = live.user("friend")
    payment = live.create(headers, scene="recharge_money", amount=100, method="wxpay",
                          channel="native").json()["data"]["payment"]

    refused(live, live.http.get("/v1/payments/12345678901234567890", headers=headers), 404,
            "payment.not_found", "支付订单不存在")
    refused(live, live.http.get("/v1/payments/abc", headers=headers), 400,
            "payment.invalid_ref", "订单号必须是数字")
    # Somebody else's payment answers exactly like a missing one.
    refused(live, live.http.get(f"/v1/payments/{payment['id']}", headers=stranger), 404,
            "payment.not_found", "支付订单不存在")
    refused(live, live.http.get(f"/v1/payments/{payment['id']}"), 401, "auth.required")

    mine = live.http.get(f"/v1/payments/{payment['payment_order']}", headers=headers).json()
    detail = mine["data"]["detail"]
    assert detail["scene"] == {"key": "recharge_money", "name": "账户余额充值", "title": "充值",
                               "color": "#46c47c"}
    assert detail["method_label"] == "微信支付" and detail["state_label"] == "等待付款"
    assert "admin" not in detail and "income" not in detail

    as_admin = live.http.get(f"/v1/payments/{payment['id']}", headers=admin).json()["data"]
    assert "payer_ip" in as_admin["detail"]["admin"] and "income" not in as_admin["detail"]
    as_boss = live.http.get(f"/v1/payments/{payment['id']}", headers=superadmin).json()["data"]
    assert as_boss["detail"]["income"] == 0

    refused(live, live.http.get(f"/v1/payments/{payment['id']}", headers=friend), 404,
            "payment.not_found")
    live.rt.config.data.setdefault("payment", {})["view_whitelist"] = [
        {"name": "客服小王", "user_id": friend_id}]
    assert live.http.get(f"/v1/payments/{payment['id']}", headers=friend).status_code == 200

    listing = live.http.get("/v1/payments", headers=headers).json()["data"]["payments"]
    assert [p["id"] for p in listing] == [payment["id"]]
    assert live.http.get("/v1/payments", headers=stranger).json()["data"]["payments"] == []
    everyone = live.http.get("/v1/payments?state=wait_pay", headers=admin).json()["data"]
    assert payment["id"] in [p["id"] for p in everyone["payments"]]
    assert admin_id and owner


def test_scenes_endpoint(live: Live) -> None:
    scenes = {s["key"]: s for s in live.http.get("/v1/payment/scenes").json()["data"]}
    assert scenes["face_number"]["close_minutes"] == 10
    assert scenes["face_number"]["refundable"] is False
    assert scenes["recharge_money"]["title"] == "充值"
    assert scenes["tao"]["seller_required"] is True
    assert scenes["tao"]["settle"] is True and "commission" not in scenes["tao"]
    assert scenes["recharge_money"]["topup"] is True


def test_a_new_scene_is_configuration_plus_one_hook(make_rt: Any) -> None:
    from types import SimpleNamespace

    from gonglun.hooks import hookimpl
    from gonglun.plugins.payment.scenes import scenes_for

    rt = make_rt(payment={"scenes": {"deposit": {"name": "拍卖保证金", "title": "定金",
                                                 "methods": ["money"], "close_minutes": 5}}})
    seen: list[str] = []

    @hookimpl
    def payment_success(payment: dict[str, Any]) -> None:
        if payment["scene"] == "deposit":
            seen.append(payment["payment_order"])

    rt.pm.register(SimpleNamespace(payment_success=payment_success), "auction")
    assert scenes_for(rt)["deposit"].close_minutes == 5
    with pytest.raises(ValueError, match="two characters"):
        make_rt(payment={"scenes": {"bad": {"title": "三个字"}}}).hooks  # noqa: B018
        from gonglun.plugins.payment.scenes import load_scenes

        load_scenes(make_rt(payment={"scenes": {"bad": {"title": "三个字"}}}))


def test_channel_settings_use_exactly_the_named_keys(make_rt: Any, tmp_path: Any) -> None:
    """DECISIONS.md 23: configured keys, a named keyset, or the sandbox that runs here; never a
    keyset merely lying around."""
    import pytest

    from gonglun.plugins.payment.channels import ChannelSettingsError, default_settings
    from gonglun.sandbox import init_keyset

    init_keyset(tmp_path / "keys")
    keyset = str(tmp_path / "keys" / "sandbox.json")
    staging = make_rt(payment={"keyset": keyset, "gateway_url": "https://sandbox.example"},
                      server={"public_url": "https://shop.example"})
    settings = default_settings(staging, "alipay")
    assert settings["gateway"] == "https://sandbox.example/gateway.do"
    assert settings["notify_url"] == "https://shop.example/v1/notify/alipay"
    sandboxed = make_rt(sandbox={"enabled": True, "dir": str(tmp_path / "keys")},
                        server={"public_url": "https://shop.example"})
    assert default_settings(sandboxed, "alipay")["gateway"] == "https://shop.example/gateway.do"
    live = make_rt(payment={"wxpay": {"mchid": "1", "appid": "wx", "merchant_private_key": "k",
                                      "merchant_serial_no": "s", "platform_public_key": "p",
                                      "public_key_id": "PUB_KEY_ID_1", "apiv3_key": "a" * 32}},
                   server={"public_url": "https://shop.example"})
    assert default_settings(live, "wxpay")["gateway"] == "https://api.mch.weixin.qq.com"
    # A leftover keyset in the sandbox folder is not trusted while the sandbox is off.
    leftover = make_rt(sandbox={"dir": str(tmp_path / "keys")})
    with pytest.raises(ChannelSettingsError, match="no keys"):
        default_settings(leftover, "alipay")
    partial = make_rt(payment={"alipay": {"app_id": "2021"}})
    with pytest.raises(ChannelSettingsError, match="lacks app_private_key, alipay_public_key"):
        default_settings(partial, "alipay")
    no_gateway = make_rt(payment={"keyset": keyset})
    with pytest.raises(ChannelSettingsError, match="gateway_url"):
        default_settings(no_gateway, "wxpay")


def test_bill_lookup(live: Live) -> None:
    """PAY-20: login, numeric number, 1 lookup per 5 s per IP, the viewer's permission."""
    _, headers = live.user()
    _, stranger = live.user("stranger")
    payment = live.create(headers, scene="recharge_money", amount=100, method="wxpay",
                          channel="native").json()["data"]["payment"]
    refused(live, live.http.post("/v1/payments/lookup", json={"order": payment["payment_order"]}),
            401, "auth.required")
    refused(live, live.http.post("/v1/payments/lookup", headers=headers, json={"order": "x1"}),
            400, "payment.invalid_ref", "订单号必须是数字")
    found = live.http.post("/v1/payments/lookup", headers=headers,
                           json={"order": payment["payment_order"]})
    assert found.status_code == 200, found.text
    assert found.json()["data"] == {"id": payment["id"], "link": f"/v1/payments/{payment['id']}"}
    refused(live, live.http.post("/v1/payments/lookup", headers=stranger,
                                 json={"order": payment["payment_order"]}),
            429, "payment.lookup_rate_limited", "查询过于频繁,请5秒后再试")
    live.rt.redis.delete(*live.rt.redis.keys(f"{live.rt.keys.prefix}*payment_query*"))
    refused(live, live.http.post("/v1/payments/lookup", headers=stranger,
                                 json={"order": payment["payment_order"]}),
            404, "payment.not_found", "支付订单不存在")


def test_plugins_shape_payments_through_hooks(live: Live) -> None:
    """payment_guard refuses, order_access widens, payment_detail adds, payment_created fires,
    channel_adapter replaces a channel: all from a plugin, no payment code touched."""
    from types import SimpleNamespace

    from gonglun.errors import GonglunError
    from gonglun.hooks import hookimpl
    from gonglun.plugins.payment.channels import WxpayChannel

    owner, headers = live.user()
    auditor_id, auditor = live.user("auditor")
    created: list[int] = []
    adapters: list[str] = []

    class TracingWxpay(WxpayChannel):
        def pay_params(self, payment: dict[str, Any], channel: str, extra: dict[str, Any]):
            adapters.append(payment["payment_order"])
            return super().pay_params(payment, channel, extra)

    @hookimpl
    def payment_guard(errors: list[Any], amount: int) -> list[Any]:
        if amount == 4444:
            errors.append(GonglunError("shop.unlucky_amount", "不吉利的金额"))
        return errors

    @hookimpl
    def order_access(allow: bool, viewer: Any) -> bool:
        return allow or viewer.id == auditor_id

    @hookimpl
    def payment_detail(detail: dict[str, Any]) -> dict[str, Any]:
        return {**detail, "shop": "宫论古玩"}

    @hookimpl
    def payment_created(payment: dict[str, Any]) -> None:
        created.append(payment["id"])

    @hookimpl(priority=1)
    def channel_adapter(method: str, settings: dict[str, Any]) -> Any:
        return TracingWxpay(settings) if method == "wxpay" else None

    live.rt.pm.register(SimpleNamespace(
        payment_guard=payment_guard, order_access=order_access, payment_detail=payment_detail,
        payment_created=payment_created, channel_adapter=channel_adapter), "shop")
    live.rt.__dict__.pop("_payment_channels", None)  # adapters are built once per runtime

    refused(live, live.create(headers, scene="recharge_money", amount=4444, method="wxpay",
                              channel="native"), 400, "shop.unlucky_amount", "不吉利的金额")
    assert count_payments(live) == 0
    payment = live.create(headers, scene="recharge_money", amount=4443, method="wxpay",
                          channel="native").json()["data"]["payment"]
    assert adapters == [payment["payment_order"]]
    seen = live.http.get(f"/v1/payments/{payment['id']}", headers=auditor)
    assert seen.status_code == 200 and seen.json()["data"]["detail"]["shop"] == "宫论古玩"
    live.settle_outbox()
    assert created == [payment["id"]] and owner
