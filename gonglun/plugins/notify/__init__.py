"""Notification scenes and channels (inbox, SMS, email, WeChat template, app push, websocket).

Other plugins fire ``notify`` (``rt.hooks.defer(session, "notify", key=..., scene=...,
user_id=..., data={...})``) and ``alarm``, and never know how a message travels. The public
service API is what this module exports: SMS verification codes (``send_code``,
``verify_code``; also the ``sms_code_check`` decision), the ``Scene`` types for
``register_notification_scenes``, and the provider base classes for ``notify_provider``.
See docs/notify.md.
"""

from gonglun.plugins.notify.codes import normalize_phone, send_code, verify_code
from gonglun.plugins.notify.plugin import (
    account_reset,
    alarm,
    notify,
    notify_provider,
    payment_success,
    refund_abnormal,
    register_actors,
    register_commands,
    register_migrations,
    register_models,
    register_periodic_jobs,
    register_routes,
    sms_code_check,
    startup_checks,
)
from gonglun.plugins.notify.providers import (
    DeliveryError,
    Outbound,
    PermanentError,
    Provider,
    TransientError,
)
from gonglun.plugins.notify.scenes import ChannelRule, CodeRule, Scene

REQUIRES: tuple[str, ...] = ()

__all__ = [
    "REQUIRES",
    "ChannelRule",
    "CodeRule",
    "DeliveryError",
    "Outbound",
    "PermanentError",
    "Provider",
    "Scene",
    "TransientError",
    "account_reset",
    "alarm",
    "normalize_phone",
    "notify",
    "notify_provider",
    "payment_success",
    "refund_abnormal",
    "register_actors",
    "register_commands",
    "register_migrations",
    "register_models",
    "register_periodic_jobs",
    "register_routes",
    "send_code",
    "sms_code_check",
    "startup_checks",
    "verify_code",
]
