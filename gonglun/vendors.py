"""Vendor keys from exactly what the configuration names (decision 23), never a fallback,
for every plugin that talks to a vendor (notify, face, accounts' WeChat sign-in).

For a vendor provider (``[notify.tencentcloud]``, ``[notify.wechat]``, ``[face.tencentcloud]``...):

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
    return {**keys, **configured, "gateway": keyset_gateway(rt, plugin)}


def keyset_gateway(rt: Any, plugin: str) -> str:
    """The sandbox that serves ``plugin``'s keyset keys: ``<plugin>.gateway_url``, or this
    server where the bundled sandbox runs and no keyset file was named."""
    gateway = rt.config.get(f"{plugin}.gateway_url")
    if not gateway:
        if rt.config.path(f"{plugin}.keyset") is not None or not rt.config.sandbox_enabled:
            raise SettingsError(f"{plugin}.keyset names sandbox keys but {plugin}.gateway_url "
                                "is not set")
        gateway = rt.config.base_url  # the bundled sandbox, mounted on this server
    return str(gateway).rstrip("/")


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


def tencent_client(local: Any, module: Any, name: str, settings: dict[str, Any], *,
                   endpoint: str, protocol: str, region: str, timeout: int) -> Any:
    """One Tencent Cloud SDK client per thread (``local``, a ``threading.local``): the SDK
    keeps a connection object per client. ``module.<name>`` is the service's client class."""
    client = getattr(local, "client", None)
    if client is None:
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile

        profile = HttpProfile(endpoint=endpoint, protocol=protocol, reqTimeout=timeout)
        client = local.client = getattr(module, name)(
            credential.Credential(settings["secret_id"], settings["secret_key"]),
            region, ClientProfile(httpProfile=profile))
    return client
