"""The API edge: bad input is a clear 4xx, limits hold, details stay private, the sandbox and
test keys fail closed. Through the ASGI app (Falcon's test client) on the runtime under test."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from falcon import testing

from gonglun.api import create_app
from gonglun.config import Config
from tests.api.test_core_api import assert_error, auth, make_user

PAY = {"scene": "recharge_money", "amount": 100, "method": "wxpay", "channel": "native"}


# -- the sandbox and test keys fail closed ---------------------------------------------------


def test_embedded_default_is_the_only_place_the_sandbox_turns_itself_on(tmp_path: Any) -> None:
    absent = str(tmp_path / "absent.toml")
    nothing = Config.load(environ={"GONGLUN_CONFIG": absent})
    assert nothing.embedded_default and nothing.sandbox_enabled and not nothing.sandbox_explicit
    for name, value in (("GONGLUN_DATABASE_URL", "sqlite:////tmp/x.db"),
                        ("GONGLUN_REDIS_URL", "redis://127.0.0.1:6379/0"),
                        ("GONGLUN_BROKER_URL", "redis://127.0.0.1:6379/1")):
        named = Config.load(environ={"GONGLUN_CONFIG": absent, name: value})
        assert not named.sandbox_enabled, name
    staging = Config.load(environ={"GONGLUN_CONFIG": absent, "GONGLUN_SANDBOX__ENABLED": "true",
                                   "GONGLUN_DATABASE_URL": "sqlite:////tmp/x.db"})
    assert staging.sandbox_enabled and staging.sandbox_explicit
    off = Config.load(environ={"GONGLUN_CONFIG": absent, "GONGLUN_SANDBOX__ENABLED": "false"})
    assert not off.sandbox_enabled


def test_production_shaped_config_has_no_sandbox_and_no_test_keys(make_rt: Any) -> None:
    """A database named, no broker, a leftover keyset in the data folder: no sandbox route,
    the keyset is not trusted, the channels say why they are unavailable."""
    from gonglun.sandbox import init_keyset

    rt = make_rt(sandbox={"enabled": None})
    init_keyset(rt.config.data_dir / "sandbox")
    client = testing.TestClient(create_app(rt=rt))
    _, token = make_user(rt)
    for path in ("/sandbox/alipay/trades/20261130000000000001/pay",
                 "/sandbox/wxpay/transactions/20261130000000000001/pay", "/sandbox/info"):
        assert_error(client.simulate_post(path, json={"total": 100}), 404, "route.not_found")
    assert client.simulate_get("/gateway.do").status_code == 404
    assert client.simulate_get("/v3/certificates").status_code == 404
    refused = client.simulate_post("/v1/payments", headers=auth(token), json=PAY)
    assert_error(refused, 503, "payment.channel_unavailable")
    problems = rt.startup_problems()
    assert any("wxpay unavailable" in p and "no keys" in p for p in problems), problems
    health = client.simulate_get("/v1/health").json["data"]
    assert "sandbox" not in health
    # A forged notification signed with the leftover sandbox keys is not trusted either.
    note = client.simulate_post("/v1/notify/alipay", body="out_trade_no=1&sign=x",
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert note.text == "fail"


def test_staging_sandbox_says_loudly_that_payments_are_simulated(make_rt: Any,
                                                                  tmp_path: Any) -> None:
    rt = make_rt(sandbox={"enabled": True, "dir": str(tmp_path / "keys")})
    client = testing.TestClient(create_app(rt=rt))
    health = client.simulate_get("/v1/health").json["data"]
    assert health["sandbox"]["simulated_payments"] is True
    assert "SIMULATED" in health["sandbox"]["warning"]
    assert any("SIMULATED" in p for p in rt.startup_problems())
    assert client.simulate_get("/sandbox/info").status_code == 200


def test_relative_paths_do_not_depend_on_the_working_directory(tmp_path: Any,
                                                               monkeypatch: Any) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    env = {"GONGLUN_CONFIG": ""}
    config = Config.load(environ=env, home=project)
    assert config.data_dir == project.resolve() / "var"
    assert config.database_url == f"sqlite:///{project.resolve() / 'var' / 'gonglun.db'}"
    (project / "gonglun.toml").write_text('[server]\ndata_dir = "data"\n'
                                          '[payment]\nkeyset = "keys/sandbox.json"\n')
    config = Config.load(environ=env, home=project)
    assert config.data_dir == project.resolve() / "data"
    assert config.get("payment.keyset") == str(project.resolve() / "keys" / "sandbox.json")
    assert Config.load(environ={"GONGLUN_HOME": str(project)}).data_dir == (
        project.resolve() / "data")


# -- bad input is a clear 4xx and changes nothing ---------------------------------------------


@pytest.mark.parametrize(("body", "status", "error"), [
    ({**PAY, "amount": 2**70}, 400, "request.out_of_range"),
    ({**PAY, "amount": 10**30}, 400, "request.out_of_range"),
    ({**PAY, "scene": "tao", "seller_id": 2**64}, 400, "request.out_of_range"),
    ({**PAY, "amount": 1.5}, 400, "request.invalid_type"),
    ({**PAY, "amount": "100"}, 400, "request.invalid_type"),
    ({**PAY, "amount": True}, 400, "request.invalid_type"),
    ({**PAY, "title": "a\x00b"}, 400, "request.invalid_characters"),
    ({**PAY, "title": "line\nbreak"}, 400, "request.invalid_characters"),
    ({**PAY, "scene": "recharge\x00money"}, 400, "request.invalid_characters"),
    ({**PAY, "openid": "ö-not-ascii"}, 400, "request.invalid_characters"),
    ({**PAY, "title": "x" * 129}, 400, "request.too_long"),
    ({**PAY, "user_id": 5}, 400, "payment.user_id_not_allowed"),
])
def test_bad_order_bodies(rt: Any, client: Any, body: dict, status: int, error: str) -> None:
    _, token = make_user(rt)
    assert_error(client.simulate_post("/v1/payments", headers=auth(token), json=body), status,
                 error)
    with rt.db.read() as session:
        from sqlalchemy import func, select

        from gonglun.plugins.payment.models import Payment

        assert session.scalar(select(func.count()).select_from(Payment)) == 0


@pytest.mark.parametrize(("raw", "error"), [
    (b"[" * 100_000, "request.invalid_json"),
    (b'{"a":' * 40 + b"1" + b"}" * 40, "request.too_deep"),
    (b"\xff\xfe{}", "request.invalid_json"),
    (b"[1, 2]", "request.invalid_json"),
    (b'{"login": "a", ', "request.invalid_json"),
])
def test_malformed_json_is_a_400(client: Any, raw: bytes, error: str) -> None:
    result = client.simulate_post("/v1/sessions", body=raw,
                                  headers={"Content-Type": "application/json"})
    assert_error(result, 400, error)


@pytest.mark.parametrize("ref", ["²³", "١٢٣", "12345678901234567890123456789012345", "-1",
                                 "1e3", "0x10", "%00", " 1"])
def test_references_are_ascii_digits(rt: Any, client: Any, ref: str) -> None:
    _, token = make_user(rt)
    result = client.simulate_get(f"/v1/payments/{ref}", headers=auth(token))
    assert result.status_code in (400, 404), result.text
    assert result.json["error"] in ("payment.invalid_ref", "payment.not_found",
                                    "route.not_found")


@pytest.mark.parametrize("query", ["limit=1e3", "limit=99999999999999999999999", "before=-5",
                                   "limit=²", "before=9223372036854775808"])
def test_query_numbers_are_bounded(rt: Any, client: Any, query: str) -> None:
    _, token = make_user(rt)
    result = client.simulate_get("/v1/payments", query_string=query, headers=auth(token))
    assert result.status_code == 400, result.text
    assert result.json["error"] in ("request.invalid_type", "request.out_of_range")


def test_body_limit_is_configurable_and_refused_early(make_rt: Any) -> None:
    rt = make_rt(server={"max_body_bytes": 1000})
    client = testing.TestClient(create_app(rt=rt))
    body = assert_error(client.simulate_post("/v1/sessions", body=b"{" + b" " * 1000 + b"}"),
                        413, "request.too_large")
    assert body["data"] == {"max_bytes": 1000}
    note = client.simulate_post("/v1/notify/wxpay", body=b"x" * 70_000)
    assert_error(note, 413, "request.too_large")


def test_unknown_routes_and_methods_use_the_envelope(client: Any) -> None:
    assert_error(client.simulate_get("/v1/nope"), 404, "route.not_found")
    assert_error(client.simulate_put("/v1/payments"), 405, "route.method_not_allowed")


# -- what answers carry ---------------------------------------------------------------------------


def test_security_headers_and_no_store(rt: Any, client: Any) -> None:
    for result in (client.simulate_get("/v1/health"), client.simulate_get("/v1/nope")):
        assert result.headers["X-Content-Type-Options"] == "nosniff"
        assert result.headers["X-Frame-Options"] == "DENY"
        assert result.headers["Referrer-Policy"] == "no-referrer"
        assert result.headers["Cache-Control"] == "no-store"
        assert "default-src 'none'" in result.headers["Content-Security-Policy"]
        assert "Strict-Transport-Security" not in result.headers


def test_hsts_when_served_over_https(make_rt: Any) -> None:
    rt = make_rt(server={"public_url": "https://pay.example"})
    result = testing.TestClient(create_app(rt=rt)).simulate_get("/v1/health")
    assert result.headers["Strict-Transport-Security"].startswith("max-age=")


def test_health_details_only_for_admins_or_the_metrics_token(make_rt: Any) -> None:
    rt = make_rt(server={"metrics_token": "scrape-secret-123"})
    client = testing.TestClient(create_app(rt=rt))
    public = client.simulate_get("/v1/health").json["data"]["checks"]
    assert public["database"] == {"ok": True} and "dialect" not in public["database"]
    _, admin = make_user(rt, "ops", role="admin")
    detailed = client.simulate_get("/v1/health", headers=auth(admin)).json["data"]["checks"]
    assert detailed["database"]["dialect"] == rt.db.dialect
    assert "scheduler" in detailed and "worker" in detailed
    token = {"Authorization": "Bearer scrape-secret-123"}
    assert "dialect" in client.simulate_get("/v1/health", headers=token).json["data"][
        "checks"]["database"]
    assert_error(client.simulate_get("/metrics"), 401, "auth.required")
    assert_error(client.simulate_get("/metrics", headers=auth("wrong")), 401, "auth.invalid_token")
    assert client.simulate_get("/metrics", headers=token).status_code == 200
    assert client.simulate_get("/metrics", headers=auth(admin)).status_code == 200


def test_health_reports_a_scheduler_that_stopped(rt: Any, client: Any) -> None:
    from gonglun.heartbeat import beat

    beat(rt, "scheduler")
    assert client.simulate_get("/v1/health").status_code == 200
    rt.redis.set(rt.keys("heartbeat", "scheduler"), f"{time.time() - 600:.3f}")
    stale = client.simulate_get("/v1/health")
    assert stale.status_code == 503
    assert stale.json["data"]["checks"]["scheduler"] == {"ok": False}


# -- the real client address -------------------------------------------------------------------


def test_forwarded_for_is_trusted_only_from_configured_proxies(make_rt: Any) -> None:
    """The bill lookup allows one request per 5 s per client address."""
    def lookups(rt: Any) -> list[int]:
        client = testing.TestClient(create_app(rt=rt))
        _, token = make_user(rt)
        return [client.simulate_post(
            "/v1/payments/lookup", json={"order": "20261130000000000001"},
            headers={**auth(token), "X-Forwarded-For": f"203.0.113.{n}"},
            remote_addr="10.0.0.2").status_code for n in (1, 2)]

    # Untrusted: the header is the client's own words; both count against 10.0.0.2.
    assert lookups(make_rt()) == [404, 429]
    # Behind the configured proxy: each forwarded client has its own limit.
    assert lookups(make_rt(server={"trusted_proxies": ["10.0.0.0/8"]})) == [404, 404]


def test_client_ip_reads_forwarded_for_from_the_right() -> None:
    from types import SimpleNamespace

    from gonglun.api.util import client_ip, parse_networks

    trusted = parse_networks(["10.0.0.0/8", "192.168.1.1"])

    def req(peer: str, xff: str | None) -> Any:
        return SimpleNamespace(remote_addr=peer, get_header=lambda name: xff,
                               context=SimpleNamespace(trusted_proxies=trusted))

    assert client_ip(req("10.0.0.2", "1.1.1.1, 203.0.113.9")) == "203.0.113.9"
    assert client_ip(req("10.0.0.2", "6.6.6.6, 203.0.113.9, 192.168.1.1")) == "203.0.113.9"
    assert client_ip(req("203.0.113.7", "1.2.3.4")) == "203.0.113.7"
    assert client_ip(req("10.0.0.2", "not-an-ip")) == "10.0.0.2"
    assert client_ip(req("10.0.0.2", None)) == "10.0.0.2"


# -- deferred work is never half done -------------------------------------------------------------


def test_cache_invalidation_failing_during_an_outage_is_retried(rt: Any) -> None:
    """Redis refuses the invalidation after commit: it becomes a deferred job, retried until
    Redis answers; the stale 'unpaid' entry does not survive the outage."""
    from gonglun.hooks.deferred import OutboxEvent
    from gonglun.kv.cache import RecordCache
    from gonglun.plugins.payment.cache import invalidate, payment_cache

    cache = payment_cache(rt)
    record = {"id": 7, "payment_order": "20261130000000000007", "pay_order": None,
              "refund_order": None}
    key = cache.value_key("20261130000000000007")
    rt.redis.set(key, json.dumps({**record, "state": "wait_pay"}))
    real = RecordCache.invalidate_values
    outage = {"on": True}

    def flaky(self: Any, *values: Any) -> bool:
        return False if outage["on"] else real(self, *values)

    RecordCache.invalidate_values = flaky  # type: ignore[method-assign]
    try:
        invalidate(rt, record)
        with rt.db.read() as session:
            from sqlalchemy import select

            event = session.execute(select(OutboxEvent).where(
                OutboxEvent.hook == "cache_invalidate")).scalar_one()
        with pytest.raises(Exception, match="Redis unavailable"):
            rt.outbox.consume(event.key)
        assert rt.redis.get(key) is not None
        outage["on"] = False
        assert rt.outbox.consume(event.key) == "done"
        assert rt.redis.get(key) is None
    finally:
        RecordCache.invalidate_values = real  # type: ignore[method-assign]


def test_scheduler_survives_service_errors(rt: Any) -> None:
    """A Redis error inside a tick used to end the scheduler thread for good."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from gonglun.scheduler import Scheduler
    from gonglun.tasks import PeriodicJob

    rt.config.data["scheduler"]["tick_s"] = 0.05
    scheduler = Scheduler(rt, [PeriodicJob("heartbeat", 0.05, "gonglun.heartbeat")])
    calls = {"n": 0}
    real_tick = scheduler.tick

    def tick(now: float | None = None) -> list[str]:
        calls["n"] += 1
        if calls["n"] <= 3:
            raise RedisConnectionError("Redis went away")
        return real_tick(now)

    scheduler.tick = tick  # type: ignore[method-assign]
    thread = scheduler.start_thread()
    try:
        deadline = time.monotonic() + 10
        while calls["n"] < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert thread.is_alive() and calls["n"] >= 6
        assert rt.redis.get(rt.keys("heartbeat", "scheduler")) is not None
    finally:
        scheduler.stop()
        thread.join(5)


# -- files are not world-readable ----------------------------------------------------------------


def test_cli_creates_private_files_and_reads_passwords_from_stdin(tmp_path: Any) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("GONGLUN_")}
    added = subprocess.run([sys.executable, "-m", "gonglun.cli", "users", "add", "carol",
                            "--password-stdin"], input="a long enough password\n",
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["login"] == "carol"
    for path in (tmp_path / "var", tmp_path / "var" / "gonglun.db"):
        assert path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))
    short = subprocess.run([sys.executable, "-m", "gonglun.cli", "users", "add", "dave",
                            "--password-stdin"], input="short\n", capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=120)
    assert short.returncode == 1 and "user.password_too_short" in short.stderr


# -- found by the attacker's review -----------------------------------------------------------


@pytest.mark.parametrize("value", ["False", "off", "no", "0", "yes"])
def test_sandbox_switch_is_a_real_boolean(tmp_path: Any, value: str) -> None:
    from gonglun.config import ConfigError

    with pytest.raises(ConfigError, match=r"sandbox\.enabled"):
        Config.load(environ={"GONGLUN_CONFIG": str(tmp_path / "x.toml"),
                             "GONGLUN_SANDBOX__ENABLED": f'"{value}"'})


def test_live_keys_make_a_deployment_and_never_mix_with_simulated(tmp_path: Any) -> None:
    from gonglun.config import ConfigError

    live = {"payment": {"alipay": {"app_id": "2021000000000001", "app_private_key": "k",
                                   "alipay_public_key": "p"}}}
    one_box = Config(live)  # SQLite, nothing else named, but real keys: not a try-out
    assert not one_box.embedded_default and not one_box.sandbox_enabled
    assert not Config({"server": {"public_url": "https://pay.example"}}).sandbox_enabled
    with pytest.raises(ConfigError, match="refused"):
        Config({**live, "sandbox": {"enabled": True}})
    with pytest.raises(ConfigError, match="refused"):
        Config({"payment": {**live["payment"], "keyset": "/srv/keys/sandbox.json"}})
    staged = Config({"payment": {"keyset": "/srv/keys/sandbox.json"}})
    assert staged.simulated_payments and staged.sandbox_explicit


def test_staging_keyset_is_announced(make_rt: Any, tmp_path: Any) -> None:
    from gonglun.sandbox import init_keyset

    init_keyset(tmp_path / "keys")
    rt = make_rt(payment={"keyset": str(tmp_path / "keys" / "sandbox.json"),
                          "gateway_url": "http://10.0.0.5:8600"})
    client = testing.TestClient(create_app(rt=rt))
    assert client.simulate_get("/v1/health").json["data"]["sandbox"]["simulated_payments"]
    assert any("SIMULATED" in p for p in rt.startup_problems())


def test_sandbox_control_answers_only_loopback(make_rt: Any, tmp_path: Any) -> None:
    rt = make_rt(sandbox={"enabled": True, "dir": str(tmp_path / "keys")})
    client = testing.TestClient(create_app(rt=rt))
    assert client.simulate_get("/sandbox/info", remote_addr="127.0.0.1").status_code == 200
    assert_error(client.simulate_post("/sandbox/wxpay/transactions/1/pay", json={"total": 1},
                                      remote_addr="192.0.2.10"), 403, "sandbox.forbidden")
    opened = make_rt(sandbox={"enabled": True, "dir": str(tmp_path / "keys"),
                              "control_from": ["192.0.2.0/24"]})
    assert testing.TestClient(create_app(rt=opened)).simulate_get(
        "/sandbox/info", remote_addr="192.0.2.10").status_code == 200


def test_metrics_are_private_outside_the_embedded_default(make_rt: Any) -> None:
    rt = make_rt()  # a named database: a deployment
    client = testing.TestClient(create_app(rt=rt))
    assert_error(client.simulate_get("/metrics"), 401, "auth.required")
    _, admin = make_user(rt, "ops", role="admin")
    assert client.simulate_get("/metrics", headers=auth(admin)).status_code == 200


def test_broker_namespace_follows_the_redis_prefix() -> None:
    assert Config({}).broker_namespace == "gonglun"
    assert Config({"redis": {"prefix": "shop2:"}}).broker_namespace == "gonglun-shop2"
    assert Config({"redis": {"prefix": "x:"}, "broker": {"namespace": "mine"}}
                  ).broker_namespace == "mine"
