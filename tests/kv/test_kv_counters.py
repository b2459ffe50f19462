"""Counters: totals and Asia/Shanghai calendar buckets across day/week/month/year edges."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis as redis_py
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gonglun.kv import Counters, CounterView, Keys, registered
from gonglun.kv.counters import TTL_S

SH = ZoneInfo("Asia/Shanghai")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def counters(redis: redis_py.Redis, keys: Keys) -> Counters:
    return Counters(redis, keys)


def test_new_year_in_shanghai_while_utc_is_still_december(counters: Counters) -> None:
    # 2024-12-31 15:30 UTC = 23:30 on 31 Dec in Shanghai; 16:30 UTC = 00:30 on 1 Jan 2025.
    counters.add("refund", 100, when=utc(2024, 12, 31, 15, 30))
    counters.add("refund", 250, when=utc(2024, 12, 31, 16, 30))
    assert counters.add("refund", 7, when=utc(2024, 12, 30, 15, 59)) == 357  # Mon 23:59 local

    view = counters.get("refund", when=utc(2024, 12, 31, 17, 0))
    assert view == CounterView(
        name="refund",
        total=357,
        today=250,
        yesterday=100,
        # 30 Dec 2024 (Monday) starts ISO week 2025-W01: the year changes, the week does not.
        this_week=357,
        last_week=0,
        this_month=250,
        last_month=107,
        this_year=250,
        last_year=107,
    )


def test_sunday_to_monday_while_utc_is_still_sunday(counters: Counters) -> None:
    counters.add("refund_alipay", 30, when=utc(2024, 7, 7, 15, 0))  # Sun 23:00 local
    counters.add("refund_alipay", 5, when=utc(2024, 7, 7, 17, 0))  # Mon 01:00 local, UTC Sunday
    view = counters.get("refund_alipay", when=utc(2024, 7, 7, 23, 0))  # Mon 07:00 local
    assert (view.today, view.yesterday) == (5, 30)
    assert (view.this_week, view.last_week) == (5, 30)
    assert (view.this_month, view.last_month, view.this_year) == (35, 0, 35)

    # A week later the Monday bucket is "last week" and the Sunday one is gone from view.
    later = counters.get("refund_alipay", when=utc(2024, 7, 14, 17, 0))  # next Mon 01:00 local
    assert (later.today, later.yesterday, later.this_week, later.last_week) == (0, 0, 0, 5)
    assert later.total == 35


def test_leap_day_to_march(counters: Counters) -> None:
    counters.add("refund_money", 1, when=utc(2024, 2, 29, 3))
    counters.add("refund_money", 2, when=utc(2024, 2, 29, 16, 1))  # 1 Mar 00:01 local
    view = counters.get("refund_money", when=utc(2024, 3, 1, 1))
    assert (view.today, view.yesterday, view.this_month, view.last_month) == (2, 1, 2, 1)
    assert (view.this_year, view.last_year) == (3, 0)


def test_naive_datetimes_are_utc(counters: Counters) -> None:
    counters.add("refund_wxpay", 9, when=datetime(2024, 12, 31, 16, 30))  # naive = UTC
    view = counters.get("refund_wxpay", when=utc(2025, 1, 1, 1))
    assert (view.today, view.this_year) == (9, 9)


def test_default_time_is_now(counters: Counters) -> None:
    counters.add("refund_now", 11)
    view = counters.get("refund_now")
    assert (view.total, view.today, view.this_week, view.this_month, view.this_year) == (11,) * 5


def test_unregistered_names_keep_totals_only(redis: redis_py.Redis, keys: Keys) -> None:
    builtin = {"refund", "refund_alipay", "refund_wxpay", "refund_money"}
    counters = Counters(redis, keys, periods_for=registered(builtin | {"refund_recharge_money"}))
    when = utc(2024, 7, 7, 4)
    counters.add("refund_tao", 500, when=when)
    counters.add("refund_recharge_money", 300, when=when)

    tao = counters.get("refund_tao", when=when)
    assert tao.total == 500 and tao.periods is False
    assert (tao.today, tao.this_week, tao.this_month, tao.this_year) == (0, 0, 0, 0)
    assert counters.get("refund_recharge_money", when=when).today == 300
    written = {k.decode() for k in redis.scan_iter(match=keys("count", "{refund_tao}") + "*")}
    assert written == {keys("count", "{refund_tao}", "total")}

    by_prefix = registered(prefixes=("refund_",))
    assert by_prefix("refund_tao") and not by_prefix("refund")


def test_period_buckets_expire_and_totals_do_not(
    redis: redis_py.Redis, keys: Keys, counters: Counters
) -> None:
    counters.add("refund", 1, when=utc(2024, 7, 7, 4))
    assert redis.ttl(keys("count", "{refund}", "total")) == -1
    for kind, bucket in [("d", "20240707"), ("w", "2024-W27"), ("m", "202407"), ("y", "2024")]:
        ttl = redis.ttl(keys("count", "{refund}", kind, bucket))
        assert TTL_S[kind] - 5 <= ttl <= TTL_S[kind]


@pytest.mark.parametrize("value", [1.5, "3", True, None])
def test_values_are_integers_only(counters: Counters, value: object) -> None:
    with pytest.raises(TypeError):
        counters.add("refund", value)  # type: ignore[arg-type]


def test_negative_corrections_and_big_fen_amounts(counters: Counters) -> None:
    when = utc(2024, 7, 7, 4)
    big = 2**62 + 1  # beyond 2^53: exact in Redis, rounded if it passed through Lua numbers
    assert counters.add("refund", big, when=when) == big
    assert counters.add("refund", -2, when=when) == big - 2
    view = counters.get("refund", when=when)
    assert view.total == view.today == view.this_year == big - 2


# -- property: every bucket equals the sum of the adds that fall in it ----------------------

START = datetime(2023, 12, 20, tzinfo=UTC)
SPAN_MIN = 60 * 24 * 60  # sixty days around two new years' edges at minute resolution


def _expected(adds: list[tuple[datetime, int]], at: datetime) -> dict[str, int]:
    q = at.astimezone(SH).date()

    def month_before(d: date) -> tuple[int, int]:
        return (d.year, d.month - 1) if d.month > 1 else (d.year - 1, 12)

    sums = dict.fromkeys(
        [
            "total",
            "today",
            "yesterday",
            "this_week",
            "last_week",
            "this_month",
            "last_month",
            "this_year",
            "last_year",
        ],
        0,
    )
    for when, value in adds:
        d = when.astimezone(SH).date()
        hits = {
            "total": True,
            "today": d == q,
            "yesterday": d == q - timedelta(days=1),
            "this_week": d.isocalendar()[:2] == q.isocalendar()[:2],
            "last_week": d.isocalendar()[:2] == (q - timedelta(weeks=1)).isocalendar()[:2],
            "this_month": (d.year, d.month) == (q.year, q.month),
            "last_month": (d.year, d.month) == month_before(q),
            "this_year": d.year == q.year,
            "last_year": d.year == q.year - 1,
        }
        for field, hit in hits.items():
            if hit:
                sums[field] += value
    return sums


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    adds=st.lists(
        st.tuples(st.integers(0, SPAN_MIN), st.integers(-10_000, 1_000_000)), max_size=25
    ),
    at_min=st.integers(0, SPAN_MIN),
)
def test_buckets_are_sums_of_their_adds(
    counters: Counters, adds: list[tuple[int, int]], at_min: int
) -> None:
    name = "p" + uuid.uuid4().hex[:12]  # one counter per example; the prefix is per test
    timed = [(START + timedelta(minutes=m), v) for m, v in adds]
    for when, value in timed:
        counters.add(name, value, when=when)
    at = START + timedelta(minutes=at_min)
    view = counters.get(name, when=at)
    got = {f: getattr(view, f) for f in _expected([], at)}
    assert got == _expected(timed, at)
