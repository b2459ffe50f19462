"""Provider keys from exactly what the configuration names (DECISIONS.md 23), never a fallback.

For a vendor provider (``[notify.tencentcloud]``, ``[notify.wechat]``, ``[notify.jpush]``):

* its own table with every required key: the live vendor, unless the table names an endpoint;
* otherwise the keyset file ``notify.keyset`` (staging against a standalone sandbox, which
  needs ``notify.gateway_url``), or the bundled sandbox's own keyset where the sandbox runs in
  this configuration (the embedded default, or ``sandbox.enabled = true``), with this server
  as the gateway.

Anything else (no keys, keys in part, a keyset without the vendor) leaves the provider
unavailable: ``SettingsError`` says what is missing, on a start-up line and in the delivery log.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """The configuration does not give this provider what it needs (the message says what)."""


def _keyset(rt: Any, plugin: str) -> tuple[dict[str, Any], str] | None:
    from gonglun.embedded import named_keyset

    try:
        return named_keyset(rt, f"{plugin}.keyset")
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def vendor_settings(rt: Any, section: str, required: tuple[str, ...],
                    plugin: str = "notify") -> dict[str, Any]:
    """The settings of provider ``section``; ``gateway`` is set when a sandbox serves them.
    ``plugin`` names the settings' section (``face`` reads ``[face.tencentcloud]``,
    ``face.keyset`` and ``face.gateway_url`` the same way)."""
    configured = dict(rt.config.get(f"{plugin}.{section}") or {})
    given = [k for k in required if configured.get(k)]
    if given:
        missing = [k for k in required if not configured.get(k)]
        if missing:
            raise SettingsError(f"[{plugin}.{section}] lacks {', '.join(missing)} "
                                f"(it names {', '.join(given)})")
        return configured
    found = _keyset(rt, plugin)
    if found is None:
        raise SettingsError(f"no keys: set [{plugin}.{section}] ({', '.join(required)}), or "
                            f"{plugin}.keyset to a sandbox keyset file for staging")
    keyset, source = found
    keys = keyset.get(section)
    if not isinstance(keys, dict) or not all(keys.get(k) for k in required):
        raise SettingsError(f"{source} has no complete {section} keys "
                            "(gonglun sandbox init adds them)")
    gateway = rt.config.get(f"{plugin}.gateway_url")
    if not gateway:
        if rt.config.path(f"{plugin}.keyset") is not None or not rt.config.sandbox_enabled:
            raise SettingsError(f"{plugin}.keyset names sandbox keys but {plugin}.gateway_url "
                                "is not set")
        gateway = rt.config.base_url  # the bundled sandbox, mounted on this server
    return {**keys, **configured, "gateway": str(gateway).rstrip("/")}


def host_of(url: str) -> tuple[str, str]:
    """``(scheme, host[:port])`` of a gateway URL without a path (the Tencent Cloud SDK takes
    a bare endpoint and always posts to ``/``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise SettingsError(f"gateway {url!r} must be http(s)://host[:port] with no path")
    return parts.scheme, parts.netloc


def bounded(value: Any, name: str, default: float, low: float, high: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise SettingsError(f"{name} must be a number from {low} to {high}")
    return float(value)
