"""WeChat Pay refunds: ``POST /v3/refund/domestic/refunds`` (PROCESSING by default, or as
armed), the query, and ``apply-abnormal-refund`` for an ABNORMAL one."""

from __future__ import annotations

from typing import Any

from ..common import now, wechat_refund_id
from ..keys import rsa_oaep_decrypt
from ..store import WXPAY, Refund, Trade
from .notifications import WxpayNotifications
from .wire import ABNORMAL_TYPES, BANK_NAMES, REFUND, REFUND_FAILURES, SUCCESS, Call, Reply, error


class WxpayRefunds(WxpayNotifications):
    """Refunds, their query and the abnormal-refund redirect."""

    def refund(self, call: Call, kw: dict[str, str]) -> Reply:
        request = self._refund_request(call.body)
        if isinstance(request, Reply):
            return request
        trade, out_refund_no, refund_fen = request
        existing = self.sb.store.refund(WXPAY, out_refund_no)
        if existing is not None:  # the same out_refund_no again: the same refund
            if existing.out_trade_no != trade.out_trade_no or existing.amount != refund_fen:
                return error(400, "INVALID_REQUEST", "订单金额或退款金额与之前请求不一致")
            return Reply(200, self.refund_view(existing))
        refusal = self._refund_refusal(trade, call.body["amount"]["total"], refund_fen)
        if refusal is not None:
            return refusal
        outcome = self.sb.next_refund(WXPAY)
        if outcome in REFUND_FAILURES:
            status, message = REFUND_FAILURES[outcome]
            return error(status, outcome, message)
        refund = self._new_refund(call, trade, out_refund_no, refund_fen, outcome)
        if refund.status != "CLOSED":
            trade.state = REFUND
            self.sb.store.save_trade(trade)
        if refund.status != "PROCESSING":
            self.notify_refund(trade, refund)
        return Reply(200, self.refund_view(refund))

    def _refund_request(self, d: dict[str, Any]) -> tuple[Trade, str, int] | Reply:
        """The order, out_refund_no and amount a refund request names, or the error."""
        out_refund_no = d.get("out_refund_no")
        if not isinstance(out_refund_no, str) or not out_refund_no or len(out_refund_no) > 64:
            return error(400, "PARAM_ERROR", "out_refund_no 必填")
        amount = d.get("amount")
        if not isinstance(amount, dict):
            return error(400, "PARAM_ERROR", "amount 必填")
        for value in (amount.get("refund"), amount.get("total")):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                return error(400, "PARAM_ERROR", "amount.refund 与 amount.total 必须是正整数(分)")
        if d.get("transaction_id"):
            trade = self.sb.store.trade_by_channel_no(WXPAY, str(d["transaction_id"]))
        elif d.get("out_trade_no"):
            trade = self._trade(str(d["out_trade_no"]))
        else:
            return error(400, "PARAM_ERROR", "transaction_id 与 out_trade_no 必填其一")
        if trade is None:
            return error(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        return trade, out_refund_no, amount["refund"]

    def _refund_refusal(self, trade: Trade, total_fen: int, refund_fen: int) -> Reply | None:
        if trade.state not in (SUCCESS, REFUND):
            return error(400, "INVALID_REQUEST", "订单未支付或已关闭，不能退款")
        if total_fen != trade.amount:
            return error(400, "INVALID_REQUEST", "订单金额与实际支付金额不一致")
        if self._committed(trade) + refund_fen > trade.amount:
            return error(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        return None

    def _new_refund(self, call: Call, trade: Trade, out_refund_no: str, refund_fen: int,
                    status: str) -> Refund:
        created = now()
        refund = Refund(
            channel=WXPAY, out_trade_no=trade.out_trade_no, out_refund_no=out_refund_no,
            refund_id=wechat_refund_id(created), amount=refund_fen, total=trade.amount,
            status=status, channel_no=trade.channel_no,
            reason=str(call.body.get("reason") or ""),
            notify_url=str(call.body.get("notify_url") or ""), created_at=created,
            serial_mode=call.mode,
        )
        if status == "SUCCESS":
            refund.success_at = created
        self.sb.store.save_refund(refund)
        return refund

    def query_refund(self, call: Call, kw: dict[str, str]) -> Reply:
        refund = self.sb.store.refund(WXPAY, kw["ref"])
        if refund is None:
            return error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return Reply(200, self.refund_view(refund))

    def apply_abnormal_refund(self, call: Call, kw: dict[str, str]) -> Reply:
        """``POST /v3/refund/domestic/refunds/{refund_id}/apply-abnormal-refund``: send an
        ABNORMAL refund to the buyer's bank card (``USER_BANK_CARD``, with ``bank_type`` and
        the encrypted ``bank_account`` and ``real_name``) or to the merchant's settlement
        account (``MERCHANT_BANK_CARD``). The refund is PROCESSING again until settled."""
        refund = next((r for r in self.sb.store.refunds.values()
                       if r.channel == WXPAY and r.refund_id == kw["ref"]), None)
        if refund is None:
            return error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        d = call.body
        if d.get("out_refund_no") != refund.out_refund_no:
            return error(400, "PARAM_ERROR", "out_refund_no 与微信退款单号不匹配")
        target = self._abnormal_target(d)
        if isinstance(target, Reply):
            return target
        if refund.status == "PROCESSING" and refund.extra.get("abnormal_type") == d["type"]:
            return Reply(200, self.refund_view(refund))  # the same request again
        if refund.status != "ABNORMAL":
            return error(400, "INVALID_REQUEST", f"退款单状态为{refund.status}，仅退款异常的退款单"
                         "可发起异常退款")
        refund.status = "PROCESSING"
        refund.extra.update({"abnormal_type": d["type"], "channel": "OTHER_BANKCARD",
                             "account": target})
        self.sb.store.save_refund(refund)
        return Reply(200, self.refund_view(refund))

    def _abnormal_target(self, d: dict[str, Any]) -> str | Reply:
        """The account an abnormal refund goes to, as ``user_received_account`` shows it."""
        if d.get("type") not in ABNORMAL_TYPES:
            return error(400, "PARAM_ERROR", f"type 只能是 {' 或 '.join(ABNORMAL_TYPES)}")
        if d["type"] == "MERCHANT_BANK_CARD":
            return "商户结算银行账户"
        bank_type = d.get("bank_type")
        if not isinstance(bank_type, str) or not bank_type or len(bank_type) > 16:
            return error(400, "PARAM_ERROR", "退款至用户银行卡时 bank_type 必填")
        plain = [rsa_oaep_decrypt(self.platform_private_key, str(d.get(name) or ""))
                 for name in ("bank_account", "real_name")]
        if None in plain or not all(plain):
            return error(400, "PARAM_ERROR",
                         "bank_account 与 real_name 必填，且须用微信支付公钥加密")
        account = str(plain[0])
        bank = BANK_NAMES.get(bank_type.split("_")[0], bank_type)
        return f"{bank}借记卡{account[-4:]}"
