"""Redis clients for a URL, or for the process's in-process server when the URL is empty."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

_servers: dict[str, Any] = {}
_servers_lock = threading.Lock()


def embedded_server(name: str = "default") -> Any:
    """The in-process Redis equivalent shared by every client of this process under ``name``."""
    import fakeredis

    with _servers_lock:
        server = _servers.get(name)
        if server is None:
            server = _servers[name] = fakeredis.FakeServer()
        return server


def make_redis(url: str, *, server_name: str = "default") -> redis.Redis:
    """A synchronous client: real Redis for ``redis://`` URLs, in-process otherwise."""
    if url:
        return redis.Redis.from_url(url, health_check_interval=30)
    import fakeredis

    return fakeredis.FakeRedis(server=embedded_server(server_name))


def make_async_redis(url: str, *, server_name: str = "default") -> redis.asyncio.Redis:
    """An asyncio client on the same server as ``make_redis`` (websocket push uses it)."""
    if url:
        return redis.asyncio.Redis.from_url(url)
    import fakeredis

    return fakeredis.FakeAsyncRedis(server=embedded_server(server_name))


@dataclass(frozen=True)
class Keys:
    """Key names under the configured prefix, so deployments and test runs never collide.

    Keys of one business record share a ``{hash tag}`` so Lua scripts touching them stay
    valid on Redis Cluster.
    """

    prefix: str

    def __call__(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)
