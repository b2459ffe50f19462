"""Dramatiq wiring: broker selection, actor and periodic-job declarations.

Actors are declared from ``ActorSpec`` items gathered through the ``register_actors`` filter,
bound to the runtime's broker when the runtime starts (never at import time), so tests and
several runtimes in one process each get their own broker. Queue names are prefixed with the
configured namespace so two deployments (or two test runs) on one broker never share work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActorSpec:
    """A job a plugin wants run on workers. ``fn(rt, *args, **kwargs)`` must be idempotent."""

    name: str
    fn: Callable[..., Any]
    queue: str = "default"
    max_retries: int = 20
    min_backoff_ms: int = 500
    max_backoff_ms: int = 300_000
    time_limit_ms: int = 600_000
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PeriodicJob:
    """Enqueue actor ``actor`` every ``every_s`` seconds (one scheduler enqueues per slot)."""

    name: str
    every_s: float
    actor: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def make_broker(url: str, *, namespace: str, redis_client: Any = None) -> dramatiq.Broker:
    """Redis or RabbitMQ by URL; ``stub://`` for tests; empty → Redis protocol on ``redis_client``.

    The embedded default passes the in-process Redis equivalent, so the very same RedisBroker
    code runs with no server.
    """
    from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, TimeLimit

    middleware = [AgeLimit(), TimeLimit(), Callbacks(), Pipelines(), Retries()]
    if url.startswith(("redis://", "rediss://", "unix://")):
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=url, namespace=f"{namespace}-dramatiq", middleware=middleware)
    if url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url, middleware=middleware)
    if url.startswith("stub://"):
        return StubBroker(middleware=middleware)
    if url:
        raise ValueError(f"unsupported broker URL: {url!r} (use redis://, amqp:// or stub://)")
    if redis_client is None:
        raise ValueError("the embedded broker needs the in-process Redis client")
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(
        client=redis_client, namespace=f"{namespace}-dramatiq", middleware=middleware
    )


def queue_name(namespace: str, queue: str) -> str:
    return f"{namespace}.{queue}"


def declare(broker: dramatiq.Broker, spec: ActorSpec, rt: Any, namespace: str) -> dramatiq.Actor:
    """Bind ``spec`` to ``broker`` with the runtime closed over."""

    def run(*args: Any, **kwargs: Any) -> None:
        # Results are not kept (no Results middleware): actors act, they don't answer.
        spec.fn(rt, *args, **kwargs)

    run.__name__ = spec.name
    run.__qualname__ = spec.name
    return dramatiq.Actor(
        run,
        broker=broker,
        actor_name=spec.name,
        queue_name=queue_name(namespace, spec.queue),
        priority=0,
        options={
            "max_retries": spec.max_retries,
            "min_backoff": spec.min_backoff_ms,
            "max_backoff": spec.max_backoff_ms,
            "time_limit": spec.time_limit_ms,
            **spec.options,
        },
    )
