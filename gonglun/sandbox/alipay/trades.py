"""Alipay trades: the cashier methods (page/wap/app pay) and ``alipay.trade.precreate``
create them; ``alipay.trade.query`` and ``alipay.trade.close``."""

from __future__ import annotations

from typing import Any

from ..common import AmountError, alipay_time, fen_to_yuan, now
from ..store import ALIPAY
from .base import AlipayBase
from .wire import (
    BUYER_ID,
    BUYER_LOGON,
    CASHIER_METHODS,
    CLOSED,
    FINISHED,
    SUCCESS,
    WAIT,
    biz_amount,
    business_error,
)


class AlipayTrades(AlipayBase):
    """The cashier, precreate, query and close."""

    def open_cashier(self, method: str, params: dict[str, str], biz: dict[str, Any],
                     prefix: str) -> dict[str, Any]:
        """The buyer opens the cashier: the trade comes to exist, waiting for payment."""
        out_trade_no = str(biz.get("out_trade_no") or "")
        subject = str(biz.get("subject") or "")
        if not out_trade_no or not subject or "total_amount" not in biz:
            return business_error("ACQ.INVALID_PARAMETER", "参数无效: out_trade_no, subject 和 "
                                  "total_amount 必填")
        try:
            amount = biz_amount(biz["total_amount"])
        except AmountError:
            return business_error("ACQ.INVALID_PARAMETER", "total_amount 格式错误")
        if amount <= 0:
            return business_error("ACQ.INVALID_PARAMETER", "total_amount 必须大于0")
        trade = self._find({"out_trade_no": out_trade_no})
        if trade is None:
            trade = self._new_trade(
                out_trade_no=out_trade_no, amount=amount, subject=subject,
                kind=CASHIER_METHODS[method], notify_url=params.get("notify_url", ""),
                return_url=params.get("return_url", ""), app_id=params["app_id"], biz=biz,
            )
            self.sb.store.save_trade(trade)
        elif trade.amount != amount:
            return business_error("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
        elif trade.state == SUCCESS:
            return business_error("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
        elif trade.state in (CLOSED, FINISHED):
            return business_error("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
        else:  # reopening a waiting trade refreshes where the merchant wants to hear back
            trade.notify_url = params.get("notify_url", "") or trade.notify_url
            trade.return_url = params.get("return_url", "") or trade.return_url
            self.sb.store.save_trade(trade)
        return {
            "code": "10000",
            "msg": "Success",
            "out_trade_no": trade.out_trade_no,
            "trade_no": trade.channel_no,
            "total_amount": fen_to_yuan(trade.amount),
            "subject": trade.subject,
            "trade_status": trade.state,
            "pay_url": f"{prefix}/sandbox/alipay/trades/{trade.out_trade_no}/pay",
        }

    def query(self, biz: dict[str, Any]) -> dict[str, Any]:
        if not biz.get("out_trade_no") and not biz.get("trade_no"):
            return business_error("ACQ.INVALID_PARAMETER", "out_trade_no 和 trade_no 不能同时为空")
        trade = self._find(biz)
        if trade is None:
            return business_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        inner: dict[str, Any] = {
            "code": "10000",
            "msg": "Success",
            "out_trade_no": trade.out_trade_no,
            "trade_no": trade.channel_no,
            "trade_status": trade.state,
            "total_amount": fen_to_yuan(trade.amount),
        }
        if trade.paid_at is not None:
            yuan = fen_to_yuan(trade.amount)
            inner.update({
                "buyer_logon_id": BUYER_LOGON,
                "buyer_user_id": BUYER_ID,
                "buyer_pay_amount": yuan,
                "receipt_amount": yuan,
                "invoice_amount": yuan,
                "point_amount": "0.00",
                "send_pay_date": alipay_time(trade.paid_at),
                "fund_bill_list": [{"amount": yuan, "fund_channel": "ALIPAYACCOUNT"}],
            })
        return inner

    def close(self, biz: dict[str, Any]) -> dict[str, Any]:
        if not biz.get("out_trade_no") and not biz.get("trade_no"):
            return business_error("ACQ.INVALID_PARAMETER", "out_trade_no 和 trade_no 不能同时为空")
        trade = self._find(biz)
        if trade is None:
            return business_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        if trade.state != WAIT:
            return business_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        trade.state = CLOSED
        trade.closed_at = now()
        self.sb.store.save_trade(trade)
        return {"code": "10000", "msg": "Success", "trade_no": trade.channel_no,
                "out_trade_no": trade.out_trade_no}

    def precreate(self, biz: dict[str, Any], params: dict[str, str], prefix: str) -> dict[str, Any]:
        """QR-code order: the trade exists at once (no cashier to open)."""
        info = self.open_cashier("alipay.trade.page.pay", params, biz, prefix)
        if info.get("code") != "10000":
            return info
        trade = self.sb.store.trade(ALIPAY, info["out_trade_no"])
        assert trade is not None
        trade.kind = "precreate"
        self.sb.store.save_trade(trade)
        return {"code": "10000", "msg": "Success", "out_trade_no": trade.out_trade_no,
                "qr_code": info["pay_url"]}
