"""Alipay openapi gateway (``/gateway.do``) as python-alipay-sdk 3.4 meets it on the wire.

Requests: every parameter in the query string (the SDK GETs) or a form body, signed RSA2 over
the sorted ``k=v`` pairs with only ``sign`` left out (``sign_type`` is in). Responses:
``{"<method_underscored>_response":<inner>,"sign":"..."}``, compact, the response key first,
the signature over the exact ``<inner>`` text. The SDK finds that text by brace matching that
ignores JSON strings, so braces inside string values are written as ``\\u007b``/``\\u007d``:
the same value after ``json.loads`` and no brace for the matcher to trip on.

Amounts are yuan strings here and fen everywhere inside.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .bills import alipay_zip, bill_account, period_bounds, period_ready
from .common import (
    AmountError,
    alipay_time,
    alipay_trade_no,
    fen_to_yuan,
    local,
    notify_id,
    now,
    parse_time,
    yuan_to_fen,
)
from .faults import RefundVocabulary
from .keys import rsa_sign, rsa_verify
from .store import ALIPAY, Refund, Trade
from .web import ControlError

if TYPE_CHECKING:
    from .app import Sandbox

WAIT, SUCCESS = "WAIT_BUYER_PAY", "TRADE_SUCCESS"
CLOSED, FINISHED = "TRADE_CLOSED", "TRADE_FINISHED"
CASHIER_METHODS = {
    "alipay.trade.page.pay": "page",
    "alipay.trade.wap.pay": "wap",
    "alipay.trade.app.pay": "app",
}
BUYER_ID = "2088102177846880"
BUYER_LOGON = "tes***@sandbox.com"
SELLER_EMAIL = "seller@sandbox.example"
DEFAULT_EXPIRE_S = 15 * 24 * 3600  #: Alipay closes unpaid trades after 15 days by default

#: Refund states (``Refund.status``): settled, accepted with fund_change N, failed after that.
REFUNDED, PENDING, FAILED = "SUCCESS", "PROCESSING", "FAILED"
#: Refusals ``next_refund`` can arm: ``ACQ.<name>`` with the sub_msg alipay.trade.refund's
#: error table gives (code 40004, like every business error).
REFUND_FAILURES = {
    "SYSTEM_ERROR": "系统错误",
    "SELLER_BALANCE_NOT_ENOUGH": "卖家余额不足",
    "TRADE_HAS_FINISHED": "交易已完结",
    "REASON_TRADE_BEEN_FREEZEN": "请求退款的交易被冻结",
    "BUYER_ERROR": "买家状态异常",
}
REFUND_VOCABULARY = RefundVocabulary(
    default="SUCCESS",
    accepted=frozenset({"SUCCESS", "PENDING"}),
    settling=frozenset({"SUCCESS", "PENDING"}),
    failures=frozenset(REFUND_FAILURES),
    aliases={"PROCESSING": "PENDING", **{f"ACQ.{name}": name for name in REFUND_FAILURES}},
)
#: ``POST /sandbox/alipay/refunds/{no}/settle`` statuses: the bank pays, or cannot.
SETTLE_STATUSES = {"SUCCESS": REFUNDED, "FAILED": FAILED, "FAIL": FAILED}


# --- wire format ---------------------------------------------------------------------------


def _json_str(value: str) -> str:
    return (
        json.dumps(value, ensure_ascii=False).replace("{", "\\u007b").replace("}", "\\u007d")
    )


def compact(value: Any) -> str:
    """Compact JSON with no literal brace inside any string (see the module docstring)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json_str(str(k))}:{compact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(compact(v) for v in value) + "]"
    if isinstance(value, str):
        return _json_str(value)
    return json.dumps(value)


def signing_string(params: dict[str, str], *, exclude: tuple[str, ...]) -> str:
    """Sorted raw ``k=v`` pairs joined by ``&``; empty values never take part."""
    return "&".join(
        f"{k}={v}" for k, v in sorted(params.items()) if k not in exclude and v != ""
    )


def response_key(method: str) -> str:
    return method.replace(".", "_") + "_response"


def business_error(sub_code: str, sub_msg: str) -> dict[str, str]:
    return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg}


def _biz_amount(value: Any) -> int:
    """A yuan amount from biz_content: a string, or a JSON number written by a careless caller."""
    if isinstance(value, float):
        value = repr(value)
    return yuan_to_fen(value)


_EXPRESS = re.compile(r"^(\d+)([mhdc])$")


def _expire_at(biz: dict[str, Any], created: float) -> float:
    if isinstance(biz.get("time_expire"), str):
        try:
            return parse_time(biz["time_expire"])
        except ValueError:
            pass
    m = _EXPRESS.match(str(biz.get("timeout_express", "")))
    if m:
        n, unit = int(m.group(1)), m.group(2)
        if unit == "c":  # "1c": until the end of the day it was created on
            day_end = local(created).replace(hour=23, minute=59, second=59)
            return day_end.timestamp()
        return created + n * {"m": 60, "h": 3600, "d": 86400}[unit]
    return created + DEFAULT_EXPIRE_S


class AlipayChannel:
    def __init__(self, sandbox: Sandbox) -> None:
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

    # --- dispatch ----------------------------------------------------------------------

    def handle(self, params: dict[str, str], prefix: str) -> tuple[str, dict[str, Any] | None]:
        """Answer one signed server call: returns ``(response text, cashier info or None)``.

        Cashier methods (page/wap/app pay) return their trade info instead of a signed text,
        which the resource renders as HTML or JSON.
        """
        refusal = self.check_request(params)
        if refusal is not None:
            return refusal, None
        method = params["method"]
        sign_type = params["sign_type"]
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except ValueError:
            biz = None
        if not isinstance(biz, dict):
            inner = {"code": "40002", "msg": "Invalid Arguments",
                     "sub_code": "isv.invalid-biz-content", "sub_msg": "biz_content格式错误"}
            return self.signed(method, inner, sign_type), None
        if method in CASHIER_METHODS:
            return "", self.open_cashier(method, params, biz, prefix)
        handler = {
            "alipay.trade.query": self.query,
            "alipay.trade.close": self.close,
            "alipay.trade.refund": self.refund,
            "alipay.trade.fastpay.refund.query": self.refund_query,
            "alipay.trade.precreate": lambda b: self.precreate(b, params, prefix),
            "alipay.data.dataservice.bill.downloadurl.query": lambda b: self.bill_url(b, prefix),
        }.get(method)
        if handler is None:
            inner = {"code": "40004", "msg": "Business Failed", "sub_code": "isv.invalid-method",
                     "sub_msg": "不存在的方法名"}
            return self.signed(method, inner, sign_type), None
        return self.signed(method, handler(biz), sign_type), None

    # --- trades ------------------------------------------------------------------------

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
            expire_at=_expire_at(biz or {}, created),
            extra={"passback_params": str((biz or {}).get("passback_params", ""))},
        )

    def open_cashier(self, method: str, params: dict[str, str], biz: dict[str, Any],
                     prefix: str) -> dict[str, Any]:
        """The buyer opens the cashier: the trade comes to exist, waiting for payment."""
        out_trade_no = str(biz.get("out_trade_no") or "")
        subject = str(biz.get("subject") or "")
        if not out_trade_no or not subject or "total_amount" not in biz:
            return business_error("ACQ.INVALID_PARAMETER", "参数无效: out_trade_no, subject 和 "
                                  "total_amount 必填")
        try:
            amount = _biz_amount(biz["total_amount"])
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

    # --- refunds -----------------------------------------------------------------------

    def _refunds_in(self, trade: Trade, *states: str) -> int:
        return sum(r.amount for r in self.sb.store.refunds_of(ALIPAY, trade.out_trade_no)
                   if r.status in states)

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
            amount = _biz_amount(biz.get("refund_amount"))
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

    # --- statements --------------------------------------------------------------------

    def bill_url(self, biz: dict[str, Any], prefix: str) -> dict[str, Any]:
        """A download URL for a finished day's (or month's) statement, valid for
        ``settings.bill_url_ttl_s``; days not over yet have no statement."""
        bill_date = str(biz.get("bill_date") or "")
        if not re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", bill_date) or not period_bounds(bill_date):
            return business_error("isv.invalid-parameter",
                                  "bill_date 格式错误 (yyyy-MM-dd 或 yyyy-MM)")
        bill_type = str(biz.get("bill_type") or "trade")
        if bill_type not in ("trade", "signcustomer"):
            return business_error("isv.invalid-parameter", "bill_type 只能是 trade 或 signcustomer")
        # Only the trade bill is emulated; signcustomer reads as a day without fund movements.
        if bill_type != "trade" or not period_ready(bill_date,
                                                    partial=self.sb.settings.partial_bills):
            return business_error("isp.bill_not_exist", "账单不存在")
        return {"code": "10000", "msg": "Success",
                "bill_download_url": self._bill_link(bill_date, prefix)}

    def _bill_link(self, period: str, prefix: str) -> str:
        account, stamp = bill_account(self.sb), period.replace("-", "")
        params = self.sb.links.sign({
            "bizType": "trade", "userId": self.seller_id, "fileType": "csv.zip",
            "bizDates": stamp, "downloadFileName": f"{account}_{stamp}.csv.zip",
            "fileId": f"/trade/{account}/{stamp}.csv.zip",
        })
        return f"{prefix}/downloadBillFile.resource?{urlencode(params)}"

    def bill_file(self, params: dict[str, str]) -> tuple[str, bytes] | None:
        """``(file name, zip)`` for a fresh, genuine download link; None otherwise."""
        if self.sb.links.refusal(params, self.sb.settings.bill_url_ttl_s) is not None:
            return None
        stamp = params.get("bizDates", "")
        period = f"{stamp[:4]}-{stamp[4:6]}" + (f"-{stamp[6:]}" if len(stamp) == 8 else "")
        return alipay_zip(self.sb, period) if period_bounds(period) else None

    # --- control: the buyer and the bank -----------------------------------------------

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
                fen = _biz_amount(data["total_amount"])
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

    # --- notifications -----------------------------------------------------------------

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


def cashier_page(info: dict[str, Any]) -> str:
    """A small stand-in for Alipay's cashier: shows the order and a button that pays it."""
    if info.get("code") != "10000":
        return (
            "<!doctype html><meta charset='utf-8'><title>支付宝 - 错误</title>"
            f"<h1>支付错误</h1><p>错误代码 {html.escape(str(info.get('sub_code')))}</p>"
            f"<p>{html.escape(str(info.get('sub_msg')))}</p>"
        )
    pay_url = html.escape(info["pay_url"], quote=True)
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>支付宝收银台 (sandbox)</title></head>
<body style="font-family:sans-serif;max-width:28em;margin:3em auto">
<h1>支付宝收银台 <small>(Gonglun sandbox)</small></h1>
<p>{html.escape(info['subject'])}</p>
<p>订单号 {html.escape(info['out_trade_no'])}<br>交易号 {html.escape(info['trade_no'])}</p>
<p style="font-size:2em">¥ {html.escape(info['total_amount'])}</p>
<button id="pay">确认付款</button> <span id="out"></span>
<script>
document.getElementById("pay").onclick = async () => {{
  const r = await fetch("{pay_url}",
    {{method: "POST", headers: {{"Content-Type": "application/json"}}, body: "{{}}"}});
  const j = await r.json();
  if (r.ok && j.data && j.data.return_url) {{ location.href = j.data.return_url; return; }}
  document.getElementById("out").textContent = r.ok ? "支付成功" : (j.msg || "失败");
}};
</script></body></html>"""
