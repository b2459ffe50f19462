"""Configuration: a TOML file overridden by environment variables.

Lookup order (later wins): built-in defaults, the TOML file (``GONGLUN_CONFIG``, default
``./gonglun.toml``), environment variables. Three variables have short names
(``GONGLUN_DATABASE_URL``, ``GONGLUN_REDIS_URL``, ``GONGLUN_BROKER_URL``) and
``GONGLUN_PLUGINS_DISABLED`` takes a comma list; any other setting is reachable as
``GONGLUN_<SECTION>__<KEY>`` (double underscore between levels), its value read as a TOML literal
when it parses as one and as a plain string otherwise.

Relative paths (``server.data_dir``, ``sandbox.dir``, ``sandbox.state_path``, ``payment.keyset``)
are resolved once, at load, against the *home* directory: ``GONGLUN_HOME`` when set, else the
folder of the configuration file in use, else the given ``home`` (``app.py`` passes its own
folder), else the current directory. So ``uvicorn app:app`` started from another folder uses the
same database and keys as ``gonglun serve`` run in the project.

The **embedded default** is a configuration that names no database, Redis or broker: only there
does the gateway sandbox switch itself on (``sandbox.enabled`` unset means "auto"); anywhere
else it runs only when ``sandbox.enabled = true`` is set explicitly (DECISIONS.md 23).
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gonglun.defaults import DEFAULTS, ConfigError

#: Settings holding paths, resolved against the home directory at load.
PATH_SETTINGS = (("server", "data_dir"), ("sandbox", "dir"), ("sandbox", "state_path"),
                 ("payment", "keyset"))

#: Any of these set means a configured deployment, not the embedded default.
DEPLOYMENT_SETTINGS = ("database.url", "redis.url", "broker.url", "server.public_url",
                       "payment.keyset", "payment.gateway_url")
#: Keys that make a channel live (real money); any of them set is a configured deployment.
CHANNEL_KEYS = {
    "alipay": ("app_id", "app_private_key", "alipay_public_key"),
    "wxpay": ("mchid", "appid", "merchant_private_key", "merchant_serial_no",
              "platform_public_key", "public_key_id", "apiv3_key"),
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


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _leaf_paths(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out.extend(_leaf_paths(value, f"{prefix}{key}."))
        else:
            out.append(f"{prefix}{key}")
    return out


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


#: ``Config.get`` without a default: the settings schema's.
_SCHEMA_DEFAULT: Any = object()


def schema_defaults() -> dict[str, Any]:
    """Every built-in setting's default (``gonglun/settings.py``), read once."""
    global _BUILTIN_DEFAULTS
    if _BUILTIN_DEFAULTS is None:
        from gonglun.settings import BUILTIN

        _BUILTIN_DEFAULTS = {s.path: s.default for s in BUILTIN}
    return _BUILTIN_DEFAULTS


_BUILTIN_DEFAULTS: dict[str, Any] | None = None


class Config:
    """Merged settings with dotted-path access: ``config.get("refund.system_fail_cap")``. An
    unset setting reads as its default in the settings schema (one source of defaults: the
    runtime adds the plugins' declared settings to ``defaults``)."""

    def __init__(self, data: Mapping[str, Any] | None = None):
        #: What was given (file, environment, overrides), before defaults: tells "set" from
        #: "defaulted" (the sandbox's auto mode, the embedded default).
        self.given: dict[str, Any] = copy.deepcopy(dict(data or {}))
        self.data: dict[str, Any] = _merge(copy.deepcopy(DEFAULTS), data or {})
        self.home: Path = Path.cwd()
        #: Where each given value came from (``gonglun config show``).
        self.sources: dict[str, str] = {p: "given" for p in _leaf_paths(self.given)}
        #: Defaults by dotted path (None: the built-in schema's).
        self.defaults: Mapping[str, Any] | None = None
        self._check_sandbox()

    def _check_sandbox(self) -> None:
        """Fail closed: ``sandbox.enabled`` is a boolean or "auto", and simulated payments never
        run beside live channel keys (DECISIONS.md 23)."""
        value = self.get("sandbox.enabled")
        if value not in (None, "auto", True, False):
            raise ConfigError(f"sandbox.enabled must be true, false or \"auto\", not {value!r}")
        live = self.live_channels
        if live and self.get("sandbox.enabled") is True:
            raise ConfigError(
                f"sandbox.enabled = true beside live keys in [payment.{live[0]}]: simulated and "
                "real payments in one deployment are refused")
        if live and self.get("payment.keyset"):
            raise ConfigError(
                f"payment.keyset (sandbox keys) beside live keys in [payment.{live[0]}]: "
                "simulated and real payments in one deployment are refused")

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        home: str | os.PathLike[str] | None = None,
    ) -> Config:
        environ = os.environ if environ is None else environ
        base = Path(environ.get("GONGLUN_HOME") or home or Path.cwd()).resolve()
        named = path or environ.get("GONGLUN_CONFIG")
        file = Path(named) if named else base / "gonglun.toml"
        if not file.is_absolute():
            file = Path.cwd() / file
        data: dict[str, Any] = {}
        if file.exists():
            try:
                data = tomllib.loads(file.read_text("utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{file}: {exc}") from exc
            if not environ.get("GONGLUN_HOME"):
                base = file.resolve().parent
        elif path is not None:
            raise ConfigError(f"configuration file not found: {file}")
        sources = {path: f"file {file}" for path in _leaf_paths(data)}
        env = env_overrides(environ)
        sources.update({path: "environment" for path in _leaf_paths(env)})
        sources.update({path: "override" for path in _leaf_paths(overrides or {})})
        _merge(data, env)
        _merge(data, overrides or {})
        config = cls(data)
        config.home = base
        config.sources = sources
        for section, key in PATH_SETTINGS:
            value = config.get(f"{section}.{key}")
            if isinstance(value, str) and value and not Path(value).is_absolute():
                config.data.setdefault(section, {})[key] = str(base / value)
        return config

    def get(self, dotted: str, default: Any = _SCHEMA_DEFAULT) -> Any:
        """The value at ``dotted``; unset, ``default`` when given, else the schema's default
        (None for a path the schema does not declare)."""
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                if default is not _SCHEMA_DEFAULT:
                    return default
                declared = schema_defaults() if self.defaults is None else self.defaults
                return copy.deepcopy(declared.get(dotted))
            node = node[part]
        return node

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name, {})
        return value if isinstance(value, dict) else {}

    def with_overrides(self, overrides: Mapping[str, Any]) -> Config:
        config = Config(_merge(copy.deepcopy(self.given), overrides))
        config.home = self.home
        config.defaults = self.defaults
        return config

    # Convenience accessors for the settings every process needs.
    @property
    def data_dir(self) -> Path:
        return self.path("server.data_dir") or self.home / "var"

    def path(self, dotted: str) -> Path | None:
        """A path setting, relative ones taken from the home directory; None when unset."""
        value = self.get(dotted)
        if not value:
            return None
        path = Path(str(value))
        return path if path.is_absolute() else self.home / path

    @property
    def database_url(self) -> str:
        url = self.get("database.url") or ""
        if not url:
            url = f"sqlite:///{self.data_dir / 'gonglun.db'}"
        return str(url)

    @property
    def base_url(self) -> str:
        """Where this deployment is reachable (notify URLs; the embedded sandbox gateway)."""
        configured = self.get("server.public_url")
        if configured:
            return str(configured).rstrip("/")
        host = self.get("server.host", "127.0.0.1")
        if host in ("0.0.0.0", "::", ""):  # listening everywhere: this machine reaches itself
            host = "127.0.0.1"
        return f"http://{host}:{self.get('server.port', 8000)}"

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
    def live_channels(self) -> list[str]:
        """Channels whose configuration names any live key."""
        return [c for c, keys in CHANNEL_KEYS.items()
                if any(self.get(f"payment.{c}.{k}") for k in keys)]

    @property
    def embedded_default(self) -> bool:
        """Nothing configured: no database, Redis, broker, public URL, channel keys or keyset
        (the one-machine try-out). Anything named makes it a deployment."""
        return not any(self.get(k) for k in DEPLOYMENT_SETTINGS) and not self.live_channels

    @property
    def sandbox_enabled(self) -> bool:
        """The gateway sandbox runs where asked: explicitly, or on the embedded default."""
        value = self.get("sandbox.enabled")
        if value is None or value == "auto":
            return self.embedded_default
        return value is True

    @property
    def sandbox_explicit(self) -> bool:
        """Payments are simulated somewhere a newcomer would not expect it (the sandbox outside
        the embedded default, or a sandbox keyset named for staging): announce it loudly."""
        staged = self.sandbox_enabled and not self.embedded_default
        return staged or bool(self.get("payment.keyset"))

    @property
    def simulated_payments(self) -> bool:
        """The channels talk to a sandbox here (bundled or standalone), not to real money."""
        return self.sandbox_enabled or bool(self.get("payment.keyset"))

    @property
    def broker_namespace(self) -> str:
        configured = str(self.get("broker.namespace") or "")
        if configured:
            return configured
        prefix = str(self.get("redis.prefix", "gl:"))
        tag = "".join(ch if ch.isalnum() else "-" for ch in prefix).strip("-")
        return "gonglun" if prefix == "gl:" else f"gonglun-{tag}"

    @property
    def disabled_plugins(self) -> list[str]:
        value = self.get("plugins.disabled") or []
        if isinstance(value, str):
            value = [p.strip() for p in value.split(",") if p.strip()]
        return list(value)
