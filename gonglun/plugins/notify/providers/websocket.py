"""The websocket channel (NTF-15): a push to the user's open connections on any API process."""

from __future__ import annotations

from typing import Any

from redis import RedisError

from gonglun.plugins.notify.providers.base import Outbound, Provider, TransientError


class WebsocketProvider(Provider):
    channel = "websocket"
    name = "redis-pubsub"

    def send(self, rt: Any, message: Outbound) -> str:
        user_id = self.recipient(message)
        push = {"event": "notification", "scene": message.scene,
                "delivery_id": message.delivery_id, **message.content}
        try:
            receivers = rt.push(user_id, push)
        except RedisError as exc:
            raise TransientError("redis", f"{type(exc).__name__}: {exc}") from exc
        # Nobody online is not a failure: the inbox keeps the record (NTF-04).
        return f"{receivers} connection(s)"
