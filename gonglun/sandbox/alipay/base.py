"""The Alipay channel's state: its keys, the gateway's signatures, the trade record and the
views the control API shows. The API families (``trades``, ``refunds``, ...) build on it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..common import alipay_time, alipay_trade_no, fen_to_yuan, now
from ..core import SandboxCore
from ..keys import rsa_sign, rsa_verify
from ..store import ALIPAY, Refund, Trade
from .wire import CLOSED, REFUND_VOCABULARY, WAIT, compact, expiry, response_key, signing_string


class AlipayBase:
    """Keys, signatures, the trade record and views; ``AlipayChannel`` composes the rest."""

    def __init__(self, sandbox: SandboxCore) -> None:
        self.sb = sandbox
        cfg = sandbox.keyset["alipay"]
        self.app_id: str = cfg["app_id"]
        self.app_public_key: str = cfg["app_public_key"]
        self.gateway_private_key: str = cfg["alipay_private_key"]
        digest = int(hashlib.sha256(self.app_id.encode()).hexdigest(), 16)
        self.seller_id = "2088" + str(digest)[:12]
        sandbox.faults.register_refunds(ALIPAY, REFUND_VOCABULARY)

    # --- signing -----------------------------------------------------------------------

    def signed(self, method: str, inner: dict[str, Any], sign_type: str = "RSA2") -> str:
        text = compact(inner)
        sign = rsa_sign(self.gateway_private_key, text, sha1=sign_type == "RSA")
        return f'{{"{response_key(method)}":{text},"sign":"{sign}"}}'

    def unsigned(self, method: str, code: str, msg: str, sub_code: str, sub_msg: str) -> str:
        """Gateway-level refusals come back unsigned; the SDK raises AliPayException on them."""
        inner = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}
        key = response_key(method) if method else "error_response"
        return f'{{"{key}":{compact(inner)}}}'

    def check_request(self, params: dict[str, str]) -> str | None:
        """None when the request is well formed and correctly signed, else the refusal text."""
        method = params.get("method", "")
        if not method:
            return self.unsigned("", "40001", "Missing Required Arguments",
                                 "isv.missing-method", "缺少方法名参数")
        if not params.get("sign"):
            return self.unsigned(method, "40001", "Missing Required Arguments",
                                 "isv.missing-signature", "缺少签名参数")
        if params.get("app_id") != self.app_id:
            return self.unsigned(method, "40002", "Invalid Arguments",
                                 "isv.invalid-app-id", "无效的AppID参数")
        sign_type = params.get("sign_type", "")
        if sign_type not in ("RSA", "RSA2"):
            return self.unsigned(method, "40002", "Invalid Arguments",
                                 "isv.invalid-signature-type", "无效的签名类型")
        message = signing_string(params, exclude=("sign",))
        if not rsa_verify(self.app_public_key, message, params["sign"], sha1=sign_type == "RSA"):
            return self.unsigned(method, "40002", "Invalid Arguments", "isv.invalid-signature",
                                 "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配")
        return None

    def sign_form(self, fields: dict[str, str], sign_type: str = "RSA2") -> dict[str, str]:
        """Sign a notification / return form as Alipay does: sign and sign_type left out."""
        clean = {k: v for k, v in fields.items() if v not in ("", None)}
        clean["sign_type"] = sign_type
        message = signing_string(clean, exclude=("sign", "sign_type"))
        clean["sign"] = rsa_sign(self.gateway_private_key, message, sha1=sign_type == "RSA")
        return clean

    # --- the trade record --------------------------------------------------------------

    def _find(self, biz: dict[str, Any]) -> Trade | None:
        trade = None
        if biz.get("out_trade_no"):
            trade = self.sb.store.trade(ALIPAY, str(biz["out_trade_no"]))
        elif biz.get("trade_no"):
            trade = self.sb.store.trade_by_channel_no(ALIPAY, str(biz["trade_no"]))
        if trade is not None:
            self._expire(trade)
        return trade

    def _expire(self, trade: Trade) -> None:
        if trade.state == WAIT and trade.expire_at and now() > trade.expire_at:
            trade.state = CLOSED
            trade.closed_at = trade.expire_at
            self.sb.store.save_trade(trade)

    def _new_trade(self, *, out_trade_no: str, amount: int, subject: str, kind: str,
                   notify_url: str, return_url: str = "", app_id: str = "",
                   biz: dict[str, Any] | None = None) -> Trade:
        created = now()
        return Trade(
            channel=ALIPAY,
            out_trade_no=out_trade_no,
            channel_no=alipay_trade_no(created),
            amount=amount,
            state=WAIT,
            app_id=app_id or self.app_id,
            subject=subject,
            kind=kind,
            notify_url=notify_url,
            return_url=return_url,
            created_at=created,
            expire_at=expiry(biz or {}, created),
            extra={"passback_params": str((biz or {}).get("passback_params", ""))},
        )

    def _refunds_in(self, trade: Trade, *states: str) -> int:
        return sum(r.amount for r in self.sb.store.refunds_of(ALIPAY, trade.out_trade_no)
                   if r.status in states)

    # --- views -------------------------------------------------------------------------

    def view(self, trade: Trade) -> dict[str, Any]:
        self._expire(trade)
        return {
            "channel": ALIPAY,
            "out_trade_no": trade.out_trade_no,
            "trade_no": trade.channel_no,
            "trade_status": trade.state,
            "total_amount": fen_to_yuan(trade.amount),
            "amount": trade.amount,
            "subject": trade.subject,
            "kind": trade.kind,
            "notify_url": trade.notify_url,
            "created_at": alipay_time(trade.created_at),
            "paid_at": alipay_time(trade.paid_at) if trade.paid_at else None,
            "closed_at": alipay_time(trade.closed_at) if trade.closed_at else None,
            "refunds": [self.refund_view(r)
                        for r in self.sb.store.refunds_of(ALIPAY, trade.out_trade_no)],
        }

    @staticmethod
    def refund_view(refund: Refund) -> dict[str, Any]:
        return {
            "out_trade_no": refund.out_trade_no,
            "out_request_no": refund.out_refund_no,
            "refund_amount": fen_to_yuan(refund.amount),
            "amount": refund.amount,
            "status": refund.status,
            "created_at": alipay_time(refund.created_at),
            "success_at": alipay_time(refund.success_at) if refund.success_at else None,
        }
