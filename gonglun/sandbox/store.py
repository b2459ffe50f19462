"""What the channels remember: trades, refunds, notification deliveries and their attempts.

Everything lives in dictionaries owned by the sandbox's event loop (handlers never await in the
middle of a state change, so no locks are needed). With a ``state_path`` every change is also
written through to a small SQLite file, one JSON document per record, so a restarted sandbox
still knows the orders a merchant created before it stopped. That file is the sandbox's own
and never shares a database with the application under test.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

ALIPAY = "alipay"
WXPAY = "wxpay"
CHANNELS = (ALIPAY, WXPAY)


@dataclass
class Trade:
    """One order at a channel. ``state`` uses the channel's own words.

    Alipay: WAIT_BUYER_PAY, TRADE_SUCCESS, TRADE_CLOSED, TRADE_FINISHED.
    WeChat: NOTPAY, SUCCESS, CLOSED, REFUND, PAYERROR, USERPAYING, REVOKED.
    """

    channel: str
    out_trade_no: str
    channel_no: str  #: Alipay trade_no / WeChat transaction_id
    amount: int  #: fen
    state: str
    app_id: str = ""
    subject: str = ""
    kind: str = ""  #: page/wap/app/precreate/control; jsapi/app/h5/native/control
    notify_url: str = ""
    return_url: str = ""
    payer: str = ""  #: WeChat openid
    attach: str = ""
    created_at: float = 0.0
    paid_at: float | None = None
    closed_at: float | None = None
    expire_at: float | None = None
    prepay_id: str = ""
    #: WeChat only: "public_key" or "certificate", the verification mode the merchant used
    #: when creating the order; notifications are signed for that mode.
    serial_mode: str = "public_key"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.out_trade_no


@dataclass
class Refund:
    """One refund request. ``status``: WeChat SUCCESS, PROCESSING, ABNORMAL or CLOSED; Alipay
    SUCCESS, PROCESSING (accepted with "fund_change N", not settled yet) or FAILED (a pending
    refund the bank could not pay: Alipay reports it as never refunded)."""

    channel: str
    out_trade_no: str
    out_refund_no: str  #: Alipay out_request_no / WeChat out_refund_no
    refund_id: str
    amount: int
    total: int
    status: str
    channel_no: str = ""
    reason: str = ""
    notify_url: str = ""
    created_at: float = 0.0
    success_at: float | None = None
    serial_mode: str = "public_key"
    #: Channel-specific details (WeChat: how an ABNORMAL refund was redirected).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        # Alipay request numbers are unique per trade only; WeChat refund numbers per merchant.
        if self.channel == ALIPAY:
            return f"{self.out_trade_no}|{self.out_refund_no}"
        return self.out_refund_no


@dataclass
class Delivery:
    """A notification to deliver, and how far its retry schedule has gone."""

    id: str
    channel: str
    event: str
    url: str
    body: str  #: exact bytes sent (form text or JSON), decoded as UTF-8
    headers: dict[str, str]
    summary: dict[str, Any]
    notify_id: str
    attempts: int = 0
    state: str = "pending"  #: pending, acked, failed, dropped, refused
    next_at: float = 0.0
    created_at: float = 0.0
    reason: str = ""  #: why a refused delivery was never sent


_KINDS = {"trade": Trade, "refund": Refund, "delivery": Delivery}


class Store:
    """In-memory state with optional SQLite write-through."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.trades: dict[tuple[str, str], Trade] = {}
        self.refunds: dict[tuple[str, str], Refund] = {}
        self.deliveries: dict[str, Delivery] = {}
        self.attempts: list[dict[str, Any]] = []
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        if path:
            self._open(path)

    # --- persistence ---------------------------------------------------------------------

    def _open(self, path: str) -> None:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, channel TEXT NOT NULL,"
            " key TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (kind, channel, key))"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS attempts (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " data TEXT NOT NULL)"
        )
        self._db = db
        for kind, channel, _key, data in db.execute("SELECT kind, channel, key, data FROM records"):
            cls = _KINDS.get(kind)
            if cls is None:
                continue
            record = cls(**json.loads(data))
            if isinstance(record, Trade):
                self.trades[(channel, record.key)] = record
            elif isinstance(record, Refund):
                self.refunds[(channel, record.key)] = record
            else:
                self.deliveries[record.id] = record
        for (data,) in db.execute("SELECT data FROM attempts ORDER BY id"):
            self.attempts.append(json.loads(data))

    def _write(self, kind: str, channel: str, key: str, record: object) -> None:
        if self._db is None:
            return
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO records (kind, channel, key, data) VALUES (?, ?, ?, ?)",
                (kind, channel, key, json.dumps(asdict(record), ensure_ascii=False)),  # type: ignore[call-overload]
            )

    def close(self) -> None:
        if self._db is not None:
            with self._lock:
                self._db.close()
            self._db = None

    def reset(self) -> None:
        """Forget everything (the control API's ``POST /sandbox/reset``)."""
        self.trades.clear()
        self.refunds.clear()
        self.deliveries.clear()
        self.attempts.clear()
        if self._db is not None:
            with self._lock:
                self._db.execute("DELETE FROM records")
                self._db.execute("DELETE FROM attempts")

    # --- records -------------------------------------------------------------------------

    def trade(self, channel: str, out_trade_no: str) -> Trade | None:
        return self.trades.get((channel, out_trade_no))

    def trade_by_channel_no(self, channel: str, channel_no: str) -> Trade | None:
        for trade in self.trades.values():
            if trade.channel == channel and trade.channel_no == channel_no:
                return trade
        return None

    def save_trade(self, trade: Trade) -> None:
        self.trades[(trade.channel, trade.key)] = trade
        self._write("trade", trade.channel, trade.key, trade)

    def refund(self, channel: str, key: str) -> Refund | None:
        return self.refunds.get((channel, key))

    def refunds_of(self, channel: str, out_trade_no: str) -> list[Refund]:
        return [
            r for r in self.refunds.values()
            if r.channel == channel and r.out_trade_no == out_trade_no
        ]

    def refunds_numbered(self, channel: str, out_refund_no: str) -> list[Refund]:
        return [
            r for r in self.refunds.values()
            if r.channel == channel and r.out_refund_no == out_refund_no
        ]

    def save_refund(self, refund: Refund) -> None:
        self.refunds[(refund.channel, refund.key)] = refund
        self._write("refund", refund.channel, refund.key, refund)

    def save_delivery(self, delivery: Delivery) -> None:
        self.deliveries[delivery.id] = delivery
        self._write("delivery", delivery.channel, delivery.id, delivery)

    def add_attempt(self, attempt: dict[str, Any]) -> None:
        self.attempts.append(attempt)
        if self._db is not None:
            with self._lock:
                self._db.execute(
                    "INSERT INTO attempts (data) VALUES (?)",
                    (json.dumps(attempt, ensure_ascii=False),),
                )
