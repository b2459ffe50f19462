"""The values of the transfer API: what to move, what was moved, and the outcome."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Move:
    """One transfer to make: ``amount`` fen from ``debit`` to ``credit`` (account codes)."""

    debit: str
    credit: str
    amount: int
    code: str
    key: str
    ref: str = ""
    remark: str = ""
    #: A wallet debit may leave it negative only with this *and* a code listed in
    #: ``ledger.negative_scenes`` (BAL-05: the platform's advances). System accounts always may.
    allow_negative: bool = False


@dataclass(frozen=True)
class TransferRow:
    """A committed (or just written) transfer, with its accounts by code."""

    id: int
    debit: str
    credit: str
    amount: int
    code: str
    ref: str
    remark: str
    key: str
    debit_after: int | None
    credit_after: int | None
    operator_id: int | None
    created_at: Any

    def to_dict(self) -> dict[str, Any]:
        """JSON primitives (the admin API)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["created_at"] = self.created_at.isoformat() if self.created_at else None
        return out

    def same_as(self, move: Move) -> bool:
        """Is ``move`` a repeat of this transfer (same accounts, amount and code)?"""
        return (self.debit, self.credit, self.amount, self.code) == (
            move.debit, move.credit, move.amount, move.code)


@dataclass(frozen=True)
class TransferResult:
    transfer: TransferRow
    #: False when the key had been used already: nothing moved this time.
    created: bool
