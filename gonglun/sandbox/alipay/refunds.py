"""Alipay refunds: ``alipay.trade.refund`` (settled at once, or pending with fund_change N,
or refused as armed) and ``alipay.trade.fastpay.refund.query``."""

from __future__ import annotations

from typing import Any

from ..common import AmountError, alipay_time, fen_to_yuan, now
from ..store import ALIPAY, Refund, Trade
from .notifications import AlipayNotifications
from .wire import (
    BUYER_ID,
    BUYER_LOGON,
    CLOSED,
    FAILED,
    FINISHED,
    PENDING,
    REFUND_FAILURES,
    REFUNDED,
    WAIT,
    biz_amount,
    business_error,
)


class AlipayRefunds(AlipayNotifications):
    """Refunds and their query; a settled refund notifies."""

    def _refund_reply(self, trade: Trade, refund: Refund, fund_change: str) -> dict[str, Any]:
        """``refund_fee`` is what the trade has had refunded so far: settled refunds only."""
        inner: dict[str, Any] = {
            "code": "10000",
            "msg": "Success",
            "trade_no": trade.channel_no,
            "out_trade_no": trade.out_trade_no,
            "buyer_logon_id": BUYER_LOGON,
            "buyer_user_id": BUYER_ID,
            "fund_change": fund_change,
            "refund_fee": fen_to_yuan(self._refunds_in(trade, REFUNDED)),
        }
        if refund.success_at is not None:
            inner["gmt_refund_pay"] = alipay_time(refund.success_at)
        return inner

    def refund(self, biz: dict[str, Any]) -> dict[str, Any]:
        request = self._refund_request(biz)
        if isinstance(request, dict):
            return request
        trade, number, amount = request
        existing = self.sb.store.refund(ALIPAY, f"{trade.out_trade_no}|{number}")
        if existing is not None and existing.status != FAILED:
            # The same request number again: nothing moves twice (a failed one is retried).
            if existing.amount != amount:
                return business_error("ACQ.DISCORDANT_REPEAT_REQUEST", "不一致的请求")
            return self._refund_reply(trade, existing, "N")
        refusal = self._refund_refusal(trade, amount, numbered=bool(biz.get("out_request_no")))
        if refusal is not None:
            return refusal
        outcome = self.sb.next_refund(ALIPAY)
        if outcome in REFUND_FAILURES:
            return self._refuse_refund(trade, outcome)
        refund = Refund(
            channel=ALIPAY, out_trade_no=trade.out_trade_no, out_refund_no=number,
            refund_id=number, amount=amount, total=trade.amount, status=PENDING,
            channel_no=trade.channel_no, reason=str(biz.get("refund_reason") or ""),
            notify_url=trade.notify_url, created_at=now(),
        )
        self.sb.store.save_refund(refund)
        if outcome == "PENDING":
            return self._refund_reply(trade, refund, "N")
        self._settle(trade, refund)
        return self._refund_reply(trade, refund, "Y")

    def _refund_request(self, biz: dict[str, Any]) -> tuple[Trade, str, int] | dict[str, Any]:
        """The trade, request number and amount a refund names, or the error answer."""
        if not biz.get("out_trade_no") and not biz.get("trade_no"):
            return business_error("ACQ.INVALID_PARAMETER", "out_trade_no 和 trade_no 不能同时为空")
        try:
            amount = biz_amount(biz.get("refund_amount"))
        except AmountError:
            return business_error("ACQ.INVALID_PARAMETER", "refund_amount 格式错误")
        if amount <= 0:
            return business_error("ACQ.INVALID_PARAMETER", "refund_amount 必须大于0")
        trade = self._find(biz)
        if trade is None:
            return business_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        # Without a request number Alipay files the refund under the trade number.
        return trade, str(biz.get("out_request_no") or "") or trade.out_trade_no, amount

    def _refund_refusal(self, trade: Trade, amount: int, *,
                        numbered: bool) -> dict[str, Any] | None:
        if trade.state == WAIT:
            return business_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if trade.state == FINISHED:
            return business_error("ACQ.TRADE_HAS_FINISHED", REFUND_FAILURES["TRADE_HAS_FINISHED"])
        if trade.state == CLOSED:
            return business_error("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
        if not numbered and amount != trade.amount:
            return business_error("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
        if self._refunds_in(trade, REFUNDED, PENDING) + amount > trade.amount:
            return business_error("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额超限")
        return None

    def _refuse_refund(self, trade: Trade, outcome: str) -> dict[str, Any]:
        """An armed refusal; nothing is recorded, so a retry with the same number may pass.
        TRADE_HAS_FINISHED is the trade passing its refund window: it stays TRADE_FINISHED."""
        if outcome == "TRADE_HAS_FINISHED":
            trade.state = FINISHED
            self.sb.store.save_trade(trade)
        return business_error(f"ACQ.{outcome}", REFUND_FAILURES[outcome])

    def _settle(self, trade: Trade, refund: Refund) -> list[str] | None:
        refund.status = REFUNDED
        refund.success_at = now()
        self.sb.store.save_refund(refund)
        if self._refunds_in(trade, REFUNDED) >= trade.amount:  # fully refunded trades close
            trade.state = CLOSED
            trade.closed_at = refund.success_at
            self.sb.store.save_trade(trade)
        return self.notify_refund(trade, refund)

    def refund_query(self, biz: dict[str, Any]) -> dict[str, Any]:
        if not biz.get("out_request_no"):
            return business_error("ACQ.INVALID_PARAMETER", "out_request_no 不能为空")
        trade = self._find(biz)
        if trade is None:
            return business_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        refund = self.sb.store.refund(ALIPAY, f"{trade.out_trade_no}|{biz['out_request_no']}")
        if refund is None or refund.status == FAILED:
            # Unknown or failed: a bare success, "not refunded; retry with the same number".
            return {"code": "10000", "msg": "Success"}
        inner: dict[str, Any] = {
            "code": "10000",
            "msg": "Success",
            "trade_no": trade.channel_no,
            "out_trade_no": trade.out_trade_no,
            "out_request_no": refund.out_refund_no,
            "total_amount": fen_to_yuan(trade.amount),
            "refund_amount": fen_to_yuan(refund.amount),
        }
        if refund.status == REFUNDED:  # absent while the refund is still pending
            inner["refund_status"] = "REFUND_SUCCESS"
            if refund.success_at is not None:
                inner["gmt_refund_pay"] = alipay_time(refund.success_at)
        return inner
