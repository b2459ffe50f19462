"""Notification providers, one per channel, chosen through the ``notify_provider`` decision.

The notify plugin answers for its built-ins; a plugin answering first replaces one (another
SMS vendor, a mail API). ``get_provider`` asks once per runtime and channel and remembers the
answer, or why there is none: that reason is a start-up line and the delivery log's ``reason``.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

from gonglun.accounts.contacts import mask
from gonglun.plugins.notify.providers.base import (
    DeliveryError,
    Outbound,
    PermanentError,
    Provider,
    TransientError,
)
from gonglun.vendors import SettingsError

log = logging.getLogger(__name__)

#: channel → "module:class" of the built-in provider.
BUILTIN = {
    "inbox": "gonglun.plugins.notify.providers.inbox:InboxProvider",
    "email": "gonglun.plugins.notify.providers.email:SmtpProvider",
    "sms": "gonglun.plugins.notify.providers.tencent:TencentSmsProvider",
    "wechat": "gonglun.plugins.notify.providers.wechat:WeChatTemplateProvider",
    "app": "gonglun.plugins.notify.providers.jpush:JPushProvider",
    "websocket": "gonglun.plugins.notify.providers.websocket:WebsocketProvider",
}
_lock = threading.Lock()

__all__ = ["BUILTIN", "DeliveryError", "Outbound", "PermanentError", "Provider",
           "ProviderUnavailable", "SettingsError", "TransientError", "builtin", "get_provider",
           "mask", "provider_problems"]


class ProviderUnavailable(RuntimeError):
    """No provider can deliver this channel here; the message says why."""


def builtin(rt: Any, channel: str) -> Provider | None:
    """The built-in provider of ``channel`` (the plugin's ``notify_provider`` answer)."""
    target = BUILTIN.get(channel)
    if target is None:
        return None
    module, _, name = target.partition(":")
    provider: Provider = getattr(importlib.import_module(module), name).from_config(rt)
    return provider


def get_provider(rt: Any, channel: str) -> Provider:
    cache: dict[str, Provider | str] = rt.__dict__.setdefault("_notify_providers", {})
    found = cache.get(channel)
    if found is None:
        with _lock:
            if channel not in cache:
                try:
                    answer = rt.hooks.decide("notify_provider", channel=channel)
                    cache[channel] = answer if answer is not None else (
                        f"no provider answered for channel {channel}")
                except (SettingsError, ValueError, KeyError, TypeError, ImportError) as exc:
                    cache[channel] = str(exc) if isinstance(exc, SettingsError) else (
                        f"{type(exc).__name__}: {exc}")
            found = cache[channel]
    if isinstance(found, str):
        raise ProviderUnavailable(found)
    return found


def provider_problems(rt: Any, channels: list[str]) -> dict[str, str]:
    """Why each of ``channels`` that cannot be delivered here cannot be."""
    problems = {}
    for channel in channels:
        try:
            get_provider(rt, channel)
        except ProviderUnavailable as exc:
            problems[channel] = str(exc)
    return problems
