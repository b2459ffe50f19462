"""Configuration: a TOML file overridden by environment variables.

Lookup order (later wins): built-in defaults, the TOML file (``GONGLUN_CONFIG``, default
``./gonglun.toml``), environment variables. Three variables have short names
(``GONGLUN_DATABASE_URL``, ``GONGLUN_REDIS_URL``, ``GONGLUN_BROKER_URL``) and
``GONGLUN_PLUGINS_DISABLED`` takes a comma list; any other setting is reachable as
``GONGLUN_<SECTION>__<KEY>`` (double underscore between levels), its value read as a TOML literal
when it parses as one and as a plain string otherwise.
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Empty URLs select the embedded default (SQLite file, in-process Redis, in-process worker).
DEFAULTS: dict[str, Any] = {
    "database": {"url": "", "echo": False, "pool_size": 16, "pre_ping": False},
    "redis": {"url": "", "prefix": "gl:"},
    "broker": {"url": "", "namespace": "gonglun", "worker_threads": 4},
    "plugins": {"disabled": []},
    "server": {"host": "127.0.0.1", "port": 8000, "data_dir": "./var", "threads": 32},
    "hooks": {"trace": False},
    "auth": {"token_ttl_days": 30},
    "sandbox": {"enabled": True, "dir": ""},
    "scheduler": {"tick_s": 1.0, "lease_s": 10},
    "outbox": {"sweep_s": 5, "max_retries": 20, "lease_s": 60},
    "ledger": {"negative_scenes": ["refund_reverse", "seller_debit", "admin_adjust"]},
}

ENV_ALIASES = {
    "GONGLUN_DATABASE_URL": ("database", "url"),
    "GONGLUN_REDIS_URL": ("redis", "url"),
    "GONGLUN_BROKER_URL": ("broker", "url"),
    "GONGLUN_REDIS_PREFIX": ("redis", "prefix"),
    "GONGLUN_BROKER_NAMESPACE": ("broker", "namespace"),
    "GONGLUN_DATA_DIR": ("server", "data_dir"),
    "GONGLUN_HOOKS_TRACE": ("hooks", "trace"),
}


class ConfigError(ValueError):
    """The configuration cannot be used as given."""


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _literal(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if name in ENV_ALIASES:
            parsed = _literal(value) if name == "GONGLUN_HOOKS_TRACE" else value
            _set(out, ENV_ALIASES[name], parsed)
        elif name == "GONGLUN_PLUGINS_DISABLED":
            _set(out, ("plugins", "disabled"), [p.strip() for p in value.split(",") if p.strip()])
        elif name.startswith("GONGLUN_") and "__" in name:
            path = tuple(p.lower() for p in name[len("GONGLUN_") :].split("__"))
            _set(out, path, _literal(value))
    return out


class Config:
    """Merged settings with dotted-path access: ``config.get("refund.system_fail_cap", 3)``."""

    def __init__(self, data: Mapping[str, Any] | None = None):
        self.data: dict[str, Any] = _merge(copy.deepcopy(DEFAULTS), data or {})

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Config:
        environ = os.environ if environ is None else environ
        file = Path(path or environ.get("GONGLUN_CONFIG", "gonglun.toml"))
        data: dict[str, Any] = {}
        if file.exists():
            try:
                data = tomllib.loads(file.read_text("utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{file}: {exc}") from exc
        elif path is not None:
            raise ConfigError(f"configuration file not found: {file}")
        _merge(data, env_overrides(environ))
        _merge(data, overrides or {})
        return cls(data)

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name, {})
        return value if isinstance(value, dict) else {}

    def with_overrides(self, overrides: Mapping[str, Any]) -> Config:
        return Config(_merge(copy.deepcopy(self.data), overrides))

    # Convenience accessors for the settings every process needs.
    @property
    def data_dir(self) -> Path:
        return Path(self.get("server.data_dir") or "./var")

    @property
    def database_url(self) -> str:
        url = self.get("database.url") or ""
        if not url:
            url = f"sqlite:///{self.data_dir / 'gonglun.db'}"
        return str(url)

    @property
    def redis_url(self) -> str:
        return str(self.get("redis.url") or "")

    @property
    def broker_url(self) -> str:
        return str(self.get("broker.url") or "")

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: the worker runs inside the serving process."""
        return not self.broker_url

    @property
    def disabled_plugins(self) -> list[str]:
        value = self.get("plugins.disabled") or []
        if isinstance(value, str):
            value = [p.strip() for p in value.split(",") if p.strip()]
        return list(value)
