"""Transfers: both sides, chains, idempotency, refusals, shards, holds, deferred hook, BAL-02."""

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
    ESCROW,
    INCOME,
    MANUAL,
    MAX_AMOUNT,
    NEGATIVE_BALANCE_ERROR,
    NEGATIVE_BALANCE_MSG,
    Account,
    AccountBalance,
    Move,
    SystemAccount,
    Transfer,
    account_balance,
    balance,
    check_not_negative,
    held,
    hold,
    negative_blocks,
    positions,
    post,
    postings,
    release,
    run_audit,
    transfer,
    transfer_many,
    wallet,
)
from gonglun.ledger.failures import failure_line

ALIPAY = "channel:alipay"


def move(rt: Any, debit: str, credit: str, amount: Any, key: str, **kw: Any) -> Any:
    kw.setdefault("code", "test")
    with rt.db.write() as session:
        return transfer(rt, session, debit=debit, credit=credit, amount=amount, key=key, **kw)


def count(rt: Any, model: Any) -> int:
    with rt.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)))


def balances(rt: Any, *codes: str) -> list[int]:
    with rt.db.read() as session:
        return [account_balance(session, c) for c in codes]


def test_money_moves_between_two_accounts_and_chains(rt: Any, new_user: Any) -> None:
    uid = new_user()
    me = wallet(uid)
    results = [
        move(rt, ALIPAY, me, 500, "k1", code="recharge_money"),
        move(rt, me, ESCROW, 200, "k2", ref="o1"),
        move(rt, ESCROW, me, 30, "k3", ref="o1"),
        move(rt, me, INCOME, 330, "k4"),
    ]
    assert all(r.created for r in results)
    assert [r.transfer.credit_after for r in results[::2]] == [500, 330]
    assert [r.transfer.debit_after for r in results[1::2]] == [300, 0]
    assert results[0].transfer.debit_after is None  # a system side keeps no chain
    assert balances(rt, me, ALIPAY, ESCROW, INCOME) == [0, -500, 170, 330]
    with rt.db.read() as session:
        rows = postings(session, uid)
        assert positions(session, "o1") == {me: -170, ESCROW: 170}
        assert held(session, "o1") == 170
    assert [(p.delta, p.balance_after, p.scene) for p in rows] == [
        (-330, 0, "test"), (30, 330, "test"), (-200, 300, "test"), (500, 500, "recharge_money")]
    assert run_audit(rt) == []


def test_same_key_returns_the_original_and_moves_nothing(rt: Any, new_user: Any) -> None:
    me = wallet(new_user())
    first = move(rt, ALIPAY, me, 100, "pay:1", remark="充值")
    again = move(rt, ALIPAY, me, 100, "pay:1", remark="a retry may say anything here")
    assert first.created and not again.created
    assert again.transfer.id == first.transfer.id and again.transfer.remark == "充值"
    assert balances(rt, me, ALIPAY) == [100, -100]
    assert count(rt, Transfer) == 1
    assert count(rt, OutboxEvent) == 1  # one balance_changed, not two


def test_repeat_succeeds_even_when_the_balance_no_longer_covers_it(rt: Any,
                                                                    new_user: Any) -> None:
    me = wallet(new_user())
    move(rt, ALIPAY, me, 100, "seed")
    spent = move(rt, me, INCOME, 100, "spend")
    again = move(rt, me, INCOME, 100, "spend")
    assert (again.created, again.transfer.id) == (False, spent.transfer.id)


@pytest.mark.parametrize("change", [{"credit": "other"}, {"amount": 101}, {"code": "refund"},
                                    {"debit": "channel:wxpay"}])
def test_key_reused_for_another_transfer_is_a_conflict(rt: Any, new_user: Any,
                                                       change: dict[str, Any]) -> None:
    me, other = wallet(new_user()), wallet(new_user())
    move(rt, ALIPAY, me, 100, "k")
    args = {"debit": ALIPAY, "credit": me, "amount": 100, "code": "test", **change}
    if args["credit"] == "other":
        args["credit"] = other
    with pytest.raises(GonglunError) as err, rt.db.write() as session:
        transfer(rt, session, key="k", **args)
    assert err.value.error == "ledger.key_conflict" and err.value.status == 409
    assert balances(rt, me, other) == [100, 0]


def test_overdraft_is_refused_and_writes_nothing(rt: Any, new_user: Any) -> None:
    me = wallet(new_user())
    move(rt, ALIPAY, me, 50, "seed")
    with pytest.raises(GonglunError) as err:
        move(rt, me, ESCROW, 51, "too-much")
    assert err.value.error == "ledger.insufficient_balance"
    assert err.value.msg == "账户余额不足"
    assert err.value.data == {"balance": 50, "amount": 51}
    assert balances(rt, me, ESCROW) == [50, 0]
    assert count(rt, Transfer) == 1
    assert move(rt, me, ESCROW, 50, "exact").transfer.debit_after == 0


def test_system_accounts_go_negative_by_design(rt: Any) -> None:
    move(rt, INCOME, ESCROW, 70, "k")
    assert balances(rt, INCOME, ESCROW) == [-70, 70]
    assert run_audit(rt) == []


def test_negative_wallet_only_when_allowed_and_for_configured_codes(rt: Any,
                                                                   new_user: Any) -> None:
    me = wallet(new_user())
    with pytest.raises(GonglunError) as err:
        move(rt, me, ESCROW, 10, "k1", code="pay", allow_negative=True)
    assert err.value.error == "ledger.negative_not_allowed"
    result = move(rt, me, ESCROW, 10, "k2", code="refund_reverse", allow_negative=True)
    assert result.transfer.debit_after == -10
    # A credit to a negative wallet is always accepted, even if it stays negative.
    assert move(rt, ALIPAY, me, 3, "k3").transfer.credit_after == -7


def test_negative_balance_blocks_trading(rt: Any, new_user: Any) -> None:
    uid, fresh = new_user(), new_user()
    move(rt, wallet(uid), INCOME, 1, "advance", code="admin_adjust", allow_negative=True)
    with rt.db.read() as session:
        assert negative_blocks(session, uid)
        assert not negative_blocks(session, fresh)  # never moved: the seeds' empty money
        check_not_negative(session, fresh)
        with pytest.raises(GonglunError) as err:
            check_not_negative(session, uid)
    assert err.value.error == NEGATIVE_BALANCE_ERROR == "payment.negative_balance"
    assert err.value.msg == NEGATIVE_BALANCE_MSG
    move(rt, ALIPAY, wallet(uid), 1, "repay")
    with rt.db.read() as session:
        assert not negative_blocks(session, uid)


@pytest.mark.parametrize("amount", [0, -5, 1.0, True, "100", None, MAX_AMOUNT + 1])
def test_amount_must_be_a_positive_integer(rt: Any, new_user: Any, amount: Any) -> None:
    with pytest.raises(GonglunError) as err:
        move(rt, ALIPAY, wallet(new_user()), amount, "k")
    assert err.value.error == "ledger.invalid_amount" and err.value.status == 400
    assert count(rt, Transfer) == 0


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"debit": "user:0"}, "ledger.unknown_account"),
        ({"debit": "user:x"}, "ledger.unknown_account"),
        ({"credit": "nowhere"}, "ledger.unknown_account"),
        ({"credit": 7}, "ledger.unknown_account"),
        ({"credit": "user:99999"}, "ledger.unknown_user"),
        ({"debit": ALIPAY, "credit": ALIPAY}, "ledger.same_account"),
        ({"code": ""}, "ledger.invalid_argument"),
        ({"code": None}, "ledger.invalid_argument"),
        ({"key": ""}, "ledger.invalid_argument"),
        ({"key": "k" * 192}, "ledger.invalid_argument"),
        ({"ref": 1.5}, "ledger.invalid_argument"),
        ({"remark": "x" * 256}, "ledger.invalid_argument"),
    ],
)
def test_arguments_are_checked(rt: Any, new_user: Any, bad: dict[str, Any], error: str) -> None:
    args = {"debit": ALIPAY, "credit": wallet(new_user()), "amount": 1, "code": "c",
            "key": "k", "ref": "r", **bad}
    with pytest.raises(GonglunError) as err, rt.db.write() as session:
        transfer(rt, session, **args)
    assert err.value.error == error
    assert count(rt, Transfer) == 0


def test_manual_transfers_need_a_note_and_an_admin(rt: Any, new_user: Any, admin: int) -> None:
    uid = new_user()
    base = {"debit": MANUAL, "credit": wallet(uid), "amount": 5, "code": "payout", "key": "m"}
    for extra, error in (({"operator_id": admin}, "ledger.note_required"),
                         ({"remark": "线下补偿"}, "ledger.operator_required"),
                         ({"remark": "线下补偿", "operator_id": uid}, "ledger.operator_required")):
        with pytest.raises(GonglunError) as err, rt.db.write() as session:
            transfer(rt, session, **base, **extra)
        assert err.value.error == error
    with rt.db.write() as session:
        done = transfer(rt, session, **base, remark="线下补偿", operator_id=admin)
    assert done.transfer.operator_id == admin and done.transfer.remark == "线下补偿"


def test_integer_ref_is_stored_as_text(rt: Any, new_user: Any) -> None:
    assert move(rt, ALIPAY, wallet(new_user()), 1, "k", ref=12345).transfer.ref == "12345"


def test_rolled_back_transaction_leaves_no_trace(rt: Any, new_user: Any) -> None:
    me = wallet(new_user())
    with pytest.raises(RuntimeError), rt.db.write() as session:
        transfer(rt, session, debit=ALIPAY, credit=me, amount=5, code="c", key="k")
        raise RuntimeError("the payment update failed")
    assert count(rt, Transfer) == 0 and count(rt, OutboxEvent) == 0
    assert balances(rt, me, ALIPAY) == [0, 0]
    assert move(rt, ALIPAY, me, 5, "k").created  # the key is free again
    assert run_audit(rt) == []


def test_one_event_moves_all_or_nothing(rt: Any, new_user: Any) -> None:
    buyer, seller = wallet(new_user()), wallet(new_user())
    move(rt, ALIPAY, buyer, 100, "seed")
    moves = [Move(buyer, ESCROW, 60, "tao", "e1", "o1"),
             Move(ESCROW, seller, 60, "settle", "e2", "o1"),
             Move(buyer, INCOME, 50, "fee", "e3", "o1")]  # the buyer has only 40 left
    with pytest.raises(GonglunError) as err, rt.db.write() as session:
        transfer_many(rt, session, moves)
    assert err.value.error == "ledger.insufficient_balance"
    assert count(rt, Transfer) == 1 and balances(rt, buyer, seller, ESCROW) == [100, 0, 0]
    with rt.db.write() as session:
        done = transfer_many(rt, session, [*moves[:2], Move(buyer, INCOME, 40, "fee", "e3")])
    assert [r.transfer.debit_after for r in done] == [40, None, 0]
    assert done[1].transfer.credit_after == 60
    assert balances(rt, buyer, seller, ESCROW, INCOME) == [0, 60, 0, 40]
    with rt.db.write() as session:  # the whole event again: nothing moves
        again = transfer_many(rt, session, [*moves[:2], Move(buyer, INCOME, 40, "fee", "e3")])
    assert [r.created for r in again] == [False, False, False]
    with pytest.raises(GonglunError) as err, rt.db.write() as session:
        transfer_many(rt, session, [moves[0], Move(buyer, INCOME, 1, "fee", moves[0].key)])
    assert err.value.error == "ledger.invalid_argument"
    assert run_audit(rt) == []


def test_wallet_to_wallet_keeps_both_chains(rt: Any, new_user: Any) -> None:
    a, b = new_user(), new_user()
    move(rt, ALIPAY, wallet(a), 90, "seed")
    done = move(rt, wallet(a), wallet(b), 40, "gift", code="gift")
    assert (done.transfer.debit_after, done.transfer.credit_after) == (50, 40)
    with pytest.raises(GonglunError):
        move(rt, wallet(b), wallet(a), 41, "too-much", code="gift")
    assert run_audit(rt) == []


def test_system_accounts_are_spread_over_shard_rows(rt: Any, db_url: str, tmp_path: Path,
                                                     new_user: Any) -> None:
    from tests.ledger.conftest import make_runtime

    sharded = make_runtime(db_url, tmp_path, ledger={"shards": 4})
    try:
        for i in range(40):
            me = wallet(new_user())
            move(sharded, ALIPAY, me, 10 + i, f"r{i}")
            move(sharded, me, ESCROW, 5, f"e{i}")
    finally:
        sharded.close()
    with rt.db.read() as session:
        used = session.scalars(select(AccountBalance.shard).join(
            Account, Account.id == AccountBalance.account_id).where(Account.code == ESCROW))
        assert len(set(used)) > 1  # more than one row took the writes
    assert balances(rt, ESCROW, ALIPAY) == [200, -(400 + sum(range(40)))]
    assert run_audit(rt) == []


def test_holds_release_no_more_than_they_hold(rt: Any, new_user: Any) -> None:
    sender, grabber = wallet(new_user()), wallet(new_user())
    move(rt, ALIPAY, sender, 100, "seed")
    with rt.db.write() as session:
        hold(rt, session, source=sender, amount=80, ref="rp:1", key="rp:1:send",
             code="redpacket")
    with rt.db.write() as session:
        release(rt, session, to=grabber, amount=50, ref="rp:1", key="rp:1:g1", code="redpacket")
    with pytest.raises(GonglunError) as err, rt.db.write() as session:
        release(rt, session, to=grabber, amount=31, ref="rp:1", key="rp:1:g2", code="redpacket")
    assert err.value.error == "ledger.hold_insufficient"
    with rt.db.write() as session:  # the same release again is a repeat, not a refusal
        again = release(rt, session, to=grabber, amount=50, ref="rp:1", key="rp:1:g1",
                        code="redpacket")
        left = release(rt, session, to=sender, amount=30, ref="rp:1", key="rp:1:back",
                       code="redpacket")
    assert not again.created and left.created
    with rt.db.read() as session:
        assert held(session, "rp:1") == 0
    assert balances(rt, sender, grabber, ESCROW) == [50, 50, 0]
    assert run_audit(rt) == []


def test_plugins_declare_system_accounts(rt: Any) -> None:
    @hookimpl
    def register_ledger_accounts(accounts: dict[str, Any]) -> dict[str, Any]:
        return {**accounts, "deposit": SystemAccount("deposit", "保证金", "sellers' deposits")}

    rt.pm.register(SimpleNamespace(register_ledger_accounts=register_ledger_accounts), "dep")
    move(rt, ALIPAY, "deposit", 500, "d1")
    assert balances(rt, "deposit") == [500]
    from gonglun.ledger import list_accounts

    with rt.db.read() as session:
        listed = {a["code"]: a for a in list_accounts(rt, session)["accounts"]}
    assert listed["deposit"]["balance"] == 500 and listed["deposit"]["name"] == "保证金"


def test_bad_plugin_account_codes_fail_loudly(rt: Any) -> None:
    @hookimpl
    def register_ledger_accounts(accounts: dict[str, Any]) -> dict[str, Any]:
        return {**accounts, "user:5": SystemAccount("user:5", "冒充")}

    rt.pm.register(SimpleNamespace(register_ledger_accounts=register_ledger_accounts), "bad")
    with pytest.raises(ValueError, match="not a valid system code"):
        move(rt, ALIPAY, ESCROW, 1, "k")


def test_balance_changed_is_deferred_once_per_wallet_side(rt: Any, new_user: Any) -> None:
    seen: list[dict[str, Any]] = []

    @hookimpl
    def balance_changed(posting: dict[str, Any]) -> None:
        seen.append(posting)

    rt.pm.register(SimpleNamespace(balance_changed=balance_changed), "recorder")
    a, b = new_user(), new_user()
    with rt.db.write() as session:
        first = transfer(rt, session, debit=ALIPAY, credit=wallet(a), amount=250,
                         code="refund", ref="88", key="rf:1", remark="退款")
        assert seen == []  # nothing runs before commit
    second = move(rt, wallet(a), wallet(b), 50, "gift")
    move(rt, ESCROW, INCOME, 5, "no-wallet")
    keys = [f"balance_changed:{first.transfer.id}:{a}",
            f"balance_changed:{second.transfer.id}:{a}",
            f"balance_changed:{second.transfer.id}:{b}"]
    with rt.db.read() as session:
        stored = set(session.scalars(select(OutboxEvent.key)))
    assert stored == set(keys)
    for key in keys:
        assert rt.outbox.consume(key) == "done"
        assert rt.outbox.consume(key) == "skipped"
    assert [(p["user_id"], p["delta"], p["balance_after"]) for p in seen] == [
        (a, 250, 250), (a, -50, 200), (b, 50, 50)]
    got = seen[0]
    assert {k: got[k] for k in ("id", "scene", "ref", "remark", "key")} == {
        "id": first.transfer.id, "scene": "refund", "ref": "88", "remark": "退款",
        "key": "rf:1"}
    assert dt.datetime.fromisoformat(got["created_at"]).tzinfo is not None


def test_post_names_its_counter_account(rt: Any, new_user: Any) -> None:
    uid = new_user()
    with rt.db.write() as session:
        credit = post(rt, session, user_id=uid, delta=300, scene="recharge_money", ref="p",
                      key="p1", counter=ALIPAY)
        debit = post(rt, session, user_id=uid, delta=-100, scene="face_number", ref="f",
                     key="p2", counter=INCOME)
    assert (credit.balance_after, debit.balance_after) == (300, 200)
    assert (debit.posting.delta, debit.posting.scene) == (-100, "face_number")
    assert balances(rt, ALIPAY, INCOME) == [-300, 100]
    for bad in ({"user_id": 0}, {"user_id": True}, {"delta": 0}, {"delta": 1.5}):
        args = {"user_id": uid, "delta": 1, "scene": "s", "ref": "", "key": "x",
                "counter": INCOME, **bad}
        with pytest.raises(GonglunError), rt.db.write() as session:
            post(rt, session, **args)
    with pytest.raises(TypeError), rt.db.write() as session:
        post(rt, session, user_id=uid, delta=1, scene="s", ref="", key="y")  # type: ignore


def test_paging_with_before_id(rt: Any, new_user: Any) -> None:
    uid = new_user()
    for i in range(7):
        move(rt, ALIPAY, wallet(uid), 1, f"k{i}")
        move(rt, ALIPAY, wallet(new_user()), 1, f"other{i}")  # other wallets interleave
    with rt.db.read() as session:
        first = postings(session, uid, limit=3)
        second = postings(session, uid, limit=3, before_id=first[-1].id)
        last = postings(session, uid, limit=3, before_id=second[-1].id)
        assert postings(session, 424242) == [] and balance(session, 424242) == 0
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


def test_failed_updates_are_logged_but_refusals_are_not(rt: Any, new_user: Any) -> None:
    uid = new_user()
    me = wallet(uid)
    move(rt, ALIPAY, me, 10, "k", ref="7")
    with pytest.raises(GonglunError):
        move(rt, me, INCOME, 11, "k2")  # insufficient: the user's problem, not logged
    with pytest.raises(GonglunError):
        move(rt, ALIPAY, me, 0, "k3")  # validation: not logged
    assert _log_lines(rt) == []
    with pytest.raises(GonglunError):
        move(rt, ALIPAY, me, 11, "k", ref="7", remark="重复")  # a reused key: a failed update
    with rt.db.write() as session:  # a storage failure: the table is gone under the transfer
        session.execute(Transfer.__table__.delete())
        Transfer.__table__.drop(session.connection())
    with pytest.raises(Exception) as exc, rt.db.write() as session:
        transfer(rt, session, debit=me, credit=ESCROW, amount=3, code="pay", ref="55", key="k4")
    assert not isinstance(exc.value, GonglunError)
    lines = _log_lines(rt)
    assert len(lines) == 2
    assert "[余额场景 - (test:7)] [金额 - 11] [动作 - 增加] [备注 - 重复 | 失败原因:" in lines[0]
    assert lines[0].endswith(f"[用户 - {uid}]")
    assert "[余额场景 - (pay:55)] [金额 - 3] [动作 - 扣除]" in lines[1]
    day = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    assert (Path(rt.config.data_dir) / "log" / "balance" / f"{day:%Y-%m-%d}.log").exists()


def test_submit_group_commits_concurrent_requests_each_on_its_own(rt: Any,
                                                                 new_user: Any) -> None:
    import threading

    from gonglun.ledger import submit

    hot, poor = wallet(new_user()), wallet(new_user())
    move(rt, ALIPAY, hot, 1000, "seed")
    outcomes: list[Any] = []
    start = threading.Barrier(24)

    def run(n: int) -> None:
        start.wait()
        if n % 8 == 7:  # refused: the others of its batch still commit
            plan = [Move(poor, INCOME, 5, "fee", f"q{n}")]
        elif n % 2:
            plan = [Move(hot, ESCROW, 10, "tao", f"q{n}", f"o{n}"),
                    Move(ESCROW, hot, 4, "refund", f"q{n}b", f"o{n}")]
        else:
            plan = [Move(ALIPAY, hot, 3, "recharge_money", f"q{n}")]
        try:
            outcomes.append(("ok", [r.created for r in submit(rt, plan)]))
        except GonglunError as exc:
            outcomes.append((exc.error, []))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o for o, _ in outcomes) == ["ledger.insufficient_balance"] * 3 + ["ok"] * 21
    assert all(all(created) for o, created in outcomes if o == "ok")
    paying = len([n for n in range(24) if n % 2 and n % 8 != 7])
    assert balances(rt, hot) == [1000 - 6 * paying + 3 * 12]
    again = submit(rt, [Move(ALIPAY, hot, 3, "recharge_money", "q0")])
    assert [r.created for r in again] == [False]
    with pytest.raises(GonglunError) as err:
        submit(rt, [Move(ALIPAY, hot, 4, "recharge_money", "q0")])
    assert err.value.error == "ledger.key_conflict"
    with pytest.raises(GonglunError) as err:
        submit(rt, [Move(ALIPAY, hot, 0, "recharge_money", "bad")])
    assert err.value.error == "ledger.invalid_amount"
    assert run_audit(rt) == []


def test_a_conflicting_key_refuses_the_whole_event(rt: Any, new_user: Any) -> None:
    from gonglun.ledger import submit

    a = wallet(new_user())
    move(rt, ALIPAY, a, 100, "taken")
    event = [Move(ALIPAY, a, 5, "test", "fresh"), Move(ALIPAY, a, 7, "test", "taken")]
    for attempt in ("transaction", "queue"):
        with pytest.raises(GonglunError) as err:
            if attempt == "queue":
                submit(rt, event)
            else:
                with rt.db.write() as session:
                    transfer_many(rt, session, event)
        assert err.value.error == "ledger.key_conflict", attempt
        assert balances(rt, a) == [100] and count(rt, Transfer) == 1
