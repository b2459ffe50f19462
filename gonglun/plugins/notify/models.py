"""Notify tables: deliveries (the log and the idempotency record), inbox messages, user
preferences, daily counters, SMS verification codes and staff alarms."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gonglun.accounts.models import ID
from gonglun.db import Base, UTCDateTime, utcnow

#: queued → sending → sent | retry → ... | failed; or decided at fan-out: capped, skipped
#: (user preference, no address, inactive user), unavailable (no provider / no template).
STATUSES = ("queued", "sending", "retry", "sent", "failed", "capped", "skipped", "unavailable")


class Delivery(Base):
    """One message on one channel to one recipient. ``key`` (event, recipient, channel) is
    unique: a redelivered notify event finds its deliveries and sends nothing twice."""

    __tablename__ = "notify_deliveries"
    __table_args__ = (
        Index("ix_notify_deliveries_due", "status", "next_attempt_at"),
        Index("ix_notify_deliveries_user", "user_id", "id"),
        Index("ix_notify_deliveries_scene", "scene", "id"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(191), unique=True)
    scene: Mapped[str] = mapped_column(String(32))
    #: The recipient (None only for messages to a phone that has no account: SMS codes).
    user_id: Mapped[int | None] = mapped_column(ID, nullable=True)
    channel: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(32), default="")
    #: Phone, email, openid or push alias the message goes to (shown masked).
    address: Mapped[str | None] = mapped_column(String(191), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    #: Why a message was not (or not yet) sent, in words an operator reads.
    reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: The provider's id of the sent message (SMS SerialNo, WeChat msgid, JPush msg_id...).
    provider_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The rendered content (JSON), fixed at fan-out so retries send the same message.
    payload: Mapped[str] = mapped_column(Text, default="{}")
    #: The Asia/Shanghai day the daily caps counted it in.
    day: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Message(Base):
    """An inbox / service-account message (NTF-04, NTF-05)."""

    __tablename__ = "notify_messages"
    __table_args__ = (
        Index("ix_notify_messages_user", "user_id", "id"),
        Index("ix_notify_messages_unread", "user_id", "read_at"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    #: One message per delivery, whatever retries happen.
    delivery_id: Mapped[int] = mapped_column(ID, unique=True)
    scene: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(32), default="")
    account: Mapped[str] = mapped_column(String(32), default="")
    account_name: Mapped[str] = mapped_column(String(64), default="")
    title: Mapped[str] = mapped_column(String(255))
    first: Mapped[str] = mapped_column(String(255), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    #: JSON list of ``[label, value]`` rows.
    rows: Mapped[str] = mapped_column(Text, default="[]")
    remark: Mapped[str] = mapped_column(String(512), default="")
    link: Mapped[str] = mapped_column(String(512), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Preference(Base):
    """A user's choice for one channel of one scene (absent: the scene's default, on)."""

    __tablename__ = "notify_preferences"
    __table_args__ = (UniqueConstraint("user_id", "scene", "channel"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    scene: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Counter(Base):
    """A named daily counter moved only by conditional updates: caps, code intervals, alarm
    thresholds. Exact under concurrency on every backend, and rolled back with its
    transaction (a Redis counter would not be)."""

    __tablename__ = "notify_counters"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(191), unique=True)
    used: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    day: Mapped[str] = mapped_column(String(10), index=True)


class SmsCode(Base):
    """One verification code (SMS or email); only its keyed HMAC is stored. ``destination``
    is the mainland phone (11 digits) or the email address the code was sent to."""

    __tablename__ = "notify_sms_codes"
    __table_args__ = (Index("ix_notify_sms_codes_destination", "destination", "scene", "id"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    destination: Mapped[str] = mapped_column(String(191))
    scene: Mapped[str] = mapped_column(String(32))
    code_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ID, nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    consumed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Alarm(Base):
    """Every ``alarm`` received (OPS-03), and whether it reached the admins."""

    __tablename__ = "notify_alarms"
    __table_args__ = (Index("ix_notify_alarms_kind_day", "kind", "day"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(191), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    day: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[str] = mapped_column(Text, default="{}")
    #: Its number among the day's alarms of its kind (what the threshold counts).
    number: Mapped[int] = mapped_column(Integer, default=0)
    #: counted (below the threshold), sent (admins notified), undelivered (its turn, but no
    #: active admin or no channel to receive it), suppressed (daily maximum).
    outcome: Mapped[str] = mapped_column(String(16), default="counted")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
