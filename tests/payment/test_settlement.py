"""The ``tao`` case end to end over HTTP: a buyer's 12.00 waits in escrow, settlement pays the
seller less the commission to income, the audit is clean at every step, and tampering with any
one transfer, balance or payment row makes it fail and name the row."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from gonglun.hooks import hookimpl
from gonglun.ledger import Account, AccountBalance, Transfer, audit_session, run_audit
from gonglun.plugins.payment.channels import get_channel
from gonglun.plugins.payment.models import Payment
from tests.payment.conftest import Live, wait_until
from tests.payment.test_recharge import open_cashier, recharge_alipay

PRICE, COMMISSION_BP = 1200, 500  # 12.00 yuan, 5%


def tao_scene(live: Live, **options: Any) -> None:
    """Configure the ``tao`` scene (the runtime re-reads scenes on next use)."""
    live.rt.config.data.setdefault("payment", {}).setdefault("scenes", {})["tao"] = options
    live.rt.__dict__.pop("_payment_scenes", None)


def accounts(live: Live, headers: dict[str, str]) -> dict[str, Any]:
    body = live.http.get("/v1/ledger/accounts", headers=headers).json()
    assert body["code"] == 0, body
    listed = {a["code"]: a["balance"] for a in body["data"]["accounts"]}
    return {**listed, "total": body["data"]["total"]}


def audit_clean(live: Live) -> None:
    live.settle_outbox()
    assert run_audit(live.rt) == []


@pytest.fixture
def people(live: Live) -> dict[str, Any]:
    out = {}
    for name, role in (("buyer", "user"), ("seller", "user"), ("cs", "admin"),
                       ("boss", "superadmin")):
        uid, headers = live.user(name, role=role)
        out[name] = (uid, headers)
    return out


def buy(live: Live, people: dict[str, Any], method: str = "money") -> dict[str, Any]:
    buyer, seller = people["buyer"], people["seller"]
    body = {"scene": "tao", "amount": PRICE, "method": method, "seller_id": seller[0],
            "title": "青花瓷瓶"}
    if method == "alipay":
        body["channel"] = "page"
    created = live.create(buyer[1], **body)
    assert created.status_code == 201, created.text
    if method == "alipay":
        open_cashier(live, created.json()["data"]["pay_params"])
    return created.json()["data"]["payment"]


def test_tao_through_escrow_to_the_seller_with_commission(live: Live,
                                                          people: dict[str, Any]) -> None:
    tao_scene(live, commission=COMMISSION_BP)
    (buyer, b), (_, s), (_, cs), (_, boss) = (people[k] for k in
                                                   ("buyer", "seller", "cs", "boss"))
    recharge = recharge_alipay(live, b, amount=PRICE)
    live.sb.post(f"/sandbox/alipay/trades/{recharge['payment_order']}/pay")
    wait_until(lambda: live.balance(b) == PRICE, what="recharge credited")
    audit_clean(live)

    payment = buy(live, people)
    assert payment["state"] == "ok" and payment["settled_at"] is None
    assert live.balance(b) == 0
    assert accounts(live, boss) == {"channel:alipay": -PRICE, "channel:wxpay": 0,
                                    "escrow": PRICE, "income": 0, "manual": 0,
                                    "refund_recover": 0, "total": 0}
    audit_clean(live)
    order = payment["payment_order"]
    moved = live.http.get(f"/v1/ledger/transfers?ref={order}", headers=cs).json()["data"]
    assert [(t["debit"], t["credit"], t["amount"], t["code"], t["key"])
            for t in moved["transfers"]] == [(f"user:{buyer}", "escrow", PRICE, "tao",
                                              f"pay:{order}")]

    settled = live.http.post(f"/v1/payments/{order}/settle", headers=cs)
    assert settled.status_code == 200, settled.text
    data = settled.json()["data"]
    assert set(data) == {"payment"}  # PAY-22: the commission is for super admins only
    assert data["payment"]["settled_at"]
    assert live.balance(s) == PRICE * 95 // 100 == 1140
    assert accounts(live, boss)["escrow"] == 0 and accounts(live, boss)["income"] == 60
    assert accounts(live, cs)["income"] is None
    detail = live.http.get(f"/v1/payments/{order}", headers=boss).json()["data"]["detail"]
    assert detail["income"] == 60
    assert "income" not in live.http.get(f"/v1/payments/{order}",
                                         headers=cs).json()["data"]["detail"]
    by_code = live.http.get("/v1/ledger/transfers?code=commission",
                            headers=boss).json()["data"]["transfers"]
    assert [(t["debit"], t["credit"], t["amount"]) for t in by_code] == [("escrow", "income", 60)]
    hidden = live.http.get("/v1/ledger/transfers?account=income",
                           headers=cs).json()["data"]["transfers"]
    assert [t["amount"] for t in hidden] == [None]
    ledger = live.http.get("/v1/me/ledger", headers=s).json()["data"]["postings"]
    assert [(p["delta"], p["balance_after"], p["scene"], p["ref"]) for p in ledger] == [
        (1140, 1140, "settle", order)]
    audit_clean(live)

    again = live.http.post(f"/v1/payments/{order}/settle", headers=cs)
    assert (again.status_code, again.json()["error"]) == (409, "payment.already_settled")
    assert live.balance(s) == 1140


def test_settle_refusals_change_nothing(live: Live, people: dict[str, Any]) -> None:
    (_, b), (_, cs) = people["buyer"], people["cs"]
    from gonglun.testing import fund_wallet

    fund_wallet(live.rt, people["buyer"][0], PRICE)
    payment = buy(live, people)
    recharge = recharge_alipay(live, b, amount=300)
    cases = [
        (f"/v1/payments/{payment['payment_order']}/settle", b, 403, "auth.forbidden"),
        (f"/v1/payments/{payment['payment_order']}/settle", None, 401, "auth.required"),
        ("/v1/payments/abc/settle", cs, 400, "payment.invalid_ref"),
        ("/v1/payments/123456789012345678/settle", cs, 404, "payment.not_found"),
        (f"/v1/payments/{recharge['id']}/settle", cs, 409, "payment.not_settleable"),
    ]
    for path, headers, status, error in cases:
        response = live.http.post(path, headers=headers or {})
        assert (response.status_code, response.json()["error"]) == (status, error), path
    with live.rt.db.write() as session:  # a refund under way blocks settlement (PAY-24)
        session.execute(update(Payment).where(Payment.id == payment["id"])
                        .values(state="wait_refund"))
    blocked = live.http.post(f"/v1/payments/{payment['id']}/settle", headers=cs)
    assert (blocked.status_code, blocked.json()["error"]) == (409, "payment.settle_refunded")
    with live.rt.db.read() as session:
        assert session.get(Payment, payment["id"]).settled_at is None
    assert live.balance(people["seller"][1]) == 0


def test_channel_payment_is_settled_after_the_channel_confirms(live: Live,
                                                               people: dict[str, Any]) -> None:
    tao_scene(live, commission=COMMISSION_BP)
    payment = buy(live, people, "alipay")
    live.sb.post(f"/sandbox/alipay/trades/{payment['payment_order']}/pay")
    wait_until(lambda: live.payment(payment["id"], people["buyer"][1])["state"] == "ok",
               what="paid")
    live.settle_outbox()
    assert accounts(live, people["boss"][1])["escrow"] == PRICE
    audit_clean(live)
    settled: list[tuple[int, int, int]] = []

    @hookimpl
    def payment_settled(payment: dict[str, Any], seller_amount: int, income: int) -> None:
        settled.append((payment["id"], seller_amount, income))

    live.rt.pm.register(SimpleNamespace(payment_settled=payment_settled), "shop")
    # The host application says the goods arrived.
    result = live.rt.hooks.decide("settle_payment", ref=payment["payment_order"], by="host",
                                  operator_id=None)
    assert (result["seller_amount"], result["income"]) == (1140, 60)
    assert live.balance(people["seller"][1]) == 1140
    wait_until(lambda: settled, what="payment_settled")
    assert settled == [(payment["id"], 1140, 60)]
    assert live.rt.hooks.decide("settle_payment", ref="42424242424242424242", by="host",
                                operator_id=None) is None
    audit_clean(live)
    with live.rt.db.read() as session:
        hooks = set(session.scalars(select(Transfer.code).where(
            Transfer.ref == payment["payment_order"])))
    assert hooks == {"tao", "settle", "commission"}


def test_refund_at_the_channel_blocks_settlement(live: Live, people: dict[str, Any]) -> None:
    payment = buy(live, people, "alipay")
    order = payment["payment_order"]
    live.sb.post(f"/sandbox/alipay/trades/{order}/pay")
    wait_until(lambda: live.payment(payment["id"], people["buyer"][1])["state"] == "ok",
               what="paid")
    live.settle_outbox()
    # Refunded in full from the merchant console, behind our back: Alipay closes the trade.
    refunded = get_channel(live.rt, "alipay").client.api_alipay_trade_refund(
        out_trade_no=order, refund_amount="12.00", out_request_no="console-1")
    assert refunded["code"] == "10000", refunded
    response = live.http.post(f"/v1/payments/{order}/settle", headers=people["cs"][1])
    assert (response.status_code, response.json()["error"]) == (409, "payment.settle_guard")
    assert live.balance(people["seller"][1]) == 0
    assert accounts(live, people["boss"][1])["escrow"] == PRICE
    audit_clean(live)


def test_automatic_settlement_after_n_days(live: Live, people: dict[str, Any]) -> None:
    from gonglun.plugins.payment.settlement import auto_settle
    from gonglun.testing import fund_wallet

    tao_scene(live, settle_after_days=7)
    fund_wallet(live.rt, people["buyer"][0], 3 * PRICE)
    old, recent = buy(live, people), buy(live, people)
    with live.rt.db.write() as session:
        row = session.get(Payment, old["id"])
        row.paid_at = row.paid_at - dt.timedelta(days=8)
    assert auto_settle(live.rt) == {"settled": 1, "blocked": 0}
    assert auto_settle(live.rt) == {"settled": 0, "blocked": 0}
    cs = people["cs"][1]
    assert live.payment(old["id"], cs)["settled_at"]
    assert live.payment(recent["id"], cs)["settled_at"] is None
    assert live.balance(people["seller"][1]) == PRICE
    audit_clean(live)
    jobs = {j.name: j for j in live.rt.periodic_jobs()}
    assert jobs["payment.auto_settle"].actor == "payment.auto_settle"


def test_scene_options_are_checked() -> None:
    from gonglun.plugins.payment.scenes import DEFAULT_SCENES, from_config, validate

    tao = DEFAULT_SCENES["tao"]
    for values, message in (({"commission": 10_001}, "basis points"),
                            ({"commission": 1.5}, "basis points"),
                            ({"settle_after_days": -1}, "non-negative"),
                            ({"topup": True}, "both top up"),
                            ({"seller_required": False}, "settle needs seller_required")):
        with pytest.raises(ValueError, match=message):
            validate(from_config("tao", values, tao))
    face = DEFAULT_SCENES["face_number"]
    with pytest.raises(ValueError, match="need settle"):
        validate(from_config("face_number", {"commission": 100}, face))
    with pytest.raises(ValueError, match="top-up is paid through a channel"):
        validate(from_config("recharge_money", {"methods": ["money", "alipay"]},
                             DEFAULT_SCENES["recharge_money"]))


# -- tampering: every row the money depends on ----------------------------------------------


def _ids(live: Live, order: str, payment_id: int) -> dict[str, Any]:
    with live.rt.db.read() as session:
        keys = dict(session.execute(select(Transfer.idempotency_key, Transfer.id)
                                    .where(Transfer.ref == order)).all())
        account = dict(session.execute(select(Account.code, Account.id)).all())
    return {"keys": keys, "account": account, "payment": payment_id}


def tamper_cases(ids: dict[str, Any], order: str, pid: int, buyer: int,
                 seller: int) -> list[tuple[str, Any, str]]:
    keys, acc = ids["keys"], ids["account"]
    pay, settle, commission = (keys[f"pay:{order}"], keys[f"settle:{pid}"],
                               keys[f"commission:{pid}"])
    transfer = update(Transfer).where
    balance = update(AccountBalance).where
    payment = update(Payment).where(Payment.id == pid).values
    return [
        ("delete the buyer's payment transfer", delete(Transfer).where(Transfer.id == pay),
         f"payment {pid}: its transfer pay:{order} is missing"),
        ("delete the settlement", delete(Transfer).where(Transfer.id == settle),
         f"account user:{seller} balance 1140 != transfers 0"),
        ("edit the commission", transfer(Transfer.id == commission).values(amount=59),
         f"payment {pid} ({order}): income moved 59, expected 60"),
        ("redirect the commission", transfer(Transfer.id == commission)
         .values(credit_id=acc["manual"]), f"payment {pid} ({order}): manual moved 60"),
        ("edit a transfer's reference", transfer(Transfer.id == pay).values(ref="1" * 24),
         f"payment {pid}: transfer {pay} (pay:{order}) is tao 1200"),
        ("edit a transfer's code", transfer(Transfer.id == settle).values(code="gift"),
         f"payment {pid}: settlement transfers wrong or missing (settle {settle}"),
        ("edit a transfer's key", transfer(Transfer.id == pay).values(idempotency_key="x"),
         f"payment {pid}: its transfer pay:{order} is missing"),
        ("edit the seller's balance", balance(AccountBalance.account_id
                                              == acc[f"user:{seller}"]).values(balance=2000),
         f"ledger: account user:{seller} balance 2000 != transfers 1140"),
        ("edit escrow", balance(AccountBalance.account_id == acc["escrow"]).values(balance=5),
         "but unsettled orders 0 + open holds 0 = 0"),
        ("edit the payment's amount", payment(amount=1300),
         f"payment {pid} ({order}): user:{buyer} moved -1200, expected -1300"),
        ("reopen the payment", payment(state="wait_pay"),
         f"payment {pid} ({order}): user:{buyer} moved -1200, expected 0"),
        ("unsettle the payment", payment(settled_at=None, income=0),
         f"payment {pid} ({order}): escrow moved 0, expected 1200"),
        ("edit the income", payment(income=100),
         f"payment {pid} ({order}): income moved 60, expected 100"),
        ("pretend a refund", payment(refund_amount=500, state="refund"),
         f"payment {pid} ({order}): user:{buyer} moved -1200, expected -700"),
        ("pay another seller", payment(seller_id=buyer),
         f"payment {pid} ({order}): user:{seller} moved 1140, expected 0"),
        ("change the method", payment(method="alipay"),
         f"payment {pid} ({order}): channel:alipay moved 0, expected -1200"),
        ("delete the payment", delete(Payment).where(Payment.id == pid),
         f"payment: transfers under ref {order} move user:{seller} by 1140"),
    ]


def test_tampering_with_any_row_is_reported_and_named(live: Live,
                                                      people: dict[str, Any]) -> None:
    from gonglun.testing import fund_wallet

    tao_scene(live, commission=COMMISSION_BP)
    buyer, seller = people["buyer"][0], people["seller"][0]
    fund_wallet(live.rt, buyer, PRICE)
    payment = buy(live, people)
    order, pid = payment["payment_order"], payment["id"]
    live.http.post(f"/v1/payments/{order}/settle", headers=people["cs"][1])
    audit_clean(live)
    ids = _ids(live, order, pid)
    for what, stmt, expected in tamper_cases(ids, order, pid, buyer, seller):
        with live.rt.db.session() as session, session.begin():
            session.execute(stmt)
            problems = audit_session(live.rt, session)
            session.rollback()
        assert problems, f"{what}: not noticed"
        assert any(expected in p for p in problems), (what, problems)
    assert run_audit(live.rt) == []  # every change above was rolled back


# -- what a refund leaves, and refunds made at the channel ------------------------------------


def paid_tao(live: Live, people: dict[str, Any], method: str, amount: int) -> dict[str, Any]:
    """A ``tao`` order of ``amount`` paid by balance or through the sandbox's buyer."""
    from gonglun.testing import fund_wallet

    buyer, seller = people["buyer"], people["seller"]
    body: dict[str, Any] = {"scene": "tao", "amount": amount, "method": method,
                            "seller_id": seller[0], "title": "青花瓷瓶"}
    if method == "money":
        fund_wallet(live.rt, buyer[0], amount)
    else:
        body["channel"] = "page" if method == "alipay" else "native"
    created = live.create(buyer[1], **body)
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    order = data["payment"]["payment_order"]
    if method == "alipay":
        open_cashier(live, data["pay_params"])
        assert live.sb.post(f"/sandbox/alipay/trades/{order}/pay").is_success
    elif method == "wxpay":
        assert live.sb.post(f"/sandbox/wxpay/transactions/{order}/pay").is_success
    wait_until(lambda: live.payment(order, buyer[1])["state"] == "ok", what="paid")
    live.settle_outbox()
    return live.payment(order, buyer[1])


@pytest.mark.parametrize("method", ["money", "alipay", "wxpay"])
def test_what_a_partial_refund_leaves_is_settled_to_the_seller(
        live: Live, people: dict[str, Any], method: str) -> None:
    """A 1-fen refund of a 1000-fen order used to strand 999 fen in escrow (settle answered
    settle_refunded, a second refund already_refunded). Settlement now pays out the rest,
    split as settling first and refunding after would have (DECISIONS.md 27)."""
    tao_scene(live, commission=COMMISSION_BP)
    assert live.sb.post("/sandbox/config",
                        json={"refund_defaults": {"wxpay": "SUCCESS"}}).is_success
    (_, s), (_, cs), (_, boss) = (people[k] for k in ("seller", "cs", "boss"))
    payment = paid_tao(live, people, method, 1000)
    order = payment["payment_order"]
    refunded = live.http.post(f"/v1/payments/{order}/refunds", headers=cs,
                              json={"amount": 1, "way": "admin", "reason": "少发一件配件"})
    assert refunded.status_code == 201, refunded.text
    wait_until(lambda: live.payment(order, cs)["state"] == "refund", what="refunded")
    live.settle_outbox()
    assert accounts(live, boss)["escrow"] == 999
    audit_clean(live)

    settled = live.http.post(f"/v1/payments/{order}/settle", headers=boss)
    assert settled.status_code == 200, settled.text
    data = settled.json()["data"]
    # 5% of 1000 is 50; the 1 fen refunded gives back 1 * 50 // 1000 = 0 of it.
    assert (data["seller_amount"], data["income"]) == (949, 50)
    assert data["payment"]["state"] == "refund" and data["payment"]["settled_at"]
    assert live.balance(s) == 949
    listed = accounts(live, boss)
    assert (listed["escrow"], listed["income"], listed["total"]) == (0, 50, 0)
    audit_clean(live)

    again = live.http.post(f"/v1/payments/{order}/settle", headers=cs)
    assert (again.status_code, again.json()["error"]) == (409, "payment.already_settled")
    second = live.http.post(f"/v1/payments/{order}/refunds", headers=cs,
                            json={"amount": 1, "way": "admin", "reason": "再退一分"})
    assert (second.status_code, second.json()["error"]) == (409, "refund.already_refunded")
    assert live.balance(s) == 949 and accounts(live, boss)["escrow"] == 0
    audit_clean(live)


def test_settling_first_or_refunding_first_ends_the_same(live: Live,
                                                          people: dict[str, Any]) -> None:
    """Who ends with what does not depend on the order of settlement and refund."""
    tao_scene(live, commission=COMMISSION_BP)
    (_, cs), (_, boss), (_, s) = people["cs"], people["boss"], people["seller"]
    ends = []
    for settle_first in (True, False):
        before = (live.balance(s), accounts(live, boss)["income"])
        ref = paid_tao(live, people, "money", 1234)["id"]
        steps = [(f"/v1/payments/{ref}/settle", None),
                 (f"/v1/payments/{ref}/refunds",
                  {"amount": 567, "way": "admin", "reason": "退差价"})]
        for path, body in steps if settle_first else steps[::-1]:
            answer = live.http.post(path, headers=cs, json=body)
            assert answer.is_success, answer.text
        ends.append((live.balance(s) - before[0], accounts(live, boss)["income"] - before[1]))
        assert accounts(live, boss)["escrow"] == 0
        audit_clean(live)
    # 1234: commission 61, seller 1173; refunding 567 gives back 567 * 61 // 1234 = 28.
    assert ends == [(1173 - 539, 33), (1173 - 539, 33)]


def test_auto_settlement_takes_partly_refunded_orders(live: Live, people: dict[str, Any]) -> None:
    from gonglun.plugins.payment.settlement import auto_settle

    tao_scene(live, settle_after_days=7)
    payment = paid_tao(live, people, "money", 800)
    refunded = live.http.post(f"/v1/payments/{payment['id']}/refunds", headers=people["cs"][1],
                              json={"amount": 300, "way": "admin", "reason": "退差价"})
    assert refunded.status_code == 201, refunded.text
    with live.rt.db.write() as session:
        row = session.get(Payment, payment["id"])
        row.paid_at = row.paid_at - dt.timedelta(days=8)
    assert auto_settle(live.rt) == {"settled": 1, "blocked": 0}
    assert live.balance(people["seller"][1]) == 500
    audit_clean(live)


def refund_items(live: Live, order: str) -> list[tuple[str, str, int | None, int | None]]:
    from gonglun.plugins.payment.models import ReconItem

    with live.rt.db.read() as session:
        return [(i.kind, i.status, i.local_amount, i.channel_amount)
                for i in session.scalars(select(ReconItem).where(ReconItem.payment_order == order))]


def test_a_partial_refund_at_alipay_blocks_settlement(live: Live, people: dict[str, Any]) -> None:
    """PAY-24: refunded in part from Alipay's console, behind our back. The trade stays
    TRADE_SUCCESS, so the trade query alone would have settled 12.00 to the seller while
    3.00 went back to the buyer; Alipay's verified refund notice (refund_fee) says so."""
    (_, b), (_, cs), (_, boss) = people["buyer"], people["cs"], people["boss"]
    payment = paid_tao(live, people, "alipay", PRICE)
    order = payment["payment_order"]
    console = live.sb.post(f"/sandbox/alipay/trades/{order}/refund", json={"amount": 300})
    assert console.status_code == 200, console.text
    assert console.json()["data"]["fund_change"] == "Y"
    query = get_channel(live.rt, "alipay").client.api_alipay_trade_query(out_trade_no=order)
    assert query["trade_status"] == "TRADE_SUCCESS"
    wait_until(lambda: any(a["summary"].get("refund_fee") == "3.00" and a["outcome"] == "acked"
                           for a in live.attempts(order)), what="refund notice")

    for _ in range(2):
        blocked = live.http.post(f"/v1/payments/{order}/settle", headers=cs)
        assert (blocked.status_code, blocked.json()["error"]) == (409, "payment.settle_guard")
        assert blocked.json()["data"]["channel_refunded"] == 300
    assert live.balance(people["seller"][1]) == 0
    assert accounts(live, boss)["escrow"] == PRICE
    assert refund_items(live, order) == [("refund_at_channel", "open", 0, 300)]
    live.settle_outbox()
    with live.rt.db.read() as session:
        from gonglun.hooks.deferred import OutboxEvent

        alarms = list(session.scalars(select(OutboxEvent.key).where(
            OutboxEvent.key.like(f"alarm:settle_guard:{payment['id']}:%"))))
    assert alarms == [f"alarm:settle_guard:{payment['id']}:300"]
    audit_clean(live)
    assert live.payment(order, b)["settled_at"] is None


def test_more_refunded_at_alipay_than_by_us_blocks_settlement(
        live: Live, people: dict[str, Any], day_over: None) -> None:
    """Refunded in part by us, then more from the console: Alipay's refund_fee (the trade's
    refunded total) is more than ours. The statement's own run keeps the guard's item open."""
    from gonglun.plugins.payment import reconcile as recon

    cs = people["cs"][1]
    payment = paid_tao(live, people, "alipay", PRICE)
    order = payment["payment_order"]
    ours = live.http.post(f"/v1/payments/{order}/refunds", headers=cs,
                          json={"amount": 100, "way": "admin", "reason": "退差价"})
    assert ours.status_code == 201, ours.text
    assert live.sb.post(f"/sandbox/alipay/trades/{order}/refund",
                        json={"amount": 200}).status_code == 200
    wait_until(lambda: any(a["summary"].get("refund_fee") == "3.00" and a["outcome"] == "acked"
                           for a in live.attempts(order)), what="refund notice")
    blocked = live.http.post(f"/v1/payments/{order}/settle", headers=cs)
    assert (blocked.status_code, blocked.json()["error"]) == (409, "payment.settle_guard")
    assert (blocked.json()["data"]["channel_refunded"], blocked.json()["data"]["refund_amount"]
            ) == (300, 100)
    assert refund_items(live, order) == [("refund_at_channel", "open", 100, 300)]
    assert live.sb.post("/sandbox/config", json={"partial_bills": True}).is_success
    today = recon.beijing_today() - dt.timedelta(days=1)  # the real today (day_over)
    report = recon.reconcile(live.rt, today.isoformat(), "alipay")
    assert report.cleared == 0
    assert sorted(refund_items(live, order)) == [
        ("refund_amount_mismatch", "open", 100, 300), ("refund_at_channel", "open", 100, 300)]
    assert accounts(live, people["boss"][1])["escrow"] == PRICE - 100
    audit_clean(live)


def test_a_refund_at_wechat_blocks_settlement(live: Live, people: dict[str, Any]) -> None:
    """WeChat's order query says REFUND without an amount: a refund we do not know of."""
    (_, cs), (_, boss) = people["cs"], people["boss"]
    payment = paid_tao(live, people, "wxpay", PRICE)
    order = payment["payment_order"]
    console = live.sb.post(f"/sandbox/wxpay/transactions/{order}/refund", json={"amount": 200})
    assert console.status_code == 200, console.text
    blocked = live.http.post(f"/v1/payments/{order}/settle", headers=cs)
    assert (blocked.status_code, blocked.json()["error"]) == (409, "payment.settle_guard")
    assert blocked.json()["data"]["channel_status"] == "REFUND"
    assert refund_items(live, order) == [("refund_at_channel", "open", 0, None)]
    assert accounts(live, boss)["escrow"] == PRICE
    audit_clean(live)


def test_more_refunded_at_wechat_than_by_us_blocks_settlement(live: Live,
                                                               people: dict[str, Any]) -> None:
    """Refunded in part by us, then more from the merchant platform: WeChat's order query says
    REFUND either way; its verified REFUND.SUCCESS notices say how much."""
    cs = people["cs"][1]
    assert live.sb.post("/sandbox/config",
                        json={"refund_defaults": {"wxpay": "SUCCESS"}}).is_success
    payment = paid_tao(live, people, "wxpay", PRICE)
    order = payment["payment_order"]
    ours = live.http.post(f"/v1/payments/{order}/refunds", headers=cs,
                          json={"amount": 100, "way": "admin", "reason": "退差价"})
    assert ours.status_code == 201, ours.text
    console = live.sb.post(f"/sandbox/wxpay/transactions/{order}/refund",
                           json={"amount": 200, "out_refund_no": "console-7"})
    assert console.json()["data"]["status"] == "SUCCESS", console.text
    wait_until(lambda: any(a["summary"].get("out_refund_no") == "console-7"
                           and a["outcome"] == "acked" for a in live.attempts(order)),
               what="refund notice")
    blocked = live.http.post(f"/v1/payments/{order}/settle", headers=cs)
    assert (blocked.status_code, blocked.json()["error"]) == (409, "payment.settle_guard")
    assert (blocked.json()["data"]["channel_refunded"], blocked.json()["data"]["refund_amount"]
            ) == (300, 100)
    assert refund_items(live, order) == [("refund_at_channel", "open", 100, 300)]
    assert accounts(live, people["boss"][1])["escrow"] == PRICE - 100
    audit_clean(live)


def test_an_open_statement_difference_blocks_settlement(live: Live,
                                                         people: dict[str, Any]) -> None:
    """What no query can show (a refund under a number we never saw, whose notice never came)
    the statement shows: its open item blocks settlement until staff resolve it."""
    from gonglun.plugins.payment.models import ReconItem

    cs = people["cs"][1]
    payment = paid_tao(live, people, "alipay", PRICE)
    order = payment["payment_order"]
    with live.rt.db.write() as session:
        session.add(ReconItem(bill_date="2024-07-01", channel="alipay",
                              kind="refund_missing_local", payment_order=order,
                              local_amount=0, channel_amount=100))
    blocked = live.http.post(f"/v1/payments/{order}/settle", headers=cs)
    assert (blocked.status_code, blocked.json()["error"]) == (409, "payment.settle_guard")
    [item] = live.http.get("/v1/admin/reconciliation", headers=cs).json()["data"]["items"]
    resolved = live.http.post(f"/v1/admin/reconciliation/{item['id']}/resolve", headers=cs,
                              json={"resolution": "a test row of the channel, not a refund"})
    assert resolved.status_code == 200, resolved.text
    assert live.http.post(f"/v1/payments/{order}/settle", headers=cs).status_code == 200
    audit_clean(live)


def test_settlement_racing_a_refund_ends_the_same_either_way(live: Live,
                                                               people: dict[str, Any]) -> None:
    """Settlement and a partial refund at the same moment: each claims the order by a
    conditional update; whichever wins, the loser either waits its turn (a refund in flight)
    or applies to what the winner left, and the money ends where it would have anyway."""
    import concurrent.futures

    tao_scene(live, commission=COMMISSION_BP)
    (_, cs), (_, boss), (_, s) = people["cs"], people["boss"], people["seller"]
    rounds = 4
    for _ in range(rounds):
        ref = paid_tao(live, people, "money", 1000)["id"]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            settling = pool.submit(live.http.post, f"/v1/payments/{ref}/settle", headers=cs)
            refunding = pool.submit(live.http.post, f"/v1/payments/{ref}/refunds", headers=cs,
                                    json={"amount": 300, "way": "admin", "reason": "退差价"})
            settled, refunded = settling.result(), refunding.result()
        assert refunded.status_code == 201, refunded.text
        if settled.status_code != 200:  # lost to the refund's claim: settle what is left
            assert settled.json()["error"] in ("payment.settle_refunded",
                                               "payment.concurrent_update"), settled.text
            again = live.http.post(f"/v1/payments/{ref}/settle", headers=cs)
            assert again.status_code == 200, again.text
        assert accounts(live, boss)["escrow"] == 0
    # 1000 at 5%: seller 950 - (300 - 15) = 665, income 50 - 15 = 35 per order.
    assert live.balance(s) == 665 * rounds
    assert accounts(live, boss)["income"] == 35 * rounds
    audit_clean(live)
