"""Migrations carry the single-entry ledger over: each posting becomes a transfer against the
counter-account its payment implies (a channel, escrow, income) or ``manual``; balances,
``balance_after`` chains and order of entries survive; the audit is clean afterwards."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from gonglun.ledger import account_balance, postings, run_audit, wallet

NOW = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)


def legacy_rows(rt: Any) -> dict[str, Any]:
    """Users, payments, balances and postings as the single-entry ledger left them."""
    from gonglun.db import UTCDateTime

    meta = sa.MetaData()
    t = {name: sa.Table(name, meta, autoload_with=rt.db.engine)
         for name in ("users", "payments", "balances", "postings")}
    for table in t.values():  # timestamps through the same type the models use
        for column in table.c:
            if isinstance(column.type, sa.DateTime):
                column.type = UTCDateTime()
    users = [{"id": i, "login": login, "password_hash": "x", "role": "user", "status": "active",
              "created_at": NOW, "updated_at": NOW} for i, login in ((1, "buyer"), (2, "seller"))]
    orders = {n: f"2026110116000000000{n:05d}" for n in (1, 2, 3)}

    def payment(pid: int, scene: str, method: str, amount: int, seller: int | None) -> dict:
        return {"id": pid, "payment_order": orders[pid], "pay_order": f"T{pid}", "user_id": 1,
                "seller_id": seller, "scene": scene, "title": scene, "amount": amount,
                "method": method, "channel": "page" if method == "alipay" else "balance",
                "state": "ok", "paid_amount": amount, "late": False, "refund_amount": 0,
                "income": 0, "meta": "{}", "version": 1, "created_at": NOW,
                "close_deadline": NOW, "paid_at": NOW}

    payments = [payment(1, "recharge_money", "alipay", 5000, None),
                payment(2, "tao", "money", 1200, 2), payment(3, "face_number", "money", 100, None)]
    entries = [(5000, 5000, "recharge_money", orders[1], "payment:1", "账户余额充值"),
               (-1200, 3800, "tao", orders[2], f"pay:{orders[2]}", "余额支付:淘货商品"),
               (-100, 3700, "face_number", orders[3], f"pay:{orders[3]}", ""),
               (300, 4000, "admin_adjust", "a1", "adjust:1", "")]
    post_rows = [{"id": n + 1, "user_id": 1, "delta": d, "balance_after": after, "scene": s,
                  "ref": ref, "remark": remark, "idempotency_key": key,
                  "created_at": NOW + dt.timedelta(minutes=n)}
                 for n, (d, after, s, ref, key, remark) in enumerate(entries)]
    with rt.db.engine.begin() as conn:
        conn.execute(t["users"].insert(), users)
        conn.execute(t["payments"].insert(), payments)
        conn.execute(t["balances"].insert(), [{"user_id": 1, "balance": 4000, "version": 4,
                                               "updated_at": NOW}])
        conn.execute(t["postings"].insert(), post_rows)
    return orders


def applied(rt: Any) -> set[str]:
    """Every revision at or below the database's heads (a head's dependencies included)."""
    from alembic.script import ScriptDirectory

    from gonglun.migrate import alembic_config, current

    script = ScriptDirectory.from_config(alembic_config(rt))
    return {r.revision for r in script.iterate_revisions(current(rt), "base")}


def test_postings_become_transfers_against_their_counter_accounts(make_rt: Any) -> None:
    from gonglun.ledger import transfers_by_key
    from gonglun.migrate import current, upgrade

    rt = make_rt(migrate=False)
    upgrade(rt, "0001_payment")  # the schema before the double-entry ledger
    assert current(rt) == ["0001_payment"]  # 0001_core is below it (depends_on)
    orders = legacy_rows(rt)
    upgrade(rt)
    assert "0002_payment_ledger" in applied(rt)

    with rt.db.read() as session:
        moved = transfers_by_key(session, ["payment:1", f"pay:{orders[2]}",
                                                f"pay:{orders[3]}", "adjust:1"])
        assert [(t.debit, t.credit, t.amount) for t in moved] == [
            ("channel:alipay", "user:1", 5000), ("user:1", "escrow", 1200),
            ("user:1", "income", 100), ("manual", "user:1", 300)]
        assert moved[3].remark == "迁移: 原余额记录"
        balances = {c: account_balance(session, c) for c in (
            wallet(1), wallet(2), "channel:alipay", "escrow", "income", "manual")}
        entries = postings(session, 1)
    assert balances == {"user:1": 4000, "user:2": 0, "channel:alipay": -5000, "escrow": 1200,
                        "income": 100, "manual": -300}
    assert [(p.id, p.delta, p.balance_after) for p in entries] == [
        (4, 300, 4000), (3, -100, 3700), (2, -1200, 3800), (1, 5000, 5000)]
    assert run_audit(rt) == []

    # The migrated tao order waits in escrow like any other and settles like one.
    from gonglun.plugins.payment.settlement import settle

    assert settle(rt, 2, by="admin")["seller_amount"] == 1200
    with rt.db.read() as session:
        assert account_balance(session, wallet(2)) == 1200
    assert run_audit(rt) == []


def test_downgrade_gives_the_postings_back(make_rt: Any) -> None:
    from gonglun.migrate import upgrade

    rt = make_rt(migrate=False)
    upgrade(rt, "0001_payment")
    legacy_rows(rt)
    upgrade(rt)
    from alembic import command

    from gonglun.migrate import alembic_config

    with rt.db.engine.begin() as connection:
        command.downgrade(alembic_config(rt, connection), "0002_payment_ledger@0001_payment")
    with rt.db.engine.begin() as connection:
        command.downgrade(alembic_config(rt, connection), "0002_ledger@0001_core")
    with rt.db.engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, delta, balance_after, idempotency_key FROM postings ORDER BY id")).all()
        balance = conn.execute(sa.text("SELECT balance FROM balances WHERE user_id = 1")).scalar()
    assert [(r[1], r[2]) for r in rows] == [(5000, 5000), (-1200, 3800), (-100, 3700),
                                            (300, 4000)]
    assert rows[0][3] == "payment:1" and balance == 4000
