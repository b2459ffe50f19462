"""The WeChat Pay channel's state: its keys and certificate, the signatures both ways, the
order record and the views answers share. The API families build on it."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..common import now, wechat_nonce, wechat_time
from ..core import SandboxCore
from ..keys import (
    CERT_NOT_AFTER,
    CERT_NOT_BEFORE,
    platform_certificate,
    public_pem_of,
    rsa_sign,
    rsa_verify,
)
from ..store import WXPAY, Refund, Trade
from .wire import (
    AUTH_FIELD,
    CERTIFICATE,
    CLOSED,
    MAX_CLOCK_SKEW,
    NOTPAY,
    ORIGINAL_ACCOUNT,
    PUBLIC_KEY,
    REFUND_VOCABULARY,
    SIGN_TYPE,
    STATE_DESC,
    TRADE_TYPES,
    Call,
    Reply,
    error,
)


class WxpayBase:
    """Keys, signatures, the order record and views; ``WxpayChannel`` composes the rest."""

    def __init__(self, sandbox: SandboxCore) -> None:
        self.sb = sandbox
        cfg = sandbox.keyset["wxpay"]
        self.mchid: str = cfg["mchid"]
        self.appid: str = cfg["appid"]
        self.merchant_serial_no: str = cfg["merchant_serial_no"]
        self.merchant_public_key = public_pem_of(cfg["merchant_private_key"])
        self.platform_private_key: str = cfg["platform_private_key"]
        self.public_key_id: str = cfg["public_key_id"]
        self.apiv3_key: bytes = cfg["apiv3_key"].encode()
        self.cert_serial, self.cert_pem = platform_certificate(self.platform_private_key,
                                                               self.mchid)
        sandbox.notifier.signers[WXPAY] = lambda d: self.sign_headers(
            d.body, d.summary.get("serial_mode", PUBLIC_KEY))
        sandbox.faults.register_refunds(WXPAY, REFUND_VOCABULARY)

    # --- signatures --------------------------------------------------------------------

    def serial_for(self, mode: str) -> str:
        return self.public_key_id if mode == PUBLIC_KEY else self.cert_serial

    def sign_headers(self, body: str, mode: str) -> dict[str, str]:
        ts = str(int(time.time()))
        nonce = wechat_nonce()
        return {
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": rsa_sign(self.platform_private_key, f"{ts}\n{nonce}\n{body}\n"),
            "Wechatpay-Timestamp": ts,
            "Wechatpay-Serial": self.serial_for(mode),
            "Wechatpay-Signature-Type": SIGN_TYPE,
        }

    def mode_of(self, serial_header: str | None) -> str | None:
        """The verification mode a request asks for; None for a serial WeChat never issued."""
        if not serial_header:
            return CERTIFICATE
        if serial_header == self.public_key_id:
            return PUBLIC_KEY
        if serial_header.upper() == self.cert_serial:
            return CERTIFICATE
        return None

    def authenticate(self, method: str, path_qs: str, authorization: str, body: str) -> str | None:
        """None when the merchant's signature holds, else why it does not."""
        scheme, _, rest = authorization.partition(" ")
        if scheme != SIGN_TYPE:
            return "Authorization 头缺失或认证类型不正确"
        fields = dict(AUTH_FIELD.findall(rest))
        missing = [k for k in ("mchid", "nonce_str", "signature", "timestamp", "serial_no")
                   if not fields.get(k)]
        if missing:
            return f"Authorization 缺少 {', '.join(missing)}"
        if fields["mchid"] != self.mchid:
            return "商户号与签名不匹配"
        if fields["serial_no"].upper() != self.merchant_serial_no.upper():
            return "商户证书序列号有误"
        try:
            skew = abs(time.time() - int(fields["timestamp"]))
        except ValueError:
            return "timestamp 格式错误"
        if skew > MAX_CLOCK_SKEW:
            return "请求时间戳已过期"
        message = f"{method}\n{path_qs}\n{fields['timestamp']}\n{fields['nonce_str']}\n{body}\n"
        if not rsa_verify(self.merchant_public_key, message, fields["signature"]):
            return "签名错误，请检查签名私钥与商户证书序列号是否匹配"
        return None

    def certificates(self, call: Call, kw: dict[str, str]) -> Reply:
        nonce = wechat_nonce(12)
        ad = "certificate"
        ciphertext = AESGCM(self.apiv3_key).encrypt(nonce.encode(), self.cert_pem.encode(),
                                                    ad.encode())
        return Reply(200, {"data": [{
            "serial_no": self.cert_serial,
            "effective_time": wechat_time(CERT_NOT_BEFORE.timestamp()),
            "expire_time": wechat_time(CERT_NOT_AFTER.timestamp()),
            "encrypt_certificate": {
                "algorithm": "AEAD_AES_256_GCM",
                "nonce": nonce,
                "associated_data": ad,
                "ciphertext": base64.b64encode(ciphertext).decode(),
            },
        }]})

    # --- the order record --------------------------------------------------------------

    def _expire(self, trade: Trade) -> None:
        if trade.state == NOTPAY and trade.expire_at and now() > trade.expire_at:
            trade.state = CLOSED
            trade.closed_at = trade.expire_at
            self.sb.store.save_trade(trade)

    def _trade(self, out_trade_no: str) -> Trade | None:
        trade = self.sb.store.trade(WXPAY, out_trade_no)
        if trade is not None:
            self._expire(trade)
        return trade

    def _check_mchid(self, value: Any) -> Reply | None:
        if value != self.mchid:
            return error(400, "PARAM_ERROR", "mchid 与调用商户号不一致")
        return None

    def _committed(self, trade: Trade) -> int:
        """Refunds holding money (closed ones gave it back to the merchant)."""
        return sum(r.amount for r in self.sb.store.refunds_of(WXPAY, trade.out_trade_no)
                   if r.status != "CLOSED")

    # --- views -------------------------------------------------------------------------

    def transaction_view(self, trade: Trade) -> dict[str, Any]:
        out: dict[str, Any] = {
            "appid": trade.app_id or self.appid,
            "mchid": self.mchid,
            "out_trade_no": trade.out_trade_no,
            "trade_state": trade.state,
            "trade_state_desc": STATE_DESC.get(trade.state, trade.state),
            "attach": trade.attach,
            "amount": {"total": trade.amount, "currency": "CNY", "payer_currency": "CNY"},
        }
        if trade.paid_at is not None:
            out.update({
                "transaction_id": trade.channel_no,
                "trade_type": TRADE_TYPES.get(trade.kind, "NATIVE"),
                "bank_type": "OTHERS",
                "success_time": wechat_time(trade.paid_at),
                "payer": {"openid": trade.payer or "o" + hashlib.md5(
                    trade.out_trade_no.encode()).hexdigest()[:27]},
                "promotion_detail": [],
            })
            coupon = int(trade.extra.get("coupon") or 0)
            out["amount"]["payer_total"] = trade.amount - coupon
            if coupon:
                # A merchant-funded cash coupon: the order's total is paid in full, the buyer's
                # own money (payer_total) is smaller by the coupon.
                out["promotion_detail"] = [{
                    "coupon_id": "1" + trade.channel_no[-9:], "name": "代金券",
                    "scope": "SINGLE", "type": "CASH", "amount": coupon,
                    "stock_id": "9865000", "wechatpay_contribute": 0,
                    "merchant_contribute": coupon, "other_contribute": 0, "currency": "CNY",
                }]
        return out

    def refund_view(self, refund: Refund) -> dict[str, Any]:
        out: dict[str, Any] = {
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "transaction_id": refund.channel_no,
            "out_trade_no": refund.out_trade_no,
            "channel": refund.extra.get("channel", "ORIGINAL"),
            "user_received_account": refund.extra.get("account", ORIGINAL_ACCOUNT),
            "create_time": wechat_time(refund.created_at),
            "status": refund.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": refund.total,
                "refund": refund.amount,
                "from": [],
                "payer_total": refund.total,
                "payer_refund": refund.amount,
                "settlement_refund": refund.amount,
                "settlement_total": refund.total,
                "discount_refund": 0,
                "currency": "CNY",
                "refund_fee": 0,
            },
            "promotion_detail": [],
        }
        if refund.success_at is not None:
            out["success_time"] = wechat_time(refund.success_at)
        return out
