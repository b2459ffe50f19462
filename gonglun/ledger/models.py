"""Ledger tables: accounts, their balance rows and the append-only transfers between them.

Double entry (DECISIONS.md 22): every movement of money is one ``Transfer`` that debits one
account and credits another by a positive amount, so the sum over all accounts is zero by
construction and ``gonglun audit`` can prove it from the balance rows.

- A **wallet** (one per user, code ``user:<id>``) keeps its balance in one row (shard 0): a
  debit checks it (BAL-05) and each transfer records the wallet's balance after it
  (``debit_after`` / ``credit_after``), the chain the audit re-adds.
- A **system** account (``channel:alipay``, ``escrow``, ``income``, ``manual``, plugin-declared)
  may go negative by design and is never read before it is written, so it keeps its balance in
  several shard rows, one picked at random per transaction and summed on read: the hot
  accounts every payment touches never serialise writers.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

import gonglun.accounts.models  # noqa: F401 - the users table the foreign keys point at
from gonglun.accounts.models import ID
from gonglun.db import Base, UTCDateTime, utcnow


class Account(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("kind IN ('wallet', 'system')", name="kind"),
        CheckConstraint(
            "(kind = 'wallet' AND user_id IS NOT NULL) OR (kind = 'system' AND user_id IS NULL)",
            name="wallet_user",
        ),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    #: ``user:<id>`` for wallets; a stable code for system accounts (``escrow``...).
    code: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    user_id: Mapped[int | None] = mapped_column(
        ID, ForeignKey("users.id"), nullable=True, unique=True
    )
    name: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AccountBalance(Base):
    """One balance row of an account: a wallet has shard 0 only, a system account several."""

    __tablename__ = "ledger_balances"

    account_id: Mapped[int] = mapped_column(ID, ForeignKey("ledger_accounts.id"),
                                            primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Integer fen; a wallet is negative only after an allowed advance (BAL-05).
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Transfer(Base):
    __tablename__ = "ledger_transfers"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("debit_id <> credit_id", name="two_accounts"),
        Index("ix_ledger_transfers_debit_id_id", "debit_id", "id"),
        Index("ix_ledger_transfers_credit_id_id", "credit_id", "id"),
    )

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    #: Money leaves ``debit`` and arrives in ``credit``.
    debit_id: Mapped[int] = mapped_column(ID, ForeignKey("ledger_accounts.id"))
    credit_id: Mapped[int] = mapped_column(ID, ForeignKey("ledger_accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    #: What moved the money (the scene: ``recharge_money``, ``tao``; or ``settle``, ``refund``).
    code: Mapped[str] = mapped_column(String(64))
    #: The business reference (a payment's merchant order number, a hold's reference...).
    ref: Mapped[str] = mapped_column(String(64), default="", index=True)
    remark: Mapped[str] = mapped_column(String(255), default="")
    #: The caller's idempotency key: the same key never moves money twice.
    idempotency_key: Mapped[str] = mapped_column(String(191), unique=True)
    #: A wallet side's balance after this transfer (None on a system side).
    debit_after: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    credit_after: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: The staff member behind a manual transfer (payouts, adjustments), when there is one.
    operator_id: Mapped[int | None] = mapped_column(ID, ForeignKey("users.id"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


__all__ = ["Account", "AccountBalance", "Transfer"]
