"""Rate limits: exact counts per window, blocks, edges of windows, and Redis being down."""

from __future__ import annotations

import math

import pytest
import redis as redis_py
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gonglun.kv import Decision, Keys, RateLimited, RateLimiter, make_redis


class FakeClock:
    """A settable time source for the rate limiter (its windows follow the caller's clock)."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def at_window(clock: FakeClock, window_s: float, fraction: float = 0.0) -> None:
    """Move the clock to ``fraction`` of the way into the next window (windows are aligned)."""
    start = (math.floor(clock.now / window_s) + 1) * window_s
    clock.now = start + fraction * window_s


@pytest.fixture(params=["fixed", "sliding", "log"])
def limiter(
    request: pytest.FixtureRequest, redis: redis_py.Redis, keys: Keys, clock: FakeClock
) -> RateLimiter:
    return RateLimiter(redis, keys, algorithm=request.param, clock=clock)


def test_allows_exactly_the_limit_then_recovers(limiter: RateLimiter, clock: FakeClock) -> None:
    at_window(clock, 60)
    got = [limiter.hit("refund_query:u1", 5, 60) for _ in range(5)]
    assert [d.allowed for d in got] == [True] * 5
    assert [d.remaining for d in got] == [4, 3, 2, 1, 0]

    refused = limiter.hit("refund_query:u1", 5, 60)
    assert refused == Decision(False, 0, refused.retry_after_s)
    assert refused.retry_after_s > 0
    assert limiter.hit("refund_query:u2", 5, 60).allowed  # other keys are not affected

    # Two windows later everything has aged out, for both algorithms.
    clock.advance(120)
    assert [limiter.hit("refund_query:u1", 5, 60).allowed for _ in range(6)] == [True] * 5 + [False]


def test_retry_after_is_exact_to_the_millisecond(limiter: RateLimiter, clock: FakeClock) -> None:
    at_window(clock, 5, 0.3)
    assert limiter.hit("payment_query:10.0.0.1", 1, 5).allowed
    refused = limiter.hit("payment_query:10.0.0.1", 1, 5)
    assert not refused.allowed
    clock.advance(refused.retry_after_s - 0.001)
    assert not limiter.hit("payment_query:10.0.0.1", 1, 5).allowed
    clock.advance(0.001)
    assert limiter.hit("payment_query:10.0.0.1", 1, 5).allowed


def test_fixed_window_allows_a_double_burst_across_the_edge(
    redis: redis_py.Redis, keys: Keys, clock: FakeClock
) -> None:
    fixed = RateLimiter(redis, keys, algorithm="fixed", clock=clock)
    at_window(clock, 60, 0.99)
    assert all(fixed.hit("k", 10, 60).allowed for _ in range(10))
    clock.advance(1.2)  # 0.2 s into the next window
    assert all(fixed.hit("k", 10, 60).allowed for _ in range(10))  # 20 in 1.2 s


def test_sliding_window_weighs_the_previous_window_at_the_edge(
    redis: redis_py.Redis, keys: Keys, clock: FakeClock
) -> None:
    sliding = RateLimiter(redis, keys, algorithm="sliding", clock=clock)
    at_window(clock, 60, 0.9)
    assert all(sliding.hit("k", 10, 60).allowed for _ in range(10))

    at_window(clock, 60, 0.1)  # previous window weighs 90%: estimate 9 of 10
    first = sliding.hit("k", 10, 60)
    assert first.allowed and first.remaining == 0
    refused = sliding.hit("k", 10, 60)
    assert not refused.allowed
    # Estimate 10 * (1 - f) + 1 + 1 <= 10 needs f >= 0.2: 6 s after the 6 s now elapsed.
    assert refused.retry_after_s == pytest.approx(6.0)

    at_window(clock, 60, 0.5)
    clock.advance(-60)  # back to the middle of the same window: weight 50%
    decisions = [sliding.hit("k", 10, 60) for _ in range(5)]
    # 10 * 0.5 + 1 (earlier) = 6 used: 4 more fit.
    assert [d.allowed for d in decisions] == [True] * 4 + [False]


def test_block_after_exceeding_refund_query(limiter: RateLimiter, clock: FakeClock) -> None:
    # SEC-06: 5 per minute, then a 5-minute block.
    at_window(clock, 60)
    for _ in range(5):
        assert limiter.hit("refund_query:u9", 5, 60, block_s=300).allowed
    sixth = limiter.hit("refund_query:u9", 5, 60, block_s=300)
    assert (sixth.allowed, sixth.blocked, sixth.retry_after_s) == (False, True, 300.0)

    clock.advance(120)  # the window has long passed, the block has not
    still = limiter.hit("refund_query:u9", 5, 60, block_s=300)
    assert (still.allowed, still.blocked, still.retry_after_s) == (False, True, 180.0)

    clock.advance(180)
    assert limiter.hit("refund_query:u9", 5, 60, block_s=300).allowed


def test_face_check_rules_compose(redis: redis_py.Redis, keys: Keys, clock: FakeClock) -> None:
    # SEC-06: the 10th face check within 5 minutes locks the IP for 300 s, and at least 5 s
    # must pass between requests. Two rules on one key count separately. The sliding log is
    # exact, so "5 s apart" means exactly that (a sliding counter would want 10 s here).
    limiter = RateLimiter(redis, keys, algorithm="log", fail_open=False, clock=clock)

    def face_check() -> bool:
        spacing = limiter.hit("idcard_face:10.0.0.2", 1, 5)
        return spacing.allowed and limiter.hit("idcard_face:10.0.0.2", 9, 300, block_s=300).allowed

    at_window(clock, 300)
    assert face_check()
    assert not face_check()  # too soon
    results = []
    for _ in range(9):
        clock.advance(5)
        results.append(face_check())
    assert results == [True] * 8 + [False]  # the 10th within 5 minutes is refused and locks
    clock.advance(5)
    assert not face_check()
    clock.advance(300)
    assert face_check()


def test_sliding_counter_is_pessimistic_for_minimum_spacing(
    redis: redis_py.Redis, keys: Keys, clock: FakeClock
) -> None:
    sliding = RateLimiter(redis, keys, algorithm="sliding", clock=clock)
    at_window(clock, 5)
    assert sliding.hit("k", 1, 5).allowed
    clock.advance(5)  # the hit counts in full as "previous" at the next window's start
    refused = sliding.hit("k", 1, 5)
    assert not refused.allowed and refused.retry_after_s == 5


def test_sliding_log_is_exact(redis: redis_py.Redis, keys: Keys, clock: FakeClock) -> None:
    log = RateLimiter(redis, keys, algorithm="log", clock=clock)
    clock.now = 1_700_000_000.25
    for _ in range(3):
        assert log.hit("k", 3, 10).allowed
        clock.advance(1)
    refused = log.hit("k", 3, 10)  # hits at 0, 1, 2 s; now 3 s: the first ages out at 10 s
    assert (refused.allowed, refused.retry_after_s) == (False, 7.0)
    clock.advance(7)
    assert log.hit("k", 3, 10, cost=1).remaining == 0
    with pytest.raises(ValueError):
        log.hit("k", 3, 10, cost=4)
    clock.advance(2)  # hits at 1, 2 aged out; 10 remains
    assert log.hit("k", 3, 10, cost=2).remaining == 0


def test_reset_lifts_a_block(limiter: RateLimiter, clock: FakeClock) -> None:
    at_window(clock, 60)
    limiter.hit("k", 1, 60, block_s=300)
    assert limiter.hit("k", 1, 60, block_s=300).blocked
    limiter.reset("k", 60)
    assert limiter.hit("k", 1, 60, block_s=300).allowed


def test_require_raises_429_with_retry_after(limiter: RateLimiter, clock: FakeClock) -> None:
    at_window(clock, 5, 0.5)
    limiter.require("payment_query:1.2.3.4", 1, 5)
    with pytest.raises(RateLimited) as refused:
        limiter.require("payment_query:1.2.3.4", 1, 5, msg="查询过于频繁")
    assert refused.value.status == 429
    # Rounded up: fixed waits for the window end (2.5 s), the log for the hit to age (5 s),
    # the counter until its window weighs nothing as "previous" (7.5 s).
    expected = {"fixed": "3", "log": "5", "sliding": "8"}[limiter.algorithm]
    assert refused.value.headers == {"Retry-After": expected}
    assert refused.value.to_dict()["msg"] == "查询过于频繁"


def test_cost_and_arguments_are_checked(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError):
        limiter.hit("k", 5, 60, cost=6)
    with pytest.raises(ValueError):
        limiter.hit("k", 0, 60)
    with pytest.raises(ValueError):
        limiter.hit("k", 5, 0)


def test_redis_down_fails_open_or_closed_as_configured(keys: Keys) -> None:
    # Nothing listens on port 1: connection refused, a real outage as the client sees it.
    down = make_redis("redis://127.0.0.1:1/0")
    try:
        open_ = RateLimiter(down, keys)
        d = open_.hit("payment_query:1.2.3.4", 1, 5)
        assert (d.allowed, d.degraded) == (True, True)
        assert not open_.hit("sms:13800000000", 1, 60, fail_open=False).allowed

        closed = RateLimiter(down, keys, fail_open=False)
        d = closed.hit("sms:13800000000", 1, 60)
        assert (d.allowed, d.degraded, d.retry_after_s) == (False, True, 60)
    finally:
        down.close()


# -- property: retry_after_s is both sufficient and necessary ------------------------------


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    limit=st.integers(1, 6),
    window_ms=st.sampled_from([1000, 5000, 60000]),
    cost=st.integers(1, 3),
    gaps=st.lists(st.integers(0, 40000), min_size=1, max_size=25),
)
def test_retry_after_is_the_earliest_moment_a_refused_hit_fits(
    limiter: RateLimiter,
    clock: FakeClock,
    limit: int,
    window_ms: int,
    cost: int,
    gaps: list[int],
) -> None:
    """Refused hits change nothing, so probing just before and at retry_after is safe."""
    cost = min(cost, limit)
    now_ms = round(clock.now * 1000) + 100_000_000  # a fresh stretch of time per example
    key = f"prop:{now_ms}"
    window_s = window_ms / 1000

    def hit_at(ms: int) -> Decision:
        clock.now = ms / 1000
        return limiter.hit(key, limit, window_s, cost=cost)

    for gap in gaps:
        now_ms += gap
        decision = hit_at(now_ms)
        if decision.allowed:
            continue
        wait_ms = round(decision.retry_after_s * 1000)
        assert wait_ms > 0
        assert not hit_at(now_ms + wait_ms - 1).allowed
        now_ms += wait_ms
        assert hit_at(now_ms).allowed
