"""Alipay through python-alipay-sdk: order strings, query, close, notifications, statements."""

from __future__ import annotations

import base64
import csv
import io
import logging
import urllib.parse
import urllib.request
import zipfile
from typing import Any

from alipay import AliPay
from alipay.utils import AliPayConfig

from gonglun.plugins.payment.channels.base import (
    UNSETTLED,
    ChannelError,
    ChannelPayment,
    CloseResult,
    RefundResult,
    StatementRow,
    merge_statement_row,
)
from gonglun.plugins.payment.money import (
    as_datetime,
    fen_to_yuan,
    rfc3339,
    shanghai_naive_to_utc,
    yuan_to_fen,
)

log = logging.getLogger(__name__)

PRODUCT = {"page": "api_alipay_trade_page_pay", "wap": "api_alipay_trade_wap_pay",
           "app": "api_alipay_trade_app_pay"}

#: PAY-18: Alipay close sub-codes and their messages; anything else closed fine.
CLOSE_CODES = {
    "ACQ.INVALID_PARAMETER": "参数无效",
    "ACQ.REASON_ILLEGAL_STATUS": "交易订单异常",
    "ACQ.SYSTEM_ERROR": "系统异常",
    "ACQ.TRADE_NOT_EXIST": "交易不存在",
    "ACQ.TRADE_STATUS_ERROR": "交易状态不合法",
}


class OpenSSLAliPay(AliPay):
    """python-alipay-sdk with its two RSA primitives done by ``cryptography`` (OpenSSL).

    Everything else is the SDK's own: which fields are signed, their order and encoding, the
    response brace matching, ``verify``'s sign_type handling. PyCryptodome's RSA costs about a
    millisecond per verification; OpenSSL's a few tens of microseconds, which matters at
    thousands of notifications per second. Same keys, same PKCS#1 v1.5 signatures.
    """

    def _crypto_keys(self) -> tuple[Any, Any]:
        keys = self.__dict__.get("_openssl_keys")
        if keys is None:
            from cryptography.hazmat.primitives.serialization import (
                load_pem_private_key,
                load_pem_public_key,
            )

            private = load_pem_private_key(self._app_private_key_string.encode(), None)
            public = load_pem_public_key(self._alipay_public_key_string.encode())
            keys = self.__dict__["_openssl_keys"] = (private, public)
        return keys

    def _hash(self) -> Any:
        from cryptography.hazmat.primitives import hashes

        return hashes.SHA1() if self._sign_type == "RSA" else hashes.SHA256()

    def _sign(self, unsigned_string: str) -> str:
        from cryptography.hazmat.primitives.asymmetric import padding

        signature = self._crypto_keys()[0].sign(unsigned_string.encode(), padding.PKCS1v15(),
                                                self._hash())
        return base64.b64encode(signature).decode()

    def _verify(self, raw_content: str, signature: str) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            self._crypto_keys()[1].verify(base64.b64decode(signature), raw_content.encode(),
                                          padding.PKCS1v15(), self._hash())
        except (InvalidSignature, ValueError):
            return False
        return True


class AlipayChannel:
    method = "alipay"

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings
        self.merchant_id = str(settings["app_id"])
        self.gateway = settings["gateway"]
        self.notify_url = settings.get("notify_url")
        self.client = OpenSSLAliPay(
            appid=self.merchant_id,
            app_notify_url=self.notify_url,
            app_private_key_string=settings["app_private_key"],
            alipay_public_key_string=settings["alipay_public_key"],
            sign_type="RSA2",
            config=AliPayConfig(timeout=float(settings.get("timeout", 15))),
        )
        # NOTE: the SDK fixes its gateway host in __init__; the attribute is the override point.
        self.client._gateway = self.gateway
        #: The merchant's Alipay account (PID, 2088...): when configured, notifications must
        #: name it as ``seller_id``.
        self.seller_id = str(settings.get("seller_id") or "")

    def pay_params(self, payment: dict[str, Any], channel: str, extra: dict[str, Any]) -> dict:
        build = getattr(self.client, PRODUCT[channel])
        kwargs: dict[str, Any] = {"notify_url": self.notify_url}
        if channel in ("page", "wap") and extra.get("return_url"):
            kwargs["return_url"] = extra["return_url"]
        order_string = build(
            subject=payment["title"] or payment["scene"],
            out_trade_no=payment["payment_order"],
            total_amount=fen_to_yuan(payment["amount"]),
            time_expire=_alipay_time(payment["close_deadline"]),
            **kwargs,
        )
        if channel == "app":
            return {"order_string": order_string}
        return {"url": f"{self.gateway}?{order_string}", "order_string": order_string}

    def _call(self, fn: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return dict(fn(**kwargs))
        except Exception as exc:  # urllib errors, bad signatures, timeouts
            raise ChannelError(f"alipay: {type(exc).__name__}: {exc}") from exc

    def query(self, payment_order: str) -> ChannelPayment:
        result = self._call(self.client.api_alipay_trade_query, out_trade_no=payment_order)
        if result.get("code") != "10000":
            if result.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
                return ChannelPayment(payment_order, paid=False, status="NOT_EXIST", raw=result)
            raise ChannelError(f"alipay query: {result.get('sub_code') or result.get('code')}")
        return self._payment(result, payment_order)

    def _payment(self, data: dict[str, Any], payment_order: str) -> ChannelPayment:
        status = data.get("trade_status", "")
        amount = data.get("total_amount")
        return ChannelPayment(
            payment_order=data.get("out_trade_no") or payment_order,
            paid=status in ("TRADE_SUCCESS", "TRADE_FINISHED"),
            closed=status == "TRADE_CLOSED",
            trade_no=data.get("trade_no"),
            amount=yuan_to_fen(amount) if amount else None,
            paid_at=shanghai_naive_to_utc(data.get("gmt_payment") or data.get("send_pay_date")),
            merchant_id=data.get("app_id"),
            app_id=data.get("app_id"),
            status=status,
            raw=data,
        )

    def check_parties(self, cp: ChannelPayment) -> str | None:
        """``app_id`` must be ours; and ``seller_id`` too when configured."""
        if cp.merchant_id != self.merchant_id:
            return "merchant_mismatch"
        if self.seller_id and cp.raw.get("seller_id") != self.seller_id:
            return "seller_mismatch"
        return None

    def close(self, payment_order: str) -> CloseResult:
        result = self._call(self.client.api_alipay_trade_close, out_trade_no=payment_order)
        if result.get("code") == "10000":
            return CloseResult(True, "10000", "ok")
        sub = str(result.get("sub_code") or result.get("code"))
        msg = CLOSE_CODES.get(sub, str(result.get("sub_msg") or result.get("msg") or ""))
        if sub == "ACQ.TRADE_NOT_EXIST":
            # The cashier was never opened: no trade exists that could still be paid (PAY-17).
            return CloseResult(True, sub, msg)
        return CloseResult(False, sub, msg, already_paid=sub == "ACQ.TRADE_STATUS_ERROR")

    def refund(self, payment: dict[str, Any], refund_order: str, amount: int,
               reason: str) -> RefundResult:
        """REF-12/13: ``alipay.trade.refund``; ``fund_change`` Y is a settled refund, anything
        else accepted but pending. ``ACQ.SYSTEM_ERROR`` leaves the outcome unknown."""
        result = self._call(
            self.client.api_alipay_trade_refund, refund_amount=fen_to_yuan(amount),
            out_trade_no=payment["payment_order"], out_request_no=refund_order,
            refund_reason=reason[:256], query_options=["deposit_back_info"])
        if result.get("code") == "10000":
            status = "SUCCESS" if result.get("fund_change") == "Y" else "PROCESSING"
            return RefundResult(status, "10000", str(result.get("msg") or ""),
                                refund_id=result.get("trade_no"), amount=amount, raw=result)
        sub = str(result.get("sub_code") or result.get("code") or "")
        msg = str(result.get("sub_msg") or result.get("msg") or "")
        status = "UNKNOWN" if sub in ("ACQ.SYSTEM_ERROR", "20000") else "REFUSED"
        return RefundResult(status, sub, msg, raw=result)

    def refund_query(self, payment: dict[str, Any], refund_order: str) -> RefundResult:
        """REF-26: ``alipay.trade.fastpay.refund.query``: ``REFUND_SUCCESS`` is settled; a known
        request without a status is still pending; a bare success is no such refund."""
        result = self._call(self.client.api_alipay_trade_fastpay_refund_query,
                            out_request_no=refund_order, out_trade_no=payment["payment_order"])
        if result.get("code") != "10000":
            sub = str(result.get("sub_code") or result.get("code") or "")
            return RefundResult("UNKNOWN", sub, str(result.get("sub_msg") or ""), raw=result)
        amount = result.get("refund_amount")
        fen = yuan_to_fen(amount) if amount else None
        if result.get("refund_status") == "REFUND_SUCCESS":
            return RefundResult("SUCCESS", "10000", "", amount=fen, raw=result)
        if result.get("out_request_no"):
            return RefundResult("PROCESSING", UNSETTLED, "", amount=fen, raw=result)
        return RefundResult("NOT_FOUND", "10000", str(result.get("sub_msg") or ""), raw=result)

    def parse_notification(self, headers: dict[str, str], body: bytes) -> ChannelPayment | None:
        """The verified notification, or None when its signature does not hold."""
        try:
            form = dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            return None
        signature = form.pop("sign", None)
        if not signature:
            return None
        data = dict(form)
        try:
            verified = self.client.verify(data, signature)
        except Exception:
            verified = False
        if not verified or "out_trade_no" not in form:
            return None
        if form.get("out_biz_no") or form.get("refund_fee"):
            # Refund news rides on the same trade_status_sync message: it is not a payment.
            return ChannelPayment(form["out_trade_no"], paid=False, trade_no=form.get("trade_no"),
                                  merchant_id=form.get("app_id"), status="REFUND_NOTICE",
                                  raw=form)
        try:
            return self._payment(form, form["out_trade_no"])
        except ValueError:
            return None

    def statement(self, bill_date: str) -> list[StatementRow]:
        """The day's 业务明细: ask for the download URL (Alipay has statements only for days
        that are over, ``isp.bill_not_exist`` otherwise), fetch the zip at once (the URL lives
        30 seconds), read its GBK 业务明细 file."""
        result = self._call(
            self.client.server_api,
            api_name="alipay.data.dataservice.bill.downloadurl.query",
            biz_content={"bill_type": "trade", "bill_date": bill_date},
        )
        url = result.get("bill_download_url")
        if result.get("code") != "10000" or not url:
            raise ChannelError(f"alipay bill url: {result.get('sub_code') or result.get('code')} "
                               f"{result.get('sub_msg') or result.get('msg') or ''}".rstrip())
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                data = response.read()
        except Exception as exc:
            raise ChannelError(f"alipay bill download: {exc}") from exc
        return parse_alipay_statement(alipay_detail_text(data))


def _alipay_time(value: Any) -> str:
    return rfc3339(as_datetime(value)).replace("T", " ")[:19]


#: The statement file a download holds beside its 业务明细(汇总) summary.
DETAIL_SUFFIX = "_业务明细.csv"


def alipay_detail_text(data: bytes) -> str:
    """The 业务明细 file of a downloaded statement: a zip whose members are named and written
    in GBK (names without the zip UTF-8 flag), one of them ``<account>_<date>_业务明细.csv``."""
    try:
        # metadata_encoding applies to names without the UTF-8 flag only (Python 3.11+).
        with zipfile.ZipFile(io.BytesIO(data), metadata_encoding="gbk") as archive:
            name = next((n for n in archive.namelist() if n.endswith(DETAIL_SUFFIX)), None)
            if name is None:
                raise ChannelError(f"alipay bill: no 业务明细 file in {archive.namelist()}")
            raw = archive.read(name)
    except (zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise ChannelError(f"alipay bill: not a statement zip: {exc}") from exc
    # GB18030 reads every GBK byte sequence the same and never fails on a rare character.
    return raw.decode("gb18030")


def _cell(value: str | None) -> str:
    """Alipay pads identifiers with a tab so spreadsheets keep them as text."""
    return (value or "").strip()


def _column(name: str | None) -> str:
    """Header names with ASCII parentheses: Alipay writes full-width ones (订单金额（元）)."""
    return _cell(name).replace("（", "(").replace("）", ")")


def parse_alipay_statement(text: str) -> list[StatementRow]:
    """Alipay's 业务明细 CSV: ``#`` comment lines around one table (refund rows negative).

    A day lists the payments made that day and the refunds that succeeded that day, so a
    refund row may be the only row of its trade (paid on an earlier day): it is kept, with the
    trade's 订单金额, rather than dropped, or a refund nobody recorded would go unnoticed.
    """
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    rows: dict[str, StatementRow] = {}
    for raw in csv.DictReader(io.StringIO("\n".join(lines))):
        row = {_column(k): _cell(v) for k, v in raw.items()}
        order = row.get("商户订单号", "")
        if not order:
            continue
        refund = None
        if row.get("业务类型", "") == "退款":
            refund = yuan_to_fen((row.get("商家实收(元)", "0") or "0").lstrip("-"))
        merge_statement_row(rows, order, row.get("支付宝交易号", ""),
                            yuan_to_fen(row.get("订单金额(元)", "0") or "0"), "SUCCESS", refund)
    return list(rows.values())
