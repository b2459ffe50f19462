"""Channel adapters and their settings.

Settings come from the ``channel_config`` decision hook. The payment plugin's own answer reads
``[payment.alipay]`` / ``[payment.wxpay]`` and, where keys are not configured, the gateway
sandbox's keyset (the embedded default), pointing the SDKs at ``payment.gateway_url``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from gonglun.errors import GonglunError
from gonglun.plugins.payment.channels.alipay import AlipayChannel
from gonglun.plugins.payment.channels.base import (
    Channel,
    ChannelError,
    ChannelPayment,
    CloseResult,
    StatementRow,
)
from gonglun.plugins.payment.channels.wxpay import WxpayChannel

ADAPTERS = {"alipay": AlipayChannel, "wxpay": WxpayChannel}
_lock = threading.Lock()

__all__ = ["Channel", "ChannelError", "ChannelPayment", "CloseResult", "StatementRow",
           "base_url", "default_settings", "get_channel"]


def base_url(rt: Any) -> str:
    """Where this deployment is reachable (notify URLs) and, embedded, the sandbox gateway."""
    configured = rt.config.get("server.public_url")
    if configured:
        return str(configured).rstrip("/")
    host = rt.config.get("server.host", "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: this machine reaches itself here
        host = "127.0.0.1"
    return f"http://{host}:{rt.config.get('server.port', 8000)}"


def _keyset(rt: Any) -> dict[str, Any] | None:
    sandbox = getattr(rt, "sandbox", None)
    if sandbox is not None and getattr(sandbox, "keyset", None):
        return dict(sandbox.keyset)
    from gonglun.embedded import sandbox_dir

    path = Path(sandbox_dir(rt)) / "sandbox.json"
    return json.loads(path.read_text("utf-8")) if path.exists() else None


#: The channels' production gateways, used when the keys are configured.
LIVE_GATEWAYS = {"alipay": "https://openapi.alipay.com/gateway.do",
                 "wxpay": "https://api.mch.weixin.qq.com"}
REQUIRED = {"alipay": ("app_id", "app_private_key", "alipay_public_key"),
            "wxpay": ("mchid", "appid", "merchant_private_key", "merchant_serial_no",
                      "platform_public_key", "public_key_id", "apiv3_key")}


def default_settings(rt: Any, method: str) -> dict[str, Any] | None:
    """Configured keys talk to the live gateway (unless ``gateway`` says otherwise); without
    keys, the sandbox's keyset talks to the sandbox at ``payment.gateway_url`` (default: this
    server, where the embedded default mounts it)."""
    configured = dict(rt.config.get(f"payment.{method}") or {})
    if all(configured.get(k) for k in REQUIRED[method]):
        configured.setdefault("gateway", LIVE_GATEWAYS[method])
    else:
        keyset = _keyset(rt)
        if keyset is None:
            return None
        configured = {**keyset[method], **configured}
        sandbox = str(rt.config.get("payment.gateway_url") or base_url(rt)).rstrip("/")
        configured.setdefault("gateway",
                              f"{sandbox}/gateway.do" if method == "alipay" else sandbox)
    configured.setdefault("notify_url", f"{base_url(rt)}/v1/notify/{method}")
    return configured


def get_channel(rt: Any, method: str) -> Channel:
    cache: dict[str, Channel] = rt.__dict__.setdefault("_payment_channels", {})
    channel = cache.get(method)
    if channel is not None:
        return channel
    with _lock:
        if method not in cache:
            settings = rt.hooks.decide("channel_config", method=method)
            adapter = None
            if settings is not None:
                adapter = rt.hooks.decide("channel_adapter", method=method, settings=settings)
            if adapter is None:
                raise GonglunError("payment.channel_unavailable", f"支付渠道未配置: {method}",
                                   status=503)
            cache[method] = adapter
    return cache[method]
