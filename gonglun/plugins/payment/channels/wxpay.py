"""WeChat Pay v3 through wechatpayv3 (public-key mode): pay, query, close, callbacks, bills."""

from __future__ import annotations

import csv
import gzip
import io
import json
import secrets
import time
from typing import Any

from wechatpayv3 import WeChatPay, WeChatPayType

from gonglun.plugins.payment.channels.base import (
    ChannelError,
    ChannelPayment,
    CloseResult,
    NotificationRefused,
    RefundResult,
    StatementRow,
    merge_statement_row,
)
from gonglun.plugins.payment.money import as_datetime, parse_rfc3339, rfc3339, yuan_to_fen

PAY_TYPES = {
    "native": WeChatPayType.NATIVE,
    "jsapi": WeChatPayType.JSAPI,
    "app": WeChatPayType.APP,
    "h5": WeChatPayType.H5,
}
CLOSED_STATES = ("CLOSED", "REVOKED", "PAYERROR")


class WxpayChannel:
    method = "wxpay"

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings
        self.merchant_id = str(settings["mchid"])
        self.appid = str(settings["appid"])
        common: dict[str, Any] = {
            "wechatpay_type": WeChatPayType.NATIVE,
            "mchid": self.merchant_id,
            "private_key": settings["merchant_private_key"],
            "cert_serial_no": settings["merchant_serial_no"],
            "appid": self.appid,
            "apiv3_key": settings["apiv3_key"],
            "notify_url": settings.get("notify_url"),
            "timeout": float(settings.get("timeout", 15)),
            "public_key": settings["platform_public_key"],
            "public_key_id": settings["public_key_id"],
        }
        self.client = WeChatPay(**common)
        # NOTE: wechatpayv3 hard-codes api.mch.weixin.qq.com; the attribute is the override point.
        self.client._core._gate_way = settings["gateway"].rstrip("/")
        #: Serials whose signatures we verify: the platform public key's id. Anything else is
        #: refused before the SDK sees it: for an unknown serial wechatpayv3 would download
        #: certificates, a blocking network call, on whatever thread verifies.
        self.serials = {str(settings["public_key_id"])}
        self.skew_s = float(settings.get("timestamp_skew_s", 300))

    def _request(self, fn: Any, **kwargs: Any) -> tuple[int, Any]:
        try:
            code, body = fn(**kwargs)
        except Exception as exc:  # connection errors, timeouts, bad response signatures
            raise ChannelError(f"wxpay: {type(exc).__name__}: {exc}") from exc
        if isinstance(body, str) and body:
            try:
                return code, json.loads(body)
            except ValueError:
                return code, {"raw": body}
        return code, body

    def pay_params(self, payment: dict[str, Any], channel: str, extra: dict[str, Any]) -> dict:
        kwargs: dict[str, Any] = {
            "description": payment["title"] or payment["scene"],
            "out_trade_no": payment["payment_order"],
            "amount": {"total": payment["amount"], "currency": "CNY"},
            "time_expire": rfc3339(as_datetime(payment["close_deadline"])),
            "pay_type": PAY_TYPES[channel],
        }
        if channel == "jsapi":
            kwargs["payer"] = {"openid": extra["openid"]}
        if channel == "h5":
            kwargs["scene_info"] = {"payer_client_ip": extra.get("ip") or "127.0.0.1",
                                    "h5_info": {"type": "Wap"}}
        code, body = self._request(self.client.pay, **kwargs)
        if code != 200 or not isinstance(body, dict):
            raise ChannelError(f"wxpay pay: HTTP {code} {body}")
        if channel == "native":
            return {"code_url": body["code_url"]}
        if channel == "h5":
            return {"h5_url": body["h5_url"]}
        prepay_id = body["prepay_id"]
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        if channel == "jsapi":
            package = f"prepay_id={prepay_id}"
            sign = self.client.sign([self.appid, timestamp, nonce, package])
            # PAY-08: the JSAPI bridge needs all six fields.
            return {"appId": self.appid, "timeStamp": timestamp, "nonceStr": nonce,
                    "package": package, "signType": "RSA", "paySign": sign}
        sign = self.client.sign([self.appid, timestamp, nonce, prepay_id])
        return {"appid": self.appid, "partnerid": self.merchant_id, "prepayid": prepay_id,
                "package": "Sign=WXPay", "noncestr": nonce, "timestamp": timestamp,
                "sign": sign}

    def query(self, payment_order: str) -> ChannelPayment:
        code, body = self._request(self.client.query, out_trade_no=payment_order)
        if code == 404:
            return ChannelPayment(payment_order, paid=False, status="ORDER_NOT_EXIST")
        # PAY-16: invalid unless a JSON object *with* trade_state.
        if code != 200 or not isinstance(body, dict) or "trade_state" not in body:
            raise ChannelError(f"wxpay query: HTTP {code} {body}")
        return self._payment(body, payment_order)

    def _payment(self, data: dict[str, Any], payment_order: str) -> ChannelPayment:
        state = data.get("trade_state", "")
        amount = data.get("amount") or {}
        # The order's amount is ``total``; ``payer_total`` is what the buyer's own money paid
        # after coupons (WeChat's merchant-funded coupons make it smaller). A coupon payment
        # is a full payment of the order.
        total = amount.get("total")
        return ChannelPayment(
            payment_order=data.get("out_trade_no") or payment_order,
            paid=state in ("SUCCESS", "REFUND"),
            closed=state in CLOSED_STATES,
            trade_no=data.get("transaction_id"),
            amount=total if isinstance(total, int) and not isinstance(total, bool) else None,
            paid_at=parse_rfc3339(data.get("success_time")),
            merchant_id=data.get("mchid"),
            app_id=data.get("appid"),
            status=state,
            raw=data,
        )

    def check_parties(self, cp: ChannelPayment) -> str | None:
        """Both ``mchid`` and ``appid`` of the decrypted resource must be ours (missing: no)."""
        if cp.merchant_id != self.merchant_id:
            return "merchant_mismatch"
        if cp.app_id != self.appid:
            return "appid_mismatch"
        return None

    def close(self, payment_order: str) -> CloseResult:
        code, body = self._request(self.client.close, out_trade_no=payment_order)
        if code == 204:
            return CloseResult(True, "204", "ok")
        error = body.get("code", str(code)) if isinstance(body, dict) else str(code)
        if error == "ORDER_CLOSED":
            return CloseResult(True, error, "订单已关闭")
        msg = body.get("message") if isinstance(body, dict) else None
        return CloseResult(False, error, str(msg or "关闭订单失败")[:100],
                           already_paid=error == "ORDERPAID")

    def refund(self, payment: dict[str, Any], refund_order: str, amount: int,
               reason: str) -> RefundResult:
        """REF-10/11: ``POST /v3/refund/domestic/refunds``: ``status`` SUCCESS, PROCESSING,
        ABNORMAL or CLOSED; a 4xx is a refusal (nothing moved), a 5xx an unknown outcome."""
        code, body = self._request(
            self.client.refund, out_refund_no=refund_order, out_trade_no=payment["payment_order"],
            amount={"refund": amount, "total": payment["amount"], "currency": "CNY"},
            reason=reason[:80] or None)
        return self._refund_result(code, body)

    def refund_query(self, payment: dict[str, Any], refund_order: str) -> RefundResult:
        """REF-25: ``GET /v3/refund/domestic/refunds/{out_refund_no}``."""
        code, body = self._request(self.client.query_refund, out_refund_no=refund_order)
        if code == 404:
            return RefundResult("NOT_FOUND", str(_field(body, "code") or "404"),
                                str(_field(body, "message") or ""))
        return self._refund_result(code, body)

    def abnormal_refund(self, refund_id: str, refund_order: str, **bank: Any) -> RefundResult:
        """Recover an ``ABNORMAL`` refund to another account (WeChat's abnormal-refund API):
        ``type`` USER_BANK_CARD (with ``bank_type``, ``bank_account``, ``real_name``) or
        MERCHANT_BANK_CARD. The refund is PROCESSING again."""
        code, body = self._request(self.client.abnormal_refund, refund_id=refund_id,
                                   out_refund_no=refund_order, **bank)
        return self._refund_result(code, body)

    @staticmethod
    def _refund_result(code: int, body: Any) -> RefundResult:
        if code == 200 and isinstance(body, dict) and body.get("status") in (
                "SUCCESS", "PROCESSING", "ABNORMAL", "CLOSED"):
            refund = (body.get("amount") or {}).get("refund")
            return RefundResult(str(body["status"]), "200", "", refund_id=body.get("refund_id"),
                                amount=refund if isinstance(refund, int) else None, raw=body)
        if 400 <= code < 500:
            return RefundResult("REFUSED", str(_field(body, "code") or code),
                                str(_field(body, "message") or ""),
                                raw=body if isinstance(body, dict) else {})
        raise ChannelError(f"wxpay refund: HTTP {code} {str(body)[:200]}")

    def parse_notification(self, headers: dict[str, str], body: bytes) -> ChannelPayment | None:
        """Verified and decrypted by wechatpayv3, after our own gates: a known serial, a
        fresh timestamp. The parties (mchid, appid) are read from the decrypted resource only
        and checked by ``check_parties``; never from the outer, unencrypted envelope."""
        serial = headers.get("Wechatpay-Serial", "")
        if serial not in self.serials:
            raise NotificationRefused("unknown_serial")
        stamp = headers.get("Wechatpay-Timestamp", "")
        if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12 or abs(
                time.time() - int(stamp)) > self.skew_s:
            raise NotificationRefused("stale_timestamp")
        try:
            data = self.client.callback(headers, body)
        except Exception:
            return None
        if not data:
            return None
        resource = data.get("resource") or {}
        if not isinstance(resource, dict) or "out_trade_no" not in resource:
            return None
        event = data.get("event_type", "")
        if str(event).startswith("REFUND."):
            # Refund news: recorded and left to the refund confirmation (not a payment).
            return ChannelPayment(resource["out_trade_no"], paid=False,
                                  trade_no=resource.get("transaction_id"),
                                  merchant_id=resource.get("mchid"),
                                  app_id=self.appid, status="REFUND_NOTICE", raw=resource)
        if event != "TRANSACTION.SUCCESS":
            return None
        return self._payment(resource, resource["out_trade_no"])

    def statement(self, bill_date: str) -> list[StatementRow]:
        code, body = self._request(self.client.trade_bill, bill_date=bill_date)
        if code != 200 or not isinstance(body, dict) or "download_url" not in body:
            raise ChannelError(f"wxpay trade bill: HTTP {code} {body}")
        code, content = self._request(self.client.download_bill, url=body["download_url"])
        if code != 200:
            raise ChannelError(f"wxpay bill download: HTTP {code}")
        raw = content if isinstance(content, bytes) else json.dumps(content).encode()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return parse_wxpay_statement(raw.decode("utf-8-sig"))


def _field(body: Any, name: str) -> Any:
    return body.get(name) if isinstance(body, dict) else None


def parse_wxpay_statement(text: str) -> list[StatementRow]:
    """WeChat's trade bill: backtick-prefixed values, then a totals header and row.

    A day lists the payments made that day and the refunds that succeeded that day, so a
    REFUND row may be the only row of its order (paid on an earlier day): it is kept, with the
    order's 应结订单金额, rather than dropped.
    """
    lines = text.splitlines()
    body: list[str] = []
    for line in lines:
        if line.startswith("总交易单数"):
            break
        body.append(line)
    rows: dict[str, StatementRow] = {}
    for row in csv.DictReader(io.StringIO("\n".join(body))):
        row = {(k or "").strip(): (v or "").strip().lstrip("`") for k, v in row.items()}
        order = row.get("商户订单号", "")
        if not order:
            continue
        state = row.get("交易状态", "")
        refund = yuan_to_fen(row.get("退款金额", "0") or "0") if state == "REFUND" else None
        merge_statement_row(rows, order, row.get("微信订单号", ""),
                            yuan_to_fen(row.get("应结订单金额", "0") or "0"), state, refund)
    return list(rows.values())
