"""Named integer counters with calendar breakdowns (OPS-06, BAL-09).

``add("refund_alipay", 1234)`` adds to the counter's total and to the buckets of the day, ISO
week, month and year it falls in, all in one MULTI/EXEC transaction so a reader never sees the
total move without its buckets. Periods follow the Asia/Shanghai calendar (DECISIONS.md 4): a
refund at 2024-12-31 17:00 UTC lands in January 2025's buckets, because it is already 01:00 on
1 January in Shanghai.

Values are integers only (fen, or counts); Redis ``INCRBY`` is exact on 64-bit integers, whereas
floats would drift.

Per OPS-06, counters whose name is not registered keep a total only. ``periods_for`` decides;
``registered()`` builds one from names and prefixes.

Period buckets expire on their own: each write resets the bucket's TTL to three periods, so a
bucket lives at least until the end of the following period (when it is read as "yesterday",
"last week"...) whatever moment of its own period it was last written. The TTL counts from the
moment of the write, not from ``when``: back-filled buckets for old dates also live that long.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from redis import Redis

from gonglun.kv.client import Keys

DAY_S = 86_400
#: Three periods of the longest length of each kind (see the module docstring).
TTL_S = {"d": 3 * DAY_S, "w": 3 * 7 * DAY_S, "m": 3 * 31 * DAY_S, "y": 3 * 366 * DAY_S}


@dataclass(frozen=True)
class CounterView:
    """One counter as ``get_redis_count`` returns it (OPS-06).

    ``periods`` is False for a counter that keeps a total only; its period fields are then 0.
    """

    name: str
    total: int
    today: int
    yesterday: int
    this_week: int
    last_week: int
    this_month: int
    last_month: int
    this_year: int
    last_year: int
    periods: bool = True


def registered(names: Iterable[str] = (), prefixes: Iterable[str] = ()) -> Callable[[str], bool]:
    """A ``periods_for`` that accepts exactly ``names`` and anything starting with ``prefixes``.

    For OPS-06: ``registered({"refund", "refund_alipay", "refund_wxpay", "refund_money"} |
    admin_registered_scenes)`` keeps ``refund_tao`` to a total until an admin registers it.
    """
    exact = frozenset(names)
    starts = tuple(prefixes)
    return lambda name: name in exact or (bool(starts) and name.startswith(starts))


def _all(_name: str) -> bool:
    return True


class Counters:
    """Counters under ``keys("count", "{name}", ...)``; the hash tag keeps one name's keys in one
    Redis Cluster slot so one transaction may touch them together."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        tz: str = "Asia/Shanghai",
        *,
        periods_for: Callable[[str], bool] | None = None,
    ):
        self.redis = redis
        self.keys = keys
        self.tz = ZoneInfo(tz)
        #: Whether a counter name gets period buckets; default: every name does.
        self.periods_for = periods_for or _all

    # -- key names ---------------------------------------------------------------------------

    def _key(self, name: str, *parts: object) -> str:
        if not name or "{" in name or "}" in name:
            raise ValueError(f"bad counter name {name!r}")
        return self.keys("count", "{" + name + "}", *parts)

    def _local_date(self, when: datetime | None) -> date:
        if when is None:
            when = datetime.now(UTC)
        elif when.tzinfo is None:
            # Times are stored in UTC (DECISIONS.md 4); a naive datetime is taken as UTC.
            when = when.replace(tzinfo=UTC)
        return when.astimezone(self.tz).date()

    @staticmethod
    def _week(d: date) -> str:
        year, week, _ = d.isocalendar()
        return f"{year}-W{week:02d}"

    @staticmethod
    def _prev_month(d: date) -> date:
        return (d.replace(day=1) - timedelta(days=1)).replace(day=1)

    # -- API ---------------------------------------------------------------------------------

    def add(self, name: str, value: int, when: datetime | None = None) -> int:
        """Add ``value`` to ``name`` at ``when`` (default now); returns the new total."""
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"counter values are integers (fen), got {type(value).__name__}")
        # MULTI/EXEC rather than Lua: a script would see INCRBY's reply as a Lua double and
        # round totals above 2^53; the transaction hands back Redis's exact integers.
        pipe = self.redis.pipeline(transaction=True)
        pipe.incrby(self._key(name, "total"), value)
        if self.periods_for(name):
            d = self._local_date(when)
            for kind, bucket in [
                ("d", d.strftime("%Y%m%d")),
                ("w", self._week(d)),
                ("m", d.strftime("%Y%m")),
                ("y", d.year),
            ]:
                key = self._key(name, kind, bucket)
                pipe.incrby(key, value)
                pipe.expire(key, TTL_S[kind])
        return int(pipe.execute()[0])

    def get(self, name: str, when: datetime | None = None) -> CounterView:
        """Read ``name`` as seen at ``when`` (default now): total and current/previous periods."""
        if not self.periods_for(name):
            total = self.redis.get(self._key(name, "total"))
            return CounterView(name, int(total or 0), 0, 0, 0, 0, 0, 0, 0, 0, periods=False)
        d = self._local_date(when)
        prev_m = self._prev_month(d)
        names = [
            self._key(name, "total"),
            self._key(name, "d", d.strftime("%Y%m%d")),
            self._key(name, "d", (d - timedelta(days=1)).strftime("%Y%m%d")),
            self._key(name, "w", self._week(d)),
            self._key(name, "w", self._week(d - timedelta(days=7))),
            self._key(name, "m", d.strftime("%Y%m")),
            self._key(name, "m", prev_m.strftime("%Y%m")),
            self._key(name, "y", d.year),
            self._key(name, "y", d.year - 1),
        ]
        values = [int(v or 0) for v in self.redis.mget(names)]
        return CounterView(name, *values)
