"""The refund plugin's hook implementations."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gonglun.hooks import hookimpl

log = logging.getLogger(__name__)

HERE = Path(__file__).parent


@hookimpl
def register_models(modules: list[str]) -> list[str]:
    return [*modules, "gonglun.plugins.refund.models"]


@hookimpl
def register_migrations(locations: list[str]) -> list[str]:
    return [*locations, str(HERE / "migrations")]


@hookimpl
def register_routes(rt: Any, routes: list[Any]) -> list[Any]:
    from gonglun.api.routes import REF_SCHEMA, Route
    from gonglun.plugins.refund import resources as r

    ref = {"ref": REF_SCHEMA}
    rid = {"refund_id": {"type": "string", "pattern": "^[0-9]{1,18}$"}}
    return [
        *routes,
        Route("/v1/payments/{ref}/refunds", r.PaymentRefunds(rt), tags=("refund",),
              schemas={"post": r.REQUEST_SCHEMA}, params=ref),
        Route("/v1/payments/{ref}/refund", r.RefundQuery(rt), tags=("refund",), params=ref),
        Route("/v1/refunds", r.Refunds(rt), tags=("refund", "admin")),
        Route("/v1/refunds/{refund_id}/resolve", r.RefundResolve(rt), tags=("refund", "admin"),
              schemas={"post": r.RESOLVE_SCHEMA}, params=rid),
    ]


@hookimpl
def register_actors(rt: Any, actors: list[Any]) -> list[Any]:
    from gonglun.plugins.refund.confirm import confirm_waiting
    from gonglun.tasks import ActorSpec

    return [
        *actors,
        ActorSpec("refund.confirm_alipay", lambda rt: confirm_waiting(rt, "alipay"),
                  max_retries=0),
        ActorSpec("refund.confirm_wxpay", lambda rt: confirm_waiting(rt, "wxpay"),
                  max_retries=0),
    ]


@hookimpl
def register_periodic_jobs(rt: Any, jobs: list[Any]) -> list[Any]:
    from gonglun.plugins.refund.answers import SCHEDULE, confirm_period
    from gonglun.tasks import PeriodicJob

    return [*jobs, *(PeriodicJob(f"refund.confirm_{m}", confirm_period(rt, m),
                                 f"refund.confirm_{m}") for m in SCHEDULE)]


@hookimpl
def refund_notice(rt: Any, method: str, notice: dict[str, Any]) -> Any:
    from gonglun.plugins.refund.confirm import apply_notice

    return apply_notice(rt, method, notice)


@hookimpl
def refund_ok(rt: Any, refund: dict[str, Any], payment: dict[str, Any]) -> None:
    """CORE-11 / REF-19: counters (OPS-06)."""
    from gonglun.plugins.refund.effects import count

    count(rt, refund)


@hookimpl(specname="refund_ok", priority=50)
def notify_refund(rt: Any, refund: dict[str, Any], payment: dict[str, Any]) -> None:
    """REF-34: the payer hears of it (``payment_refund``) and sees it (websocket)."""
    from gonglun.plugins.refund.effects import notify_payer

    notify_payer(rt, refund, payment)


@hookimpl(priority=50)
def payment_late(rt: Any, payment: dict[str, Any], resolution: str) -> None:
    """``payment.late_payment = "refund"``: a payment that landed after its order closed goes
    back at once through the unified refund, the system way (DECISIONS.md 7). Runs after the
    payment plugin held its money."""
    if resolution != "refund":
        return
    from gonglun.errors import GonglunError
    from gonglun.plugins.refund.service import system_refund

    try:
        system_refund(rt, payment["id"], None, "订单已关闭后收到付款,系统自动退款")
    except GonglunError as exc:
        if exc.error in ("refund.in_progress", "refund.already_refunded", "refund.needs_support"):
            return  # a redelivery: the first one refunded it
        if exc.status >= 500 or exc.error in ("refund.channel_refused", "refund.channel_closed"):
            raise  # the outbox retries; the system-refund cap ends it as fail_refund
        log.error("late payment %s not refunded: %s", payment["id"], exc)


@hookimpl
def startup_checks(rt: Any, problems: list[str]) -> list[str]:
    """The system way needs a long random ``refund.key`` (a service's credential)."""
    key = str(rt.config.get("refund.key") or "")
    if key and len(key) < 32:
        problems.append("refund.key is shorter than 32 characters: system refunds over HTTP "
                        "are refused until it is a long random secret")
    return problems


@hookimpl
def audit(rt: Any, problems: list[str], session: Any) -> list[str]:
    from gonglun.plugins.refund.invariants import paid_twice_problems, refund_problems

    return paid_twice_problems(session, refund_problems(session, problems))


@hookimpl
def register_ledger_accounts(rt: Any, accounts: dict[str, Any]) -> dict[str, Any]:
    from gonglun.ledger import SystemAccount
    from gonglun.plugins.refund.channel_exits import RECOVER

    return {**accounts, RECOVER: SystemAccount(
        RECOVER, "重复退款待追回",
        "refunds paid twice (by hand and by the channel): negative = owed back by buyers")}
