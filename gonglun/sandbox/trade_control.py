"""The control routes of one vendor's trades (``/sandbox/<vendor>/...``): the buyer and the bank.
The routes are the same for every payment vendor; a vendor's subclass names its trades, how it
shows one, how its buyer pays and how its bank settles a refund."""

from __future__ import annotations

from typing import Any

import falcon.asgi

from .core import guard
from .store import Trade
from .web import ControlError, ok, read_json


class TradeControlResource:
    #: Mounted into Gonglun's API on the embedded default: the gateway has no users.
    auth = "public"
    #: The store's channel name of the vendor's trades, and what a missing one is called.
    vendor = ""
    noun = ""
    #: Whether settling a refund needs a body (the status to settle it with).
    settle_body_required = False

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.sb = channel.sb

    def view(self, trade: Trade) -> dict[str, Any]:
        raise NotImplementedError

    def pay(self, no: str, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def settle(self, no: str, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    @guard
    async def on_get_trades(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ok(resp, [self.view(t) for t in self.sb.store.trades.values() if t.channel == self.vendor])

    @guard
    async def on_post_trades(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        ok(resp, self.channel.create(await read_json(req, required=True)), 201)

    @guard
    async def on_get_trade(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                           no: str) -> None:
        trade = self.sb.store.trade(self.vendor, no)
        if trade is None:
            raise ControlError(404, "trade_not_found", f"no {self.noun} {no!r}")
        ok(resp, self.view(trade))

    @guard
    async def on_patch_trade(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                             no: str) -> None:
        ok(resp, self.channel.adjust(no, await read_json(req, required=True)))

    @guard
    async def on_post_pay(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                          no: str) -> None:
        ok(resp, self.pay(no, await read_json(req)))

    @guard
    async def on_post_refund(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                             no: str) -> None:
        ok(resp, self.channel.console_refund(no, await read_json(req, required=True)))

    @guard
    async def on_post_settle(self, req: falcon.asgi.Request, resp: falcon.asgi.Response,
                             no: str) -> None:
        ok(resp, self.settle(no, await read_json(req, required=self.settle_body_required)))
