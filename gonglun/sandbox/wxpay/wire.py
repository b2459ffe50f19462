"""WeChat Pay v3's vocabulary (order and refund states, refusals, verification modes) and the
shapes handlers work with: one authenticated ``Call`` in, one ``Reply`` out."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..faults import RefundVocabulary

NOTPAY, SUCCESS, CLOSED, REFUND = "NOTPAY", "SUCCESS", "CLOSED", "REFUND"
STATE_DESC = {
    NOTPAY: "订单未支付",
    SUCCESS: "支付成功",
    CLOSED: "订单已关闭",
    REFUND: "转入退款",
    "PAYERROR": "支付失败",
    "USERPAYING": "用户支付中",
    "REVOKED": "已撤销",
}
TRADE_TYPES = {"jsapi": "JSAPI", "app": "APP", "h5": "MWEB", "native": "NATIVE",
               "control": "NATIVE"}
REFUND_SUMMARY = {"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}
#: Refusals ``next_refund`` can arm, with the HTTP status and description of the refund API's
#: error table (POST /v3/refund/domestic/refunds); nothing is recorded, so a retry with the
#: same out_refund_no may pass.
REFUND_FAILURES: dict[str, tuple[int, str]] = {
    "FREQUENCY_LIMITED": (429, "频率限制"),
    "NOT_ENOUGH": (403, "余额不足"),
    "USER_ACCOUNT_ABNORMAL": (403, "退款请求失败"),
    "NO_AUTH": (403, "没有退款权限"),
    "INVALID_REQUEST": (400, "请求参数符合参数格式，但不符合业务规则"),
    "SYSTEM_ERROR": (500, "系统超时"),
}
REFUND_VOCABULARY = RefundVocabulary(
    default="PROCESSING",
    accepted=frozenset({"SUCCESS", "PROCESSING", "ABNORMAL", "CLOSED"}),
    settling=frozenset({"SUCCESS", "PROCESSING"}),
    failures=frozenset(REFUND_FAILURES),
    aliases={"PENDING": "PROCESSING"},
)
#: How apply-abnormal-refund redirects an ABNORMAL refund.
ABNORMAL_TYPES = ("USER_BANK_CARD", "MERCHANT_BANK_CARD")
BANK_NAMES = {"ICBC": "工商银行", "ABC": "农业银行", "BOC": "中国银行", "CCB": "建设银行",
              "COMM": "交通银行", "CMB": "招商银行", "SPDB": "浦发银行", "CITIC": "中信银行",
              "CEB": "光大银行", "CMBC": "民生银行", "CIB": "兴业银行", "GDB": "广发银行",
              "PSBC": "邮储银行", "PAB": "平安银行", "NBCB": "宁波银行"}
ORIGINAL_ACCOUNT = "支付用户零钱"
PUBLIC_KEY, CERTIFICATE = "public_key", "certificate"
SIGN_TYPE = "WECHATPAY2-SHA256-RSA2048"
#: WeChat refuses requests whose timestamp is more than five minutes off.
MAX_CLOCK_SKEW = 300
OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*@]{6,32}$")
AUTH_FIELD = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class Reply:
    status: int
    payload: dict[str, Any] | None = None  #: None: empty body (204)
    raw: bytes | None = None  #: a file download (bills), sent as is
    headers: dict[str, str] = field(default_factory=dict)


def error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"code": code, "message": message})


@dataclass
class Call:
    """One authenticated v3 request, as handlers see it."""

    method: str
    params: dict[str, str]
    body: dict[str, Any]
    prefix: str
    mode: str


Handler = Callable[[Call, dict[str, str]], Reply]
