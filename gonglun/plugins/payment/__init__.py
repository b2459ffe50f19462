"""Unified payment: scenes, orders, channels, callbacks, query, close, drop orders, reconciliation.

Other plugins use only what is exported here (and the hooks): read a payment, its scenes.
"""

from gonglun.plugins.payment.plugin import (
    audit,
    channel_config,
    payment_success,
    push_payment_success,
    register_actors,
    register_migrations,
    register_models,
    register_periodic_jobs,
    register_routes,
)

REQUIRES: tuple[str, ...] = ()

__all__ = [
    "REQUIRES",
    "audit",
    "channel_config",
    "payment_success",
    "push_payment_success",
    "register_actors",
    "register_migrations",
    "register_models",
    "register_periodic_jobs",
    "register_routes",
]
