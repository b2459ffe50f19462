"""gonglun-hello: what a third-party plugin looks like.

Installed with pip, it is found through the ``gonglun.plugins`` entry point and can be switched
off with ``GONGLUN_PLUGINS_DISABLED=hello``. It adds a public route, shapes ``GET /v1/me`` with a
filter, and greets every user whose balance changes (a deferred action, run on a worker).
"""

from __future__ import annotations

import logging
from typing import Any

from gonglun.api import Route, ok
from gonglun.hooks import hookimpl

log = logging.getLogger(__name__)

#: Every greeting sent, so a test can see the deferred action ran (and ran once).
GREETINGS: list[dict[str, Any]] = []

#: Import-time marker: a disabled plugin must never be imported.
IMPORTED = True


class Hello:
    auth = "public"

    async def on_get(self, req: Any, resp: Any) -> None:
        """Say hello (a route added by a third-party plugin)."""
        ok(resp, {"hello": "world", "plugin": "gonglun-hello"})


@hookimpl
def register_routes(rt: Any, routes: list[Any]) -> list[Any]:
    return [*routes, Route("/v1/hello", Hello(), tags=("examples",))]


@hookimpl(priority=5)
def user_public(data: dict[str, Any]) -> dict[str, Any]:
    # Runs before priority-10 implementations: later filters see the greeting.
    return {**data, "greeting": f"你好, {data.get('nickname') or data.get('login')}"}


@hookimpl(priority=20)
def balance_changed(rt: Any, posting: dict[str, Any]) -> None:
    GREETINGS.append(posting)
    log.info("hello: user %s balance now %s", posting.get("user_id"), posting.get("balance_after"))
