"""The providers beside the payment channels: one package per vendor, registered here.

Each vendor package (``tencentcloud``, ``wechat``, ``jpush``) exposes ``create(keyset)``
returning a ``Vendor``: the protocol routes it serves where the real vendor serves them, the
recorder of every request it received (``GET /sandbox/<vendor>/requests``) and its faults,
armed through ``POST /sandbox/faults`` with ``"channel": "<vendor>"``. The core reaches a vendor
only through ``VENDORS``; vendors never import each other.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import falcon.asgi

from .web import ControlError, fail, ok

log = logging.getLogger(__name__)

#: Vendor packages, in the order their routes are mounted.
VENDORS: tuple[str, ...] = (
    "gonglun.sandbox.tencentcloud",
    "gonglun.sandbox.wechat",
    "gonglun.sandbox.jpush",
)
HTTP_MODES = ("500", "timeout")
DEFAULT_TIMEOUT_HOLD = 30.0


class Recorder:
    """What a vendor received and answered, newest last; bounded so a long run stays small."""

    def __init__(self, limit: int = 10_000) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=limit)
        self._ids = itertools.count(1)

    def add(self, **entry: Any) -> dict[str, Any]:
        record = {"id": next(self._ids), "at": time.time(), **entry}
        self.entries.append(record)
        return record

    def select(self, **match: Any) -> list[dict[str, Any]]:
        """Entries whose fields equal every given value (None values are ignored)."""
        wanted = {k: v for k, v in match.items() if v is not None}
        return [e for e in self.entries if all(e.get(k) == v for k, v in wanted.items())]

    def clear(self) -> None:
        self.entries.clear()


@dataclass
class VendorFault:
    kind: str  #: "error" (the vendor's own error), "status" (a per-item status), "http"
    value: Any
    remaining: int
    delay_s: float = 0.0


class VendorFaults:
    """Faults for the next ``count`` calls of one vendor.

    ``error`` makes the vendor answer with one of its own error codes (checked by the vendor's
    ``check`` function, which returns the normalised value or raises ``ValueError``); ``http``
    makes it answer 500 or hold the request for ``delay_s`` without processing it.
    """

    FIELDS = frozenset({"channel", "error", "status", "http", "delay_s", "count"})

    def __init__(self, checks: dict[str, Callable[[Any], Any]]) -> None:
        self.checks = checks
        self._armed: dict[str, VendorFault] = {}

    def arm(self, spec: dict[str, Any]) -> dict[str, Any]:
        unknown = set(spec) - self.FIELDS
        if unknown:
            raise ControlError(400, "bad_fault",
                               f"unknown fault field(s): {', '.join(sorted(unknown))}")
        count = spec.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= 10_000:
            raise ControlError(400, "bad_fault", "count must be a positive integer")
        delay = spec.get("delay_s", DEFAULT_TIMEOUT_HOLD)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 600:
            raise ControlError(400, "bad_fault", "delay_s must be 0..600 seconds")
        armed = []
        for kind, check in self.checks.items():
            if kind in spec:
                try:
                    armed.append(VendorFault(kind, check(spec[kind]), count))
                except ValueError as exc:
                    raise ControlError(400, "bad_fault", f"{kind}: {exc}") from None
        if "http" in spec:
            if str(spec["http"]) not in HTTP_MODES:
                raise ControlError(400, "bad_fault", "http must be 500 or timeout")
            armed.append(VendorFault("http", str(spec["http"]), count, float(delay)))
        if not armed:
            kinds = ", ".join([*self.checks, "http"])
            raise ControlError(400, "bad_fault", f"give at least one of {kinds}")
        for fault in armed:
            self._armed[fault.kind] = fault
        return self.describe()

    def take(self, kind: str) -> VendorFault | None:
        fault = self._armed.get(kind)
        if fault is None:
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            del self._armed[kind]
        return fault

    def describe(self) -> dict[str, Any]:
        return {kind: asdict(f) for kind, f in self._armed.items()}

    def clear(self) -> None:
        self._armed.clear()


class Vendor:
    """The shared half of an emulator: recorder, faults, control routes, the http fault."""

    name = "vendor"

    def __init__(self, keys: dict[str, Any], checks: dict[str, Callable[[Any], Any]]) -> None:
        self.keys = keys
        self.recorder = Recorder()
        self.faults = VendorFaults(checks)

    def add_routes(self, app: falcon.asgi.App) -> None:
        """Protocol routes (the vendor's own paths) plus ``/sandbox/<name>/requests``."""
        app.add_route(f"/sandbox/{self.name}/requests", _Requests(self))

    def info(self) -> dict[str, Any]:
        """Public identifiers (never secrets) for ``GET /sandbox/info``."""
        return {}

    def reset(self) -> None:
        self.recorder.clear()
        self.faults.clear()

    async def faulted(self, resp: falcon.asgi.Response) -> bool:
        """Apply an armed ``http`` fault: True when it answered the call with a 500 page (a
        ``timeout`` first holds the request; the call is never processed either way)."""
        fault = self.faults.take("http")
        if fault is None:
            return False
        if fault.value == "timeout":
            await asyncio.sleep(fault.delay_s)
        resp.status = 500
        resp.content_type = "text/html"
        resp.text = "<html><body>500 Internal Server Error</body></html>"
        return True


class _Requests:
    """``GET /sandbox/<vendor>/requests`` (filters: any recorded field, e.g. ``action``);
    ``DELETE`` forgets them."""

    auth = "public"

    def __init__(self, vendor: Vendor) -> None:
        self.vendor = vendor

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        match = {k: v for k, v in req.params.items() if isinstance(v, str)}
        since = match.pop("since", "0")
        if not since.isdigit():
            fail(resp, ControlError(400, "bad_since", "since must be a request id"))
            return
        ok(resp, [e for e in self.vendor.recorder.select(**match) if e["id"] > int(since)])

    async def on_delete(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        self.vendor.recorder.clear()
        ok(resp, {})


def keys_of(keyset: dict[str, Any], name: str, required: tuple[str, ...]) -> dict[str, Any] | None:
    """The vendor's section of the keyset when it has every required key."""
    keys = keyset.get(name)
    return keys if isinstance(keys, dict) and all(keys.get(k) for k in required) else None


def json_or_none(body: bytes) -> Any:
    """A request body as JSON for the record; None when it is not JSON."""
    try:
        return json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None


def load_vendors(keyset: dict[str, Any]) -> dict[str, Vendor]:
    """Every registered vendor whose keys the keyset holds; one without keys is left out (and
    says so): ``gonglun sandbox init`` adds the keys of vendors newer than the file."""
    vendors: dict[str, Vendor] = {}
    for module in VENDORS:
        vendor = importlib.import_module(module).create(keyset)
        if vendor is None:
            log.warning("sandbox: %s emulator off: the keyset has no %s keys (run gonglun "
                        "sandbox init to add them)", module.rsplit(".", 1)[-1],
                        module.rsplit(".", 1)[-1])
            continue
        vendors[vendor.name] = vendor
    return vendors
