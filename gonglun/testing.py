"""Helpers for tests and benchmarks: throwaway databases, runtimes and an HTTP client.

A real server URL (PostgreSQL, MariaDB) names an administrative database; ``fresh_database``
creates a uniquely named database beside it and drops it afterwards, so two runs on one server
never see each other's data. SQLite gets a file in a temporary directory.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from gonglun.config import Config


def _admin_url(url: str) -> Any:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in ("mysql", "mariadb", "mysql+pymysql"):
        return parsed.set(drivername="mysql+pymysql")
    raise ValueError(f"not a server database URL: {url}")


@contextmanager
def fresh_database(url: str | None, tmp: Path) -> Iterator[str]:
    """Yield the URL of an empty database; dropped (or deleted) afterwards."""
    if not url or url.startswith("sqlite"):
        path = tmp / f"gl-{uuid.uuid4().hex[:8]}.db"
        yield f"sqlite:///{path}"
        return
    admin = _admin_url(url)
    name = f"gl_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if admin.get_backend_name() == "postgresql":
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        else:
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            if admin.get_backend_name() == "postgresql":
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        engine.dispose()


def isolated_config(database_url: str, tmp: Path, **sections: Any) -> Config:
    """A configuration isolated to one test: own data dir, Redis prefix and broker namespace."""
    tag = uuid.uuid4().hex[:10]
    data: dict[str, Any] = {
        "database": {"url": database_url},
        "redis": {"url": os.environ.get("GONGLUN_TEST_REDIS_URL", ""), "prefix": f"t{tag}:"},
        "broker": {"url": os.environ.get("GONGLUN_TEST_BROKER_URL", ""), "namespace": f"t{tag}"},
        "server": {"data_dir": str(tmp / "var"), "embedded_services": False},
        "sandbox": {"enabled": False},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return Config(data)


def cleanup_broker(rt: Any) -> None:
    """Delete the RabbitMQ queues a test runtime declared (queues outlive connections)."""
    broker = rt._broker
    if broker is None or type(broker).__name__ != "RabbitmqBroker":
        return
    from dramatiq.common import dq_name, xq_name

    try:
        channel = broker.channel
        for queue in list(broker.get_declared_queues()):
            for name in (queue, dq_name(queue), xq_name(queue)):
                channel.queue_delete(name)
    except Exception:  # the broker may be down on purpose; nothing to clean then
        return


def cleanup_redis(rt: Any) -> None:
    """Delete every key under the runtime's prefix and its Dramatiq namespace (on the broker's
    Redis too, which may be another database or server)."""
    clients = [(rt.redis, f"{rt.keys.prefix}*"), (rt.redis, f"{rt.namespace}-dramatiq*")]
    redis_broker = rt._broker is not None or rt.config.broker_url.startswith("redis")
    broker_client = getattr(rt.broker, "client", None) if redis_broker else None
    if broker_client is not None:
        clients.append((broker_client, f"{rt.namespace}-dramatiq*"))
    from redis import RedisError

    for client, pattern in clients:
        try:
            keys = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
        except RedisError:  # a test may point a broker at a server that is down on purpose
            continue


#: The staff member ``fund_wallet`` books its adjustments under (created on first use).
FUND_ADMIN = "ledger-test-admin"


def fund_wallet(rt: Any, user_id: int, amount: int, *, key: str | None = None,
                scene: str = "admin_adjust", allow_negative: bool = False) -> Any:
    """Tests and benchmarks: a staff adjustment of ``amount`` fen (negative: a debit) to a
    wallet, against ``manual`` with a note and an admin, as the ledger requires."""
    from gonglun.accounts import create_user, user_by_login
    from gonglun.ledger import MANUAL, post

    with rt.db.write() as session:
        admin = user_by_login(session, FUND_ADMIN) or create_user(
            session, FUND_ADMIN, "ledger test admin password", role="admin")
        return post(rt, session, user_id=user_id, delta=amount, scene=scene,
                    ref=f"fund:{user_id}", key=key or f"fund:{uuid.uuid4().hex}",
                    counter=MANUAL, remark="测试资金", operator_id=admin.id,
                    allow_negative=allow_negative)


def pre_ledger_commit(root: Path) -> str:
    """The commit just before the double-entry ledger replaced the single-entry one: the
    benchmarks' "before" (the parent of the commit that deleted ``gonglun/ledger/service.py``)."""
    import subprocess

    found = subprocess.run(
        ["git", "-C", str(root), "log", "-1", "--format=%H", "--diff-filter=D", "HEAD", "--",
         "gonglun/ledger/service.py"], capture_output=True, text=True, check=True).stdout.strip()
    if not found:
        raise RuntimeError("no commit removed the single-entry ledger; pass --before REF")
    return subprocess.run(["git", "-C", str(root), "rev-parse", f"{found}^"],
                          capture_output=True, text=True, check=True).stdout.strip()


def export_commit(root: Path, ref: str) -> Path:
    """The tree of ``ref`` in a new temporary directory (for running another version's code)."""
    import subprocess
    import tempfile

    where = Path(tempfile.mkdtemp(prefix="gl-before-"))
    archive = subprocess.run(["git", "-C", str(root), "archive", ref], capture_output=True,
                             check=True)
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    return where
