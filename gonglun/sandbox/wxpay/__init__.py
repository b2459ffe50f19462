"""WeChat Pay API v3 (``/v3/...``) as wechatpayv3 2.0 meets it on the wire.

Requests carry ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid=..,nonce_str=..,signature=..,
timestamp=..,serial_no=..`` over ``"{METHOD}\\n{path?query}\\n{ts}\\n{nonce}\\n{body}\\n"``,
verified with the merchant's public key. Every answer, 204 and errors included, carries the five
``Wechatpay-*`` headers signed with the platform key over ``"{ts}\\n{nonce}\\n{body}\\n"``.

Two verification modes coexist, as during WeChat's 2024 migration: a merchant that sends
``Wechatpay-Serial: <public_key_id>`` (public-key mode) gets answers whose ``Wechatpay-Serial``
is that id; one that sends no serial (platform-certificate mode) gets the serial of the platform
certificate served by ``GET /v3/certificates``. Notifications for an order use the mode the
merchant used when it created the order. Both modes sign with the same platform key.

One module per API family: ``wire`` (vocabulary, calls and replies), ``base`` (keys,
signatures, the order record and its views), ``pipeline`` (the signed ``/v3`` request
pipeline), ``transactions``, ``refunds``, ``statements``, ``notifications`` and ``control``
(the buyer and the bank), composed in ``channel`` with the routes the channel registers with
the sandbox app.
"""

from .channel import WxpayChannel
from .control import WxpayControlResource
from .pipeline import V3Resource
from .statements import FUND_ACCOUNTS, wxpay_csv, wxpay_fundflow_csv
from .transactions import checkmweb_page
from .wire import (
    ABNORMAL_TYPES,
    BANK_NAMES,
    CERTIFICATE,
    CLOSED,
    MAX_CLOCK_SKEW,
    NOTPAY,
    ORIGINAL_ACCOUNT,
    PUBLIC_KEY,
    REFUND,
    REFUND_FAILURES,
    REFUND_SUMMARY,
    REFUND_VOCABULARY,
    SIGN_TYPE,
    STATE_DESC,
    SUCCESS,
    TRADE_TYPES,
    Call,
    Handler,
    Reply,
    error,
)

__all__ = [
    "ABNORMAL_TYPES",
    "BANK_NAMES",
    "CERTIFICATE",
    "CLOSED",
    "FUND_ACCOUNTS",
    "MAX_CLOCK_SKEW",
    "NOTPAY",
    "ORIGINAL_ACCOUNT",
    "PUBLIC_KEY",
    "REFUND",
    "REFUND_FAILURES",
    "REFUND_SUMMARY",
    "REFUND_VOCABULARY",
    "SIGN_TYPE",
    "STATE_DESC",
    "SUCCESS",
    "TRADE_TYPES",
    "Call",
    "Handler",
    "Reply",
    "V3Resource",
    "WxpayChannel",
    "WxpayControlResource",
    "checkmweb_page",
    "error",
    "wxpay_csv",
    "wxpay_fundflow_csv",
]
