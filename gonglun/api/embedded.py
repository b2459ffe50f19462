"""The API's side of the embedded default (``gonglun.embedded``): the gateway sandbox mounted
in the app, its control routes kept to loopback, and the lifespan that runs migrations, the
worker, the scheduler and the sandbox's notifier in this process."""

from __future__ import annotations

import logging
from typing import Any

from gonglun.embedded import gateway_sandbox, sandbox_dir, sandbox_enabled

log = logging.getLogger(__name__)


def attach_embedded(app: Any, rt: Any) -> None:
    """Mount the sandbox and add the lifespan middleware running the in-process services."""
    if sandbox_enabled(rt):
        gateway = gateway_sandbox()
        if gateway is None:  # the sandbox package is optional in a stripped install
            log.warning("gateway sandbox not installed; channels have no gateway")
        else:
            state = rt.config.get("sandbox.state_path") or None
            # The sandbox notifies only this server (what it creates by control, and any host
            # besides loopback and these): never an address a caller names.
            notify_urls = {m: str(rt.config.get(f"payment.{m}.notify_url")
                                  or f"{rt.config.base_url}/v1/notify/{m}")
                           for m in ("alipay", "wxpay")}
            rt.sandbox = gateway.create(sandbox_dir(rt), state_path=state,
                                        notify_urls=notify_urls)
            rt.sandbox.add_routes(app)
            app.add_middleware(SandboxControlGuard(rt))
    if rt.config.embedded and rt.config.get("server.embedded_services", True):
        app.add_middleware(EmbeddedServices(rt))


class SandboxControlGuard:
    """The sandbox's control routes play the buyer (they mark orders paid): mounted in the API,
    they answer only peers on loopback or in ``sandbox.control_from`` (addresses or CIDRs), so
    ``gonglun serve --host 0.0.0.0`` on the embedded default does not hand the network a way to
    pay. The peer is the socket's, never a forwarded header."""

    def __init__(self, rt: Any):
        from gonglun.api.util import parse_networks

        self.allowed = parse_networks(["127.0.0.0/8", "::1/128",
                                       *(rt.config.get("sandbox.control_from") or [])])

    async def process_request(self, req: Any, resp: Any) -> None:
        if req.path == "/sandbox" or req.path.startswith("/sandbox/"):
            import ipaddress

            from gonglun.errors import GonglunError

            try:
                peer = ipaddress.ip_address(req.remote_addr or "")
            except ValueError:
                peer = None
            if peer is None or not any(peer in net for net in self.allowed):
                raise GonglunError("sandbox.forbidden",
                                   "沙箱控制接口只对本机或 sandbox.control_from 开放", status=403)


class EmbeddedServices:
    """ASGI lifespan: migrations, worker and scheduler threads, sandbox notifier."""

    def __init__(self, rt: Any):
        self.rt = rt
        self.worker: Any = None
        self.scheduler: Any = None

    async def process_startup(self, scope: Any, event: Any) -> None:
        import dramatiq

        from gonglun.api.util import run_sync
        from gonglun.migrate import upgrade
        from gonglun.scheduler import Scheduler

        await run_sync(upgrade, self.rt)
        threads = int(self.rt.config.get("broker.worker_threads", 4))
        self.worker = dramatiq.Worker(self.rt.broker, worker_threads=threads)
        self.worker.start()
        self.scheduler = Scheduler(self.rt)
        self.scheduler.start_thread()
        await run_sync(self.rt.outbox.sweep)
        sandbox = getattr(self.rt, "sandbox", None)
        if sandbox is not None:
            await sandbox.start()
        log.info("embedded services started: worker (%d threads), scheduler%s", threads,
                 ", gateway sandbox" if sandbox is not None else "")

    async def process_shutdown(self, scope: Any, event: Any) -> None:
        sandbox = getattr(self.rt, "sandbox", None)
        if sandbox is not None:
            await sandbox.stop()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.worker is not None:
            self.worker.stop()
