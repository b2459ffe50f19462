"""Alipay openapi gateway (``/gateway.do``) as python-alipay-sdk 3.4 meets it on the wire.

Requests: every parameter in the query string (the SDK GETs) or a form body, signed RSA2 over
the sorted ``k=v`` pairs with only ``sign`` left out (``sign_type`` is in). Responses:
``{"<method_underscored>_response":<inner>,"sign":"..."}``, compact, the response key first,
the signature over the exact ``<inner>`` text. The SDK finds that text by brace matching that
ignores JSON strings, so braces inside string values are written as ``\\u007b``/``\\u007d``:
the same value after ``json.loads`` and no brace for the matcher to trip on.

Amounts are yuan strings here and fen everywhere inside.

One module per API family: ``wire`` (format and vocabulary), ``base`` (keys, signing, the
trade record and its views), ``trades``, ``refunds``, ``statements``, ``notifications`` and
``control`` (the buyer and the bank), composed in ``channel`` with the ``/gateway.do``
dispatch and the routes the channel registers with the sandbox app.
"""

from .channel import AlipayChannel, AlipayGatewayResource, cashier_page
from .control import AlipayControlResource
from .statements import AlipayBillFileResource, alipay_csv, alipay_zip, bill_account
from .wire import (
    BUYER_ID,
    BUYER_LOGON,
    CASHIER_METHODS,
    CLOSED,
    DEFAULT_EXPIRE_S,
    FAILED,
    FINISHED,
    PENDING,
    REFUND_FAILURES,
    REFUND_VOCABULARY,
    REFUNDED,
    SELLER_EMAIL,
    SETTLE_STATUSES,
    SUCCESS,
    WAIT,
    business_error,
    compact,
    response_key,
    signing_string,
)

__all__ = [
    "BUYER_ID",
    "BUYER_LOGON",
    "CASHIER_METHODS",
    "CLOSED",
    "DEFAULT_EXPIRE_S",
    "FAILED",
    "FINISHED",
    "PENDING",
    "REFUNDED",
    "REFUND_FAILURES",
    "REFUND_VOCABULARY",
    "SELLER_EMAIL",
    "SETTLE_STATUSES",
    "SUCCESS",
    "WAIT",
    "AlipayBillFileResource",
    "AlipayChannel",
    "AlipayControlResource",
    "AlipayGatewayResource",
    "alipay_csv",
    "alipay_zip",
    "bill_account",
    "business_error",
    "cashier_page",
    "compact",
    "response_key",
    "signing_string",
]
