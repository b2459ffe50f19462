"""Ledger tables: one balance row per account and the append-only postings that explain it.

Invariants (checked by ``gonglun audit``): a balance equals the sum of its account's postings;
each posting's ``balance_after`` is the previous posting's plus its ``delta`` (the first starts
from 0). The balance row's ``version`` is the per-account serialisation point: every posting
bumps it with a conditional update.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

import gonglun.accounts.models  # noqa: F401 - the users table the foreign keys point at
from gonglun.accounts.models import ID
from gonglun.db import Base, UTCDateTime, utcnow


class Balance(Base):
    __tablename__ = "balances"

    user_id: Mapped[int] = mapped_column(ID, ForeignKey("users.id"), primary_key=True)
    #: Integer fen; negative only after an allowed advance (BAL-05).
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Posting(Base):
    __tablename__ = "postings"
    __table_args__ = (Index("ix_postings_user_id_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ID, ForeignKey("users.id"))
    delta: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    #: What moved the money (``recharge_money``, ``refund``...) and the business reference.
    scene: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(64), default="")
    remark: Mapped[str] = mapped_column(String(255), default="")
    #: The caller's idempotency key: the same key never posts twice.
    idempotency_key: Mapped[str] = mapped_column(String(191), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
