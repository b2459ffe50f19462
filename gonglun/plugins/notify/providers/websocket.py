"""The websocket channel (NTF-15): a push to the user's open connections on any API process."""

from __future__ import annotations

from typing import Any

from redis import RedisError

from gonglun.plugins.notify.providers.base import (
    Outbound,
    PermanentError,
    Provider,
    TransientError,
)


class WebsocketProvider(Provider):
    channel = "websocket"
    name = "redis-pubsub"

    @classmethod
    def from_config(cls, rt: Any) -> WebsocketProvider:
        return cls()

    def send(self, rt: Any, message: Outbound) -> str:
        if message.user_id is None:
            raise PermanentError("no_user", "a websocket push needs a user")
        push = {"event": "notification", "scene": message.scene,
                "delivery_id": message.delivery_id, **message.content}
        try:
            receivers = rt.push(message.user_id, push)
        except RedisError as exc:
            raise TransientError("redis", f"{type(exc).__name__}: {exc}") from exc
        # Nobody online is not a failure: the inbox keeps the record (NTF-04).
        return f"{receivers} connection(s)"
