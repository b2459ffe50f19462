"""Payment tables: orders, channel notifications, drop-order checks, reconciliation items."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gonglun.accounts.models import ID
from gonglun.db import Base, UTCDateTime, utcnow

STATES = ("wait_pay", "ok", "close", "wait_refund", "refund", "fail_refund")
METHODS = ("money", "alipay", "wxpay")


class Payment(Base):
    """One payment order (the seeds' ``xc_pay``). Money is integer fen."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "state IN ('wait_pay', 'ok', 'close', 'wait_refund', 'refund', 'fail_refund')",
            name="state",
        ),
        CheckConstraint("method IN ('money', 'alipay', 'wxpay')", name="method"),
        CheckConstraint("refund_amount >= 0 AND refund_amount <= amount", name="refund_amount"),
        Index("ix_payments_state_deadline", "state", "close_deadline"),
        Index("ix_payments_user_created", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    #: Our merchant order number (out_trade_no): 20 digits, time prefix + random.
    payment_order: Mapped[str] = mapped_column(String(32), unique=True)
    #: The channel's transaction number (Alipay trade_no, WeChat transaction_id; ours for money).
    pay_order: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    user_id: Mapped[int | None] = mapped_column(ID, ForeignKey("users.id"), nullable=True)
    seller_id: Mapped[int | None] = mapped_column(ID, ForeignKey("users.id"), nullable=True)
    scene: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(128), default="")
    amount: Mapped[int] = mapped_column(BigInteger)
    method: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="wait_pay")
    #: What the channel says was paid (equals ``amount`` unless something is wrong).
    paid_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: Paid at the channel after we had closed it (DECISIONS.md 7): kept, flagged, alarmed.
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    refund_order: Mapped[str | None] = mapped_column(String(32), nullable=True, unique=True)
    refund_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    refund_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    refund_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: Platform revenue from this payment: the commission taken at settlement (super admins
    #: only, SEC-05, PAY-22).
    income: Mapped[int] = mapped_column(BigInteger, default=0)
    #: When escrow was paid out to the seller (scenes with ``settle``).
    settled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    payer_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    fingerprint: Mapped[str | None] = mapped_column(String(128), nullable=True)
    #: The goods card this payment is for (shop_type, shop_order in the seeds).
    shop_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    shop_order: Mapped[str | None] = mapped_column(String(64), nullable=True)
    meta: Mapped[str] = mapped_column(Text, default="{}")
    #: ``<user or ip>:<Idempotency-Key header>``: a retried create returns the first order.
    request_key: Mapped[str | None] = mapped_column(String(160), nullable=True, unique=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    close_deadline: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ChannelNotification(Base):
    """Every notification received, verified or not, with what was done with it.

    Unique on the body's digest: a redelivered notification is recognised, and its outcome is
    the first one's.
    """

    __tablename__ = "payment_notifications"
    __table_args__ = (UniqueConstraint("channel", "digest"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default="payment")
    payment_order: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    outcome: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DropCheck(Base):
    """An order whose outcome is unknown, queried on a schedule a bounded number of times."""

    __tablename__ = "payment_drop_checks"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    payment_id: Mapped[int] = mapped_column(ID, ForeignKey("payments.id"), unique=True)
    reason: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_check_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    last_result: Mapped[str | None] = mapped_column(String(255), nullable=True)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReconItem(Base):
    """One difference between a channel's daily statement and our payments."""

    __tablename__ = "recon_items"
    __table_args__ = (UniqueConstraint("bill_date", "channel", "payment_order", "kind"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    bill_date: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str] = mapped_column(String(16))
    #: missing_local, missing_channel, amount_mismatch, status_mismatch
    kind: Mapped[str] = mapped_column(String(32))
    payment_order: Mapped[str] = mapped_column(String(64))
    trade_no: Mapped[str | None] = mapped_column(String(64), nullable=True)
    local_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    channel_amount: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    local_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    channel_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    resolution: Mapped[str | None] = mapped_column(String(255), nullable=True)
    resolved_by: Mapped[int | None] = mapped_column(ID, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ReconRun(Base):
    """One reconciliation of one channel's day: when it ran and what it found."""

    __tablename__ = "recon_runs"
    __table_args__ = (UniqueConstraint("bill_date", "channel"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    bill_date: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str] = mapped_column(String(16))
    channel_rows: Mapped[int] = mapped_column(Integer, default=0)
    local_rows: Mapped[int] = mapped_column(Integer, default=0)
    differences: Mapped[int] = mapped_column(Integer, default=0)
    #: What the statement says was paid for the orders we also have as paid that day (fen);
    #: the audit checks the channel's clearing account against it.
    channel_paid: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    ran_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
