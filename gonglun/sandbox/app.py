"""The sandbox object, its routes, and a standalone Falcon ASGI app.

``Sandbox(keyset).add_routes(app)`` mounts ``/gateway.do``, ``/v3/...`` and ``/sandbox/...``
into any Falcon ASGI app (the embedded default serves them beside ``/v1``);
``create_sandbox_app(keyset)`` makes an app that serves only them. The Sandbox composes the
payment channels (``alipay/``, ``wxpay/``: each registers its own routes) and the other
vendors (``vendors.py``) around the shared core they are built on (``core.SandboxCore``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import falcon
import falcon.asgi

from . import bills
from .alipay import AlipayChannel, alipay_csv, alipay_zip
from .core import guard
from .faults import Faults
from .keys import Keyset, validate_keyset
from .links import LinkSigner
from .notifier import (
    DEFAULT_NOTIFY_TIMEOUT,
    DEFAULT_RETRY_SCHEDULE,
    HostAllowlist,
    Notifier,
    url_target,
)
from .settings import Settings, apply_settings, check_config
from .store import ALIPAY, CHANNELS, WXPAY, Store
from .vendors import load_vendors
from .web import ControlError, ok, read_json
from .wxpay import WxpayChannel, wxpay_csv


class Sandbox:
    """A local Alipay gateway and WeChat Pay v3 server with a control API.

    State lives in memory, or in the SQLite file ``state_path`` when given. Notifications are
    sent from background tasks on the serving event loop; they start lazily on the first
    request, and ``start()``/``stop()`` (wired to the ASGI lifespan by ``add_routes``) make
    that explicit.

    Where notifications go is the sandbox's own configuration, never a control caller's:
    ``notify_urls`` (``{"alipay": url, "wxpay": url}``) is the notify URL of trades the
    control API creates (without one they notify nobody), and notifications are sent only to
    ``notify_hosts`` (``host`` or ``host:port``; default loopback: 127.0.0.1, localhost, ::1)
    plus the host and port of each ``notify_urls`` entry.

    ``settings`` (:class:`Settings`, changeable later through ``POST /sandbox/config``) says
    what the bank does when no fault is armed: by default as in production.
    """

    def __init__(
        self,
        keyset: Keyset,
        *,
        state_path: str | None = None,
        retry_schedule: Sequence[float] = DEFAULT_RETRY_SCHEDULE,
        notify_timeout: float = DEFAULT_NOTIFY_TIMEOUT,
        notify_urls: Mapping[str, str] | None = None,
        notify_hosts: Iterable[str] | None = None,
        settings: Settings | None = None,
    ) -> None:
        validate_keyset(keyset)
        self.keyset = keyset
        self.notify_urls = _notify_urls(notify_urls or {})
        self.store = Store(state_path)
        self.faults = Faults()
        self.settings = settings if settings is not None else Settings()
        self.links = LinkSigner()
        self.notifier = Notifier(self.store, self.faults, retry_schedule=retry_schedule,
                                 timeout=notify_timeout,
                                 allowlist=HostAllowlist.for_sandbox(notify_hosts,
                                                                     self.notify_urls))
        self.alipay = AlipayChannel(self)
        self.wxpay = WxpayChannel(self)
        self.settings.resolve(self.faults, CHANNELS)
        #: The other providers (Tencent Cloud, WeChat official account, JPush): vendors.py.
        self.vendors = load_vendors(keyset)

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the notification sender to the running loop and resume pending deliveries."""
        self.notifier.ensure_started()

    async def stop(self) -> None:
        """Cancel in-flight deliveries (pending ones resume on the next start)."""
        await self.notifier.stop()

    def close(self) -> None:
        """Release the state file (after ``stop``)."""
        self.store.close()

    async def http_fault(self, channel: str) -> bool:
        """Apply an armed ``http`` fault: True when the call must fail with a 500.

        A ``timeout`` holds the request for ``delay_s`` first; the call is never processed,
        so the merchant cannot tell whether anything happened, as with a real timeout."""
        fault = self.faults.take(channel, "http")
        if fault is None:
            return False
        if fault.mode == "timeout":
            await asyncio.sleep(fault.delay_s)
        return True

    def next_refund(self, channel: str) -> str:
        """The outcome of a refund request the channel is about to accept: the armed
        ``next_refund`` fault if any, else the channel's default (``settings``)."""
        fault = self.faults.take(channel, "refund")
        return fault.mode if fault is not None else self.settings.refund_defaults[channel]

    # --- routes --------------------------------------------------------------------------

    def add_routes(self, app: falcon.asgi.App, *, lifecycle: bool = True) -> None:
        """Mount every sandbox route on ``app``; with ``lifecycle`` also start and stop the
        notification sender with the app's ASGI lifespan."""
        self.alipay.add_routes(app)
        self.wxpay.add_routes(app)
        control = ControlResource(self)
        app.add_route("/sandbox/info", control, suffix="info")
        app.add_route("/sandbox/config", control, suffix="config")
        app.add_route("/sandbox/reset", control, suffix="reset")
        app.add_route("/sandbox/faults", control, suffix="faults")
        app.add_route("/sandbox/notifications", control, suffix="notifications")
        app.add_route("/sandbox/bills/{channel}/{date}", control, suffix="bill")
        for vendor in self.vendors.values():
            vendor.add_routes(app)
        if lifecycle:
            app.add_middleware(_Lifecycle(self))


def create_sandbox_app(
    keyset: Keyset,
    *,
    state_path: str | None = None,
    retry_schedule: Sequence[float] = DEFAULT_RETRY_SCHEDULE,
    notify_timeout: float = DEFAULT_NOTIFY_TIMEOUT,
    notify_urls: Mapping[str, str] | None = None,
    notify_hosts: Iterable[str] | None = None,
    settings: Settings | None = None,
) -> SandboxApp:
    """A Falcon ASGI app serving only the sandbox; the Sandbox is at ``app.sandbox``."""
    sandbox = Sandbox(keyset, state_path=state_path, retry_schedule=retry_schedule,
                      notify_timeout=notify_timeout, notify_urls=notify_urls,
                      notify_hosts=notify_hosts, settings=settings)
    app = SandboxApp(sandbox)
    sandbox.add_routes(app)
    return app


class SandboxApp(falcon.asgi.App):
    """A Falcon ASGI app that keeps a reference to its Sandbox (Falcon's App has slots)."""

    def __init__(self, sandbox: Sandbox, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sandbox = sandbox


class _Lifecycle:
    """ASGI lifespan hooks: start the sender with the server, stop it before the loop ends."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    async def process_startup(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        await self.sandbox.start()

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        await self.sandbox.stop()






def _notify_urls(urls: Mapping[str, str]) -> dict[str, str]:
    """Checked ``notify_urls``; an empty value means none for that channel."""
    unknown = set(urls) - set(CHANNELS)
    if unknown:
        raise ValueError(f"notify_urls: unknown channel(s) {', '.join(sorted(unknown))}")
    for channel, url in urls.items():
        if url and url_target(url) is None:
            raise ValueError(f"notify_urls[{channel!r}] must be an http(s) URL, got {url!r}")
    return {channel: url for channel, url in urls.items() if url}


# --- the control API ----------------------------------------------------------------------

_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?$")




class ControlResource:
    """``/sandbox/...``: play the buyer and the bank, arm faults, read what happened."""

    #: Mounted into Gonglun's API on the embedded default: the gateway has no users.
    auth = "public"

    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox

    # info, config, reset

    @guard
    async def on_get_info(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ok(resp, {
            "alipay": self.sb.alipay.info(req.prefix),
            "wxpay": self.sb.wxpay.info(req.prefix),
            "config": self._config(),
            "notify": {"urls": self.sb.notify_urls,
                       "hosts": self.sb.notifier.allowlist.describe()},
            **{name: vendor.info() for name, vendor in self.sb.vendors.items()},
        })

    def _config(self) -> dict[str, Any]:
        return {"retry_schedule": list(self.sb.notifier.retry_schedule),
                "notify_timeout": self.sb.notifier.timeout,
                **self.sb.settings.describe()}

    @guard
    async def on_get_config(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ok(resp, self._config())

    @guard
    async def on_post_config(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        changes = check_config(await read_json(req, required=True), self.sb.faults)
        apply_settings(self.sb.settings, changes)
        if "retry_schedule" in changes:
            self.sb.notifier.retry_schedule = changes["retry_schedule"]
        if "notify_timeout" in changes:
            self.sb.notifier.timeout = changes["notify_timeout"]
            await self.sb.notifier.stop()  # the next delivery opens a client with the new timeout
            self.sb.notifier.ensure_started()
        ok(resp, self._config())

    @guard
    async def on_post_reset(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self.sb.notifier.stop()
        self.sb.store.reset()
        self.sb.faults.clear()
        for vendor in self.sb.vendors.values():
            vendor.reset()
        self.sb.notifier.ensure_started()
        ok(resp, {"reset": True})

    # faults

    @guard
    async def on_get_faults(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        armed = {name: v.faults.describe() for name, v in self.sb.vendors.items()
                 if v.faults.describe()}
        ok(resp, {**self.sb.faults.describe(), **armed})

    @guard
    async def on_post_faults(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        spec = await read_json(req, required=True)
        channel = spec.get("channel")
        vendor = self.sb.vendors.get(channel) if isinstance(channel, str) else None
        ok(resp, vendor.faults.arm(spec) if vendor is not None else self.sb.faults.arm(spec))

    @guard
    async def on_delete_faults(self, req: falcon.asgi.Request,
                               resp: falcon.asgi.Response) -> None:
        self.sb.faults.clear()
        for vendor in self.sb.vendors.values():
            vendor.faults.clear()
        ok(resp, {})

    # notifications and bills

    @guard
    async def on_get_notifications(self, req: falcon.asgi.Request,
                                   resp: falcon.asgi.Response) -> None:
        channel = req.get_param("channel")
        if channel is not None and channel not in CHANNELS:
            raise ControlError(400, "bad_channel", f"channel must be one of {', '.join(CHANNELS)}")
        out_trade_no = req.get_param("out_trade_no")
        attempts = [
            a for a in self.sb.store.attempts
            if (channel is None or a["channel"] == channel)
            and (out_trade_no is None or a["summary"].get("out_trade_no") == out_trade_no)
        ]
        ok(resp, attempts)

    @guard
    async def on_get_bill(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                          channel: str, date: str) -> None:
        if channel not in CHANNELS:
            raise ControlError(404, "bad_channel", f"channel must be one of {', '.join(CHANNELS)}")
        if not _DATE.match(date) or not bills.period_bounds(date) or (
                channel == WXPAY and len(date) != 10):
            raise ControlError(400, "bad_date", "date must be YYYY-MM-DD (Alipay also YYYY-MM)")
        if req.get_param("format") == "json":
            ok(resp, bills.as_json(self.sb, channel, date))
            return
        if req.get_param("format") == "zip" and channel == ALIPAY:
            name, resp.data = alipay_zip(self.sb.alipay, date)
            resp.content_type = "application/zip"
            resp.set_header("Content-Disposition", f'attachment; filename="{name}"')
            return
        resp.content_type = "text/csv; charset=utf-8"
        if channel == ALIPAY:
            resp.text = alipay_csv(self.sb.alipay, date)
        else:
            bill_type = (req.get_param("bill_type") or "ALL").upper()
            resp.text = wxpay_csv(self.sb.wxpay, date, bill_type)

    # Alipay








    # WeChat Pay








