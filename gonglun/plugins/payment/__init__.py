"""Unified payment: scenes, orders, channels, callbacks, query, close, drop orders, reconciliation.

Other plugins use only what is exported here (and the hooks): read a payment, its scenes,
its channel, and move a refund's money (``refund_transfers``, docs/ledger.md). The refund
plugin is the one writer of a payment's refund fields besides this plugin.
"""

from gonglun.plugins.payment.access import is_admin, may_view
from gonglun.plugins.payment.cache import invalidate as invalidate_cache
from gonglun.plugins.payment.channels import ChannelError, RefundResult, get_channel
from gonglun.plugins.payment.funds import refund_moves, refund_transfers, source
from gonglun.plugins.payment.logs import write as write_channel_log
from gonglun.plugins.payment.models import Payment
from gonglun.plugins.payment.money import SHANGHAI, fen_to_yuan, yuan_to_fen
from gonglun.plugins.payment.plugin import (
    audit,
    cache_invalidate,
    channel_adapter,
    channel_config,
    payment_late,
    payment_success,
    push_payment_success,
    refund_reverse,
    register_actors,
    register_migrations,
    register_models,
    register_periodic_jobs,
    register_routes,
    settle_payment,
    startup_checks,
)
from gonglun.plugins.payment.recon_hooks import (
    register_recon_actors,
    register_recon_commands,
    register_recon_jobs,
    register_recon_routes,
)
from gonglun.plugins.payment.records import meta, new_order_number, payment_dict, resolve
from gonglun.plugins.payment.scenes import scenes_for

REQUIRES: tuple[str, ...] = ()

__all__ = [
    "REQUIRES",
    "SHANGHAI",
    "ChannelError",
    "Payment",
    "RefundResult",
    "audit",
    "cache_invalidate",
    "channel_adapter",
    "channel_config",
    "fen_to_yuan",
    "get_channel",
    "invalidate_cache",
    "is_admin",
    "may_view",
    "meta",
    "new_order_number",
    "payment_dict",
    "payment_late",
    "payment_success",
    "push_payment_success",
    "refund_moves",
    "refund_reverse",
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
    "resolve",
    "scenes_for",
    "settle_payment",
    "source",
    "startup_checks",
    "write_channel_log",
    "yuan_to_fen",
]
