"""Real SDK clients pointed at a sandbox (or any base URL speaking the same protocols).

These return the SDKs' own classes, configured, never wrappers: product code calls
``AliPay`` and ``WeChatPay`` exactly as it would against the real gateways.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import requests
from alipay import AliPay
from alipay.utils import AliPayConfig
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.utils import aes_decrypt, build_authorization, load_private_key

from .keys import Keyset


def alipay_client(
    keyset: Keyset,
    base_url: str,
    notify_url: str | None = None,
    *,
    timeout: float = 15,
) -> AliPay:
    """An ``alipay.AliPay`` for the keyset's app whose gateway is ``base_url/gateway.do``."""
    cfg = keyset["alipay"]
    client = AliPay(
        appid=cfg["app_id"],
        app_notify_url=notify_url,
        app_private_key_string=cfg["app_private_key"],
        alipay_public_key_string=cfg["alipay_public_key"],
        sign_type="RSA2",
        config=AliPayConfig(timeout=timeout),
    )
    # NOTE: the SDK hard-codes openapi.alipay.com in __init__; overriding the attribute is the
    # documented way to point it elsewhere.
    client._gateway = base_url.rstrip("/") + "/gateway.do"
    return client


def fetch_platform_certificates(
    keyset: Keyset, base_url: str, cert_dir: str, *, timeout: float = 10
) -> list[str]:
    """Download ``GET /v3/certificates``, decrypt each with the SDK's own AES-GCM helper and
    write ``cert_dir/<serial>.pem``; returns the serials written.

    This is what a certificate-mode merchant does once when provisioning, and what lets the
    SDK start without calling the hard-coded api.mch.weixin.qq.com inside its constructor.
    """
    cfg = keyset["wxpay"]
    path = "/v3/certificates"
    authorization = build_authorization(
        path, "GET", cfg["mchid"], cfg["merchant_serial_no"],
        load_private_key(cfg["merchant_private_key"]),
    )
    response = requests.get(
        base_url.rstrip("/") + path,
        headers={"Authorization": authorization, "Accept": "application/json"},
        timeout=timeout,
    )
    response.raise_for_status()
    os.makedirs(cert_dir, exist_ok=True)
    serials: list[str] = []
    for item in response.json().get("data", []):
        enc: dict[str, Any] = item["encrypt_certificate"]
        pem = aes_decrypt(nonce=enc["nonce"], ciphertext=enc["ciphertext"],
                          associated_data=enc["associated_data"], apiv3_key=cfg["apiv3_key"])
        if pem is None:
            raise ValueError("platform certificate does not decrypt with this apiv3_key")
        with open(os.path.join(cert_dir, item["serial_no"] + ".pem"), "w", encoding="utf-8") as f:
            f.write(pem)
        serials.append(item["serial_no"])
    return serials


def wechat_client(
    keyset: Keyset,
    base_url: str,
    notify_url: str | None = None,
    *,
    public_key_mode: bool = True,
    cert_dir: str | None = None,
    wechatpay_type: WeChatPayType = WeChatPayType.NATIVE,
    timeout: float | tuple[float, float] | None = 15,
) -> WeChatPay:
    """A ``wechatpayv3.WeChatPay`` for the keyset's merchant talking to ``base_url``.

    Public-key mode (the default, what new merchants get) needs no network at construction.
    Certificate mode seeds ``cert_dir`` (a temporary directory when None) from the sandbox's
    ``/v3/certificates`` first, because the SDK would otherwise fetch them from the real host
    inside ``__init__``.
    """
    cfg = keyset["wxpay"]
    common: dict[str, Any] = {
        "wechatpay_type": wechatpay_type,
        "mchid": cfg["mchid"],
        "private_key": cfg["merchant_private_key"],
        "cert_serial_no": cfg["merchant_serial_no"],
        "appid": cfg["appid"],
        "apiv3_key": cfg["apiv3_key"],
        "notify_url": notify_url,
        "timeout": timeout,
    }
    if public_key_mode:
        client = WeChatPay(**common, public_key=cfg["platform_public_key"],
                           public_key_id=cfg["public_key_id"])
    else:
        cert_dir = cert_dir or tempfile.mkdtemp(prefix="gonglun-wxcerts-")
        if not any(name.lower().endswith(".pem") for name in _listdir(cert_dir)):
            fetch_platform_certificates(keyset, base_url, cert_dir)
        client = WeChatPay(**common, cert_dir=cert_dir)
    client._core._gate_way = base_url.rstrip("/")  # NOTE: hard-coded host in the SDK's Core
    return client


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def keyset_summary(keyset: Keyset) -> str:
    """Non-secret identifiers, for logs."""
    return json.dumps({
        "alipay_app_id": keyset["alipay"]["app_id"],
        "wxpay_mchid": keyset["wxpay"]["mchid"],
        "wxpay_public_key_id": keyset["wxpay"]["public_key_id"],
    })
