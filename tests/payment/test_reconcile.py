"""Daily reconciliation end to end: real orders paid through the sandbox, statements downloaded
through the real SDKs, differences recorded, listed and resolved over HTTP and the CLI."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from gonglun.hooks.deferred import OutboxEvent
from gonglun.plugins.payment import reconcile as recon
from gonglun.plugins.payment.channels import get_channel
from gonglun.plugins.payment.models import ReconItem, ReconRun
from gonglun.plugins.payment.money import SHANGHAI
from tests.payment.conftest import Live, wait_until
from tests.payment.test_lifecycle import run_job, wx_order
from tests.payment.test_recharge import recharge_alipay

#: The real Beijing "today", before ``_todays_statements`` moves the reconciler a day on.
REAL_TODAY = recon.beijing_today


@pytest.fixture(autouse=True)
def _todays_statements(request: pytest.FixtureRequest, day_over: None) -> None:
    """Statements exist only for days that are over (T+1) and only such days are reconciled;
    these tests reconcile what they just did, so the sandbox serves today's partial statement
    too and the reconciler runs as if today were over (``day_over``). The T+1 rules
    themselves are checked by test_alipay_statements_are_t_plus_one_zips and
    test_only_finished_days_are_reconciled (on the real clock)."""
    if "live" in request.fixturenames:
        live = request.getfixturevalue("live")
        assert live.sb.post("/sandbox/config", json={"partial_bills": True}).is_success


def beijing_day(days: int = 0) -> str:
    return (dt.datetime.now(SHANGHAI).date() + dt.timedelta(days=days)).isoformat()


def paid_alipay(live: Live, headers: dict[str, str], amount: int,
                paid_at: str | None = None) -> dict[str, Any]:
    payment = recharge_alipay(live, headers, amount=amount)
    assert live.sb.post(f"/sandbox/alipay/trades/{payment['payment_order']}/pay",
                        json={"paid_at": paid_at} if paid_at else {}).is_success
    wait_until(lambda: live.payment(payment["id"], headers)["state"] == "ok", what="paid")
    return payment


def paid_wxpay(live: Live, headers: dict[str, str], amount: int) -> dict[str, Any]:
    payment = wx_order(live, headers, amount)
    assert live.sb.post(
        f"/sandbox/wxpay/transactions/{payment['payment_order']}/pay").is_success
    wait_until(lambda: live.payment(payment["id"], headers)["state"] == "ok", what="paid")
    return payment


def items(live: Live) -> list[ReconItem]:
    with live.rt.db.read() as session:
        return list(session.scalars(select(ReconItem).order_by(ReconItem.id)))


def recon_alarms(live: Live) -> int:
    with live.rt.db.read() as session:
        return int(session.scalar(select(func.count()).where(
            OutboxEvent.hook == "alarm", OutboxEvent.key.like("alarm:recon:%"))) or 0)


def test_missing_locally_and_amount_mismatch_are_exactly_the_differences(live: Live) -> None:
    admin_id, admin = live.user("admin", role="admin")
    _, buyer = live.user("buyer")
    for amount in (1000, 2000):
        paid_alipay(live, buyer, amount)
    paid_wxpay(live, buyer, 300)
    mismatched = paid_wxpay(live, buyer, 500)
    # A trade paid at Alipay that we never created: the money arrived, no order of ours knows.
    stray = live.sb.post("/sandbox/alipay/trades", json={"amount": 555}).json()["data"]
    # WeChat's record of a paid order says 6.00 yuan where ours says 5.00.
    patched = live.sb.patch(f"/sandbox/wxpay/trades/{mismatched['payment_order']}",
                            json={"total": 600})
    assert patched.is_success, patched.text
    live.settle_outbox()
    today = beijing_day()

    ran = live.http.post("/v1/admin/reconciliation/run", json={"date": today}, headers=admin)
    assert ran.status_code == 200, ran.text
    reports = {r["channel"]: r for r in ran.json()["data"]["reports"]}
    assert reports["alipay"]["channel_rows"] == 3 and reports["alipay"]["local_rows"] == 2
    assert reports["wxpay"]["channel_rows"] == 2 and reports["wxpay"]["local_rows"] == 2
    found = {(i["channel"], i["kind"], i["payment_order"]): i
             for r in reports.values() for i in r["items"]}
    assert set(found) == {
        ("alipay", "missing_local", stray["out_trade_no"]),
        ("wxpay", "amount_mismatch", mismatched["payment_order"]),
    }
    missing = found[("alipay", "missing_local", stray["out_trade_no"])]
    assert (missing["channel_amount"], missing["local_amount"], missing["status"]) == (
        555, None, "open")
    assert missing["trade_no"] == stray["trade_no"]
    wrong = found[("wxpay", "amount_mismatch", mismatched["payment_order"])]
    assert (wrong["local_amount"], wrong["channel_amount"], wrong["status"]) == (500, 600, "open")
    assert recon_alarms(live) == 2  # one per channel with new differences

    # Running the day again (here through the service) finds the same two and adds nothing.
    for channel in ("alipay", "wxpay"):
        again = recon.reconcile(live.rt, today, channel)
        assert again.new_items == 0 and again.differences == 1 and again.open == 1
    assert len(items(live)) == 2
    assert recon_alarms(live) == 2
    with live.rt.db.read() as session:
        runs = {r.channel: r for r in session.scalars(select(ReconRun))}
    assert {c: (r.bill_date, r.channel_rows, r.local_rows, r.differences)
            for c, r in runs.items()} == {"alipay": (today, 3, 2, 1), "wxpay": (today, 2, 2, 1)}

    listed = live.http.get("/v1/admin/reconciliation",
                           params={"status": "open", "date": today}, headers=admin)
    assert listed.status_code == 200, listed.text
    assert {i["id"] for i in listed.json()["data"]["items"]} == {
        missing["id"], wrong["id"]}
    only_wx = live.http.get("/v1/admin/reconciliation", params={"channel": "wxpay"},
                            headers=admin).json()["data"]["items"]
    assert [i["id"] for i in only_wx] == [wrong["id"]]

    # Only admins see or settle differences.
    assert live.http.get("/v1/admin/reconciliation", headers=buyer).status_code == 403
    assert live.http.get("/v1/admin/reconciliation").status_code == 401
    refused = live.http.post(f"/v1/admin/reconciliation/{wrong['id']}/resolve",
                             json={"resolution": "x"}, headers=buyer)
    assert refused.status_code == 403
    assert live.http.post("/v1/admin/reconciliation/run", json={"date": today},
                          headers=buyer).status_code == 403

    note = "channel corrected its record after a call"
    resolved = live.http.post(f"/v1/admin/reconciliation/{wrong['id']}/resolve",
                              json={"resolution": note}, headers=admin)
    assert resolved.status_code == 200, resolved.text
    body = resolved.json()["data"]
    assert (body["status"], body["resolution"], body["resolved_by"]) == (
        "resolved", note, admin_id)
    assert body["resolved_at"]
    twice = live.http.post(f"/v1/admin/reconciliation/{wrong['id']}/resolve",
                           json={"resolution": note}, headers=admin)
    assert (twice.status_code, twice.json()["error"]) == (409, "recon.already_resolved")
    for ref, payload, status, error in (
        ("999999", {"resolution": note}, 404, "recon.not_found"),
        ("abc", {"resolution": note}, 404, "recon.not_found"),
        (str(missing["id"]), {"resolution": "  "}, 400, "recon.invalid_resolution"),
        (str(missing["id"]), {}, 400, "recon.invalid_resolution"),
    ):
        reply = live.http.post(f"/v1/admin/reconciliation/{ref}/resolve", json=payload,
                               headers=admin)
        assert (reply.status_code, reply.json()["error"]) == (status, error), reply.text

    # A resolved difference stays resolved when the day is reconciled again.
    assert live.http.post("/v1/admin/reconciliation/run", json={"date": today, "channel": "wxpay"},
                          headers=admin).status_code == 200
    still_open = live.http.get("/v1/admin/reconciliation", params={"status": "open"},
                               headers=admin).json()["data"]
    assert [i["id"] for i in still_open["items"]] == [missing["id"]]
    assert still_open["counts"] == {"open": 1, "resolved": 1}

    # Bad input: clear JSON errors with stable ids.
    for payload, error in (
        ({"date": "2024-13-01"}, "recon.invalid_date"),
        ({"date": "yesterday"}, "recon.invalid_date"),
        ({}, "recon.invalid_date"),
        ({"date": beijing_day(2)}, "recon.invalid_date"),
        ({"date": beijing_day(1)}, "recon.invalid_date"),  # "today" here: not over
        ({"date": today, "channel": "money"}, "recon.invalid_channel"),
    ):
        reply = live.http.post("/v1/admin/reconciliation/run", json=payload, headers=admin)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"] == error and reply.json()["msg"]
    for params, error in (({"date": "2024-02-30"}, "recon.invalid_date"),
                          ({"status": "closed"}, "recon.invalid_status"),
                          ({"channel": "paypal"}, "recon.invalid_channel")):
        reply = live.http.get("/v1/admin/reconciliation", params=params, headers=admin)
        assert (reply.status_code, reply.json()["error"]) == (400, error)
    assert len(items(live)) == 2


def test_dropped_notification_is_recovered_by_query(live: Live) -> None:
    _, headers = live.user()
    payment = recharge_alipay(live, headers, amount=4321)
    live.sb.post("/sandbox/faults", json={"channel": "alipay", "notify": "drop", "count": 1})
    assert live.sb.post(f"/sandbox/alipay/trades/{payment['payment_order']}/pay").is_success
    assert [a["outcome"] for a in live.attempts(payment["payment_order"])] == ["dropped"]
    assert live.payment(payment["id"], headers)["state"] == "wait_pay"

    report = recon.reconcile(live.rt, beijing_day(), "alipay")
    assert report.recovered == 1 and report.new_items == 0 and report.open == 0
    [item] = report.items
    assert (item["kind"], item["payment_order"], item["status"], item["resolution"]) == (
        "missing_local", payment["payment_order"], "resolved", recon.RECOVERED)
    assert (item["local_state"], item["local_amount"], item["channel_amount"]) == (
        "wait_pay", 4321, 4321)
    wait_until(lambda: live.balance(headers) == 4321, what="balance credited")
    after = live.payment(payment["id"], headers)
    assert after["state"] == "ok" and after["pay_order"] == item["trade_no"]
    live.settle_outbox()
    assert recon_alarms(live) == 0  # settled by the run itself: nobody needs to look

    # The next run finds nothing new and leaves the recovered item as it is.
    again = recon.reconcile(live.rt, beijing_day(), "alipay")
    assert again.differences == 0 and again.recovered == 0
    assert [(i.status, i.resolution) for i in items(live)] == [("resolved", recon.RECOVERED)]


def test_refund_at_the_channel_not_recorded_here_is_a_difference(live: Live) -> None:
    _, headers = live.user()
    alipay = paid_alipay(live, headers, 1500)
    wxpay = paid_wxpay(live, headers, 800)
    # Refunds made at the channels behind our back (e.g. from the merchant console).
    refunded = get_channel(live.rt, "alipay").client.api_alipay_trade_refund(
        out_trade_no=alipay["payment_order"], refund_amount="5.00", out_request_no="console-1")
    assert refunded["code"] == "10000", refunded
    code, body = get_channel(live.rt, "wxpay").client.refund(
        out_refund_no="console-2", amount={"refund": 800, "total": 800, "currency": "CNY"},
        out_trade_no=wxpay["payment_order"])
    assert code == 200, body
    # WeChat refunds are PROCESSING until the bank pays them; only then on the statement.
    assert live.sb.post("/sandbox/wxpay/refunds/console-2/settle",
                        json={"status": "SUCCESS"}).is_success
    today = beijing_day()
    found = {}
    for channel in ("alipay", "wxpay"):
        report = recon.reconcile(live.rt, today, channel)
        assert report.differences == 1
        found[channel] = report.items[0]
    assert {c: (i["kind"], i["payment_order"], i["local_state"], i["channel_state"],
                i["local_amount"], i["channel_amount"]) for c, i in found.items()} == {
        "alipay": ("refund_missing_local", alipay["payment_order"], "ok", "REFUND", 0, 500),
        "wxpay": ("refund_missing_local", wxpay["payment_order"], "ok", "REFUND", 0, 800),
    }


def test_statement_parsers_read_refunds_of_earlier_days(live: Live) -> None:
    """A refund booked today for a trade paid yesterday is the trade's only row today."""
    yesterday = f"{beijing_day(-1)} 12:00:00"
    ali = live.sb.post("/sandbox/alipay/trades",
                       json={"amount": 990, "paid_at": yesterday}).json()["data"]
    wx = live.sb.post("/sandbox/wxpay/trades",
                      json={"total": 770, "paid_at": yesterday}).json()["data"]
    alipay, wxpay = get_channel(live.rt, "alipay"), get_channel(live.rt, "wxpay")
    assert alipay.client.api_alipay_trade_refund(
        out_trade_no=ali["out_trade_no"], refund_amount="1.90", out_request_no="r1")["code"] == (
        "10000")
    code, _ = wxpay.client.refund(out_refund_no="r2", out_trade_no=wx["out_trade_no"],
                                  amount={"refund": 70, "total": 770, "currency": "CNY"})
    assert code == 200
    assert live.sb.post("/sandbox/wxpay/refunds/r2/settle", json={"status": "SUCCESS"}).is_success

    assert [(r.payment_order, r.amount, r.status, r.refund_amount)
            for r in alipay.statement(beijing_day(-1))] == [
        (ali["out_trade_no"], 990, "SUCCESS", 0)]
    assert [(r.payment_order, r.trade_no, r.amount, r.status, r.refund_amount)
            for r in alipay.statement(beijing_day())] == [
        (ali["out_trade_no"], ali["trade_no"], 990, "REFUND", 190)]
    assert [(r.payment_order, r.amount, r.status, r.refund_amount)
            for r in wxpay.statement(beijing_day(-1))] == [
        (wx["out_trade_no"], 770, "SUCCESS", 0)]
    assert [(r.payment_order, r.trade_no, r.amount, r.status, r.refund_amount)
            for r in wxpay.statement(beijing_day())] == [
        (wx["out_trade_no"], wx["transaction_id"], 770, "REFUND", 70)]


def test_alipay_statements_are_t_plus_one_zips(live: Live) -> None:
    """As in production: no statement for today (the run fails and says why), yesterday's is
    downloaded as a zip of GBK CSV files and read, refunds included."""
    assert live.sb.post("/sandbox/config", json={"partial_bills": False}).is_success
    yesterday = f"{beijing_day(-1)} 09:15:00"
    paid = live.sb.post("/sandbox/alipay/trades", json={
        "amount": 1288, "paid_at": yesterday, "subject": "鉴定服务"}).json()["data"]
    refunded = live.sb.post("/sandbox/alipay/trades", json={
        "amount": 300, "paid_at": f"{beijing_day(-2)} 23:00:00"}).json()["data"]
    alipay = get_channel(live.rt, "alipay")
    assert alipay.client.api_alipay_trade_refund(
        out_trade_no=refunded["out_trade_no"], refund_amount="1.00",
        out_request_no="t1")["fund_change"] == "Y"

    from gonglun.errors import GonglunError

    with pytest.raises(GonglunError) as today:
        recon.reconcile(live.rt, beijing_day(), "alipay")
    assert today.value.error == "recon.channel_error"
    assert "isp.bill_not_exist" in today.value.data["detail"]

    assert [(r.payment_order, r.trade_no, r.amount, r.status, r.refund_amount)
            for r in alipay.statement(beijing_day(-1))] == [
        (paid["out_trade_no"], paid["trade_no"], 1288, "SUCCESS", 0)]
    report = recon.reconcile(live.rt, beijing_day(-1), "alipay")
    assert [(i["kind"], i["payment_order"], i["channel_amount"]) for i in report.items] == [
        ("missing_local", paid["out_trade_no"], 1288)]
    # Today's refund of a trade paid earlier shows on today's statement once the day is over:
    # here the sandbox serves today's partial statement to show the row is read.
    assert live.sb.post("/sandbox/config", json={"partial_bills": True}).is_success
    assert [(r.payment_order, r.amount, r.status, r.refund_amount)
            for r in alipay.statement(beijing_day())] == [
        (refunded["out_trade_no"], 300, "REFUND", 100)]


def test_missing_at_the_channel_is_settled_when_a_later_statement_has_it(live: Live) -> None:
    _, headers = live.user()
    payment = paid_wxpay(live, headers, 250)
    # The channel books the payment on the previous day (a payment across midnight).
    assert live.sb.patch(f"/sandbox/wxpay/trades/{payment['payment_order']}",
                         json={"paid_at": f"{beijing_day(-1)} 23:59:59"}).is_success
    today = recon.reconcile(live.rt, beijing_day(), "wxpay")
    [item] = today.items
    assert (item["kind"], item["payment_order"], item["local_amount"], item["status"]) == (
        "missing_channel", payment["payment_order"], 250, "open")

    earlier = recon.reconcile(live.rt, beijing_day(-1), "wxpay")
    assert earlier.differences == 0 and earlier.cleared == 1
    [settled] = items(live)
    assert settled.status == "resolved"
    assert settled.resolution == f"found in statement of {beijing_day(-1)}"


def test_daily_job_reconciles_yesterday_for_both_channels(live: Live) -> None:
    stray = live.sb.post("/sandbox/wxpay/trades", json={
        "total": 123, "paid_at": f"{beijing_day(-1)} 08:30:00"}).json()["data"]
    assert [j.every_s for j in live.rt.periodic_jobs() if j.name == "payment.reconcile"] == [
        3600.0]
    run_job(live, "payment.reconcile")
    for attempt in range(2):  # hourly: the next run changes nothing
        if attempt:
            actor = live.rt.actor("payment.reconcile")
            actor.send()
            live.rt.broker.join(actor.queue_name, timeout=30_000)
        with live.rt.db.read() as session:
            runs = sorted((r.bill_date, r.channel, r.differences)
                          for r in session.scalars(select(ReconRun)))
        assert runs == [(beijing_day(-1), "alipay", 0), (beijing_day(-1), "wxpay", 1)]
        assert [(i.bill_date, i.kind, i.payment_order, i.status) for i in items(live)] == [
            (beijing_day(-1), "missing_local", stray["out_trade_no"], "open")]


def test_cli_reconcile_list_and_resolve(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    from gonglun.cli import build_parser

    def cli(*argv: str) -> tuple[int, Any]:
        args = build_parser(live.rt).parse_args(list(argv))
        code = args.run(live.rt, args)
        return code, json.loads(capsys.readouterr().out)

    stray = live.sb.post("/sandbox/wxpay/trades", json={"total": 4200}).json()["data"]
    code, out = cli("payments", "reconcile", "--date", beijing_day(), "--channel", "wxpay")
    assert code == 3  # differences are open
    [report] = out["reports"]
    assert [(i["kind"], i["payment_order"], i["channel_amount"]) for i in report["items"]] == [
        ("missing_local", stray["out_trade_no"], 4200)]
    code, out = cli("payments", "recon-list", "--status", "open")
    assert code == 0 and [i["payment_order"] for i in out["items"]] == [stray["out_trade_no"]]
    item_id = str(out["items"][0]["id"])
    code, out = cli("payments", "recon-resolve", item_id, "--note", "refunded to the buyer")
    assert code == 0 and (out["status"], out["resolution"]) == (
        "resolved", "refunded to the buyer")
    code, out = cli("payments", "reconcile", "--date", beijing_day())
    assert code == 0 and [r["open"] for r in out["reports"]] == [0, 0]
    code, out = cli("payments", "recon-list", "--status", "open")
    assert out["items"] == []

    from gonglun.errors import GonglunError

    args = build_parser(live.rt).parse_args(["payments", "reconcile", "--date", "2024-1-1"])
    with pytest.raises(GonglunError) as bad:
        args.run(live.rt, args)
    assert bad.value.error == "recon.invalid_date"


def test_parse_bill_date_rules() -> None:
    today = dt.date(2024, 3, 1)
    assert recon.parse_bill_date("2024-02-29", today=today) == "2024-02-29"
    assert recon.parse_bill_date("2024-03-01", today=today, finished=False) == "2024-03-01"
    for bad in ("2024-03-01", "2024-03-02", "2023-02-29", "20240301", "", None, 20240301,
                "2024-3-1"):
        with pytest.raises(Exception) as exc:
            recon.parse_bill_date(bad, today=today)
        assert getattr(exc.value, "error", None) == "recon.invalid_date"
    start, end = recon.day_window("2024-03-01")
    assert start == dt.datetime(2024, 2, 29, 16, tzinfo=dt.UTC)
    assert end - start == dt.timedelta(days=1)
    assert recon.yesterday(dt.datetime(2024, 2, 29, 16, 30, tzinfo=dt.UTC)) == "2024-02-29"


def test_job_reports_a_channel_failure_and_the_lock_refuses_overlap(live: Live) -> None:
    from gonglun.kv.lock import Lock
    from gonglun.plugins.payment.recon_hooks import run_daily

    live.sb.post("/sandbox/faults", json={"channel": "alipay", "http": "500", "count": 1})
    results = {r["channel"]: r for r in run_daily(live.rt)}
    assert results["alipay"]["error"] == "recon.channel_error"
    assert results["wxpay"]["differences"] == 0
    # The failed channel is simply done by the next run.
    assert [r.get("error") for r in run_daily(live.rt)] == [None, None]

    today = beijing_day()
    held = Lock(live.rt.redis, live.rt.keys("lock", "recon", today, "wxpay"), 30)
    assert held.acquire()
    try:
        with pytest.raises(Exception) as busy:
            recon.reconcile(live.rt, today, "wxpay")
        assert getattr(busy.value, "error", None) == "recon.busy"
    finally:
        held.release()
    assert recon.reconcile(live.rt, today, "wxpay").differences == 0


def test_clean_day_ties_the_clearing_account_to_the_statement(
        live: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import update

    from gonglun.ledger import Transfer, audit_session, run_audit

    monkeypatch.setattr(recon, "beijing_today", REAL_TODAY)  # the real clock
    assert live.sb.post("/sandbox/config", json={"partial_bills": False}).is_success
    _, buyer = live.user()
    yesterday = beijing_day(-1)
    # Paid yesterday at the channel (notifications that arrive after midnight say so).
    orders = [paid_alipay(live, buyer, amount, f"{yesterday} 12:00:0{n}")
              for n, amount in enumerate((1000, 2345))]
    live.settle_outbox()
    report = recon.reconcile(live.rt, yesterday, "alipay")
    assert (report.differences, report.channel_paid) == (0, 3345)
    with live.rt.db.read() as session:
        run = session.scalar(select(ReconRun).where(ReconRun.channel == "alipay"))
        assert run.channel_paid == 3345
    assert run_audit(live.rt) == []
    # Today goes on: a new payment does not touch the day reconciled.
    paid_alipay(live, buyer, 777)
    live.settle_outbox()
    assert run_audit(live.rt) == []
    # Someone shaves a fen off a channel transfer: the statement still says what was paid.
    key = f"payment:{orders[1]['id']}"
    with live.rt.db.session() as session, session.begin():
        session.execute(update(Transfer).where(Transfer.idempotency_key == key)
                        .values(amount=Transfer.amount - 1))
        problems = audit_session(live.rt, session)
        session.rollback()
    assert (f"payment: channel:alipay on {yesterday}: the statement says 3345 paid, the "
            f"ledger moved 3344 from the channel for those orders") in problems


def test_only_finished_days_are_reconciled(live: Live, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Today (Asia/Shanghai) is not over: its statement is partial, and a clean run of it would
    hold every later payment of the day against it (the audit then fails). Refused through the
    REST route and the CLI, on the real clock, with nothing recorded."""
    from gonglun.cli import build_parser
    from gonglun.errors import GonglunError
    from gonglun.ledger import run_audit

    monkeypatch.setattr(recon, "beijing_today", REAL_TODAY)
    _, admin = live.user("admin", role="admin")
    _, buyer = live.user()
    paid_alipay(live, buyer, 1000)
    live.settle_outbox()
    today = beijing_day()
    for day in (today, beijing_day(1)):
        for body in ({"date": day}, {"date": day, "channel": "alipay"}):
            reply = live.http.post("/v1/admin/reconciliation/run", json=body, headers=admin)
            assert reply.status_code == 400, reply.text
            assert reply.json()["error"] == "recon.invalid_date"
            assert beijing_day(-1) in reply.json()["msg"]
            assert reply.json()["data"]["latest"] == beijing_day(-1)
        args = build_parser(live.rt).parse_args(["payments", "reconcile", "--date", day])
        with pytest.raises(GonglunError) as refused:
            args.run(live.rt, args)
        assert refused.value.error == "recon.invalid_date"
    assert capsys.readouterr().out == ""
    with live.rt.db.read() as session:
        assert session.scalar(select(func.count()).select_from(ReconRun)) == 0
    paid_alipay(live, buyer, 500)  # the day goes on
    live.settle_outbox()
    assert run_audit(live.rt) == []
    # Listing items of today is still a filter, not a run.
    listed = live.http.get("/v1/admin/reconciliation", params={"date": today}, headers=admin)
    assert listed.status_code == 200, listed.text


def test_one_channel_failing_is_reported_beside_the_others(
        live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    from gonglun.cli import build_parser

    _, admin = live.user("admin", role="admin")
    stray = live.sb.post("/sandbox/wxpay/trades", json={"total": 321}).json()["data"]
    day = beijing_day()

    def fail_alipay() -> None:
        assert live.sb.post("/sandbox/faults", json={"channel": "alipay", "http": "500",
                                                     "count": 1}).is_success

    fail_alipay()
    reply = live.http.post("/v1/admin/reconciliation/run", json={"date": day}, headers=admin)
    assert reply.status_code == 200, reply.text
    reports = {r["channel"]: r for r in reply.json()["data"]["reports"]}
    assert (reports["alipay"]["error"], reports["alipay"]["status"]) == (
        "recon.channel_error", 502)
    assert reports["alipay"]["msg"] and "differences" not in reports["alipay"]
    assert [(i["kind"], i["payment_order"]) for i in reports["wxpay"]["items"]] == [
        ("missing_local", stray["out_trade_no"])]

    fail_alipay()
    args = build_parser(live.rt).parse_args(["payments", "reconcile", "--date", day])
    assert args.run(live.rt, args) == 1
    out = {r["channel"]: r for r in json.loads(capsys.readouterr().out)["reports"]}
    assert out["alipay"]["error"] == "recon.channel_error"
    assert out["wxpay"]["open"] == 1 and out["wxpay"]["differences"] == 1
    # Naming the channel still answers its error as the error.
    fail_alipay()
    one = live.http.post("/v1/admin/reconciliation/run", json={"date": day, "channel": "alipay"},
                         headers=admin)
    assert (one.status_code, one.json()["error"]) == (502, "recon.channel_error")
