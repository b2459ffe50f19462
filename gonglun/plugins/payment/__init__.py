"""Unified payment: scenes, orders, channels, callbacks, query, close, drop orders, reconciliation.

Other plugins use only what is exported here (and the hooks): read a payment, its scenes,
and move a refund's money (``refund_transfers``, docs/ledger.md).
"""

from gonglun.plugins.payment.funds import refund_moves, refund_transfers
from gonglun.plugins.payment.plugin import (
    audit,
    channel_adapter,
    channel_config,
    payment_late,
    payment_success,
    push_payment_success,
    register_actors,
    register_migrations,
    register_models,
    register_periodic_jobs,
    register_routes,
    settle_payment,
)
from gonglun.plugins.payment.recon_hooks import (
    register_recon_actors,
    register_recon_commands,
    register_recon_jobs,
    register_recon_routes,
)

REQUIRES: tuple[str, ...] = ()

__all__ = [
    "REQUIRES",
    "audit",
    "channel_adapter",
    "channel_config",
    "payment_late",
    "payment_success",
    "push_payment_success",
    "refund_moves",
    "refund_transfers",
    "register_actors",
    "register_migrations",
    "register_models",
    "register_periodic_jobs",
    "register_recon_actors",
    "register_recon_commands",
    "register_recon_jobs",
    "register_recon_routes",
    "register_routes",
    "settle_payment",
]
