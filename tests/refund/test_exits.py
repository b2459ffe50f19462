"""Every exit of a ``fail_refund`` (a manual payout, a retry through the channel, the channel's
late success, the confirmation job) is claimed once, before any outside call: a refund is paid
at most once, and money that did leave twice is booked, alarmed, put in reconciliation and
failed by the audit until staff resolve it (DECISIONS.md 29, REF-27). Through HTTP, the real
SDKs, the sandbox."""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import threading
from typing import Any

import pytest
from sqlalchemy import select

from gonglun.hooks.deferred import OutboxEvent
from gonglun.ledger import Transfer, run_audit
from gonglun.plugins.payment import get_channel
from gonglun.plugins.payment.models import ReconItem
from gonglun.plugins.refund.confirm import confirm_waiting
from gonglun.plugins.refund.models import Refund
from tests.payment.conftest import Live, wait_until
from tests.refund.helpers import (
    audit_clean,
    later,
    paid_channel,
    refund,
    refunds,
    settle_wx,
    state,
)

MANUAL = {"action": "manual", "note": "已通过银行转账退还用户"}
RETRY = {"action": "retry", "type": "MERCHANT_BANK_CARD"}


def abnormal(live: Live, cs: dict[str, str], amount: int = 500) -> tuple[dict[str, Any], Refund]:
    """A WeChat refund the bank could not pay out: ``fail_refund``, its money held."""
    _, headers = live.user(f"buyer{amount}")
    payment = paid_channel(live, headers, "wxpay", amount)
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "next_refund": "ABNORMAL"})
    answer = refund(live, payment, cs, amount=amount, way="admin", reason="退款")
    assert answer.status_code == 201, answer.text
    assert state(live, payment["id"])[0] == "fail_refund"
    [row] = refunds(live, Refund.payment_id == payment["id"])
    return payment, row


def resolve(live: Live, refund_id: int, headers: dict[str, str], body: dict[str, Any]) -> Any:
    return live.http.post(f"/v1/refunds/{refund_id}/resolve", headers=headers, json=body)


def payouts(live: Live, refund_order: str) -> list[str]:
    """Where the held money went (``manual`` or ``channel:wxpay``), once per payout."""
    from gonglun.ledger import transfers_by_key

    with live.rt.db.read() as session:
        keys = list(session.scalars(select(Transfer.idempotency_key).where(
            Transfer.idempotency_key.like(f"refund_payout:{refund_order}:%"))))
        return [t.credit for t in transfers_by_key(session, keys)]


def at_channel(live: Live, payment: dict[str, Any], refund_order: str) -> str:
    return get_channel(live.rt, "wxpay").refund_query(payment, refund_order).status


def alarms(live: Live, kind: str) -> list[dict[str, Any]]:
    import json

    live.settle_outbox()
    with live.rt.db.read() as session:
        rows = session.scalars(select(OutboxEvent).where(OutboxEvent.hook == "alarm"))
        return [k for k in (json.loads(r.payload) for r in rows) if k.get("kind") == kind]


def cli_audit(live: Live, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from gonglun.cli import cmd_audit

    capsys.readouterr()
    code = cmd_audit(live.rt, argparse.Namespace(json=False))
    return code, capsys.readouterr().out


# -- retry against manual -------------------------------------------------------------------


@pytest.mark.parametrize("rounds", [6])
def test_retry_racing_manual_pays_once(live: Live, rounds: int) -> None:
    """Threads: a retry through the channel and a manual payout on one ABNORMAL refund. One
    exit wins; the other answers 409 and nothing of it happened (the channel was not asked
    by a losing retry; no manual transfer for a losing manual)."""
    _, cs = live.user("cs", role="admin")
    winners = []
    for n in range(rounds):
        payment, row = abnormal(live, cs, 300 + n)
        gate = threading.Barrier(2)

        def go(body: dict[str, Any], row: Refund = row, gate: threading.Barrier = gate) -> Any:
            gate.wait()
            return resolve(live, row.id, cs, body)

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            retry, manual = pool.map(go, (RETRY, MANUAL))
        codes = sorted((retry.status_code, manual.status_code))
        assert codes == [200, 409], (retry.text, manual.text)
        lost = retry if retry.status_code == 409 else manual
        assert lost.json()["error"].startswith("refund."), lost.text
        if retry.status_code == 200:
            winners.append("retry")
            assert at_channel(live, payment, row.refund_order) == "PROCESSING"
            settle_wx(live, row.refund_order)
            wait_until(lambda p=payment: state(live, p["id"])[0] == "refund", what="paid")
            assert payouts(live, row.refund_order) == ["channel:wxpay"]
        else:
            winners.append("manual")
            assert at_channel(live, payment, row.refund_order) == "ABNORMAL"
            assert state(live, payment["id"])[0] == "refund"
            assert payouts(live, row.refund_order) == ["manual"]
        audit_clean(live)
    assert len(winners) == rounds


def test_every_pair_of_exits_races_to_one_payout(live: Live) -> None:
    """Two manual payouts, two retries, and a manual payout against the channel's late
    success: each pair ends with exactly one payout."""
    _, cs = live.user("cs", role="admin")
    for first, second in ((MANUAL, MANUAL), (RETRY, RETRY)):
        payment, row = abnormal(live, cs, 410 if first is MANUAL else 420)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda b, r=row: resolve(live, r.id, cs, b), (first, second)))
        assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
        if first is RETRY:
            settle_wx(live, row.refund_order)
            wait_until(lambda p=payment: state(live, p["id"])[0] == "refund", what="paid")
        assert len(payouts(live, row.refund_order)) == 1
        audit_clean(live)


# -- manual payouts ask the channel first (REF-27) -------------------------------------------


def test_a_refund_still_processing_is_stuck_at_the_channel_not_failed(live: Live) -> None:
    """Three PROCESSING confirmations leave the refund waiting, shown stuck at the channel with
    one alarm; a manual payout is refused; the channel's payment is then the only one."""
    _, headers = live.user("buyer")
    _, cs = live.user("cs", role="admin")
    payment = paid_channel(live, headers, "wxpay", 640)
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "next_refund": "PROCESSING"})
    assert refund(live, payment, cs, amount=640, way="admin", reason="退款").status_code == 201
    refund_order = state(live, payment["id"])[2]
    outcomes = []
    for _ in range(4):
        outcomes.append(confirm_waiting(live.rt, "wxpay", older_than_s=0))
        later(live, refund_order)
    assert outcomes == [{"processing": 1}, {"processing": 1}, {"stuck": 1}, {"processing": 1}]
    assert state(live, payment["id"])[0] == "wait_refund"
    listed = live.http.get("/v1/refunds", headers=cs, params={"status": "stuck"}).json()
    [shown] = listed["data"]["refunds"]
    assert shown["stuck_at_channel"] is True and shown["refund_order"] == refund_order
    assert len(alarms(live, "refund_stuck")) == 1
    refused = resolve(live, shown["id"], cs, MANUAL)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "refund.channel_processing"
    settle_wx(live, refund_order)  # the channel pays, as it said it would
    wait_until(lambda: state(live, payment["id"])[0] == "refund", what="paid by the channel")
    [row] = refunds(live, Refund.payment_id == payment["id"])
    assert row.paid_by == "channel" and payouts(live, refund_order) == []
    audit_clean(live)


def test_checks_run_close_together_count_once(live: Live) -> None:
    """A job re-run three times in a few seconds (an empty Redis restarted) counts one check:
    an Alipay refund that is not settled does not fail early."""
    _, headers = live.user("buyer")
    _, cs = live.user("cs", role="admin")
    payment = paid_channel(live, headers, "alipay", 330)
    live.sb.post("/sandbox/faults", json={"channel": "alipay", "next_refund": "PENDING"})
    refund(live, payment, cs, amount=330, way="admin", reason="退款")
    for _ in range(3):
        assert confirm_waiting(live.rt, "alipay", older_than_s=0) == {"processing": 1}
    [row] = refunds(live, Refund.payment_id == payment["id"])
    assert (row.status, row.checks) == (2, 1)
    assert state(live, payment["id"])[0] == "wait_refund"
    audit_clean(live)


def test_manual_payout_refused_when_the_channel_paid_or_cannot_say(live: Live) -> None:
    """A fail_refund the channel did pay (its notice lost) is settled by the channel exit when
    staff try to pay it by hand; a channel that does not answer refuses the payout too."""
    _, cs = live.user("cs", role="admin")
    payment, row = abnormal(live, cs, 560)
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "http": "500", "count": 1})
    blind = resolve(live, row.id, cs, MANUAL)
    assert blind.status_code == 502 and blind.json()["error"] == "refund.channel_unconfirmed"
    assert state(live, payment["id"])[0] == "fail_refund"
    # Paid at the channel behind our back (the merchant console), its notice lost.
    get_channel(live.rt, "wxpay").abnormal_refund(row.channel_refund_id, row.refund_order,
                                                  type="MERCHANT_BANK_CARD")
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "notify": "drop", "count": 5})
    settle_wx(live, row.refund_order)
    paid = resolve(live, row.id, cs, MANUAL)
    assert paid.status_code == 409 and paid.json()["error"] == "refund.paid_by_channel", paid.text
    assert state(live, payment["id"])[0] == "refund"
    assert payouts(live, row.refund_order) == ["channel:wxpay"]
    audit_clean(live)


def test_an_unanswered_retry_keeps_its_claim(live: Live) -> None:
    """A retry the channel did not answer may have been taken: no manual payout may follow
    at once; the claim is freed only after its time (or by the channel's own answer)."""
    _, cs = live.user("cs", role="admin")
    payment, row = abnormal(live, cs, 530)
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "http": "500", "count": 1})
    blind = resolve(live, row.id, cs, RETRY)
    assert blind.status_code == 502, blind.text
    held = resolve(live, row.id, cs, MANUAL)
    assert held.status_code == 409 and held.json()["error"] == "refund.exit_claimed", held.text
    assert state(live, payment["id"])[0] == "fail_refund"
    assert payouts(live, row.refund_order) == []
    # Past the claim's time the exit is free again; the payout still asks the channel first.
    with live.rt.db.write() as session:
        claimed = session.get(Refund, row.id)
        claimed.claimed_at = claimed.claimed_at - dt.timedelta(seconds=400)
    done = resolve(live, row.id, cs, MANUAL)
    assert done.status_code == 200, done.text
    assert payouts(live, row.refund_order) == ["manual"]
    audit_clean(live)


def test_failed_refunds_keep_being_checked_until_an_exit(live: Live) -> None:
    """The confirmation job asks about fail_refund too: the channel's success there is the
    channel exit."""
    _, cs = live.user("cs", role="admin")
    payment, row = abnormal(live, cs, 470)
    get_channel(live.rt, "wxpay").abnormal_refund(row.channel_refund_id, row.refund_order,
                                                  type="MERCHANT_BANK_CARD")
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "notify": "drop", "count": 5})
    settle_wx(live, row.refund_order)
    assert confirm_waiting(live.rt, "wxpay", older_than_s=0) == {"refunded": 1}
    assert state(live, payment["id"])[0] == "refund"
    assert payouts(live, row.refund_order) == ["channel:wxpay"]
    audit_clean(live)


# -- money that left twice ------------------------------------------------------------------


def test_channel_success_after_a_manual_payout_is_booked_and_audited(
        live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    """Paid by hand while the channel said ABNORMAL, then paid by the channel too (someone
    recovered it at the merchant console): booked, alarmed, a reconciliation item, the audit
    failing and naming the order until staff resolve the item."""
    _, cs = live.user("cs", role="admin")
    payment, row = abnormal(live, cs, 880)
    assert resolve(live, row.id, cs, MANUAL).status_code == 200
    audit_clean(live)
    get_channel(live.rt, "wxpay").abnormal_refund(row.channel_refund_id, row.refund_order,
                                                  type="MERCHANT_BANK_CARD")
    settle_wx(live, row.refund_order)  # REFUND.SUCCESS is notified
    order = payment["payment_order"]

    def item() -> Any:
        with live.rt.db.read() as session:
            return session.scalar(select(ReconItem.id).where(
                ReconItem.kind == "refund_paid_twice", ReconItem.payment_order == order))

    wait_until(item, what="the double payout booked")
    live.settle_outbox()
    with live.rt.db.read() as session:
        [twice] = session.scalars(select(Transfer).where(Transfer.code == "refund_paid_twice"))
        assert twice.amount == 880 and twice.ref == row.refund_order
        [item] = session.scalars(select(ReconItem).where(ReconItem.kind == "refund_paid_twice"))
    assert item.status == "open" and item.payment_order == order
    [alarm] = alarms(live, "refund_paid_twice")
    assert alarm["data"]["payment_order"] == order
    code, out = cli_audit(live, capsys)
    assert code == 1 and order in out, out
    # The same news again (a redelivery, a confirmation) books nothing more.
    from gonglun.plugins.payment import RefundResult
    from gonglun.plugins.refund.service import settle

    again = settle(live.rt, row.id, RefundResult("SUCCESS", "notice", "", amount=880),
                   source="notice")
    assert again["outcome"] == "paid_twice"
    with live.rt.db.read() as session:
        assert len(list(session.scalars(select(Transfer).where(
            Transfer.code == "refund_paid_twice")))) == 1
    resolved = live.http.post(f"/v1/admin/reconciliation/{item.id}/resolve", headers=cs,
                              json={"resolution": "已向用户追回重复退款"})
    assert resolved.status_code == 200, resolved.text
    assert cli_audit(live, capsys)[0] == 0
    assert run_audit(live.rt) == []


def test_reconciliation_shows_a_hand_paid_refund_the_channel_also_paid(live: Live) -> None:
    """A refund paid by hand that the channel's statement shows refunded is a difference."""
    from gonglun.plugins.payment.models import Payment
    from gonglun.plugins.payment.money import SHANGHAI
    from gonglun.plugins.payment.recon_twice import paid_twice

    live.sb.post("/sandbox/config", json={"partial_bills": True})
    _, cs = live.user("cs", role="admin")
    payment, row = abnormal(live, cs, 720)
    assert resolve(live, row.id, cs, MANUAL).status_code == 200
    today = dt.datetime.now(SHANGHAI).strftime("%Y-%m-%d")
    rows = {r.payment_order: r for r in get_channel(live.rt, "wxpay").statement(today)}
    assert paid_twice(live.rt, "wxpay", rows) == []  # the channel did not pay it
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "notify": "drop", "count": 5})
    get_channel(live.rt, "wxpay").abnormal_refund(row.channel_refund_id, row.refund_order,
                                                  type="MERCHANT_BANK_CARD")
    settle_wx(live, row.refund_order)
    rows = {r.payment_order: r for r in get_channel(live.rt, "wxpay").statement(today)}
    [diff] = paid_twice(live.rt, "wxpay", rows)
    assert (diff.kind, diff.payment_order, diff.channel_amount) == (
        "refund_paid_twice", payment["payment_order"], 720)
    with live.rt.db.read() as session:
        assert session.get(Payment, payment["id"]).state == "refund"


def test_manual_racing_the_channel_paying_never_pays_twice(live: Live) -> None:
    """Threads: staff pay by hand while the channel pays the same refund out (its success
    notice and the confirmation job): the manual payout loses every round."""
    _, cs = live.user("cs", role="admin")
    for n in range(4):
        payment, row = abnormal(live, cs, 600 + n)
        get_channel(live.rt, "wxpay").abnormal_refund(row.channel_refund_id, row.refund_order,
                                                      type="MERCHANT_BANK_CARD")
        gate = threading.Barrier(3)

        def manual(row: Refund = row, gate: threading.Barrier = gate) -> Any:
            gate.wait()
            return resolve(live, row.id, cs, MANUAL)

        def channel(row: Refund = row, gate: threading.Barrier = gate) -> None:
            gate.wait()
            settle_wx(live, row.refund_order)

        def job(gate: threading.Barrier = gate) -> None:
            gate.wait()
            confirm_waiting(live.rt, "wxpay", older_than_s=0)

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            answer, *_ = [f.result() for f in
                          (pool.submit(manual), pool.submit(channel), pool.submit(job))]
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"] in ("refund.channel_processing", "refund.paid_by_channel",
                                          "refund.not_failed", "refund.exit_claimed")
        wait_until(lambda p=payment: state(live, p["id"])[0] == "refund", what="paid")
        assert payouts(live, row.refund_order) == ["channel:wxpay"]
        audit_clean(live)
