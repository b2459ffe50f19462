"""The runner: WordPress priorities over pluggy, isolation, filters, decisions, introspection."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from gonglun.hooks import HookCallError, Hooks, PluginManager, hookimpl


@pytest.fixture
def hooks() -> Hooks:
    return Hooks(PluginManager(), rt=SimpleNamespace(name="rt"))


def plugin(**impls: Any) -> SimpleNamespace:
    return SimpleNamespace(**impls)


def test_priorities_run_low_to_high(hooks: Hooks) -> None:
    calls: list[int] = []

    def make(p: int) -> Any:
        @hookimpl(priority=p)
        def payment_success(payment: dict[str, Any]) -> None:
            calls.append(p)

        return payment_success

    for prio in (20, 5, 10):
        hooks.pm.register(plugin(payment_success=make(prio)), f"p{prio}")
    hooks.do_action("payment_success", payment={"id": 1})
    assert calls == [5, 10, 20]


def test_ties_keep_registration_order(hooks: Hooks) -> None:
    calls: list[str] = []

    def make(tag: str) -> Any:
        @hookimpl
        def payment_success(payment: dict[str, Any]) -> None:
            calls.append(tag)

        return payment_success

    for tag in "abc":
        hooks.pm.register(plugin(payment_success=make(tag)), tag)
    hooks.do_action("payment_success", payment={})
    assert calls == ["a", "b", "c"]


def test_failing_action_is_logged_and_isolated(
    hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    @hookimpl(priority=1)
    def balance_changed(posting: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    hooks.pm.register(plugin(balance_changed=balance_changed), "bad")
    hooks.pm.register(
        plugin(balance_changed=hookimpl(specname="balance_changed", priority=2)(
            lambda posting: ran.append("second")
        )),
        "good",
    )
    with caplog.at_level(logging.ERROR, logger="gonglun.hooks"):
        hooks.do_action("balance_changed", posting={"user_id": 1})
    assert ran == ["second"]
    assert any("bad" in r.getMessage() and r.exc_info for r in caplog.records)


def test_filter_threads_value_in_priority_order(hooks: Hooks) -> None:
    @hookimpl(priority=20)
    def user_public(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "trail": [*data["trail"], "twenty"]}

    @hookimpl(priority=5)
    def user_public_early(data: dict[str, Any], user: Any) -> dict[str, Any]:
        return {**data, "trail": [*data["trail"], f"five:{user}"]}

    @hookimpl
    def user_public_keep(data: dict[str, Any]) -> None:
        return None  # None keeps the value

    hooks.pm.register(plugin(user_public=user_public), "late")
    hooks.pm.register(
        plugin(user_public=hookimpl(specname="user_public", priority=5)(user_public_early)),
        "early",
    )
    hooks.pm.register(
        plugin(user_public=hookimpl(specname="user_public")(user_public_keep)), "keep"
    )
    out = hooks.apply_filters("user_public", {"trail": []}, user="u1")
    assert out == {"trail": ["five:u1", "twenty"]}


def test_filter_failure_is_loud(hooks: Hooks) -> None:
    @hookimpl
    def user_public(data: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("bad filter")

    hooks.pm.register(plugin(user_public=user_public), "f")
    with pytest.raises(ValueError, match="bad filter"):
        hooks.apply_filters("user_public", {}, user=None)


def test_decision_first_non_none_wins(hooks: Hooks) -> None:
    asked: list[str] = []

    def make(tag: str, answer: Any, prio: int) -> Any:
        @hookimpl(priority=prio)
        def channel_config(method: str) -> Any:
            asked.append(tag)
            return answer

        return channel_config

    hooks.pm.register(plugin(channel_config=make("none", None, 1)), "a")
    hooks.pm.register(plugin(channel_config=make("yes", {"m": 1}, 2)), "b")
    hooks.pm.register(plugin(channel_config=make("never", {"m": 2}, 3)), "c")
    assert hooks.decide("channel_config", method="alipay") == {"m": 1}
    assert asked == ["none", "yes"]


def test_rt_is_injected_and_subsets_allowed(hooks: Hooks) -> None:
    seen: list[Any] = []

    @hookimpl
    def payment_closed(rt: Any, reason: str) -> None:
        seen.append((rt.name, reason))

    hooks.pm.register(plugin(payment_closed=payment_closed), "p")
    hooks.do_action("payment_closed", payment={}, reason="timeout")
    assert seen == [("rt", "timeout")]


def test_missing_argument_is_a_clear_error(hooks: Hooks) -> None:
    @hookimpl
    def channel_config(method: str) -> Any:
        return method

    hooks.pm.register(plugin(channel_config=channel_config), "p")
    with pytest.raises(HookCallError, match="method"):
        hooks.decide("channel_config")


def test_did_and_doing_action(hooks: Hooks) -> None:
    inside: list[bool] = []

    @hookimpl
    def payment_success(rt: Any) -> None:
        inside.append(hooks.doing_action("payment_success"))
        inside.append(hooks.doing_action())
        inside.append(hooks.current_hook() == "payment_success")

    hooks.pm.register(plugin(payment_success=payment_success), "p")
    assert hooks.did_action("payment_success") == 0
    hooks.do_action("payment_success", payment={})
    hooks.do_action("payment_success", payment={})
    assert hooks.did_action("payment_success") == 2
    assert inside == [True, True, True] * 2
    assert not hooks.doing_action("payment_success")


def test_add_and_remove_action(hooks: Hooks) -> None:
    calls: list[str] = []

    def first(payment: dict[str, Any]) -> None:
        calls.append("first")

    def second(payment: dict[str, Any]) -> None:
        calls.append("second")

    hooks.add_action("payment_success", second, priority=30)
    hooks.add_action("payment_success", first, priority=1)
    hooks.do_action("payment_success", payment={})
    assert calls == ["first", "second"]
    assert hooks.remove_action("payment_success", first)
    assert not hooks.remove_action("payment_success", first)
    calls.clear()
    hooks.do_action("payment_success", payment={})
    assert calls == ["second"]


def test_registration_change_invalidates_order_cache(hooks: Hooks) -> None:
    calls: list[str] = []

    def a(payment: dict[str, Any]) -> None:
        calls.append("a")

    hooks.do_action("payment_success", payment={})  # caches the empty list
    hooks.add_action("payment_success", a)
    hooks.do_action("payment_success", payment={})
    assert calls == ["a"]


def test_unknown_hook_is_refused(hooks: Hooks) -> None:
    with pytest.raises(KeyError):
        hooks.do_action("no_such_hook")


def test_trace_logs_every_call_with_timings(
    hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    hooks.trace = True

    @hookimpl(priority=7)
    def user_public(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "x": 1}

    hooks.pm.register(plugin(user_public=user_public), "tracer")
    with caplog.at_level(logging.INFO, logger="gonglun.hooks.trace"):
        assert hooks.apply_filters("user_public", {}, user=None) == {"x": 1}
        hooks.do_action("payment_success", payment={})
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("filter user_public") and "tracer:7=" in line for line in lines)
    assert any(line.startswith("action payment_success") for line in lines)


def test_defer_requires_an_action(hooks: Hooks) -> None:
    hooks.deferrer = lambda *a, **k: "k"
    with pytest.raises(ValueError):
        hooks.defer(object(), "user_public", data={})
