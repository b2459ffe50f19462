"""What the payment service needs from a channel, whichever SDK speaks it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ChannelPayment:
    """A channel's statement about one order, from a notification or a query.

    ``paid`` is True only for a definite success; ``closed`` for a definite "will never be paid"
    (closed, not found after the deadline...). Neither means the outcome is still open.
    """

    payment_order: str
    paid: bool
    closed: bool = False
    trade_no: str | None = None
    amount: int | None = None  #: fen
    paid_at: dt.datetime | None = None
    merchant_id: str | None = None  #: app_id (Alipay) or mchid (WeChat), for the cross-check
    app_id: str | None = None  #: the application the payment was made in (WeChat appid)
    status: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CloseResult:
    ok: bool
    code: str = ""
    msg: str = ""
    #: The channel says the trade was already paid: the caller must query and apply it.
    already_paid: bool = False


@dataclass(frozen=True)
class StatementRow:
    payment_order: str
    trade_no: str
    amount: int  #: fen, what the buyer paid
    status: str  #: SUCCESS, REFUND, CLOSED... as the statement says
    refund_amount: int = 0


def merge_statement_row(
    rows: dict[str, StatementRow], order: str, trade_no: str, amount: int, status: str,
    refund: int | None,
) -> None:
    """Fold one statement line into ``rows``: a payment line, or (``refund`` given) a refund.

    Refund lines add up on their trade; a trade whose refund line came first keeps it when its
    payment line arrives; a refund of a trade paid on another day stands alone.
    """
    prev = rows.get(order)
    if refund is not None:
        rows[order] = StatementRow(
            order, prev.trade_no if prev else trade_no, prev.amount if prev else amount,
            "REFUND", (prev.refund_amount if prev else 0) + refund,
        )
    elif prev is not None:
        rows[order] = StatementRow(order, trade_no, amount, prev.status, prev.refund_amount)
    else:
        rows[order] = StatementRow(order, trade_no, amount, status)


#: The code of an Alipay answer that is neither settled nor failed (see ``RefundResult``).
UNSETTLED = "UNSETTLED"


@dataclass(frozen=True)
class RefundResult:
    """A channel's answer about one refund (a request or a query).

    ``status``: ``SUCCESS`` (the money reached the buyer), ``PROCESSING`` (accepted, not yet
    settled: Alipay ``fund_change`` not ``Y``, WeChat ``PROCESSING``), ``ABNORMAL`` (accepted,
    the payout failed: a frozen or closed card), ``CLOSED`` (WeChat closed it: nothing paid),
    ``REFUSED`` (the channel said no: nothing moved; ``code``/``msg`` say why), ``NOT_FOUND``
    (a query: the channel has no such refund) or ``UNKNOWN`` (the channel could not tell,
    e.g. Alipay ``ACQ.SYSTEM_ERROR``: query before anything else).

    A ``PROCESSING`` with code ``UNSETTLED`` (Alipay's query: the request is known, no
    ``refund_status``) cannot tell "still processing" from "failed": a check that found it so
    counts toward ``refund.confirm_failures``; WeChat's own ``PROCESSING`` does not.
    """

    status: str
    code: str = ""
    msg: str = ""
    refund_id: str | None = None
    amount: int | None = None  #: fen, what the channel says it refunds
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def processing(self) -> bool:
        """The channel says, in so many words, that it is still paying the refund out."""
        return self.status == "PROCESSING" and self.code != UNSETTLED

    @property
    def accepted(self) -> bool:
        """The channel took the refund on (the money is leaving, or failed after leaving)."""
        return self.status in ("SUCCESS", "PROCESSING", "ABNORMAL")


class ChannelError(Exception):
    """The channel could not be reached or answered something we cannot use."""


class NotificationRefused(Exception):
    """A notification refused before (or instead of) being trusted: unknown signing key,
    stale timestamp, not a notification we handle. ``reason`` goes into the record."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Channel(Protocol):
    method: str
    merchant_id: str

    def pay_params(self, payment: dict[str, Any], channel: str, extra: dict[str, Any]) -> dict:
        ...

    def query(self, payment_order: str) -> ChannelPayment:
        ...

    def close(self, payment_order: str) -> CloseResult:
        ...

    def parse_notification(self, headers: dict[str, str], body: bytes) -> ChannelPayment | None:
        """The verified notification; None (or ``NotificationRefused``) when not trusted."""
        ...

    def check_parties(self, cp: ChannelPayment) -> str | None:
        """Why a verified payment is not ours (``merchant_mismatch``...), or None."""
        ...

    def statement(self, bill_date: str) -> list[StatementRow]:
        ...

    def refund(self, payment: dict[str, Any], refund_order: str, amount: int,
               reason: str) -> RefundResult:
        """Ask the channel to refund ``amount`` fen of ``payment`` under ``refund_order``
        (retrying the same number is idempotent at the channel); ``ChannelError`` when the
        outcome is unknown (timeouts, bad answers)."""
        ...

    def refund_query(self, payment: dict[str, Any], refund_order: str) -> RefundResult:
        """What the channel says about ``refund_order`` now."""
        ...
