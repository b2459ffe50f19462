"""The Runtime: one object holding configuration, database, Redis, plugins, hooks and broker.

Every hook implementation receives it as ``rt``; every process (API, worker, scheduler, CLI)
builds exactly one. Nothing connects until first use, so building a Runtime for
``gonglun plugins list`` costs nothing.
"""

from __future__ import annotations

import importlib
import json
import logging
from typing import Any

import dramatiq
from sqlalchemy import event

from gonglun.config import Config
from gonglun.db import Database
from gonglun.hooks import Hooks, PluginManager
from gonglun.hooks.deferred import ACTOR as DEFERRED_ACTOR
from gonglun.hooks.deferred import BATCH_ACTOR as DEFERRED_BATCH
from gonglun.hooks.deferred import Outbox
from gonglun.kv import Keys, make_async_redis, make_redis
from gonglun.tasks import ActorSpec, PeriodicJob, declare, make_broker

log = logging.getLogger(__name__)

#: Modules whose import declares the core's tables (plugins add theirs via register_models).
CORE_MODELS = ("gonglun.hooks.deferred", "gonglun.accounts.models", "gonglun.ledger.models",
               "gonglun.idempotency", "gonglun.accounts.admin", "gonglun.scheduler")


def _worker_beat(rt: Any) -> None:
    from gonglun.heartbeat import beat

    beat(rt, "worker")


def _prune_keys(rt: Any) -> None:
    from gonglun.idempotency import prune

    prune(rt, float(rt.config.get("idempotency.keep_h")))


class Runtime:
    def __init__(
        self,
        config: Config | None = None,
        *,
        pm: PluginManager | None = None,
        entry_points: bool = True,
    ):
        self.config = config or Config.load()
        if pm is None:
            pm = PluginManager()
            pm.load(self.config.disabled_plugins, entry_points=entry_points)
        self.pm = pm
        self.hooks = Hooks(pm, self, trace=bool(self.config.get("hooks.trace")))
        from gonglun.settings import check, schema

        declared = schema(self.hooks)
        check(self.config.given, declared)
        self.config.defaults = {p: s.default for p, s in declared.items()}
        self.db = Database(
            self.config.database_url,
            echo=bool(self.config.get("database.echo")),
            pool_size=int(self.config.get("database.pool_size")),
            pre_ping=bool(self.config.get("database.pre_ping", False)),
        )
        self.redis = make_redis(self.config.redis_url)
        self.keys = Keys(str(self.config.get("redis.prefix", "gl:")))
        self.namespace = self.config.broker_namespace
        self.outbox = Outbox(self)
        self.hooks.deferrer = self.outbox.defer
        event.listen(self.db.session_factory, "after_commit", self.outbox.after_commit)
        event.listen(self.db.session_factory, "after_soft_rollback", self._after_rollback)
        from gonglun.accounts.signout import SignOutNotices

        SignOutNotices(self).listen(self.db.session_factory)
        self._broker: dramatiq.Broker | None = None
        self._actors: dict[str, dramatiq.Actor] = {}
        self._async_redis: Any = None
        for module in self.model_modules():
            importlib.import_module(module)

    def _after_rollback(self, session: Any, previous: Any) -> None:
        if previous.nested:  # a savepoint: the enclosing transaction's keys still stand
            return
        self.outbox.after_rollback(session)

    # -- plugins' contributions --------------------------------------------------------------

    def model_modules(self) -> list[str]:
        return self.hooks.apply_filters("register_models", list(CORE_MODELS))

    def actor_specs(self) -> list[ActorSpec]:
        core = [
            ActorSpec(DEFERRED_ACTOR, lambda rt, key: rt.outbox.consume(key), queue="deferred"),
            ActorSpec(DEFERRED_BATCH, lambda rt, keys: rt.outbox.consume_many(keys),
                      queue="deferred"),
            ActorSpec("gonglun.outbox_sweep", lambda rt: rt.outbox.sweep(), max_retries=0),
            ActorSpec("gonglun.heartbeat", _worker_beat, max_retries=0),
            ActorSpec("gonglun.idempotency_prune", _prune_keys, max_retries=0),
        ]
        return self.hooks.apply_filters("register_actors", core)

    def periodic_jobs(self) -> list[PeriodicJob]:
        every = float(self.config.get("outbox.sweep_s", 5))
        beat = float(self.config.get("health.worker_beat_s", 15))
        core = [PeriodicJob("outbox_sweep", every, "gonglun.outbox_sweep"),
                PeriodicJob("heartbeat", beat, "gonglun.heartbeat"),
                PeriodicJob("idempotency_prune", 3600.0, "gonglun.idempotency_prune")]
        return self.hooks.apply_filters("register_periodic_jobs", core)

    # -- broker and actors -------------------------------------------------------------------

    @property
    def broker(self) -> dramatiq.Broker:
        if self._broker is None:
            url = self.config.broker_url
            self._broker = make_broker(
                url, namespace=self.namespace, redis_client=None if url else self.redis
            )
            for spec in self.actor_specs():
                self._actors[spec.name] = declare(self._broker, spec, self, self.namespace)
        return self._broker

    def actor(self, name: str) -> dramatiq.Actor:
        self.broker  # noqa: B018 - declares actors on first use
        try:
            return self._actors[name]
        except KeyError:
            raise KeyError(f"unknown actor {name!r}") from None

    @property
    def actor_names(self) -> list[str]:
        self.broker  # noqa: B018
        return sorted(self._actors)

    # -- start-up ----------------------------------------------------------------------------

    def startup_problems(self) -> list[str]:
        """What the operator must fix or know, from every plugin; logged once per runtime."""
        problems: list[str] = self.hooks.apply_filters("startup_checks", [])
        if not self.__dict__.get("_startup_logged"):
            self._startup_logged = True
            for line in problems:
                log.warning("start-up check: %s", line)
        return problems

    # -- push --------------------------------------------------------------------------------

    def push_channel(self, user_id: int) -> str:
        return self.keys("push", user_id)

    def push(self, user_id: int, message: dict[str, Any]) -> int:
        """Publish a websocket message to every connection of ``user_id`` (any API process)."""
        message = self.hooks.apply_filters("client_event", message, user_id=user_id)
        return int(self.redis.publish(self.push_channel(user_id), json.dumps(message)))

    @property
    def async_redis(self) -> Any:
        if self._async_redis is None:
            self._async_redis = make_async_redis(self.config.redis_url)
        return self._async_redis

    def close(self) -> None:
        if self._broker is not None:
            try:
                self._broker.close()
            except Exception:
                log.debug("broker close failed", exc_info=True)
        self.db.dispose()
        try:
            self.redis.close()
        except Exception:
            log.debug("redis close failed", exc_info=True)
