"""Account tables: users, their key/value meta and their API tokens.

``user_meta`` is the plugins' per-user key/value store (WordPress ``usermeta``): WeChat openids,
face-check quota, login-security settings... One row per (user, key), so an upsert can be made
race-free with an idempotent insert followed by a conditional update. The balance is *not* meta:
it lives in the ledger (``gonglun.ledger``), where every change is an append-only posting.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gonglun.db import Base, UTCDateTime, utcnow

#: Primary keys are 64-bit, except on SQLite where only INTEGER is the rowid alias.
ID = BigInteger().with_variant(Integer, "sqlite")

ROLES = ("user", "admin", "superadmin")
STATUSES = ("active", "banned", "deleted")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('user', 'admin', 'superadmin')", name="role"),
        CheckConstraint("status IN ('active', 'banned', 'deleted')", name="status"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    #: Stored lower-cased, so "Alice" and "alice" are one account.
    login: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    nickname: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: ``nickname_key(nickname)``: the unique index is what makes nicknames unique (ACC-05),
    #: so two racing registrations of one nickname get one account. NULL without a nickname.
    nickname_key: Mapped[str | None] = mapped_column(String(191), nullable=True, unique=True,
                                                     index=True)
    role: Mapped[str] = mapped_column(String(16), default="user")
    status: Mapped[str] = mapped_column(String(16), default="active")
    #: None with status ``banned`` means a permanent ban.
    banned_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ban_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: One account per phone / email (ACC-04); NULL when unbound (SEC-12 resets clear them).
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True, unique=True)
    email: Mapped[str | None] = mapped_column(String(191), nullable=True, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


def nickname_key(nickname: str) -> str:
    """The form nicknames are compared in: trimmed and lower-cased ("Alice" is "alice")."""
    return nickname.strip().lower()


class UserMeta(Base):
    __tablename__ = "user_meta"
    __table_args__ = (UniqueConstraint("user_id", "key"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text)


class ApiToken(Base):
    """A bearer token. Only its SHA-256 is stored, so a leaked table grants nothing."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: What the owner sees in their session list (``GET /v1/me/sessions``): the client's
    #: platform, user agent and address at login, and when the token was last used.
    platform: Mapped[str | None] = mapped_column(String(16), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(255), nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class WechatBinding(Base):
    """One WeChat openid of one platform bound to one account (ACC-07, decision 18).

    The unique (platform, openid) is the arbiter of "WeChat already bound": two racing
    registrations with one openid get one account. The same openids are mirrored into user
    meta (``weixin_uid``, ``weixin_app_uid``, ``weixin_apc_uid``, ``weixin_mini_uid``,
    ``wechat_unionid``), where the notify plugin and legacy readers look for them.
    """

    __tablename__ = "wechat_bindings"
    __table_args__ = (
        UniqueConstraint("platform", "openid"),
        UniqueConstraint("user_id", "platform"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(8))
    openid: Mapped[str] = mapped_column(String(64))
    unionid: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WechatUnion(Base):
    """One WeChat unionid belongs to one account (decision 18): the arbiter that two racing
    registrations from two platforms of one WeChat user (their openids differ, their unionid
    is the same) still make one account."""

    __tablename__ = "wechat_unions"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    unionid: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ID, ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
