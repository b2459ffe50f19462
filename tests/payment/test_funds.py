"""Each scene's money path, and the refund transfers the refund plugin will make (DECISIONS.md
9 and 27): from wherever the money is now back to its source, in proportion after settlement,
never more than the order gave anyone, the seller's wallet negative only for admin/system."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gonglun.errors import GonglunError
from gonglun.ledger import account_balance, negative_blocks, run_audit, wallet
from gonglun.plugins.payment.funds import income_returned, refund_moves
from gonglun.plugins.payment.scenes import DEFAULT_SCENES, from_config
from gonglun.testing import fund_wallet
from tests.payment import flows

TAO = from_config("tao", {"commission": 550}, DEFAULT_SCENES["tao"])  # 5.5%


def balances(rt: Any, *codes: str) -> list[int]:
    with rt.db.read() as session:
        return [account_balance(session, c) for c in codes]


@pytest.fixture
def rt(make_rt: Any) -> Any:
    from argon2 import PasswordHasher

    from gonglun.accounts import passwords

    old = passwords.use(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    # The payment plugin's own money flows, refunds included, without the refund plugin (and
    # so without its records, which its audit would look for).
    runtime = make_rt(payment={"scenes": {"tao": {"commission": 550}}},
                      plugins={"disabled": ["refund", "identify"]})
    yield runtime
    passwords.use(old)


@pytest.fixture
def channels(rt: Any) -> flows.MemoryChannels:
    return flows.install(rt)


def settled_tao(rt: Any, amount: int = 1000) -> tuple[Any, Any, dict[str, Any]]:
    from gonglun.plugins.payment.settlement import settle

    buyer, seller = flows.user(rt, "buyer"), flows.user(rt, "seller")
    fund_wallet(rt, buyer.id, amount)
    payment = flows.pay_by_balance(rt, buyer, "tao", amount, seller.id)
    settle(rt, payment["id"], by="admin")
    return buyer, seller, flows.reload(rt, payment["id"])


def test_each_scene_moves_its_money_where_it_belongs(rt: Any, channels: Any) -> None:
    buyer, seller = flows.user(rt, "buyer"), flows.user(rt, "seller")
    recharge = flows.channel_order(rt, buyer.id, "recharge_money", 5000, "wxpay")
    assert flows.channel_pays(rt, channels, recharge) == "applied"
    face_guest = flows.channel_order(rt, None, "face_number", 100)
    flows.channel_pays(rt, channels, face_guest)
    flows.pay_by_balance(rt, buyer, "face_number", 100)
    flows.pay_by_balance(rt, buyer, "tao", 1200, seller.id)
    tao_alipay = flows.channel_order(rt, buyer.id, "tao", 800, seller=seller.id)
    flows.channel_pays(rt, channels, tao_alipay)
    assert balances(rt, wallet(buyer.id), "channel:wxpay", "channel:alipay", "income",
                    "escrow") == [3700, -5000, -900, 200, 2000]
    assert run_audit(rt) == []
    with pytest.raises(GonglunError) as err:
        flows.pay_by_balance(rt, buyer, "tao", 3701, seller.id)
    assert err.value.error == "ledger.insufficient_balance"
    assert run_audit(rt) == []


def test_refund_before_settlement_comes_out_of_escrow(rt: Any) -> None:
    buyer, seller = flows.user(rt, "buyer"), flows.user(rt, "seller")
    fund_wallet(rt, buyer.id, 1000)
    payment = flows.pay_by_balance(rt, buyer, "tao", 1000, seller.id)
    moved = flows.refund(rt, payment["id"], 400, "seller", "R1")
    assert [(r.transfer.debit, r.transfer.credit, r.transfer.code, r.transfer.amount)
            for r in moved] == [("escrow", wallet(buyer.id), "refund", 400)]
    assert balances(rt, wallet(buyer.id), "escrow") == [400, 600]
    assert run_audit(rt) == []
    again = flows.refund(rt, payment["id"], 600, "seller", "R2")
    assert [r.transfer.amount for r in again] == [600]
    assert balances(rt, wallet(buyer.id), "escrow") == [1000, 0]
    assert run_audit(rt) == []


def test_refund_after_settlement_is_taken_back_in_proportion(rt: Any) -> None:
    buyer, seller, payment = settled_tao(rt)
    assert payment["income"] == 55 and balances(rt, wallet(seller.id)) == [945]
    steps = [flows.refund(rt, payment["id"], part, "seller", f"R{n}")
             for n, part in enumerate((333, 333, 334))]
    taken = [[(r.transfer.debit, r.transfer.amount) for r in step] for step in steps]
    assert taken == [[(wallet(seller.id), 315), ("income", 18)],
                     [(wallet(seller.id), 315), ("income", 18)],
                     [(wallet(seller.id), 315), ("income", 19)]]
    assert all(r.transfer.code == ("refund_reverse" if r.transfer.debit.startswith("user:")
                                   else "refund") for step in steps for r in step)
    assert balances(rt, wallet(buyer.id), wallet(seller.id), "income", "escrow") == [1000, 0,
                                                                                      0, 0]
    assert run_audit(rt) == []


def test_a_seller_short_of_money_blocks_their_own_refund_not_the_platforms(rt: Any) -> None:
    buyer, seller, payment = settled_tao(rt)
    payout = fund_wallet(rt, seller.id, -900, scene="payout")  # withdrawn to a bank card
    assert payout.balance_after == 45
    with pytest.raises(GonglunError) as err:
        flows.refund(rt, payment["id"], 1000, "seller", "R1")
    assert err.value.error == "ledger.insufficient_balance"
    assert flows.reload(rt, payment["id"])["refund_amount"] == 0  # the whole refund rolled back
    flows.refund(rt, payment["id"], 1000, "system", "R1")
    assert balances(rt, wallet(seller.id), wallet(buyer.id)) == [-900, 1000]
    with rt.db.read() as session:
        assert negative_blocks(session, seller.id)  # BAL-05: no new orders until topped up
    assert run_audit(rt) == []


def test_a_refunded_recharge_is_taken_back_from_the_wallet(rt: Any, channels: Any) -> None:
    payer = flows.user(rt, "payer")
    recharge = flows.channel_order(rt, payer.id, "recharge_money", 3000)
    flows.channel_pays(rt, channels, recharge)
    flows.pay_by_balance(rt, payer, "face_number", 2000)
    with pytest.raises(GonglunError):
        flows.refund(rt, recharge["id"], 3000, "seller", "R1")
    flows.refund(rt, recharge["id"], 3000, "admin", "R1")
    assert balances(rt, wallet(payer.id), "channel:alipay", "income") == [-2000, 0, 2000]
    assert run_audit(rt) == []


def test_a_late_payment_waits_in_escrow_and_is_refunded_from_it(rt: Any,
                                                                channels: Any) -> None:
    payer = flows.user(rt, "payer")
    order = flows.channel_order(rt, payer.id, "recharge_money", 700)
    flows.close(rt, order)
    assert flows.channel_pays(rt, channels, order) == "late"
    assert balances(rt, wallet(payer.id), "escrow", "channel:alipay") == [0, 700, -700]
    assert run_audit(rt) == []
    moved = flows.refund(rt, order["id"], 700, "system", "R1", keep_state=True)
    assert [(r.transfer.debit, r.transfer.credit) for r in moved] == [("escrow",
                                                                        "channel:alipay")]
    assert balances(rt, "escrow", "channel:alipay") == [0, 0]
    assert run_audit(rt) == []


def test_money_no_route_can_move_is_reported_as_stranded(rt: Any, channels: Any) -> None:
    """Escrow holds an order's money only while settlement or a refund can still move it: a
    late payment refunded in part leaves the rest where nothing can reach it."""
    payer, seller = flows.user(rt, "payer"), flows.user(rt, "seller")
    order = flows.channel_order(rt, payer.id, "tao", 700, seller=seller.id)
    flows.close(rt, order)
    assert flows.channel_pays(rt, channels, order) == "late"
    assert run_audit(rt) == []  # waiting for review: staff can still refund it
    flows.refund(rt, order["id"], 300, "system", "R1")
    assert balances(rt, "escrow") == [400]
    assert run_audit(rt) == [
        f"payment {order['id']} ({order['payment_order']}): 400 stranded in escrow: the order "
        f"is refund and no settlement or refund can move it"]


def test_refund_amount_is_checked() -> None:
    payment = {"amount": 100, "refund_amount": 60, "payment_order": "1", "method": "money",
               "user_id": 1, "seller_id": 2, "settled_at": None}
    for amount in (0, 41, -1):
        with pytest.raises(GonglunError) as err:
            refund_moves(TAO, payment, amount=amount, way="admin", refund_order="R")
        assert err.value.error == "refund.invalid_amount"


@settings(max_examples=200, deadline=None)
@given(amount=st.integers(1, 10**9), commission=st.integers(0, 10_000),
       parts=st.lists(st.integers(1, 10**9), min_size=1, max_size=6))
def test_proportional_reversal_never_takes_more_than_was_given(amount: int, commission: int,
                                                               parts: list[int]) -> None:
    income = amount * commission // 10_000
    refunded, seller_back, income_back = 0, 0, 0
    for part in parts:
        part = min(part, amount - refunded)
        if part <= 0:
            break
        step = (income_returned(refunded + part, amount, income)
                - income_returned(refunded, amount, income))
        refunded += part
        seller_back += part - step
        income_back += step
        assert 0 <= step <= part
        assert seller_back <= amount - income and income_back <= income
    if refunded == amount:
        assert (seller_back, income_back) == (amount - income, income)
