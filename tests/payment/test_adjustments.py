"""Staff wallet adjustments over HTTP (``POST /v1/ledger/adjustments``): who may, what is
refused (nothing moves), the key that makes a retry safe, the overdraft rule, the audit log,
the OpenAPI description; and over a live server, concurrent requests moving money once."""

from __future__ import annotations

import concurrent.futures
import json
from typing import Any

import pytest
from falcon import testing
from sqlalchemy import func, select

from gonglun.accounts.admin import AdminAction
from gonglun.api import create_app
from gonglun.ledger import balance, run_audit
from gonglun.ledger.models import Transfer
from tests.api.test_core_api import assert_error, auth, make_user
from tests.payment.conftest import Live

URL = "/v1/ledger/adjustments"


class Staff:
    def __init__(self, rt: Any):
        self.rt = rt
        self.client = testing.TestClient(create_app(rt=rt))
        self.seller, self.user_token = make_user(rt, "seller")
        _, self.cs = make_user(rt, "cs", role="admin")
        self.boss_id, self.boss = make_user(rt, "boss", role="superadmin")

    def post(self, body: Any, token: str | None = None) -> Any:
        headers = {**(auth(token) if token else {}), "Content-Type": "application/json"}
        return self.client.simulate_post(URL, body=json.dumps(body), headers=headers)

    def adjust(self, amount: int, key: str, reason: str = "线下补款", **extra: Any) -> Any:
        return self.post({"user_id": self.seller, "amount": amount, "reason": reason,
                          "key": key, **extra}, self.boss)

    def balance(self) -> int:
        with self.rt.db.read() as session:
            return balance(session, self.seller)

    def moved(self) -> tuple[int, int]:
        """(transfers, admin actions): what an adjustment leaves behind."""
        with self.rt.db.read() as session:
            return (int(session.scalar(select(func.count()).select_from(Transfer))),
                    int(session.scalar(select(func.count()).select_from(AdminAction))))


@pytest.fixture
def staff(rt: Any) -> Staff:
    return Staff(rt)


def test_only_super_admins_adjust(staff: Staff) -> None:
    body = {"user_id": staff.seller, "amount": 100, "reason": "补款", "key": "k1"}
    assert_error(staff.post(body), 401, "auth.required")
    assert_error(staff.post(body, staff.user_token), 403, "auth.forbidden")
    assert_error(staff.post(body, staff.cs), 403, "auth.forbidden")
    own = {**body, "user_id": staff.boss_id}  # four eyes: not into one's own wallet
    assert_error(staff.post(own, staff.boss), 403, "ledger.own_wallet")
    assert staff.moved() == (0, 0)
    made = staff.post(body, staff.boss)
    assert made.status_code == 201, made.text
    assert made.json["data"]["adjustment"]["amount"] == 100
    assert made.json["data"]["balance"] == 100 == staff.balance()


BAD = [
    ({"amount": 1.5}, "ledger.invalid_amount"),
    ({"amount": 100.0}, "ledger.invalid_amount"),
    ({"amount": "100"}, "ledger.invalid_amount"),
    ({"amount": True}, "ledger.invalid_amount"),
    ({"amount": 0}, "ledger.invalid_amount"),
    ({"amount": None}, "ledger.invalid_amount"),
    ({"amount": 10**13 + 1}, "ledger.invalid_amount"),
    ({"amount": -(2**63)}, "ledger.invalid_amount"),
    ({"amount": 2**64}, "ledger.invalid_amount"),
    ({"reason": ""}, "ledger.invalid_reason"),
    ({"reason": "   "}, "ledger.invalid_reason"),
    ({"reason": None}, "ledger.invalid_reason"),
    ({"reason": 5}, "ledger.invalid_reason"),
    ({"reason": "x" * 201}, "ledger.invalid_reason"),
    ({"reason": "<script>alert(1)</script>"}, "ledger.invalid_reason"),
    ({"reason": "a&amp;b"}, "ledger.invalid_reason"),
    ({"reason": "两行\n原因"}, "ledger.invalid_reason"),
    ({"reason": "nul\x00"}, "ledger.invalid_reason"),
    ({"reason": "abc\u202edef"}, "ledger.invalid_reason"),
    ({"reason": "lone \ud800"}, "request.invalid_json"),  # the parser refuses it first
    ({"key": ""}, "ledger.invalid_key"),
    ({"key": None}, "ledger.invalid_key"),
    ({"key": 7}, "ledger.invalid_key"),
    ({"key": "has space"}, "ledger.invalid_key"),
    ({"key": "键"}, "ledger.invalid_key"),
    ({"key": "k" * 129}, "ledger.invalid_key"),
    ({"user_id": None}, "ledger.invalid_argument"),
    ({"user_id": "1"}, "ledger.invalid_argument"),
    ({"user_id": 1.0}, "ledger.invalid_argument"),
    ({"user_id": True}, "ledger.invalid_argument"),
    ({"user_id": 0}, "ledger.invalid_argument"),
    ({"user_id": -3}, "ledger.invalid_argument"),
    ({"user_id": 2**63}, "ledger.invalid_argument"),
    ({"allow_negative": "yes"}, "ledger.invalid_argument"),
    ({"allow_negative": 1}, "ledger.invalid_argument"),
    ({"extra": 1}, "ledger.invalid_argument"),
]


def test_bad_input_is_refused_and_nothing_moves(staff: Staff) -> None:
    for change, error in BAD:
        body = {"user_id": staff.seller, "amount": 100, "reason": "补款", "key": "k1", **change}
        assert_error(staff.post(body, staff.boss), 400, error)
    for name in ("user_id", "amount", "reason", "key"):  # a field left out
        missing = {"user_id": staff.seller, "amount": 100, "reason": "补款", "key": "k1"}
        del missing[name]
        assert staff.post(missing, staff.boss).status_code == 400
    assert staff.moved() == (0, 0)


def test_malformed_bodies_are_refused(staff: Staff) -> None:
    for raw in (b"[]", b"null", b"{", b'"x"', b"{}", b"\xff\xfe", b'{"amount": 1e400}'):
        answer = staff.client.simulate_post(URL, body=raw, headers={
            **auth(staff.boss), "Content-Type": "application/json"})
        assert 400 <= answer.status_code < 500, (raw, answer.text)
        assert answer.json["error"] and "Traceback" not in answer.text
    assert staff.moved() == (0, 0)


def test_unknown_and_deleted_users(staff: Staff) -> None:
    from gonglun.accounts.service import delete_user

    body = {"user_id": 987654321, "amount": 100, "reason": "补款", "key": "k1"}
    assert_error(staff.post(body, staff.boss), 404, "user.not_found")
    assert staff.adjust(100, "before-delete").status_code == 201
    with staff.rt.db.write() as session:
        delete_user(session, staff.seller)
    assert_error(staff.adjust(100, "after-delete"), 409, "ledger.user_deleted")
    replay = staff.adjust(100, "before-delete")  # what was done before is still answered
    assert replay.status_code == 201 and replay.headers.get("Idempotent-Replayed") == "true"
    assert staff.balance() == 100


def test_a_key_replays_its_adjustment_and_refuses_another(staff: Staff) -> None:
    first = staff.adjust(300, "repay-1")
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    for _ in range(3):
        again = staff.adjust(300, "repay-1")
        assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
        assert again.json == first.json
    assert staff.balance() == 300 and staff.moved() == (1, 1)
    other_user, _ = make_user(staff.rt, "other")
    for change in ({"amount": 301}, {"amount": -300}, {"reason": "另一个原因"},
                   {"user_id": other_user}):
        body = {"user_id": staff.seller, "amount": 300, "reason": "线下补款", "key": "repay-1",
                **change}
        refused = assert_error(staff.post(body, staff.boss), 422, "ledger.adjustment_mismatch")
        assert refused["data"]["adjustment_id"] == first.json["data"]["adjustment"]["id"]
    assert staff.balance() == 300 and staff.moved() == (1, 1)
    assert run_audit(staff.rt) == []


def test_a_debit_never_overdraws_unless_staff_say_so(staff: Staff) -> None:
    assert staff.adjust(500, "credit").status_code == 201
    short = assert_error(staff.adjust(-800, "payout"), 409, "ledger.adjustment_negative")
    assert short["data"] == {"balance": 500, "amount": 800}
    assert staff.balance() == 500
    # The same key, now with the intent said: the refused attempt moved nothing, so it runs.
    made = staff.adjust(-800, "payout", allow_negative=True)
    assert made.status_code == 201, made.text
    assert made.json["data"]["adjustment"]["amount"] == -800
    assert staff.balance() == -300
    # The debt repaid; from zero, even one fen out needs the flag.
    assert staff.adjust(300, "repaid").status_code == 201
    assert staff.balance() == 0
    assert_error(staff.adjust(-1, "one-fen"), 409, "ledger.adjustment_negative")
    assert run_audit(staff.rt) == []


def test_adjustments_are_in_the_audit_log_the_transfers_and_the_user_view(staff: Staff) -> None:
    made = staff.adjust(-200, "payout-bank", reason="银行转账付款 #88", allow_negative=True)
    assert made.status_code == 201, made.text
    adjustment = made.json["data"]["adjustment"]
    view = staff.client.simulate_get(f"/v1/admin/users/{staff.seller}", headers=auth(staff.cs))
    assert view.status_code == 200, view.text
    assert view.json["data"]["user"]["balance"] == -200
    action = view.json["data"]["actions"][0]
    assert action["action"] == "ledger_adjust" and action["actor"] == "superadmin:boss"
    assert action["actor_id"] == staff.boss_id and action["source"].startswith("ip:")
    assert action["detail"]["amount"] == -200 and action["detail"]["key"] == "payout-bank"
    assert action["detail"]["reason"] == "银行转账付款 #88"
    listed = staff.client.simulate_get("/v1/ledger/transfers", headers=auth(staff.cs),
                                       params={"account": f"user:{staff.seller}"})
    rows = listed.json["data"]["transfers"]
    assert [(t["debit"], t["credit"], t["amount"], t["code"], t["operator_id"]) for t in rows] \
        == [(f"user:{staff.seller}", "manual", 200, "admin_adjust", staff.boss_id)]
    assert rows[0]["id"] == adjustment["id"] and rows[0]["ref"] == f"adjust:{staff.seller}"


def test_the_route_is_in_the_openapi_document(staff: Staff) -> None:
    doc = staff.client.simulate_get("/v1/openapi.json").json
    op = doc["paths"][URL]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) == {"user_id", "amount", "reason", "key"}
    assert schema["properties"]["amount"]["type"] == "integer"
    assert op["security"] == [{"bearer": []}] and "201" in op["responses"]


def test_concurrent_requests_with_one_key_move_money_once(live: Live) -> None:
    seller, _ = live.user("seller")
    _, boss = live.user("boss", role="superadmin")
    body = {"user_id": seller, "amount": 700, "reason": "线下补款", "key": "same-key"}

    def send(_: int) -> Any:
        return live.http.post(URL, json=body, headers=boss)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(16)))
    assert [a.status_code for a in answers] == [201] * 16, [a.text for a in answers]
    assert len({a.json()["data"]["adjustment"]["id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") != "true" for a in answers) == 1
    with live.rt.db.read() as session:
        assert balance(session, seller) == 700
        assert session.scalar(select(func.count()).select_from(AdminAction)) == 1
    assert run_audit(live.rt) == []


def test_concurrent_debits_never_overdraw(live: Live) -> None:
    seller, _ = live.user("seller")
    _, boss = live.user("boss", role="superadmin")
    funded = live.http.post(URL, json={"user_id": seller, "amount": 500, "reason": "补款",
                                       "key": "fund"}, headers=boss)
    assert funded.status_code == 201, funded.text

    def send(i: int) -> Any:
        return live.http.post(URL, json={"user_id": seller, "amount": -100, "reason": "线下付款",
                                         "key": f"payout-{i}"}, headers=boss)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 5 + [409] * 3, [a.text for a in answers]
    with live.rt.db.read() as session:
        assert balance(session, seller) == 0
    assert run_audit(live.rt) == []


@pytest.mark.slow
def test_schemathesis_as_a_super_admin_finds_no_server_error(live: Live, tmp_path: Any) -> None:
    """The fuzz run of test_fuzz.py, as the only role that reaches the route's logic."""
    import subprocess

    from tests.payment.test_fuzz import EXAMPLES, schemathesis_cmd

    for login in ("a", "b"):  # users for the fuzzer's small integer ids to find
        live.user(f"fuzz_user_{login}")
    _, boss = live.user("fuzz_boss", role="superadmin")
    result = subprocess.run(
        [*schemathesis_cmd(), "run", f"{live.base}/v1/openapi.json",
         "--include-path", URL, "--checks", "not_a_server_error,response_schema_conformance",
         "--max-examples", EXAMPLES, "--seed", "20261207", "--no-color",
         "--request-timeout", "20", "-H", f"Authorization: {boss['Authorization']}"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "generated" in result.stdout
    live.settle_outbox()
    assert run_audit(live.rt) == []
