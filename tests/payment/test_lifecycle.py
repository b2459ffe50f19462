"""Close, sync, drop-order queries and late payments, through HTTP and the scheduled jobs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text

from gonglun.plugins.payment import lifecycle
from gonglun.plugins.payment.models import DropCheck, Payment
from gonglun.scheduler import Scheduler
from tests.payment.conftest import Live, wait_until


def wx_order(live: Live, headers: dict[str, str], amount: int = 300) -> dict[str, Any]:
    created = live.create(headers, scene="recharge_money", amount=amount, method="wxpay",
                          channel="native")
    assert created.status_code == 201, created.text
    return created.json()["data"]["payment"]


def expire(live: Live, payment_id: int) -> None:
    with live.rt.db.write() as session:
        session.execute(text("UPDATE payments SET close_deadline = created_at WHERE id = :i"),
                        {"i": payment_id})


def run_job(live: Live, name: str) -> None:
    """What the scheduler does each period: enqueue the job's actor; the worker runs it."""
    jobs = [j for j in live.rt.periodic_jobs() if j.name == name]
    assert jobs, name
    assert Scheduler(live.rt, jobs).tick() == [name]
    live.rt.broker.join(live.rt.actor(jobs[0].actor).queue_name, timeout=30_000)


def test_dropped_notification_is_found_by_the_scheduled_query(live: Live) -> None:
    _, headers = live.user()
    payment = wx_order(live, headers)
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "notify": "drop", "count": 1})
    assert live.sb.post(
        f"/sandbox/wxpay/transactions/{payment['payment_order']}/pay").status_code == 200
    assert live.payment(payment["id"], headers)["state"] == "wait_pay"

    run_job(live, "payment.drop_query")
    wait_until(lambda: live.payment(payment["id"], headers)["state"] == "ok", what="paid")
    wait_until(lambda: live.balance(headers) == 300, what="credited")
    with live.rt.db.read() as session:
        check = session.execute(select(DropCheck)).scalar_one()
    assert check.resolved_at is not None and check.last_result == "paid"


def test_sync_endpoint_recovers_a_dropped_notification(live: Live) -> None:
    _, headers = live.user()
    payment = wx_order(live, headers, 420)
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "notify": "drop", "count": 1})
    live.sb.post(f"/sandbox/wxpay/transactions/{payment['payment_order']}/pay")
    synced = live.http.post(f"/v1/payments/{payment['payment_order']}/sync", headers=headers)
    assert synced.status_code == 200, synced.text
    assert synced.json()["data"]["outcome"] == "applied"
    assert synced.json()["data"]["payment"]["state"] == "ok"
    again = live.http.post(f"/v1/payments/{payment['id']}/sync", headers=headers).json()
    assert again["data"]["outcome"] == "local"  # paid: no second channel query
    wait_until(lambda: live.balance(headers) == 420, what="credited")


def test_timeout_close_closes_here_and_at_the_channel(live: Live) -> None:
    _, headers = live.user()
    payment = wx_order(live, headers)
    expire(live, payment["id"])
    run_job(live, "payment.close_expired")
    assert live.payment(payment["id"], headers)["state"] == "close"
    trade = live.sb.get(f"/sandbox/wxpay/trades/{payment['payment_order']}").json()["data"]
    assert trade["trade_state"] == "CLOSED"
    # The channel refuses payment of the closed order: nothing can land late.
    assert live.sb.post(
        f"/sandbox/wxpay/transactions/{payment['payment_order']}/pay").status_code == 409


def test_timeout_close_queries_first_and_completes_a_paid_order(live: Live) -> None:
    _, headers = live.user()
    payment = wx_order(live, headers, 250)
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "notify": "drop", "count": 1})
    live.sb.post(f"/sandbox/wxpay/transactions/{payment['payment_order']}/pay")
    expire(live, payment["id"])
    assert lifecycle.close_expired(live.rt) == 1
    assert live.payment(payment["id"], headers)["state"] == "ok"
    wait_until(lambda: live.balance(headers) == 250, what="credited")


def test_payment_after_local_close_is_kept_flagged_and_alarmed(live: Live) -> None:
    from gonglun.hooks.deferred import OutboxEvent

    _, headers = live.user()
    payment = wx_order(live, headers, 990)
    expire(live, payment["id"])
    # The channel close fails: the order stays payable there.
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "http": "500", "count": 2})
    assert lifecycle.close_expired(live.rt) == 1
    assert live.payment(payment["id"], headers)["state"] == "close"
    with live.rt.db.read() as session:
        assert session.execute(select(DropCheck.reason)).scalar() in ("close_failed",
                                                                     "close_unknown")
    assert live.sb.post(
        f"/sandbox/wxpay/transactions/{payment['payment_order']}/pay").status_code == 200
    wait_until(lambda: live.payment(payment["id"], headers)["late"], what="late flag")
    live.settle_outbox()
    after = live.payment(payment["id"], headers)
    assert after["state"] == "close" and after["paid_amount"] == 990 and after["pay_order"]
    with live.rt.db.read() as session:
        hooks = set(session.scalars(select(OutboxEvent.hook)))
    assert {"payment_late", "alarm"} <= hooks
    assert live.balance(headers) == 0  # policy "review": a human decides
    # ...and the money waits in escrow meanwhile (DECISIONS.md 26): nothing unrecorded.
    from gonglun.ledger import account_balance, run_audit

    with live.rt.db.read() as session:
        assert account_balance(session, "escrow") == 990
        assert account_balance(session, "channel:wxpay") == -990
    assert run_audit(live.rt) == []


def test_late_payment_accepted_by_policy(live: Live) -> None:
    live.rt.config.data.setdefault("payment", {})["late_payment"] = "accept"
    _, headers = live.user()
    payment = wx_order(live, headers, 640)
    expire(live, payment["id"])
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "http": "500", "count": 2})
    lifecycle.close_expired(live.rt)
    live.sb.post(f"/sandbox/wxpay/transactions/{payment['payment_order']}/pay")
    wait_until(lambda: live.balance(headers) == 640, what="credited after late payment")
    after = live.payment(payment["id"], headers)
    assert after["state"] == "ok" and after["late"] is True
    live.settle_outbox()
    from gonglun.ledger import run_audit

    assert run_audit(live.rt) == []


def test_close_by_owner_and_refusals(live: Live) -> None:
    _, headers = live.user()
    _, stranger = live.user("stranger")
    viewer_id, viewer = live.user("viewer")
    live.rt.config.data.setdefault("payment", {})["view_whitelist"] = [viewer_id]
    payment = wx_order(live, headers)
    hidden = live.http.post(f"/v1/payments/{payment['id']}/close", headers=stranger)
    assert hidden.status_code == 404 and hidden.json()["error"] == "payment.not_found"
    # A whitelisted viewer reads the order but may not act on it.
    assert live.http.get(f"/v1/payments/{payment['id']}", headers=viewer).status_code == 200
    for action in ("close", "sync"):
        forbidden = live.http.post(f"/v1/payments/{payment['id']}/{action}", headers=viewer)
        assert forbidden.status_code == 403 and forbidden.json()["error"] == "payment.forbidden"
    closed = live.http.post(f"/v1/payments/{payment['id']}/close", headers=headers)
    assert closed.status_code == 200, closed.text
    assert closed.json()["data"]["channel"]["ok"] is True
    again = live.http.post(f"/v1/payments/{payment['id']}/close", headers=headers)
    assert again.status_code == 409 and again.json()["error"] == "payment.not_closable"
    with live.rt.db.read() as session:
        assert session.get(Payment, payment["id"]).state == "close"


def test_alipay_close_of_an_unopened_cashier(live: Live) -> None:
    _, headers = live.user()
    created = live.create(headers, scene="recharge_money", amount=100, method="alipay",
                          channel="wap").json()["data"]
    closed = live.http.post(f"/v1/payments/{created['payment']['id']}/close", headers=headers)
    assert closed.status_code == 200, closed.text
    # PAY-17: Alipay has no trade until the cashier opens; "does not exist" counts as closed.
    assert closed.json()["data"]["channel"]["code"] == "ACQ.TRADE_NOT_EXIST"
    assert closed.json()["data"]["channel"]["ok"] is True


def test_cached_lookups_follow_every_change(live: Live) -> None:
    """CACHE-02/04: a change seen through any key, whichever key was cached."""
    _, headers = live.user()
    payment = wx_order(live, headers, 150)
    by_id = live.payment(payment["id"], headers)
    by_order = live.payment(payment["payment_order"], headers)
    assert by_id == by_order and by_id["state"] == "wait_pay"
    live.sb.post(f"/sandbox/wxpay/transactions/{payment['payment_order']}/pay")
    wait_until(lambda: live.payment(payment["id"], headers)["state"] == "ok", what="paid")
    paid = live.payment(payment["payment_order"], headers)
    assert paid["state"] == "ok"
    assert live.payment(paid["pay_order"], headers)["id"] == payment["id"]
    missing = live.http.get("/v1/payments/99999998", headers=headers)
    assert missing.status_code == 404


def test_query_messages_of_the_catalog(live: Live) -> None:
    """PAY-16: waiting, paid, amount mismatch (refused, alarmed, nothing changed)."""
    import httpx

    _, headers = live.user()
    created = live.create(headers, scene="recharge_money", amount=1234, method="alipay",
                          channel="page").json()["data"]
    order = created["payment"]["payment_order"]
    httpx.get(created["pay_params"]["url"], timeout=10)  # the buyer opens the cashier
    waiting = live.http.post(f"/v1/payments/{order}/sync", headers=headers).json()["data"]
    assert waiting["msg"] == "查询结果:订单等待付款中" and waiting["outcome"] == "pending"

    live.sb.post("/sandbox/faults", json={"channel": "alipay", "notify": "drop", "count": 1})
    live.sb.post(f"/sandbox/alipay/trades/{order}/pay")
    live.sb.patch(f"/sandbox/alipay/trades/{order}", json={"total_amount": "0.01"})
    mismatch = live.http.post(f"/v1/payments/{order}/sync", headers=headers)
    assert mismatch.status_code == 409
    assert mismatch.json()["error"] == "payment.amount_mismatch"
    assert mismatch.json()["msg"] == "查询结果:支付金额与订单金额不一致\n请联系管理员处理"
    assert live.payment(order, headers)["state"] == "wait_pay"

    live.sb.patch(f"/sandbox/alipay/trades/{order}", json={"total_amount": "12.34"})
    paid = live.http.post(f"/v1/payments/{order}/sync", headers=headers).json()["data"]
    assert paid["msg"] == "查询结果:支付宝账单已付款" and paid["payment"]["state"] == "ok"


def test_wechat_forged_notification_is_refused(live: Live) -> None:
    from gonglun.plugins.payment.models import ChannelNotification

    _, headers = live.user()
    payment = wx_order(live, headers, 500)
    live.sb.post("/sandbox/faults", json={"channel": "wxpay", "notify": "drop", "count": 1})
    live.sb.post(f"/sandbox/wxpay/transactions/{payment['payment_order']}/pay")
    genuine = wait_until(lambda: live.attempts(payment["payment_order"]))[0]["body"]
    # Headers signed by the platform key over the genuine body (what WeChat sends with it).
    signed = live.sandbox.wxpay.sign_headers(genuine, "public_key")
    tampered = genuine.replace('"summary":"', '"summary":"X', 1)
    assert tampered != genuine
    reply = live.http.post("/v1/notify/wxpay", content=tampered.encode(),
                           headers={"Content-Type": "application/json", **signed})
    assert reply.status_code == 400
    assert live.payment(payment["id"], headers)["state"] == "wait_pay"
    with live.rt.db.read() as session:
        assert list(session.scalars(select(ChannelNotification.outcome))) == [
            "rejected:bad_signature"]
    # The same headers with the genuine body are accepted: the signature was the difference.
    ok = live.http.post("/v1/notify/wxpay", content=genuine.encode(),
                        headers={"Content-Type": "application/json", **signed})
    assert ok.status_code == 204
    wait_until(lambda: live.payment(payment["id"], headers)["state"] == "ok", what="paid")


def test_notifications_are_logged_per_channel_and_day_and_cleaned(live: Live) -> None:
    import datetime as dt

    from gonglun.plugins.payment import logs

    _, headers = live.user()
    payment = wx_order(live, headers, 100)
    live.sb.post(f"/sandbox/wxpay/transactions/{payment['payment_order']}/pay")
    wait_until(lambda: live.payment(payment["id"], headers)["state"] == "ok", what="paid")
    folder = logs.log_dir(live.rt) / "wxpay"
    files = list(folder.glob("*.log"))
    assert len(files) == 1
    assert "TRANSACTION.SUCCESS" in files[0].read_text("utf-8")  # the raw packet, as received
    old = folder / "2020-01-01.log"
    old.write_text("{}\n")
    assert logs.clean(live.rt, days=30, today=dt.date(2026, 11, 22)) == 1
    assert not old.exists() and files[0].exists()
