"""Unified refund, refund records, refund query, wait_refund confirmation, abnormal refunds.

Other plugins refund through ``system_refund`` (the system way, in-process) or the HTTP API;
every refund of the platform goes through this plugin (REF-01).
"""

from gonglun.plugins.refund.plugin import (
    audit,
    notify_refund,
    payment_late,
    refund_notice,
    refund_ok,
    register_actors,
    register_ledger_accounts,
    register_migrations,
    register_models,
    register_periodic_jobs,
    register_routes,
    startup_checks,
)
from gonglun.plugins.refund.service import refund_dict, system_refund

REQUIRES: tuple[str, ...] = ("payment",)

__all__ = [
    "REQUIRES",
    "audit",
    "notify_refund",
    "payment_late",
    "refund_dict",
    "refund_notice",
    "refund_ok",
    "register_actors",
    "register_ledger_accounts",
    "register_migrations",
    "register_models",
    "register_periodic_jobs",
    "register_routes",
    "startup_checks",
    "system_refund",
]
