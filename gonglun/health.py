"""The core's own health checks (database, Redis, broker, the scheduler's and workers'
heartbeats): ``GET /v1/health`` answers them through the ``health`` hook, ``gonglun doctor``
probes the broker with them."""

from __future__ import annotations

from typing import Any


class StorageProblem(Exception):
    """The database check's failure, named as the API names it (``storage.read_only``...)."""


def health_checks(rt: Any, checks: dict[str, Any]) -> dict[str, Any]:
    """The core's own health checks: database, Redis, broker."""

    def probe(name: str, fn: Any) -> None:
        try:
            detail = fn()
            checks[name] = {"ok": True, **(detail or {})}
        except Exception as exc:
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}

    def db() -> dict[str, Any]:
        from gonglun.storage import classify, write_probe

        try:  # a full or read-only database still answers SELECT 1: prove it takes writes
            write_probe(rt)
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            raise StorageProblem(f"{failure.error_id}: {failure.detail}") from exc
        return {"dialect": rt.db.dialect, "writable": True}

    def redis() -> dict[str, Any]:
        rt.redis.ping()
        return {"embedded": not rt.config.redis_url}

    def broker() -> dict[str, Any]:
        b = rt.broker
        client = getattr(b, "client", None)
        if client is not None:
            client.ping()
        elif hasattr(b, "connection"):
            b.connection  # noqa: B018 - opens (or reuses) the AMQP connection
        return {"type": type(b).__name__}

    probe("database", db)
    probe("redis", redis)
    probe("broker", broker)
    try:
        from gonglun.heartbeat import heartbeats

        checks.update(heartbeats(rt))
    except Exception as exc:  # Redis down: already reported by its own probe
        for role in ("scheduler", "worker"):
            checks[role] = {"ok": False, "error": f"heartbeat unreadable: {type(exc).__name__}"}
    return checks
