"""What every reconciliation module shares (``reconcile.py`` runs them): a day's window, our
payments' snapshot, a difference, a run's report and an item's dict. It imports none of them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from gonglun.plugins.payment.models import ReconItem
from gonglun.plugins.payment.money import SHANGHAI

#: Opened by the settlement guard (``guard.py``): the channel refunded more than we did.
#: A person resolves it; a statement re-run never clears it.
REFUND_AT_CHANNEL = "refund_at_channel"
PAID_STATES = ("ok", "wait_refund", "refund", "fail_refund")
#: Orders per ``IN (...)`` query.
CHUNK = 500


def day_window(bill_date: str) -> tuple[dt.datetime, dt.datetime]:
    """The Beijing day as a UTC half-open interval [start, end)."""
    start = dt.datetime.combine(dt.date.fromisoformat(bill_date), dt.time(), SHANGHAI)
    return start.astimezone(dt.UTC), (start + dt.timedelta(days=1)).astimezone(dt.UTC)


def chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Local:
    """What reconciliation needs of one of our payments (a snapshot, no session attached)."""

    id: int
    payment_order: str
    method: str
    state: str
    late: bool
    amount: int
    paid_amount: int | None
    refund_amount: int
    paid_at: dt.datetime | None

    @property
    def paid(self) -> bool:
        return self.state in PAID_STATES or self.late


@dataclass
class Difference:
    kind: str
    payment_order: str
    trade_no: str | None = None
    local_amount: int | None = None
    channel_amount: int | None = None
    local_state: str | None = None
    channel_state: str | None = None
    #: Set when the run itself settled it (recovered by query): stored as resolved.
    resolution: str | None = None


@dataclass
class ReconReport:
    """One run: what the statement had, what we had, and the differences found."""

    bill_date: str
    channel: str
    channel_rows: int = 0
    local_rows: int = 0
    #: What the statement says was paid for our orders paid that day (fen): the audit holds
    #: the channel's clearing account to it on days without differences.
    channel_paid: int = 0
    #: The differences this run found, as stored (``status`` shows later resolutions too).
    items: list[dict[str, Any]] = field(default_factory=list)
    new_items: int = 0
    recovered: int = 0
    cleared: int = 0
    ran_at: str = ""

    @property
    def differences(self) -> int:
        return len(self.items)

    @property
    def open(self) -> int:
        return sum(1 for i in self.items if i["status"] == "open")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["differences"] = self.differences
        out["open"] = self.open
        return out


def item_dict(item: ReconItem) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in ReconItem.__table__.columns:
        value = getattr(item, col.name)
        out[col.name] = value.isoformat() if isinstance(value, dt.datetime) else value
    return out


__all__ = ["CHUNK", "PAID_STATES", "REFUND_AT_CHANNEL", "Difference", "Local", "ReconReport",
           "chunks", "day_window", "item_dict"]
