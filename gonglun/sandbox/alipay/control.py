"""The buyer and the bank at Alipay (``/sandbox/alipay/...``): pay a trade, inject one,
change what the channel recorded, refund from the console, settle a pending refund."""

from __future__ import annotations

from typing import Any

from ..common import AmountError, alipay_trade_no, fen_to_yuan, now, parse_time
from ..store import ALIPAY, Refund, Trade
from ..trade_control import TradeControlResource
from ..web import ControlError
from .refunds import AlipayRefunds
from .trades import AlipayTrades
from .wire import CLOSED, FAILED, FINISHED, PENDING, SETTLE_STATUSES, SUCCESS, WAIT, biz_amount


class AlipayControl(AlipayTrades, AlipayRefunds):
    """What the control API does at Alipay: the buyer pays, the bank settles."""

    def pay(self, out_trade_no: str, data: dict[str, Any]) -> dict[str, Any]:
        """The buyer pays (``POST /sandbox/alipay/trades/{no}/pay``)."""
        amount = self._control_amount(data)
        trade = self._find({"out_trade_no": out_trade_no})
        if trade is None:
            if amount is None:
                raise ControlError(
                    404, "trade_not_found",
                    f"no Alipay trade {out_trade_no!r} (its cashier was never opened); "
                    "give total_amount to create and pay it",
                )
            trade = self._control_trade(out_trade_no, amount, data)
        elif trade.state != WAIT:
            raise ControlError(409, "trade_state", f"trade {out_trade_no} is {trade.state}")
        elif amount is not None and amount != trade.amount:
            raise ControlError(409, "amount_mismatch",
                               f"trade {out_trade_no} is for {fen_to_yuan(trade.amount)} yuan")
        trade.paid_at = self._control_time(data, "paid_at")
        trade.state = SUCCESS
        self.sb.store.save_trade(trade)
        delivery = self.notify_payment(trade)
        out = self.view(trade)
        out.update(self.sb.notifier.report(delivery))
        if trade.return_url:
            out["return_url"] = self.return_url(trade)
        return out

    def create(self, data: dict[str, Any]) -> dict[str, Any]:
        """Inject a trade directly (``POST /sandbox/alipay/trades``), paid unless told otherwise.

        For reconciliation tests: an order paid at the channel that the merchant never saw.
        """
        amount = self._control_amount(data)
        if amount is None:
            raise ControlError(400, "bad_amount", "total_amount (yuan) or amount (fen) is required")
        out_trade_no = str(data.get("out_trade_no") or alipay_trade_no(now())[8:])
        if self.sb.store.trade(ALIPAY, out_trade_no) is not None:
            raise ControlError(409, "trade_exists", f"trade {out_trade_no} already exists")
        state = str(data.get("state") or SUCCESS)
        if state not in (WAIT, SUCCESS, CLOSED):
            raise ControlError(400, "bad_state", f"state must be {WAIT}, {SUCCESS} or {CLOSED}")
        trade = self._control_trade(out_trade_no, amount, data)
        if state == SUCCESS:
            trade.paid_at = self._control_time(data, "paid_at")
        trade.state = state
        if state == CLOSED:
            trade.closed_at = now()
        self.sb.store.save_trade(trade)
        out = self.view(trade)
        if state == SUCCESS and data.get("notify"):
            out.update(self.sb.notifier.report(self.notify_payment(trade)))
        return out

    def _control_trade(self, out_trade_no: str, amount: int, data: dict[str, Any]) -> Trade:
        """A trade the control API creates: it notifies the sandbox's configured URL."""
        return self._new_trade(
            out_trade_no=out_trade_no, amount=amount,
            subject=str(data.get("subject") or "sandbox order"), kind="control",
            notify_url=self.sb.notify_urls.get(ALIPAY, ""),
            app_id=str(data.get("app_id") or ""),
        )

    def console_refund(self, out_trade_no: str, data: dict[str, Any]) -> dict[str, Any]:
        """The merchant refunds from Alipay's console, outside its own system
        (``POST /sandbox/alipay/trades/{no}/refund``, ``amount`` fen): ``alipay.trade.refund``
        as the console makes it, with its own request number (``out_request_no``, default
        ``console-<n>``), the refund notification included."""
        amount = self._control_amount(data)
        if amount is None:
            raise ControlError(400, "bad_amount", "amount (fen) or total_amount (yuan) is required")
        number = str(data.get("out_request_no") or
                     f"console-{len(self.sb.store.refunds_of(ALIPAY, out_trade_no)) + 1}")
        reply = self.refund({"out_trade_no": out_trade_no, "refund_amount": fen_to_yuan(amount),
                             "out_request_no": number[:64]})
        if reply.get("code") != "10000":
            raise ControlError(409, "refund_refused", f"{reply.get('sub_code')}: "
                               f"{reply.get('sub_msg') or reply.get('msg') or ''}")
        return {**reply, "out_request_no": number[:64]}

    def settle_refund(self, out_request_no: str, data: dict[str, Any]) -> dict[str, Any]:
        """The bank settles a pending (fund_change N) refund: ``SUCCESS`` (REFUND_SUCCESS and a
        notification) or ``FAILED`` (the query then reports it not refunded; no notification)."""
        status = SETTLE_STATUSES.get(str(data.get("status") or "SUCCESS").upper())
        if status is None:
            raise ControlError(400, "bad_status", "status must be SUCCESS or FAILED")
        refund = self._one_refund(out_request_no, data)
        if refund.status != PENDING:
            raise ControlError(409, "refund_state", f"refund {out_request_no} is {refund.status}")
        trade = self.sb.store.trade(ALIPAY, refund.out_trade_no)
        assert trade is not None
        if status == FAILED:
            refund.status = FAILED
            self.sb.store.save_refund(refund)
            return {**self.refund_view(refund), "notification": None, "notified": False,
                    "notification_note": "no notification sent: Alipay notifies settled "
                                         "refunds only"}
        delivery = self._settle(trade, refund)
        return {**self.refund_view(refund), **self.sb.notifier.report(delivery)}

    def _one_refund(self, out_request_no: str, data: dict[str, Any]) -> Refund:
        found = self.sb.store.refunds_numbered(ALIPAY, out_request_no)
        if data.get("out_trade_no"):
            found = [r for r in found if r.out_trade_no == str(data["out_trade_no"])]
        if not found:
            raise ControlError(404, "refund_not_found", f"no Alipay refund {out_request_no!r}")
        if len(found) > 1:
            raise ControlError(409, "ambiguous_refund",
                               f"several trades have refund {out_request_no!r}; give out_trade_no")
        return found[0]

    def _control_amount(self, data: dict[str, Any]) -> int | None:
        if data.get("total_amount") is not None:
            try:
                fen = biz_amount(data["total_amount"])
            except AmountError as exc:
                raise ControlError(400, "bad_amount", str(exc)) from exc
            if fen <= 0:
                raise ControlError(400, "bad_amount", "total_amount must be positive")
            return fen
        if data.get("amount") is not None:
            fen = data["amount"]
            if isinstance(fen, bool) or not isinstance(fen, int) or fen <= 0:
                raise ControlError(400, "bad_amount", "amount must be a positive integer (fen)")
            return fen
        return None

    @staticmethod
    def _control_time(data: dict[str, Any], name: str) -> float:
        if not data.get(name):
            return now()
        try:
            return parse_time(str(data[name]))
        except ValueError as exc:
            raise ControlError(400, "bad_time", f"{name}: {exc}") from exc

    def adjust(self, out_trade_no: str, data: dict[str, Any]) -> dict[str, Any]:
        """Change what the channel recorded (amount, payment time): amount-mismatch drills."""
        trade = self.sb.store.trade(ALIPAY, out_trade_no)
        if trade is None:
            raise ControlError(404, "trade_not_found", f"no Alipay trade {out_trade_no!r}")
        amount = self._control_amount(data)
        if amount is not None:
            trade.amount = amount
        if data.get("paid_at"):
            trade.paid_at = self._control_time(data, "paid_at")
        if data.get("trade_status") is not None:
            self._finish(trade, data["trade_status"])
        self.sb.store.save_trade(trade)
        return self.view(trade)

    @staticmethod
    def _finish(trade: Trade, status: Any) -> None:
        """``TRADE_FINISHED``: a paid trade past its refund window (refunds then answer
        ACQ.TRADE_HAS_FINISHED)."""
        if status != FINISHED:
            raise ControlError(400, "bad_state", f"trade_status can only become {FINISHED}")
        if trade.state not in (SUCCESS, FINISHED):
            raise ControlError(409, "trade_state", f"trade {trade.out_trade_no} is {trade.state}")
        trade.state = FINISHED


class AlipayControlResource(TradeControlResource):
    """``/sandbox/alipay/...``: the buyer and the bank (mounted by ``AlipayChannel``)."""

    vendor, noun = ALIPAY, "Alipay trade"

    def view(self, trade: Trade) -> dict[str, Any]:
        return self.channel.view(trade)

    def pay(self, no: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.channel.pay(no, body)

    def settle(self, no: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.channel.settle_refund(no, body)
