"""The payment plugin's hook implementations."""

from __future__ import annotations

import datetime as dt
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
    from gonglun.plugins.payment import lifecycle
    from gonglun.tasks import ActorSpec

    return [
        *actors,
        ActorSpec("payment.close_expired", lambda rt: lifecycle.close_expired(rt), max_retries=0),
        ActorSpec("payment.drop_query", lambda rt: lifecycle.drop_query(rt), max_retries=0),
        ActorSpec("payment.clean_logs", clean_logs, max_retries=0),
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
    ]


@hookimpl
def payment_success(rt: Any, payment: dict[str, Any]) -> None:
    """BAL-03: a recharge credits the payer's balance, once (key ``payment:<id>``)."""
    if payment["scene"] != "recharge_money" or not payment.get("user_id"):
        return
    from gonglun.ledger import post

    with rt.db.write() as session:
        post(rt, session, user_id=payment["user_id"], delta=payment["amount"],
             scene="recharge_money", ref=payment["payment_order"],
             key=f"payment:{payment['id']}", remark="账户余额充值")


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
    """Payments against postings: every balance payment debited, every recharge credited."""
    from sqlalchemy import and_, select

    from gonglun.db import utcnow
    from gonglun.ledger.models import Posting
    from gonglun.plugins.payment.models import Payment

    paid_states = ("ok", "wait_refund", "refund", "fail_refund")
    debits = session.execute(
        select(Payment.id, Payment.amount, Posting.delta)
        .outerjoin(Posting, Posting.idempotency_key == "pay:" + Payment.payment_order)
        .where(Payment.method == "money", Payment.state.in_(paid_states))
    ).all()
    for pid, amount, delta in debits:
        if delta != -amount:
            problems.append(f"payment {pid}: balance payment of {amount} has debit {delta}")
    settled = utcnow() - dt.timedelta(minutes=int(rt.config.get("payment.audit_grace_min", 10)))
    credits = session.execute(
        select(Payment.id, Payment.amount, Posting.delta)
        .outerjoin(Posting, and_(Posting.idempotency_key == "payment:" + _id_text(Payment.id)))
        .where(Payment.scene == "recharge_money", Payment.state.in_(paid_states),
               Payment.late.is_(False), Payment.paid_at < settled)
    ).all()
    for pid, amount, delta in credits:
        if delta != amount:
            problems.append(f"payment {pid}: recharge of {amount} credited {delta}")
    return problems


def _id_text(column: Any) -> Any:
    from sqlalchemy import String, cast

    return cast(column, String)
