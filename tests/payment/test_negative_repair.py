"""BAL-05 repaired: a seller driven negative by an admin refund after settlement tops up
through a channel (the real WeChat Pay SDK against the sandbox) and staff record the rest with
an adjustment; the audit stays clean and money is never created."""

from __future__ import annotations

from tests.payment.conftest import Live
from tests.refund.helpers import audit_clean, paid_channel, paid_tao, people, refund


def negative_seller(live: Live) -> tuple[dict[str, tuple[int, dict[str, str]]], int]:
    """People and the seller's (negative) balance: paid, settled, spent, refunded by an admin."""
    p = people(live)
    payment = paid_tao(live, p, 1000)
    settled = live.http.post(f"/v1/payments/{payment['id']}/settle", headers=p["cs"][1])
    assert settled.status_code == 200, settled.text
    spend = live.create(p["seller"][1], scene="tao", amount=800, method="money",
                        seller_id=p["buyer"][0])
    assert spend.status_code == 201, spend.text
    forced = refund(live, payment, p["cs"][1], amount=1000, way="admin", reason="平台判定退款")
    assert forced.status_code == 201, forced.text
    assert live.balance(p["seller"][1]) == -800
    return p, -800


def test_negative_seller_recharges_and_is_repaired_by_an_adjustment(live: Live) -> None:
    p, owed = negative_seller(live)
    seller, headers = p["seller"]
    # Still no trading while negative (BAL-05)...
    blocked = live.create(headers, scene="tao", amount=1, method="money", seller_id=p["buyer"][0])
    assert blocked.status_code == 403 and blocked.json()["error"] == "payment.negative_balance"
    # ...but a recharge is how the balance is repaired: it is accepted and credited.
    topped = paid_channel(live, headers, "wxpay", 500)
    assert topped["state"] == "ok"
    assert live.balance(headers) == owed + 500
    # The seller pays the remaining 300 fen to the platform's bank account: staff record it.
    boss = p["boss"][1]
    body = {"user_id": seller, "amount": 300, "reason": "卖家线下转账补足欠款", "key": "repay-1"}
    made = live.http.post("/v1/ledger/adjustments", json=body, headers=boss)
    assert made.status_code == 201, made.text
    assert made.json()["data"]["balance"] == 0
    assert live.balance(headers) == 0
    admin_view = live.http.get(f"/v1/admin/users/{seller}", headers=p["cs"][1]).json()["data"]
    assert admin_view["user"]["balance"] == 0
    assert [a["action"] for a in admin_view["actions"]] == ["ledger_adjust"]
    # Repaired: the seller trades again (an order through a channel is accepted).
    again = live.create(headers, scene="tao", amount=100, method="wxpay", channel="native",
                        seller_id=p["buyer"][0])
    assert again.status_code == 201, again.text
    audit_clean(live)
