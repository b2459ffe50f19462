"""The notify plugin's hook implementations."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gonglun.hooks import hookimpl

log = logging.getLogger(__name__)

HERE = Path(__file__).parent


@hookimpl
def register_models(modules: list[str]) -> list[str]:
    return [*modules, "gonglun.plugins.notify.models"]


@hookimpl
def register_migrations(locations: list[str]) -> list[str]:
    return [*locations, str(HERE / "migrations")]


@hookimpl
def register_routes(rt: Any, routes: list[Any]) -> list[Any]:
    from gonglun.api.routes import Route
    from gonglun.plugins.notify import code_resources as c
    from gonglun.plugins.notify import resources as r

    return [
        *routes,
        Route("/v1/me/messages", r.Messages(rt), tags=("notify",)),
        Route("/v1/me/messages/read", r.MessagesRead(rt), tags=("notify",),
              schemas={"post": r.READ_SCHEMA}),
        Route("/v1/me/notification-settings", r.Settings(rt), tags=("notify",),
              schemas={"put": r.SETTINGS_SCHEMA}),
        Route("/v1/notifications/deliveries", r.Deliveries(rt), tags=("notify",)),
        Route("/v1/codes", c.Codes(rt), tags=("notify",), schemas={"post": c.CODE_SCHEMA}),
    ]


@hookimpl
def register_actors(rt: Any, actors: list[Any]) -> list[Any]:
    from gonglun.plugins.notify import delivery
    from gonglun.tasks import ActorSpec

    return [
        *actors,
        # Provider errors are retried by the delivery itself (backoff by error class);
        # Dramatiq's retries only cover the database or broker failing under the job.
        ActorSpec("notify.deliver", lambda rt, delivery_id: delivery.deliver(rt, delivery_id),
                  queue="notify", max_retries=5, min_backoff_ms=1000, max_backoff_ms=60_000,
                  time_limit_ms=300_000),
        ActorSpec("notify.sweep", lambda rt: delivery.sweep(rt), max_retries=0),
        ActorSpec("notify.clean", lambda rt: delivery.clean(rt), max_retries=0),
    ]


@hookimpl
def register_periodic_jobs(rt: Any, jobs: list[Any]) -> list[Any]:
    from gonglun.tasks import PeriodicJob

    return [
        *jobs,
        PeriodicJob("notify.sweep", float(rt.config.get("notify.sweep_s")), "notify.sweep"),
        PeriodicJob("notify.clean", 3600.0, "notify.clean"),
    ]


@hookimpl
def register_commands(rt: Any, commands: list[Any]) -> list[Any]:
    from gonglun.commands.base import Command
    from gonglun.plugins.notify import cli

    return [*commands, Command("notify", "notifications: delivery log, scenes, retry, send",
                               cli.add_arguments, cli.run)]


@hookimpl
def notify(rt: Any, scene: str, user_id: int, data: dict[str, Any]) -> None:
    """CORE-21: fan the scene out to its channels; deliveries run as their own jobs."""
    from gonglun.plugins.notify.service import service

    service(rt).notify(scene, user_id, data)


@hookimpl
def alarm(rt: Any, kind: str, message: str, data: dict[str, Any]) -> None:
    """NTF-12 / OPS-03: count the alarm; past its kind's threshold, tell the admins."""
    from gonglun.plugins.notify.alarms import raise_alarm

    raise_alarm(rt, kind, message, data)


@hookimpl
def refund_abnormal(rt: Any, channel: str, refund_order: str, payment: dict[str, Any]) -> None:
    """NTF-12: an abnormal refund needs finance at once (kind ``refund_abnormal``)."""
    from gonglun.plugins.notify.alarms import raise_alarm

    order = payment.get("payment_order")
    raise_alarm(rt, "refund_abnormal",
                f"退款异常, 需人工处理: {channel} {refund_order} (订单 {order})",
                {"channel": channel, "refund_order": refund_order,
                 "payment_id": payment.get("id"), "amount": payment.get("refund_amount")})


@hookimpl
def payment_success(rt: Any, payment: dict[str, Any]) -> None:
    """Scene ``payment_success`` to the payer (guests have nobody to tell)."""
    if not payment.get("user_id"):
        return
    from gonglun.plugins.notify.service import service

    service(rt).notify("payment_success", payment["user_id"], {
        k: payment.get(k) for k in ("id", "payment_order", "pay_order", "title", "amount",
                                    "method", "scene", "paid_at")})


@hookimpl
def account_reset(rt: Any, user_id: int, contacts: dict[str, str]) -> None:
    """Scene ``account_reset``: tell the user what the reset did (FACE-13), on the channels
    left and at the phone (SMS) and email the reset unbound."""
    from gonglun.plugins.notify.providers.tencent import phone_e164
    from gonglun.plugins.notify.service import service

    old = dict(contacts or {})
    addresses = {"sms": phone_e164(old.get("phone")), "email": old.get("email")}
    service(rt).notify("account_reset", user_id, {},
                       addresses={k: v for k, v in addresses.items() if v})


@hookimpl
def notify_provider(rt: Any, channel: str) -> Any:
    from gonglun.plugins.notify.providers import builtin

    return builtin(rt, channel)


@hookimpl
def sms_code_check(rt: Any, phone: str, scene: str, code: str) -> Any:
    """True/False for the plugin's code scenes (wechat_reg, wechat_bind, bind_phone, and
    bind_email, whose ``phone`` is the email address)."""
    from gonglun.plugins.notify.codes import code_scene, verify_code

    if code_scene(rt, scene) is None:
        return None
    return verify_code(rt, phone, scene, code)


@hookimpl
def startup_checks(rt: Any, problems: list[str]) -> list[str]:
    """Channels that cannot be delivered, templates a scene lacks, the code key."""
    from gonglun.plugins.notify.codes import code_key
    from gonglun.plugins.notify.providers import SettingsError, provider_problems
    from gonglun.plugins.notify.scenes import TEMPLATED, channels_used, scenes_for

    unavailable = provider_problems(rt, channels_used(rt))
    for channel, why in unavailable.items():
        problems.append(f"notify channel {channel} unavailable: {why}")
    for scene in scenes_for(rt).values():
        missing = [c for c in TEMPLATED if c in scene.channels and c not in unavailable
                   and not scene.channels[c].template_id]
        if missing:
            problems.append(f"notify scene {scene.key}: {' and '.join(missing)} send nothing "
                            f"until a template_id is set (notify.scenes.{scene.key}.channels."
                            f"<channel>.template_id)")
    if any(s.kind == "code" for s in scenes_for(rt).values()):
        try:
            code_key(rt)
        except SettingsError as exc:
            problems.append(f"notify SMS codes unavailable: {exc}")
    return problems
