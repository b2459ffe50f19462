"""Account fixtures: a runtime on a fresh database with the core tables, cheap Argon2.

Same databases as tests/ledger: SQLite, or PostgreSQL with GONGLUN_TEST_DATABASE_URL, plus
MariaDB with GONGLUN_TEST_MARIADB_URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from gonglun.accounts import passwords
from gonglun.hooks import PluginManager
from gonglun.testing import cleanup_redis, fresh_database, isolated_config

SERVERS: dict[str, str | None] = {"main": os.environ.get("GONGLUN_TEST_DATABASE_URL") or None}
if os.environ.get("GONGLUN_TEST_MARIADB_URL"):
    SERVERS["mariadb"] = os.environ["GONGLUN_TEST_MARIADB_URL"]

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def schema(rt: Any) -> None:
    from gonglun.migrate import upgrade

    upgrade(rt)


@pytest.fixture(autouse=True)
def cheap_passwords() -> Iterator[None]:
    old = passwords.use(CHEAP)
    yield
    passwords.use(old)


@pytest.fixture(params=sorted(SERVERS))
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    from gonglun.runtime import Runtime

    with fresh_database(SERVERS[request.param], tmp_path) as url:
        runtime = Runtime(isolated_config(url, tmp_path), pm=PluginManager())
        schema(runtime)
        yield runtime
        cleanup_redis(runtime)
        runtime.close()


# -- a live deployment shared by the HTTP tests (one per test session: fast) -----------------

PROVINCES = {"1.0.1.0/24": "广东", "1.0.2.0/24": "北京", "1.0.3.0/24": "上海"}
GD, BJ, SH = "1.0.1.7", "1.0.2.7", "1.0.3.7"


def write_ip_db(path: Path) -> Path:
    """A small MaxMind-format database of three provinces (GeoIP2-City shaped records)."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=4, database_type="GeoIP2-City")
    for network, name in PROVINCES.items():
        writer.insert_network(IPSet([network]), {
            "country": {"iso_code": "CN"}, "subdivisions": [{"names": {"zh-CN": name}}]})
    writer.to_db_file(str(path))
    return path


class Live:
    """The API over real HTTP, the gateway sandbox (Tencent Cloud SMS, WeChat) beside it."""

    def __init__(self, rt: Any, base: str, sandbox_url: str, keyset: dict[str, Any],
                 sandbox: Any) -> None:
        import httpx

        self.rt, self.keyset, self.sandbox = rt, keyset, sandbox
        self.http = httpx.Client(base_url=base, timeout=30, trust_env=False)
        self.sb = httpx.Client(base_url=sandbox_url, timeout=30, trust_env=False)
        self._phones = iter(range(10_000))
        self.offset_s = 0.0

    def advance(self, seconds: float) -> None:
        """Move the code clock on (send intervals) without sleeping."""
        import datetime as dt

        from gonglun.db import utcnow

        self.offset_s += seconds
        offset = dt.timedelta(seconds=self.offset_s)
        self.rt.notify_clock = lambda: utcnow() + offset

    def appid(self, platform: str) -> str:
        if platform == "mp":
            return str(self.keyset["wechat"]["appid"])
        return str(self.keyset["wechat_login"][platform]["appid"])

    def phone(self) -> str:
        import os

        return f"139{os.getpid() % 1000:03d}{next(self._phones):05d}"

    def wechat_code(self, platform: str, openid: str, unionid: str | None = None,
                    nickname: str = "微信用户", avatar: str = "https://img.example/a.png") -> str:
        """Play the WeChat user: the code WeChat's redirect would carry."""
        spec = {"appid": self.appid(platform), "openid": openid, "nickname": nickname,
                "avatar": avatar}
        if unionid:
            spec["unionid"] = unionid
        answer = self.sb.post("/sandbox/wechat/oauth/codes", json=spec)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["data"]["code"])

    def sms(self, phone: str, scene: str) -> str:
        """Send a code through the API and read it where the SMS vendor received it."""
        self.advance(61)  # past the send interval of the phone's previous code
        answer = self.http.post("/v1/codes", json={"to": phone, "scene": scene})
        assert answer.status_code == 201, answer.text
        calls = self.sb.get("/sandbox/tencentcloud/requests", params={"action": "SendSms"})
        mine = [c for c in calls.json()["data"]
                if c["request"]["PhoneNumberSet"] == [f"+86{phone}"]]
        return str(mine[-1]["request"]["TemplateParamSet"][0])

    def counts(self) -> dict[str, int]:
        """Rows of every account table: a refusal must leave them all as they were."""
        from sqlalchemy import func, select

        from gonglun.accounts.models import ApiToken, User, UserMeta, WechatBinding

        with self.rt.db.read() as session:
            return {m.__tablename__: int(session.scalar(select(func.count()).select_from(m)))
                    for m in (User, UserMeta, ApiToken, WechatBinding)}

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from gonglun.api import create_app
    from gonglun.migrate import upgrade
    from gonglun.runtime import Runtime
    from gonglun.sandbox.testing import UvicornThread, running_sandbox

    tmp = tmp_path_factory.mktemp("accounts_live")
    old = passwords.use(CHEAP)
    keys = tmp / "sandbox"
    with running_sandbox(keys) as (sandbox_url, sandbox, keyset), \
            fresh_database(os.environ.get("GONGLUN_TEST_DATABASE_URL"), tmp) as url:
        gateway = {"keyset": str(keys / "sandbox.json"), "gateway_url": sandbox_url}
        config = isolated_config(
            url, tmp,
            notify={**gateway, "code_key": "a test key that is long enough",
                    "code_ip_limit": 100_000},
            accounts={**gateway, "ticket_key": "another test key, long enough",
                      "register_limit": 100_000, "ip_db": str(write_ip_db(tmp / "ip.mmdb"))},
            server={"trusted_proxies": ["127.0.0.1/32"]})
        rt = Runtime(config)
        upgrade(rt)
        server = UvicornThread(create_app(rt=rt))
        live = Live(rt, server.start(), sandbox_url, keyset, sandbox)
        try:
            yield live
        finally:
            live.http.close()
            live.sb.close()
            server.stop()
            cleanup_redis(rt)
            rt.close()
            passwords.use(old)


@pytest.fixture
def worker(live: Live) -> Iterator[None]:
    """A Dramatiq worker for one test: deferred events (notify scenes) are delivered."""
    import dramatiq

    running = dramatiq.Worker(live.rt.broker, worker_threads=2, worker_timeout=100)
    running.start()
    try:
        yield
    finally:
        running.stop()
