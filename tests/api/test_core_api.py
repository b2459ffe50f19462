"""The REST skeleton: envelope, errors, auth, me, ledger, metrics, OpenAPI, websocket push."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from falcon import testing

from gonglun.api import Route, create_app
from gonglun.hooks import hookimpl


def make_user(rt: Any, login: str = "alice", role: str = "user") -> tuple[int, str]:
    from gonglun.accounts import create_user, issue_token

    with rt.db.write() as session:
        user = create_user(session, login, "correct horse battery", role=role, nickname=login)
        return user.id, issue_token(session, user.id)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(result: Any, status: int, error: str) -> dict[str, Any]:
    assert result.status_code == status, result.text
    body = result.json
    assert body["error"] == error
    assert body["code"] != 0
    assert body["msg"]
    assert "Traceback" not in result.text
    return body


def test_health(client: Any) -> None:
    result = client.simulate_get("/v1/health")
    assert result.status_code == 200, result.text
    checks = result.json["data"]["checks"]
    assert checks["database"]["ok"] and checks["redis"]["ok"] and checks["broker"]["ok"]
    assert result.headers["X-Request-Id"]


def test_request_id_is_echoed(client: Any) -> None:
    result = client.simulate_get("/v1/health", headers={"X-Request-Id": "abc123"})
    assert result.headers["X-Request-Id"] == "abc123"


def test_unknown_route(client: Any) -> None:
    assert_error(client.simulate_get("/v1/nowhere"), 404, "route.not_found")


def test_wrong_method(client: Any) -> None:
    assert_error(client.simulate_delete("/v1/health"), 405, "route.method_not_allowed")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{not json", "request.invalid_json"),
        ("[1, 2]", "request.invalid_json"),
        ('{"login": 5, "password": "x"}', "request.invalid_type"),
        ('{"password": "x"}', "request.missing_field"),
        ('{"login": "alice", "password": "wrong password"}', "auth.invalid_credentials"),
        ('{"login": "nobody", "password": "wrong password"}', "auth.invalid_credentials"),
    ],
)
def test_bad_login_input(rt: Any, client: Any, body: str, error: str) -> None:
    make_user(rt)
    result = client.simulate_post("/v1/sessions", body=body,
                                  headers={"Content-Type": "application/json"})
    status = 401 if error.startswith("auth.") else 400
    assert_error(result, status, error)


def test_login_me_and_ledger(rt: Any, client: Any) -> None:
    from gonglun.ledger import post

    user_id, _ = make_user(rt)
    result = client.simulate_post(
        "/v1/sessions", json={"login": "alice", "password": "correct horse battery"}
    )
    assert result.status_code == 201, result.text
    token = result.json["data"]["token"]

    me = client.simulate_get("/v1/me", headers=auth(token))
    assert me.status_code == 200
    assert me.json["code"] == 0
    assert me.json["data"]["id"] == user_id
    assert me.json["data"]["balance"] == 0

    with rt.db.write() as session:
        post(rt, session, user_id=user_id, delta=1234, scene="topup_test", ref="p1",
             key="test:p1", remark="账户余额充值", counter="channel:alipay")
        post(rt, session, user_id=user_id, delta=-234, scene="fee_test", ref="a1",
             key="test:a1", counter="income")
    me = client.simulate_get("/v1/me", headers=auth(token))
    assert me.json["data"]["balance"] == 1000
    ledger = client.simulate_get("/v1/me/ledger?limit=1", headers=auth(token)).json["data"]
    assert ledger["balance"] == 1000
    assert [p["delta"] for p in ledger["postings"]] == [-234]
    older = client.simulate_get(f"/v1/me/ledger?before={ledger['next_before']}",
                                headers=auth(token)).json["data"]
    assert [(p["delta"], p["balance_after"]) for p in older["postings"]] == [(1234, 1234)]


def test_auth_required_and_invalid_token(client: Any) -> None:
    assert_error(client.simulate_get("/v1/me"), 401, "auth.required")
    assert_error(client.simulate_get("/v1/me", headers=auth("nope")), 401, "auth.invalid_token")
    assert_error(client.simulate_get("/v1/me", headers={"Authorization": "Basic x"}), 401,
                 "auth.required")
    assert_error(client.simulate_get("/v1/me/ledger?limit=zero", headers=auth("x")), 401,
                 "auth.invalid_token")


def test_query_validation(rt: Any, client: Any) -> None:
    _, token = make_user(rt)
    assert_error(client.simulate_get("/v1/me/ledger?limit=zero", headers=auth(token)), 400,
                 "request.invalid_type")
    assert_error(client.simulate_get("/v1/me/ledger?limit=100000", headers=auth(token)), 400,
                 "request.out_of_range")


def test_unexpected_error_is_an_envelope_without_traceback(rt: Any) -> None:
    class Broken:
        auth = "public"

        async def on_get(self, req: Any, resp: Any) -> None:
            raise RuntimeError("secret internals")

    @hookimpl
    def register_routes(routes: list[Any]) -> list[Any]:
        return [*routes, Route("/v1/broken", Broken())]

    rt.pm.register(SimpleNamespace(register_routes=register_routes), "broken")
    client = testing.TestClient(create_app(rt=rt))
    body = assert_error(client.simulate_get("/v1/broken"), 500, "server.error")
    assert "secret internals" not in json.dumps(body)


def test_metrics(rt: Any, client: Any) -> None:
    client.simulate_get("/v1/health")
    _, admin = make_user(rt, "ops", role="admin")
    text = client.simulate_get("/metrics", headers=auth(admin)).text
    assert 'gonglun_http_requests_total{method="GET",route="/v1/health",status="200"}' in text


def test_openapi_describes_every_route(rt: Any, client: Any) -> None:
    doc = client.simulate_get("/v1/openapi.json").json
    assert doc["openapi"].startswith("3.")
    for route in rt.api_routes:
        assert route.path in doc["paths"], route.path
    assert doc["paths"]["/v1/me"]["get"]["security"] == [{"bearer": []}]
    assert "requestBody" in doc["paths"]["/v1/sessions"]["post"]


def test_example_plugin_route_and_disabling_it(make_rt: Any) -> None:
    enabled = testing.TestClient(create_app(rt=make_rt()))
    assert enabled.simulate_get("/v1/hello").json["data"]["hello"] == "world"
    disabled_rt = make_rt(plugins={"disabled": ["hello"]})
    assert disabled_rt.pm.get_plugin("hello") is None
    disabled = testing.TestClient(create_app(rt=disabled_rt))
    assert_error(disabled.simulate_get("/v1/hello"), 404, "route.not_found")
    doc = disabled.simulate_get("/v1/openapi.json").json
    assert "/v1/hello" not in doc["paths"]


def test_filter_from_example_plugin_shapes_me(rt: Any, client: Any) -> None:
    _, token = make_user(rt, "bob")
    me = client.simulate_get("/v1/me", headers=auth(token)).json["data"]
    assert me["greeting"] == "你好, bob"


@pytest.mark.parametrize("how", ["ticket", "header", "subprotocol"])
def test_websocket_push(rt: Any, how: str) -> None:
    """A bearer token never travels in the URL: a one-time ticket does, or a header."""
    user_id, token = make_user(rt)
    app = create_app(rt=rt)
    client = testing.TestClient(app)
    options: dict[str, Any] = {}
    if how == "ticket":
        made = client.simulate_post("/v1/ws/tickets", headers=auth(token))
        assert made.status_code == 201 and made.headers["Cache-Control"] == "no-store"
        options["query_string"] = f"ticket={made.json['data']['ticket']}"
    elif how == "header":
        options["headers"] = auth(token)
    else:
        options["subprotocols"] = ["bearer", token]

    async def scenario() -> list[dict[str, Any]]:
        async with (
            testing.ASGIConductor(app) as conductor,
            conductor.simulate_ws("/v1/ws", **options) as ws,
        ):
            hello = await ws.receive_json()
            # Published from any process through Redis pub/sub.
            for _ in range(50):
                if await asyncio.to_thread(rt.push, user_id, {"event": "paid", "id": 9}):
                    break
                await asyncio.sleep(0.05)
            paid = await asyncio.wait_for(ws.receive_json(), 5)
            return [hello, paid]

    hello, paid = asyncio.run(scenario())
    assert hello == {"event": "hello", "user_id": user_id}
    assert paid == {"event": "paid", "id": 9}


@pytest.mark.parametrize("kind", ["bad", "bearer-in-url", "reused-ticket"])
def test_websocket_refuses_bad_token(rt: Any, kind: str) -> None:
    _, token = make_user(rt)
    app = create_app(rt=rt)
    query = "token=bad"
    if kind == "bearer-in-url":
        query = f"token={token}"  # a bearer token in the URL is not accepted
    elif kind == "reused-ticket":
        client = testing.TestClient(app)
        ticket = client.simulate_post("/v1/ws/tickets", headers=auth(token)).json["data"]
        assert rt.redis.getdel(rt.keys("wsticket", __import__("hashlib").sha256(
            ticket["ticket"].encode()).hexdigest()))  # used once already
        query = f"ticket={ticket['ticket']}"

    async def scenario() -> int:
        async with (
            testing.ASGIConductor(app) as conductor,
            conductor.simulate_ws("/v1/ws", query_string=query) as ws,
        ):
            await ws.wait_ready()
            return ws.close_code

    from falcon import WebSocketDisconnected

    try:
        code = asyncio.run(scenario())
    except WebSocketDisconnected as exc:
        code = exc.code
    assert code == 3403  # the handshake is denied: HTTP 403 before any upgrade


def test_ledger_admin_routes(rt: Any, client: Any) -> None:
    from gonglun.ledger import post

    user_id, token = make_user(rt)
    _, admin = make_user(rt, "cs", role="admin")
    with rt.db.write() as session:
        for n in range(3):
            post(rt, session, user_id=user_id, delta=100 + n, scene="topup_test", ref=f"r{n}",
                 key=f"t:{n}", counter="channel:wxpay")
    listed = client.simulate_get("/v1/ledger/accounts", headers=auth(admin)).json["data"]
    assert {a["code"]: a["balance"] for a in listed["accounts"]}["channel:wxpay"] == -303
    assert listed["wallets"] == {"count": 1, "balance": 303, "negative": 0}
    assert listed["total"] == 0
    page = client.simulate_get(f"/v1/ledger/transfers?account=user:{user_id}&limit=2",
                               headers=auth(admin)).json["data"]
    assert [t["amount"] for t in page["transfers"]] == [102, 101]
    rest = client.simulate_get(f"/v1/ledger/transfers?before={page['next_before']}",
                               headers=auth(admin)).json["data"]
    assert [t["amount"] for t in rest["transfers"]] == [100] and rest["next_before"] is None
    by_ref = client.simulate_get("/v1/ledger/transfers?ref=r1&code=topup_test",
                                 headers=auth(admin)).json["data"]["transfers"]
    assert [(t["debit"], t["credit"], t["key"]) for t in by_ref] == [
        ("channel:wxpay", f"user:{user_id}", "t:1")]
    assert client.simulate_get("/v1/ledger/transfers?account=escrow",
                               headers=auth(admin)).json["data"]["transfers"] == []
    for path, headers, status, error in (
        ("/v1/ledger/accounts", auth(token), 403, "auth.forbidden"),
        ("/v1/ledger/transfers", {}, 401, "auth.required"),
        ("/v1/ledger/transfers?account=nowhere", auth(admin), 400, "ledger.unknown_account"),
        ("/v1/ledger/transfers?limit=0", auth(admin), 400, "request.out_of_range"),
        ("/v1/ledger/transfers?before=x", auth(admin), 400, "request.invalid_type"),
        ("/v1/ledger/transfers?code=" + "c" * 65, auth(admin), 400, "request.too_long"),
    ):
        assert_error(client.simulate_get(path, headers=headers), status, error)
