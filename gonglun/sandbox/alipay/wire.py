"""Alipay's wire format and vocabulary: trade and refund states, the compact JSON a signed
answer carries, signing strings, and yuan amounts and expiry times read from ``biz_content``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..common import local, parse_time, yuan_to_fen
from ..faults import RefundVocabulary

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


def biz_amount(value: Any) -> int:
    """A yuan amount from biz_content: a string, or a JSON number written by a careless caller."""
    if isinstance(value, float):
        value = repr(value)
    return yuan_to_fen(value)


_EXPRESS = re.compile(r"^(\d+)([mhdc])$")


def expiry(biz: dict[str, Any], created: float) -> float:
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
