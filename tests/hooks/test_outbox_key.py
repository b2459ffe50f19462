"""An implementation run by the outbox knows the event's key (to key its own effects on it)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gonglun.hooks import hookimpl
from gonglun.hooks.deferred import current_key


def test_implementations_see_the_key_of_the_event_they_run(rt: Any) -> None:
    seen: list[str | None] = []

    @hookimpl
    def balance_changed(posting: dict[str, Any]) -> None:
        seen.append(current_key())

    rt.pm.register(SimpleNamespace(balance_changed=balance_changed), "key-spy")
    with rt.db.write() as session:
        rt.hooks.defer(session, "balance_changed", key="spy:1", posting={"user_id": 1})
    assert rt.outbox.consume("spy:1") == "done"
    rt.hooks.do_action("balance_changed", posting={"user_id": 1})  # not from the outbox
    assert seen == ["spy:1", None]
    assert current_key() is None
