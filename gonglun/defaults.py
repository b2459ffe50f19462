"""The core's built-in configuration values and the configuration error: the bottom of the
configuration, imported by both ``config`` (which reads files and the environment) and
``settings`` (the schema, which documents and checks them), so neither imports the other back."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """The configuration cannot be used as given."""


#: Empty URLs select the embedded default (SQLite file, in-process Redis, in-process worker).
DEFAULTS: dict[str, Any] = {
    "database": {"url": "", "echo": False, "pool_size": 16, "pre_ping": False},
    "redis": {"url": "", "prefix": "gl:"},
    #: ``namespace`` empty: derived from ``redis.prefix``, so two deployments sharing a Redis
    #: never take each other's messages.
    "broker": {"url": "", "namespace": "", "worker_threads": 4},
    "plugins": {"disabled": []},
    "server": {
        "host": "127.0.0.1", "port": 8000, "data_dir": "var", "threads": 32, "cpu_threads": 2,
        "public_url": "", "max_body_bytes": 1_048_576, "trusted_proxies": [],
        "metrics_token": "", "return_hosts": [],
    },
    "hooks": {"trace": False},
    "auth": {
        "token_ttl_days": 30,
        # Login throttling (per account and per client address): failures allowed per window,
        # then a block that doubles with each further block, up to ``lockout_max_s``.
        "login_failures": 5, "login_window_s": 300, "login_ip_failures": 20,
        "lockout_s": 60, "lockout_max_s": 3600, "ws_ticket_ttl_s": 30,
    },
    #: ``enabled``: None = auto (on only on the embedded default), true/false = as said.
    "sandbox": {"enabled": None, "dir": ""},
    "scheduler": {"tick_s": 1.0, "lease_s": 10},
    "outbox": {"sweep_s": 5, "max_retries": 20, "lease_s": 60},
    "ledger": {"negative_scenes": ["refund_reverse", "seller_debit", "admin_adjust"]},
}
