"""Postings: chaining, idempotency, refusals, the deferred hook, BAL-02 and BAL-05."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select

from gonglun.errors import GonglunError
from gonglun.hooks import hookimpl
from gonglun.hooks.deferred import OutboxEvent
from gonglun.ledger import (
    MAX_DELTA,
    NEGATIVE_BALANCE_ERROR,
    NEGATIVE_BALANCE_MSG,
    Posting,
    balance,
    check_not_negative,
    negative_blocks,
    post,
    postings,
)
from gonglun.ledger.service import failure_line


def do_post(rt: Any, user_id: int, delta: int, key: str, **kw: Any) -> Any:
    kw.setdefault("scene", "recharge_money")
    kw.setdefault("ref", "1")
    with rt.db.write() as session:
        return post(rt, session, user_id=user_id, delta=delta, key=key, **kw)


def count(rt: Any, model: Any) -> int:
    with rt.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)))


def test_postings_chain_balance_after(rt: Any, new_user: Any) -> None:
    uid = new_user()
    results = [do_post(rt, uid, d, f"k{i}") for i, d in enumerate([500, -200, 30, -330])]
    assert [r.posting.balance_after for r in results] == [500, 300, 330, 0]
    assert all(r.created for r in results)
    with rt.db.read() as session:
        assert balance(session, uid) == 0
        rows = postings(session, uid)
    assert [p.delta for p in rows] == [-330, 30, -200, 500]  # newest first
    assert rows[0].scene == "recharge_money" and rows[0].ref == "1"


def test_same_key_returns_original_and_changes_nothing(rt: Any, new_user: Any) -> None:
    uid = new_user()
    first = do_post(rt, uid, 100, "pay:1", remark="充值")
    again = do_post(rt, uid, 100, "pay:1", remark="a retry may say anything here")
    assert first.created and not again.created
    assert again.posting.id == first.posting.id and again.posting.remark == "充值"
    with rt.db.read() as session:
        assert balance(session, uid) == 100
    assert count(rt, Posting) == 1
    assert count(rt, OutboxEvent) == 1  # one balance_changed, not two


def test_repeat_succeeds_even_when_the_balance_no_longer_covers_it(rt: Any, new_user: Any) -> None:
    uid = new_user()
    do_post(rt, uid, 100, "seed")
    debit = do_post(rt, uid, -100, "spend", scene="pay")
    again = do_post(rt, uid, -100, "spend", scene="pay")
    assert (again.created, again.posting.id) == (False, debit.posting.id)


@pytest.mark.parametrize(
    "change",
    [{"user": "other"}, {"delta": 101}, {"scene": "refund"}],
    ids=["other-user", "other-amount", "other-scene"],
)
def test_key_reused_for_another_posting_is_a_conflict(
    rt: Any, new_user: Any, change: dict[str, Any]
) -> None:
    uid, other = new_user(), new_user()
    do_post(rt, uid, 100, "k")
    args = {
        "user_id": other if "user" in change else uid,
        "delta": change.get("delta", 100),
        "scene": change.get("scene", "recharge_money"),
    }
    with pytest.raises(GonglunError) as err, rt.db.write() as session:
        post(rt, session, ref="1", key="k", **args)
    assert err.value.error == "ledger.key_conflict" and err.value.status == 409
    with rt.db.read() as session:
        assert balance(session, uid) == 100 and balance(session, other) == 0


def test_overdraft_is_refused_and_writes_nothing(rt: Any, new_user: Any) -> None:
    uid = new_user()
    do_post(rt, uid, 50, "seed")
    with pytest.raises(GonglunError) as err:
        do_post(rt, uid, -51, "too-much", scene="pay")
    assert err.value.error == "ledger.insufficient_balance"
    assert err.value.msg == "账户余额不足"
    assert err.value.data == {"balance": 50, "amount": 51}
    with rt.db.read() as session:
        assert balance(session, uid) == 50
    assert count(rt, Posting) == 1
    assert do_post(rt, uid, -50, "exact", scene="pay").posting.balance_after == 0


def test_negative_only_when_allowed_and_for_configured_scenes(rt: Any, new_user: Any) -> None:
    uid = new_user()
    with pytest.raises(GonglunError) as err:
        do_post(rt, uid, -10, "k1", scene="pay", allow_negative=True)
    assert err.value.error == "ledger.negative_not_allowed"
    result = do_post(rt, uid, -10, "k2", scene="refund_reverse", allow_negative=True)
    assert result.posting.balance_after == -10
    # A credit to a negative account is always accepted, even if it stays negative.
    assert do_post(rt, uid, 3, "k3").posting.balance_after == -7


def test_negative_balance_blocks_trading(rt: Any, new_user: Any) -> None:
    uid, fresh = new_user(), new_user()
    do_post(rt, uid, -1, "advance", scene="admin_adjust", allow_negative=True)
    with rt.db.read() as session:
        assert negative_blocks(session, uid)
        assert not negative_blocks(session, fresh)  # no balance row: the seeds' empty money
        check_not_negative(session, fresh)
        with pytest.raises(GonglunError) as err:
            check_not_negative(session, uid)
    assert err.value.error == NEGATIVE_BALANCE_ERROR == "payment.negative_balance"
    assert err.value.msg == NEGATIVE_BALANCE_MSG
    assert NEGATIVE_BALANCE_MSG == (
        "订单创建失败:账户余额为负数不允许交易\n请先将账户余额恢复正常,在进行平台交易!"
    )
    do_post(rt, uid, 1, "repay")
    with rt.db.read() as session:
        assert not negative_blocks(session, uid)


@pytest.mark.parametrize(
    ("delta", "error"),
    [
        (0, "ledger.invalid_amount"),
        (1.0, "ledger.invalid_amount"),
        (True, "ledger.invalid_amount"),
        ("100", "ledger.invalid_amount"),
        (MAX_DELTA + 1, "ledger.invalid_amount"),
        (-MAX_DELTA - 1, "ledger.invalid_amount"),
    ],
)
def test_amount_must_be_a_nonzero_integer(rt: Any, new_user: Any, delta: Any, error: str) -> None:
    uid = new_user()
    with pytest.raises(GonglunError) as err:
        do_post(rt, uid, delta, "k")
    assert err.value.error == error
    assert count(rt, Posting) == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"user_id": 0},
        {"user_id": True},
        {"scene": ""},
        {"key": ""},
        {"key": "k" * 192},
        {"ref": 1.5},
        {"remark": "x" * 256},
        {"scene": None},
    ],
)
def test_arguments_are_checked(rt: Any, new_user: Any, bad: dict[str, Any]) -> None:
    args = {"user_id": new_user(), "delta": 1, "scene": "s", "ref": "r", "key": "k", **bad}
    with pytest.raises(GonglunError) as err, rt.db.write() as session:
        post(rt, session, **args)
    assert err.value.error == "ledger.invalid_argument"


def test_integer_ref_is_stored_as_text(rt: Any, new_user: Any) -> None:
    assert do_post(rt, new_user(), 1, "k", ref=12345).posting.ref == "12345"


def test_unknown_user_is_refused(rt: Any) -> None:
    with pytest.raises(GonglunError) as err:
        do_post(rt, 999, 1, "k")
    assert err.value.error == "ledger.unknown_user"


def test_rolled_back_transaction_leaves_no_trace(rt: Any, new_user: Any) -> None:
    uid = new_user()
    with pytest.raises(RuntimeError), rt.db.write() as session:
        post(rt, session, user_id=uid, delta=5, scene="s", ref="r", key="k")
        raise RuntimeError("the payment update failed")
    assert count(rt, Posting) == 0 and count(rt, OutboxEvent) == 0
    assert do_post(rt, uid, 5, "k").created  # the key is free again


def test_balance_changed_is_deferred_and_delivered_once(rt: Any, new_user: Any) -> None:
    seen: list[dict[str, Any]] = []

    @hookimpl
    def balance_changed(posting: dict[str, Any]) -> None:
        seen.append(posting)

    rt.pm.register(SimpleNamespace(balance_changed=balance_changed), "recorder")
    uid = new_user()
    with rt.db.write() as session:
        result = post(
            rt, session, user_id=uid, delta=250, scene="refund", ref="88", key="rf:1", remark="退款"
        )
        assert seen == []  # nothing runs before commit
    key = f"balance_changed:{result.posting.id}"
    assert rt.outbox.consume(key) == "done"
    assert rt.outbox.consume(key) == "skipped"
    assert len(seen) == 1
    got = seen[0]
    assert {k: got[k] for k in ("id", "user_id", "delta", "balance_after", "scene", "ref")} == {
        "id": result.posting.id,
        "user_id": uid,
        "delta": 250,
        "balance_after": 250,
        "scene": "refund",
        "ref": "88",
    }
    assert got["remark"] == "退款" and got["key"] == "rf:1"
    assert dt.datetime.fromisoformat(got["created_at"]).tzinfo is not None


def test_paging_with_before_id(rt: Any, new_user: Any) -> None:
    uid = new_user()
    for i in range(7):
        do_post(rt, uid, 1, f"k{i}")
    with rt.db.read() as session:
        first = postings(session, uid, limit=3)
        second = postings(session, uid, limit=3, before_id=first[-1].id)
        last = postings(session, uid, limit=3, before_id=second[-1].id)
    assert [p.balance_after for p in first + second + last] == [7, 6, 5, 4, 3, 2, 1]


def test_failure_line_format() -> None:
    when = dt.datetime(2024, 7, 22, 1, 2, 3, tzinfo=dt.UTC)
    line = failure_line(7, -1234, "refund", "99", "退款", "database is locked", when)
    assert line == (
        "[时间 - 2024-07-22 09:02:03] [余额场景 - (refund:99)] [金额 - 1234] [动作 - 扣除] "
        "[备注 - 退款 | 失败原因: database is locked] [用户 - 7]"
    )


def _log_lines(rt: Any) -> list[str]:
    folder = Path(rt.config.data_dir) / "log" / "balance"
    files = sorted(folder.glob("*.log"))
    return [line for f in files for line in f.read_text("utf-8").splitlines()]


def test_failed_update_is_logged_but_refusals_are_not(rt: Any, new_user: Any) -> None:
    uid = new_user()
    do_post(rt, uid, 10, "k")
    with pytest.raises(GonglunError):
        do_post(rt, uid, -11, "k2", scene="pay")  # insufficient: the user's problem, not logged
    with pytest.raises(GonglunError):
        do_post(rt, uid, 0, "k3")  # validation: not logged
    assert _log_lines(rt) == []
    with pytest.raises(GonglunError):
        do_post(rt, uid, 11, "k", ref="7", remark="重复")  # a reused key is a failed update
    # A storage failure: the table is gone under the posting.
    with rt.db.write() as session:
        session.execute(Posting.__table__.delete())
        Posting.__table__.drop(session.connection())
    with pytest.raises(Exception) as exc, rt.db.write() as session:
        post(rt, session, user_id=uid, delta=-3, scene="pay", ref="55", key="k4")
    assert not isinstance(exc.value, GonglunError)
    lines = _log_lines(rt)
    assert len(lines) == 2
    assert (
        "[余额场景 - (recharge_money:7)] [金额 - 11] [动作 - 增加] [备注 - 重复 | 失败原因:"
        in (lines[0])
    )
    assert lines[0].endswith(f"[用户 - {uid}]")
    assert "[余额场景 - (pay:55)] [金额 - 3] [动作 - 扣除]" in lines[1]
    day = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    assert (Path(rt.config.data_dir) / "log" / "balance" / f"{day:%Y-%m-%d}.log").exists()
