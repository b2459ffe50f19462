"""Alipay's asynchronous notifications (``trade_status_sync``, signed forms) and the signed
return URL the cashier sends the browser back to."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from ..common import alipay_time, fen_to_yuan, local, notify_id, now
from ..store import ALIPAY, Refund, Trade
from .base import AlipayBase
from .wire import BUYER_ID, BUYER_LOGON, REFUNDED, SELLER_EMAIL


class AlipayNotifications(AlipayBase):
    """Signed ``trade_status_sync`` forms for payments and settled refunds."""

    def _trade_fields(self, trade: Trade) -> dict[str, str]:
        yuan = fen_to_yuan(trade.amount)
        return {
            "notify_type": "trade_status_sync",
            "notify_id": notify_id(),
            "notify_time": alipay_time(now()),
            "app_id": trade.app_id,
            "auth_app_id": trade.app_id,
            "charset": "utf-8",
            "version": "1.0",
            "trade_no": trade.channel_no,
            "out_trade_no": trade.out_trade_no,
            "trade_status": trade.state,
            "total_amount": yuan,
            "receipt_amount": yuan,
            "invoice_amount": yuan,
            "buyer_pay_amount": yuan,
            "point_amount": "0.00",
            "subject": trade.subject,
            "buyer_id": BUYER_ID,
            "buyer_logon_id": BUYER_LOGON,
            "seller_id": self.seller_id,
            "seller_email": SELLER_EMAIL,
            "gmt_create": alipay_time(trade.created_at),
            "gmt_payment": alipay_time(trade.paid_at) if trade.paid_at else "",
            "fund_bill_list": json.dumps([{"amount": yuan, "fundChannel": "ALIPAYACCOUNT"}],
                                         separators=(",", ":")),
            "passback_params": str(trade.extra.get("passback_params", "")),
        }

    def notify_payment(self, trade: Trade) -> list[str] | None:
        if not trade.notify_url:
            return None
        return self._send(trade, self._trade_fields(trade), "TRADE_SUCCESS")

    def notify_refund(self, trade: Trade, refund: Refund) -> list[str] | None:
        url = refund.notify_url or trade.notify_url
        if not url:
            return None
        fields = self._trade_fields(trade)
        assert refund.success_at is not None
        gmt_refund = local(refund.success_at)
        fields.update({
            "out_biz_no": refund.out_refund_no,
            "refund_fee": fen_to_yuan(self._refunds_in(trade, REFUNDED)),
            "gmt_refund": gmt_refund.strftime("%Y-%m-%d %H:%M:%S.")
            + f"{gmt_refund.microsecond // 1000:03d}",
            "gmt_close": alipay_time(trade.closed_at) if trade.closed_at else "",
        })
        return self._send(trade, fields, "REFUND", url)

    def _send(self, trade: Trade, fields: dict[str, str], event: str,
              url: str | None = None) -> list[str]:
        form = self.sign_form(fields)
        summary = {k: form[k] for k in ("notify_type", "trade_status", "out_trade_no", "trade_no",
                                        "total_amount", "out_biz_no", "refund_fee") if k in form}
        return self.sb.notifier.enqueue(
            channel=ALIPAY,
            event=f"trade_status_sync:{event}",
            url=url or trade.notify_url,
            body=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
            summary=summary,
            notify_id=form["notify_id"],
        )

    def return_url(self, trade: Trade) -> str:
        """Where the cashier sends the browser back: signed like a notification."""
        form = self.sign_form({
            "method": f"alipay.trade.{trade.kind}.pay.return" if trade.kind in
            ("page", "wap") else "alipay.trade.page.pay.return",
            "app_id": trade.app_id,
            "auth_app_id": trade.app_id,
            "charset": "utf-8",
            "version": "1.0",
            "timestamp": alipay_time(now()),
            "out_trade_no": trade.out_trade_no,
            "trade_no": trade.channel_no,
            "total_amount": fen_to_yuan(trade.amount),
            "seller_id": self.seller_id,
        })
        sep = "&" if "?" in trade.return_url else "?"
        return trade.return_url + sep + urlencode(form)
