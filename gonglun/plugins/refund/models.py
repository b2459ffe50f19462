"""The refund record (the seeds' ``xc_refund``): one row per refund attempt, its request, the
channel's answers and how it ended. The payment row keeps the current refund (REF-17); this
table is the history (DECISIONS.md 10, AMB-15)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from gonglun.accounts.models import ID
from gonglun.db import Base, UTCDateTime, utcnow

#: 1 refunded, 2 refunding (accepted, not settled; or the channel's answer is not known yet),
#: 3 failed after the business effect was undone: the money waits for a manual payout
#: (``fail_refund``), 4 void: the channel refused or never received it, nothing moved.
SUCCESS, REFUNDING, FAILED, VOID = 1, 2, 3, 4
STATUS_NAMES = {SUCCESS: "success", REFUNDING: "refunding", FAILED: "failed", VOID: "void"}
#: The listing's name for refunding records the channel keeps reporting as PROCESSING.
STUCK = "stuck"


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("status IN (1, 2, 3, 4)", name="status"),
        CheckConstraint("way IN ('seller', 'admin', 'system')", name="way"),
        Index("ix_refunds_status_method", "status", "method"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    payment_id: Mapped[int] = mapped_column(ID, ForeignKey("payments.id"), index=True)
    payment_order: Mapped[str] = mapped_column(String(32))
    #: Our refund number (Alipay out_request_no, WeChat out_refund_no): unique, and reused when
    #: a request whose outcome was unknown is asked again, so the channel sees one refund.
    refund_order: Mapped[str] = mapped_column(String(32), unique=True)
    method: Mapped[str] = mapped_column(String(16))
    scene: Mapped[str] = mapped_column(String(32))
    way: Mapped[str] = mapped_column(String(16))
    #: Who asked (REF-07): the logged-in user, and the client address.
    user_id: Mapped[int | None] = mapped_column(ID, nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    #: The payment's amount, for the channel (WeChat wants the total).
    total: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(255))
    status: Mapped[int] = mapped_column(Integer, default=REFUNDING)
    #: The channel's last word: SUCCESS, PROCESSING, ABNORMAL, CLOSED, REFUSED, UNKNOWN...
    channel_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    channel_refund_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: True while the ledger carries the refund (from the claim on; false again if voided).
    booked: Mapped[bool] = mapped_column(default=False)
    request: Mapped[str] = mapped_column(Text, default="{}")
    success: Mapped[str | None] = mapped_column(Text, nullable=True)
    fail: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Consecutive confirmations that did not find the refund settled (DECISIONS.md 13).
    checks: Mapped[int] = mapped_column(Integer, default=0)
    #: How many times the money was set aside for a payout (a failure, then a failed retry...):
    #: each hold and its payout have their own ledger keys.
    holds: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    success_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_by: Mapped[int | None] = mapped_column(ID, nullable=True)
    resolution: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: Who holds a ``fail_refund``'s exit while asking the channel: ``retry:<token>`` or
    #: ``manual:<token>``, taken by one conditional update before any outside call (DECISIONS.md
    #: 29); None when free. A claim older than ``exits.CLAIM_TTL_S`` is abandoned.
    claim: Mapped[str | None] = mapped_column(String(48), nullable=True)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: How the money finally left: ``channel`` or ``manual`` (staff paid by hand).
    paid_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: When the last counted confirmation ran: a check closer to it than the job's period is
    #: applied but not counted (a re-run job must not fail a refund early).
    checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: Counted checks that found the refund still PROCESSING at the channel (not failures).
    waits: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Since when the channel keeps saying PROCESSING (``refund.confirm_failures`` counted
    #: checks): shown as stuck at the channel, never offered for a manual payout.
    stuck_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
