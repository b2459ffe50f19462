"""The buyer and the bank at WeChat Pay (``/sandbox/wxpay/...``): pay an order, inject one,
change what the channel recorded, refund from the merchant platform, settle a PROCESSING
refund; and the H5 payment page."""

from __future__ import annotations

from typing import Any

import falcon.asgi

from ..common import digits, now, parse_time, wechat_transaction_id
from ..store import WXPAY, Trade
from ..trade_control import TradeControlResource
from ..web import ControlError
from .refunds import WxpayRefunds
from .transactions import WxpayTransactions, checkmweb_page
from .wire import CERTIFICATE, CLOSED, NOTPAY, PUBLIC_KEY, REFUND, SUCCESS, Call


class WxpayControl(WxpayTransactions, WxpayRefunds):
    """What the control API does at WeChat Pay: the buyer pays, the bank settles."""

    def control_pay(self, out_trade_no: str, data: dict[str, Any]) -> dict[str, Any]:
        """The buyer pays (``POST /sandbox/wxpay/transactions/{no}/pay``)."""
        total = _fen(data, "total")
        trade = self._trade(out_trade_no)
        if trade is None:
            if total is None:
                raise ControlError(
                    404, "trade_not_found",
                    f"no WeChat Pay order {out_trade_no!r}; give total (fen) to create and pay it",
                )
            trade = self._control_trade(out_trade_no, total, data)
        elif trade.state != NOTPAY:
            raise ControlError(409, "trade_state", f"order {out_trade_no} is {trade.state}")
        elif total is not None and total != trade.amount:
            raise ControlError(409, "amount_mismatch",
                               f"order {out_trade_no} is {trade.amount} fen")
        if data.get("openid"):
            trade.payer = str(data["openid"])
        coupon = _fen(data, "coupon")
        if coupon is not None:
            if coupon >= trade.amount:
                raise ControlError(400, "bad_amount", "coupon must be less than the total")
            trade.extra["coupon"] = coupon
        self._mark_paid(trade, data)
        out = self.control_view(trade)
        out.update(self.sb.notifier.report(self.notify_payment(trade)))
        return out

    def _control_trade(self, out_trade_no: str, total: int, data: dict[str, Any]) -> Trade:
        """An order the control API creates: it notifies the sandbox's configured URL."""
        mode = str(data.get("serial_mode") or PUBLIC_KEY)
        if mode not in (PUBLIC_KEY, CERTIFICATE):
            raise ControlError(400, "bad_field", "serial_mode must be public_key or certificate")
        return Trade(
            channel=WXPAY, out_trade_no=out_trade_no, channel_no="", amount=total, state=NOTPAY,
            app_id=self.appid, subject=str(data.get("description") or "sandbox order"),
            kind="control", notify_url=self.sb.notify_urls.get(WXPAY, ""),
            payer=str(data.get("openid") or ""), created_at=now(), serial_mode=mode,
        )

    def _mark_paid(self, trade: Trade, data: dict[str, Any]) -> None:
        paid_at = now()
        if data.get("paid_at"):
            try:
                paid_at = parse_time(str(data["paid_at"]))
            except ValueError as exc:
                raise ControlError(400, "bad_time", f"paid_at: {exc}") from exc
        trade.state = SUCCESS
        trade.paid_at = paid_at
        trade.channel_no = trade.channel_no or wechat_transaction_id(paid_at)
        self.sb.store.save_trade(trade)

    def create(self, data: dict[str, Any]) -> dict[str, Any]:
        """Inject an order paid at WeChat (``POST /sandbox/wxpay/trades``)."""
        total = _fen(data, "total") or _fen(data, "amount")
        if total is None:
            raise ControlError(400, "bad_amount", "total (fen) is required")
        out_trade_no = str(data.get("out_trade_no") or digits(20))
        if self.sb.store.trade(WXPAY, out_trade_no) is not None:
            raise ControlError(409, "trade_exists", f"order {out_trade_no} already exists")
        state = str(data.get("state") or SUCCESS)
        if state not in (NOTPAY, SUCCESS, CLOSED):
            raise ControlError(400, "bad_state", "state must be NOTPAY, SUCCESS or CLOSED")
        trade = self._control_trade(out_trade_no, total, data)
        if state == SUCCESS:
            self._mark_paid(trade, data)
        else:
            trade.state = state
            trade.closed_at = now() if state == CLOSED else None
            self.sb.store.save_trade(trade)
        out = self.control_view(trade)
        if state == SUCCESS and data.get("notify"):
            out.update(self.sb.notifier.report(self.notify_payment(trade)))
        return out

    def adjust(self, out_trade_no: str, data: dict[str, Any]) -> dict[str, Any]:
        trade = self.sb.store.trade(WXPAY, out_trade_no)
        if trade is None:
            raise ControlError(404, "trade_not_found", f"no WeChat Pay order {out_trade_no!r}")
        total = _fen(data, "total") or _fen(data, "amount")
        if total is not None:
            trade.amount = total
        if data.get("paid_at"):
            try:
                trade.paid_at = parse_time(str(data["paid_at"]))
            except ValueError as exc:
                raise ControlError(400, "bad_time", f"paid_at: {exc}") from exc
        self.sb.store.save_trade(trade)
        return self.control_view(trade)

    def console_refund(self, out_trade_no: str, data: dict[str, Any]) -> dict[str, Any]:
        """The merchant refunds from the merchant platform, outside its own system
        (``POST /sandbox/wxpay/transactions/{no}/refund``, ``amount`` fen): the v3 refund as
        the platform makes it, with its own ``out_refund_no`` (default ``console-<n>``),
        PROCESSING until the bank settles it (``/sandbox/wxpay/refunds/{no}/settle``) unless
        armed otherwise."""
        amount = data.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ControlError(400, "bad_amount", "amount must be a positive integer (fen)")
        trade = self._trade(out_trade_no)
        if trade is None:
            raise ControlError(404, "trade_not_found", f"no WeChat Pay order {out_trade_no!r}")
        number = str(data.get("out_refund_no") or
                     f"console-{len(self.sb.store.refunds_of(WXPAY, out_trade_no)) + 1}")[:64]
        body = {"out_trade_no": out_trade_no, "out_refund_no": number,
                "amount": {"refund": amount, "total": trade.amount, "currency": "CNY"}}
        reply = self.refund(Call("POST", {}, body, "", trade.serial_mode), {})
        if reply.status != 200 or reply.payload is None:
            payload = reply.payload or {}
            raise ControlError(409, "refund_refused",
                               f"{payload.get('code')}: {payload.get('message') or ''}")
        return reply.payload

    def settle(self, out_refund_no: str, data: dict[str, Any]) -> dict[str, Any]:
        """The bank settles a PROCESSING refund (a new one, or an ABNORMAL one redirected by
        apply-abnormal-refund): SUCCESS, ABNORMAL or CLOSED; the REFUND.* notification goes
        out."""
        status = data.get("status")
        if status not in ("SUCCESS", "ABNORMAL", "CLOSED"):
            raise ControlError(400, "bad_status", "status must be SUCCESS, ABNORMAL or CLOSED")
        refund = self.sb.store.refund(WXPAY, out_refund_no)
        if refund is None:
            raise ControlError(404, "refund_not_found", f"no WeChat Pay refund {out_refund_no!r}")
        if refund.status != "PROCESSING":
            raise ControlError(409, "refund_state", f"refund {out_refund_no} is {refund.status}")
        refund.status = status
        if status == "SUCCESS":
            refund.success_at = now()
        self.sb.store.save_refund(refund)
        trade = self.sb.store.trade(WXPAY, refund.out_trade_no)
        assert trade is not None
        if status == "CLOSED" and self._committed(trade) == 0 and trade.state == REFUND:
            trade.state = SUCCESS
            self.sb.store.save_trade(trade)
        out = self.refund_view(refund)
        out.update(self.sb.notifier.report(self.notify_refund(trade, refund)))
        return out

    def control_view(self, trade: Trade) -> dict[str, Any]:
        self._expire(trade)
        out = self.transaction_view(trade)
        out["transaction_id"] = trade.channel_no or None
        out["notify_url"] = trade.notify_url
        out["refunds"] = [self.refund_view(r)
                          for r in self.sb.store.refunds_of(WXPAY, trade.out_trade_no)]
        return out


def _fen(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ControlError(400, "bad_amount", f"{name} must be a positive integer (fen)")
    return value


class WxpayControlResource(TradeControlResource):
    """``/sandbox/wxpay/...``: the buyer and the bank (mounted by ``WxpayChannel``)."""

    vendor, noun = WXPAY, "WeChat Pay order"
    settle_body_required = True

    def view(self, trade: Trade) -> dict[str, Any]:
        return self.channel.control_view(trade)

    def pay(self, no: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.channel.control_pay(no, body)

    def settle(self, no: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.channel.settle(no, body)

    async def on_get_checkmweb(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        prepay_id = req.get_param("prepay_id") or ""
        trade = next((t for t in self.sb.store.trades.values()
                      if t.channel == WXPAY and t.prepay_id and t.prepay_id == prepay_id), None)
        resp.content_type = "text/html; charset=utf-8"
        resp.text = checkmweb_page(trade, req.prefix)
