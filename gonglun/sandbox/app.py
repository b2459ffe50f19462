"""The sandbox object, its routes, and a standalone Falcon ASGI app.

``Sandbox(keyset).add_routes(app)`` mounts ``/gateway.do``, ``/v3/...`` and ``/sandbox/...``
into any Falcon ASGI app (the embedded default serves them beside ``/v1``);
``create_sandbox_app(keyset)`` makes an app that serves only them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

import falcon
import falcon.asgi

from . import bills
from .alipay import AlipayChannel, cashier_page
from .faults import FaultError, Faults
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
from .web import ControlError, fail, ok, read_body, read_json
from .wxpay import V3Resource, WxpayChannel, checkmweb_page


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
        wx = self.wxpay
        app.add_route("/gateway.do", AlipayGatewayResource(self))
        app.add_route("/downloadBillFile.resource", AlipayBillFileResource(self))
        app.add_route("/v3/certificates", V3Resource(wx, get=wx.certificates))
        app.add_route("/v3/pay/transactions/{kind}", V3Resource(wx, post=wx.pay))
        app.add_route("/v3/pay/transactions/out-trade-no/{out_trade_no}",
                      V3Resource(wx, get=wx.query_by_out_trade_no))
        app.add_route("/v3/pay/transactions/out-trade-no/{out_trade_no}/close",
                      V3Resource(wx, post=wx.close))
        app.add_route("/v3/pay/transactions/id/{transaction_id}",
                      V3Resource(wx, get=wx.query_by_transaction_id))
        app.add_route("/v3/refund/domestic/refunds", V3Resource(wx, post=wx.refund))
        # One field name for both: Falcon refuses two names at the same level. A query names
        # the merchant's out_refund_no there, the abnormal-refund call WeChat's refund_id.
        app.add_route("/v3/refund/domestic/refunds/{ref}", V3Resource(wx, get=wx.query_refund))
        app.add_route("/v3/refund/domestic/refunds/{ref}/apply-abnormal-refund",
                      V3Resource(wx, post=wx.apply_abnormal_refund))
        app.add_route("/v3/bill/tradebill", V3Resource(wx, get=wx.tradebill))
        app.add_route("/v3/bill/fundflowbill", V3Resource(wx, get=wx.fundflowbill))
        app.add_route("/v3/billdownload/file", V3Resource(wx, get=wx.billfile))

        control = ControlResource(self)
        app.add_route("/sandbox/info", control, suffix="info")
        app.add_route("/sandbox/config", control, suffix="config")
        app.add_route("/sandbox/reset", control, suffix="reset")
        app.add_route("/sandbox/faults", control, suffix="faults")
        app.add_route("/sandbox/notifications", control, suffix="notifications")
        app.add_route("/sandbox/bills/{channel}/{date}", control, suffix="bill")
        app.add_route("/sandbox/alipay/trades", control, suffix="alipay_trades")
        app.add_route("/sandbox/alipay/trades/{no}", control, suffix="alipay_trade")
        app.add_route("/sandbox/alipay/trades/{no}/pay", control, suffix="alipay_pay")
        app.add_route("/sandbox/alipay/trades/{no}/refund", control, suffix="alipay_refund")
        app.add_route("/sandbox/alipay/refunds/{no}/settle", control, suffix="alipay_settle")
        app.add_route("/sandbox/wxpay/trades", control, suffix="wxpay_trades")
        app.add_route("/sandbox/wxpay/trades/{no}", control, suffix="wxpay_trade")
        app.add_route("/sandbox/wxpay/transactions/{no}/pay", control, suffix="wxpay_pay")
        app.add_route("/sandbox/wxpay/transactions/{no}/refund", control,
                      suffix="wxpay_refund")
        app.add_route("/sandbox/wxpay/refunds/{no}/settle", control, suffix="wxpay_settle")
        app.add_route("/sandbox/wxpay/checkmweb", control, suffix="checkmweb")
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


# --- Alipay's gateway ---------------------------------------------------------------------


class AlipayGatewayResource:
    """``GET|POST /gateway.do``: server calls answer signed JSON; cashier methods (the order
    strings page/wap/app pay build) open the cashier, as HTML for a browser or JSON for a
    client that asks for ``application/json``."""

    #: Mounted into Gonglun's API on the embedded default: the gateway has no users.
    auth = "public"

    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self._serve(req, resp, b"")

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self._serve(req, resp, await read_body(req))

    async def _serve(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                     body: bytes) -> None:
        self.sb.notifier.ensure_started()
        if await self.sb.http_fault(ALIPAY):
            resp.status = 500
            resp.content_type = "text/html; charset=utf-8"
            resp.text = "<html><body><h1>500 Internal Server Error</h1></body></html>"
            return
        params = dict(parse_qsl(req.query_string, keep_blank_values=True))
        if body:
            params.update(parse_qsl(body.decode("utf-8", errors="replace"),
                                    keep_blank_values=True))
        text, cashier = self.sb.alipay.handle(params, req.prefix)
        accept = req.get_header("Accept") or ""
        if cashier is not None and "application/json" not in accept:
            resp.content_type = "text/html; charset=utf-8"
            resp.text = cashier_page(cashier)
        elif cashier is not None:
            resp.content_type = "application/json; charset=utf-8"
            resp.text = json.dumps(cashier, ensure_ascii=False)
        else:
            resp.content_type = "application/json; charset=utf-8"
            resp.text = text


class AlipayBillFileResource:
    """``GET /downloadBillFile.resource?...``: the statement behind a ``bill_download_url``,
    a zip of GBK CSV files, while the signed link is fresh (Alipay's host
    dwbillcenter.alipay.com serves the same path)."""

    auth = "public"

    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        params = dict(parse_qsl(req.query_string, keep_blank_values=True))
        download = self.sb.alipay.bill_file(params)
        if download is None:
            resp.status = 403
            resp.content_type = "text/plain; charset=utf-8"
            resp.text = "账单下载链接无效或已过期 (bill_download_url is valid for " \
                f"{self.sb.settings.bill_url_ttl_s:g} s)"
            return
        name, data = download
        resp.content_type = "application/octet-stream"
        resp.set_header("Content-Disposition", f'attachment; filename="{name}"')
        resp.data = data


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
Responder = Callable[..., Awaitable[None]]


def _guard(fn: Responder) -> Responder:
    """Map ControlError to the project's error body; start the sender on the serving loop."""

    async def wrapper(self: ControlResource, req: falcon.asgi.Request,
                      resp: falcon.asgi.Response, **kw: Any) -> None:
        self.sb.notifier.ensure_started()
        try:
            await fn(self, req, resp, **kw)
        except ControlError as exc:
            fail(resp, exc)
        except FaultError as exc:
            fail(resp, ControlError(400, "bad_fault", str(exc)))

    wrapper.__name__ = fn.__name__
    return wrapper


class ControlResource:
    """``/sandbox/...``: play the buyer and the bank, arm faults, read what happened."""

    #: Mounted into Gonglun's API on the embedded default: the gateway has no users.
    auth = "public"

    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox

    # info, config, reset

    @_guard
    async def on_get_info(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ok(resp, {
            "alipay": {"app_id": self.sb.alipay.app_id, "seller_id": self.sb.alipay.seller_id,
                       "gateway": f"{req.prefix}/gateway.do"},
            "wxpay": {"mchid": self.sb.wxpay.mchid, "appid": self.sb.wxpay.appid,
                      "public_key_id": self.sb.wxpay.public_key_id,
                      "platform_cert_serial": self.sb.wxpay.cert_serial,
                      "base_url": req.prefix},
            "config": self._config(),
            "notify": {"urls": self.sb.notify_urls,
                       "hosts": self.sb.notifier.allowlist.describe()},
            **{name: vendor.info() for name, vendor in self.sb.vendors.items()},
        })

    def _config(self) -> dict[str, Any]:
        return {"retry_schedule": list(self.sb.notifier.retry_schedule),
                "notify_timeout": self.sb.notifier.timeout,
                **self.sb.settings.describe()}

    @_guard
    async def on_get_config(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ok(resp, self._config())

    @_guard
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

    @_guard
    async def on_post_reset(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        await self.sb.notifier.stop()
        self.sb.store.reset()
        self.sb.faults.clear()
        for vendor in self.sb.vendors.values():
            vendor.reset()
        self.sb.notifier.ensure_started()
        ok(resp, {"reset": True})

    # faults

    @_guard
    async def on_get_faults(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        armed = {name: v.faults.describe() for name, v in self.sb.vendors.items()
                 if v.faults.describe()}
        ok(resp, {**self.sb.faults.describe(), **armed})

    @_guard
    async def on_post_faults(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        spec = await read_json(req, required=True)
        channel = spec.get("channel")
        vendor = self.sb.vendors.get(channel) if isinstance(channel, str) else None
        ok(resp, vendor.faults.arm(spec) if vendor is not None else self.sb.faults.arm(spec))

    @_guard
    async def on_delete_faults(self, req: falcon.asgi.Request,
                               resp: falcon.asgi.Response) -> None:
        self.sb.faults.clear()
        for vendor in self.sb.vendors.values():
            vendor.faults.clear()
        ok(resp, {})

    # notifications and bills

    @_guard
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

    @_guard
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
            name, resp.data = bills.alipay_zip(self.sb, date)
            resp.content_type = "application/zip"
            resp.set_header("Content-Disposition", f'attachment; filename="{name}"')
            return
        resp.content_type = "text/csv; charset=utf-8"
        if channel == ALIPAY:
            resp.text = bills.alipay_csv(self.sb, date)
        else:
            bill_type = (req.get_param("bill_type") or "ALL").upper()
            resp.text = bills.wxpay_csv(self.sb, date, bill_type)

    # Alipay

    @_guard
    async def on_get_alipay_trades(self, req: falcon.asgi.Request,
                                   resp: falcon.asgi.Response) -> None:
        ok(resp, [self.sb.alipay.view(t) for t in self.sb.store.trades.values()
                  if t.channel == ALIPAY])

    @_guard
    async def on_post_alipay_trades(self, req: falcon.asgi.Request,
                                    resp: falcon.asgi.Response) -> None:
        ok(resp, self.sb.alipay.create(await read_json(req, required=True)), 201)

    @_guard
    async def on_get_alipay_trade(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                                  no: str) -> None:
        trade = self.sb.store.trade(ALIPAY, no)
        if trade is None:
            raise ControlError(404, "trade_not_found", f"no Alipay trade {no!r}")
        ok(resp, self.sb.alipay.view(trade))

    @_guard
    async def on_patch_alipay_trade(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                                    no: str) -> None:
        ok(resp, self.sb.alipay.adjust(no, await read_json(req, required=True)))

    @_guard
    async def on_post_alipay_pay(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                                 no: str) -> None:
        ok(resp, self.sb.alipay.pay(no, await read_json(req)))

    @_guard
    async def on_post_alipay_refund(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                                    no: str) -> None:
        ok(resp, self.sb.alipay.console_refund(no, await read_json(req, required=True)))

    @_guard
    async def on_post_alipay_settle(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                                    no: str) -> None:
        ok(resp, self.sb.alipay.settle_refund(no, await read_json(req)))

    # WeChat Pay

    @_guard
    async def on_get_wxpay_trades(self, req: falcon.asgi.Request,
                                  resp: falcon.asgi.Response) -> None:
        ok(resp, [self.sb.wxpay.control_view(t) for t in self.sb.store.trades.values()
                  if t.channel == WXPAY])

    @_guard
    async def on_post_wxpay_trades(self, req: falcon.asgi.Request,
                                   resp: falcon.asgi.Response) -> None:
        ok(resp, self.sb.wxpay.create(await read_json(req, required=True)), 201)

    @_guard
    async def on_get_wxpay_trade(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                                 no: str) -> None:
        trade = self.sb.store.trade(WXPAY, no)
        if trade is None:
            raise ControlError(404, "trade_not_found", f"no WeChat Pay order {no!r}")
        ok(resp, self.sb.wxpay.control_view(trade))

    @_guard
    async def on_patch_wxpay_trade(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                                   no: str) -> None:
        ok(resp, self.sb.wxpay.adjust(no, await read_json(req, required=True)))

    @_guard
    async def on_post_wxpay_pay(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                                no: str) -> None:
        ok(resp, self.sb.wxpay.control_pay(no, await read_json(req)))

    @_guard
    async def on_post_wxpay_refund(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                                   no: str) -> None:
        ok(resp, self.sb.wxpay.console_refund(no, await read_json(req, required=True)))

    @_guard
    async def on_post_wxpay_settle(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                                   no: str) -> None:
        ok(resp, self.sb.wxpay.settle(no, await read_json(req, required=True)))

    async def on_get_checkmweb(self, req: falcon.asgi.Request,
                               resp: falcon.asgi.Response) -> None:
        prepay_id = req.get_param("prepay_id") or ""
        trade = next((t for t in self.sb.store.trades.values()
                      if t.channel == WXPAY and t.prepay_id and t.prepay_id == prepay_id), None)
        resp.content_type = "text/html; charset=utf-8"
        resp.text = checkmweb_page(trade, req.prefix)
