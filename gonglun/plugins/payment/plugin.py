"""The payment plugin's hook implementations."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gonglun.hooks import hookimpl

log = logging.getLogger(__name__)

HERE = Path(__file__).parent


@hookimpl
def register_models(modules: list[str]) -> list[str]:
    return [*modules, "gonglun.plugins.payment.models"]


@hookimpl
def register_migrations(locations: list[str]) -> list[str]:
    return [*locations, str(HERE / "migrations")]


@hookimpl
def register_routes(rt: Any, routes: list[Any]) -> list[Any]:
    from gonglun.api.routes import REF_SCHEMA, Route
    from gonglun.plugins.payment import resources as r
    from gonglun.plugins.payment.schemas import CREATE_SCHEMA, LOOKUP_SCHEMA
    from gonglun.plugins.payment.settlement import Settle

    item = r.PaymentItem(rt)
    ref = {"ref": REF_SCHEMA}
    return [
        *routes,
        Route("/v1/payment/scenes", r.Scenes(rt), tags=("payment",)),
        Route("/v1/payments", r.Payments(rt), tags=("payment",),
              schemas={"post": CREATE_SCHEMA}),
        Route("/v1/payments/lookup", r.Lookup(rt), tags=("payment",),
              schemas={"post": LOOKUP_SCHEMA}),
        Route("/v1/payments/{ref}", item, tags=("payment",), params=ref),
        Route("/v1/payments/{ref}/close", item, tags=("payment",), suffix="close", params=ref),
        Route("/v1/payments/{ref}/sync", item, tags=("payment",), suffix="sync", params=ref),
        Route("/v1/payments/{ref}/settle", Settle(rt), tags=("payment", "admin"), params=ref),
        Route("/v1/notify/alipay", r.Notify(rt, "alipay"), tags=("payment",)),
        Route("/v1/notify/wxpay", r.Notify(rt, "wxpay"), tags=("payment",)),
    ]


@hookimpl
def channel_config(rt: Any, method: str) -> Any:
    from gonglun.plugins.payment.channels import default_settings

    if method in ("alipay", "wxpay"):
        return default_settings(rt, method)
    return None


@hookimpl
def refund_reverse(rt: Any, session: Any, payment: dict[str, Any], refund: dict[str, Any]) -> Any:
    """DECISIONS.md 9/27: undo the scene's money effect of ``refund["amount"]`` (added to the
    payment's ``refund_amount`` just before, in ``session``): from wherever the money is now
    back to its source. Answers the transfers made."""
    from gonglun.plugins.payment.funds import refund_transfers

    return refund_transfers(rt, session, payment["id"], amount=refund["amount"],
                            way=refund["way"], refund_order=refund["refund_order"])


@hookimpl
def cache_invalidate(rt: Any, cache: str, values: list[str]) -> None:
    from gonglun.plugins.payment.cache import retry_invalidation

    retry_invalidation(rt, cache, values)


@hookimpl
def startup_checks(rt: Any, problems: list[str]) -> list[str]:
    """Each channel that cannot be used, and why (missing or partial keys, no gateway)."""
    from gonglun.plugins.payment.channels import channel_problems

    for method, why in channel_problems(rt).items():
        problems.append(f"payment channel {method} unavailable: {why}")
    return problems


@hookimpl
def channel_adapter(method: str, settings: dict[str, Any]) -> Any:
    from gonglun.plugins.payment.channels import ADAPTERS

    adapter = ADAPTERS.get(method)
    return adapter(settings) if adapter is not None else None


@hookimpl
def register_actors(rt: Any, actors: list[Any]) -> list[Any]:
    from gonglun.plugins.payment import lifecycle, settlement
    from gonglun.tasks import ActorSpec

    return [
        *actors,
        ActorSpec("payment.close_expired", lambda rt: lifecycle.close_expired(rt), max_retries=0),
        ActorSpec("payment.drop_query", lambda rt: lifecycle.drop_query(rt), max_retries=0),
        ActorSpec("payment.clean_logs", clean_logs, max_retries=0),
        ActorSpec("payment.auto_settle", lambda rt: settlement.auto_settle(rt), max_retries=0),
    ]


def clean_logs(rt: Any) -> None:
    """Daily: packet logs past ``payment.log_days``, refused notifications past a week."""
    from gonglun.plugins.payment import logs
    from gonglun.plugins.payment.apply import prune_unverified

    logs.clean(rt)
    prune_unverified(rt)


@hookimpl
def register_periodic_jobs(rt: Any, jobs: list[Any]) -> list[Any]:
    from gonglun.tasks import PeriodicJob

    cfg = rt.config
    return [
        *jobs,
        PeriodicJob("payment.close_expired", float(cfg.get("payment.close_every_s", 30)),
                    "payment.close_expired"),
        PeriodicJob("payment.drop_query", float(cfg.get("payment.drop_every_s", 60)),
                    "payment.drop_query"),
        PeriodicJob("payment.clean_logs", 86400.0, "payment.clean_logs"),
        PeriodicJob("payment.auto_settle", float(cfg.get("payment.auto_settle_every_s", 3600)),
                    "payment.auto_settle"),
    ]


@hookimpl
def payment_success(rt: Any, payment: dict[str, Any]) -> None:
    """A channel payment's money moves from the channel's clearing account to its scene's
    account (a recharge: the payer's wallet, BAL-03), once (key ``payment:<id>``). A balance
    payment moved when it was created."""
    if payment["method"] == "money":
        return
    from gonglun.errors import GonglunError
    from gonglun.plugins.payment.funds import collect
    from gonglun.plugins.payment.scenes import scenes_for

    scene = scenes_for(rt).get(payment["scene"])
    if scene is None:  # retried by the outbox, then left failed for the audit to name
        raise GonglunError("payment.unknown_scene", f"支付场景不存在: {payment['scene']}")
    with rt.db.write() as session:
        collect(rt, session, payment, scene)


@hookimpl
def payment_late(rt: Any, payment: dict[str, Any], resolution: str) -> None:
    """A payment for an order we had closed (DECISIONS.md 7): unless accepted (then
    ``payment_success`` moves it), its money waits in escrow for review or refund."""
    if resolution == "accept":
        return
    from gonglun.plugins.payment.funds import hold_late

    with rt.db.write() as session:
        hold_late(rt, session, payment)


@hookimpl
def settle_payment(rt: Any, ref: str, by: str, operator_id: Any) -> Any:
    """Settle a payment this plugin knows (scene with ``settle``); None for other references."""
    from gonglun.plugins.payment.settlement import settle_ref

    return settle_ref(rt, ref, by=by, operator_id=operator_id)


@hookimpl(specname="payment_success", priority=90)
def push_payment_success(rt: Any, payment: dict[str, Any]) -> None:
    """PAY-10: tell the payer's open pages (websocket) once the business effect is done."""
    if payment.get("user_id"):
        rt.push(payment["user_id"], {
            "event": "payment_success",
            "payment": {k: payment[k] for k in ("id", "payment_order", "scene", "amount")},
        })


@hookimpl
def audit(rt: Any, problems: list[str], session: Any) -> list[str]:
    """Every order's transfers against its scene and state, escrow against open orders and
    holds, channel clearing against clean statements (``ledger_audit.py``)."""
    from gonglun.plugins.payment.ledger_audit import payment_problems

    return payment_problems(rt, session, problems)
