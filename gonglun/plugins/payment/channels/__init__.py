"""Channel adapters and their settings.

Settings come from the ``channel_config`` decision hook. The payment plugin's own answer uses
exactly the keys the configuration names (DECISIONS.md 23), never a fallback:

* ``[payment.alipay]`` / ``[payment.wxpay]`` with the channel's keys: the live gateway unless
  ``gateway`` says otherwise;
* otherwise a keyset file named by ``payment.keyset`` (staging against a standalone sandbox,
  which needs ``payment.gateway_url``), or the bundled sandbox's own keyset where the sandbox
  runs in this configuration (the embedded default, or ``sandbox.enabled = true``).

Anything else leaves the channel unavailable: a clear line at start (``channel_problems``) and
``payment.channel_unavailable`` on use.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from gonglun.errors import GonglunError
from gonglun.plugins.payment.channels.alipay import AlipayChannel
from gonglun.plugins.payment.channels.base import (
    Channel,
    ChannelError,
    ChannelPayment,
    CloseResult,
    RefundResult,
    StatementRow,
)
from gonglun.plugins.payment.channels.wxpay import WxpayChannel

ADAPTERS = {"alipay": AlipayChannel, "wxpay": WxpayChannel}
_lock = threading.Lock()
log = logging.getLogger(__name__)

__all__ = ["Channel", "ChannelError", "ChannelPayment", "CloseResult", "RefundResult",
           "StatementRow",
           "base_url", "channel_problems", "default_settings", "get_channel"]


def base_url(rt: Any) -> str:
    """Where this deployment is reachable (notify URLs) and, embedded, the sandbox gateway."""
    return str(rt.config.base_url)


class ChannelSettingsError(ValueError):
    """The configuration does not give this channel what it needs (the message says what)."""


def _keyset(rt: Any) -> tuple[dict[str, Any], str] | None:
    """The keyset ``payment.keyset`` names, or the bundled sandbox's where it runs here."""
    from gonglun.embedded import named_keyset

    try:
        return named_keyset(rt, "payment.keyset")
    except ValueError as exc:
        raise ChannelSettingsError(str(exc)) from exc


#: The channels' production gateways, used when the keys are configured.
LIVE_GATEWAYS = {"alipay": "https://openapi.alipay.com/gateway.do",
                 "wxpay": "https://api.mch.weixin.qq.com"}
REQUIRED = {"alipay": ("app_id", "app_private_key", "alipay_public_key"),
            "wxpay": ("mchid", "appid", "merchant_private_key", "merchant_serial_no",
                      "platform_public_key", "public_key_id", "apiv3_key")}


def default_settings(rt: Any, method: str) -> dict[str, Any] | None:
    """The channel's settings from exactly what the configuration names.

    Raises ``ChannelSettingsError`` saying what is missing when the configuration names keys
    for the channel only in part, or a keyset the channel cannot use.
    """
    if method not in REQUIRED:
        return None
    configured = dict(rt.config.get(f"payment.{method}") or {})
    given = [k for k in REQUIRED[method] if configured.get(k)]
    if given:
        missing = [k for k in REQUIRED[method] if not configured.get(k)]
        if missing:
            raise ChannelSettingsError(
                f"[payment.{method}] lacks {', '.join(missing)} (it names {', '.join(given)})")
        configured.setdefault("gateway", LIVE_GATEWAYS[method])
    else:
        found = _keyset(rt)
        if found is None:
            raise ChannelSettingsError(
                f"no keys: set [payment.{method}] ({', '.join(REQUIRED[method])}), or "
                "payment.keyset to a sandbox keyset file for staging")
        keyset, source = found
        keys = keyset.get(method)
        if not isinstance(keys, dict) or not all(keys.get(k) for k in REQUIRED[method]):
            raise ChannelSettingsError(f"{source} has no complete {method} keys")
        gateway = rt.config.get("payment.gateway_url")
        if not gateway:
            if not rt.config.sandbox_enabled:
                raise ChannelSettingsError(
                    "payment.keyset names sandbox keys but payment.gateway_url is not set")
            gateway = base_url(rt)  # the bundled sandbox, mounted on this server
        sandbox = str(gateway).rstrip("/")
        configured = {**keys, **configured}
        configured.setdefault("gateway",
                              f"{sandbox}/gateway.do" if method == "alipay" else sandbox)
    configured.setdefault("notify_url", f"{base_url(rt)}/v1/notify/{method}")
    return configured


def channel_problems(rt: Any, methods: tuple[str, ...] = ("alipay", "wxpay")) -> dict[str, str]:
    """Why each unavailable channel is unavailable (empty when all of ``methods`` work)."""
    problems = {}
    for method in methods:
        try:
            get_channel(rt, method)
        except GonglunError:
            problems[method] = rt.__dict__.get("_channel_problems", {}).get(method, "unavailable")
    return problems


def get_channel(rt: Any, method: str) -> Channel:
    cache: dict[str, Channel] = rt.__dict__.setdefault("_payment_channels", {})
    channel = cache.get(method)
    if channel is not None:
        return channel
    with _lock:
        if method not in cache:
            problems: dict[str, str] = rt.__dict__.setdefault("_channel_problems", {})
            adapter = None
            try:
                settings = rt.hooks.decide("channel_config", method=method)
                if settings is not None:
                    adapter = rt.hooks.decide("channel_adapter", method=method,
                                              settings=settings)
            except (ChannelSettingsError, ValueError, KeyError, TypeError) as exc:
                # Keys that do not parse, missing fields: the operator's problem, said once.
                problems[method] = f"{type(exc).__name__}: {exc}"
            if adapter is None:
                problems.setdefault(method, "no adapter answered for this channel")
                raise GonglunError("payment.channel_unavailable", f"支付渠道未配置: {method}",
                                   status=503)
            problems.pop(method, None)
            cache[method] = adapter
    return cache[method]
