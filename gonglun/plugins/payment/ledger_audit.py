"""The payment plugin's money invariants, added to ``gonglun audit`` through the ``audit`` filter.

Set-based, each query a scan or a join rather than a loop over orders:

1. **Every order's transfers match its scene and state.** For each order that received money,
   the amounts each account gained or gave under its reference (the merchant order number) are
   restated from the order row alone (``funds.py``: source, destination, settlement split,
   refunds) and compared with what the transfers say, per account. Transfers under a reference
   no order has (a deleted order) are reported too.
2. The transfer that moved each order's money exists under its key with its code and amount;
   so do the settlement transfers of a settled order; no transfer under an order's reference has
   a code its scene does not use; ``settled_at``/``income`` fit the scene.
3. ``escrow`` holds exactly the unsettled, unrefunded orders plus the open holds of others,
   and no order holds money there in a state no settlement or refund can leave (stranded).
4. Each channel clearing account moved, for the orders of a cleanly reconciled day, what the
   channel's statement says was paid (``recon_runs.channel_paid``).

A channel order whose money is still on its way (its ``payment_success``/``payment_late``
event pending in the outbox) is left out until the worker has run.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, and_, case, cast, exists, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from gonglun.hooks.deferred import OutboxEvent
from gonglun.ledger import Account, AccountBalance, Transfer
from gonglun.ledger.audit import report
from gonglun.plugins.payment.funds import COMMISSION, FIXED_CODES, LATE, SETTLE
from gonglun.plugins.payment.models import Payment, ReconRun
from gonglun.plugins.payment.scenes import Scene, scenes_for

PAID_STATES = ("ok", "wait_refund", "refund", "fail_refund")
_P, _T, _A, _B, _O = (Payment.__table__, Transfer.__table__, Account.__table__,
                      AccountBalance.__table__, OutboxEvent.__table__)


def _text(prefix: str, column: Any) -> Any:
    return literal(prefix) + cast(column, String)


def _flag(condition: Any) -> Any:
    """A condition as a 0/1 column (portable where a boolean column is not)."""
    return case((condition, 1), else_=0)


def _orders(scenes: dict[str, Scene]) -> Any:
    """Every payment with what its row implies for its money, computed once (a CTE)."""
    p = _P.c
    funds = {k: s.funds for k, s in scenes.items()}
    kind = case(funds, value=p.scene, else_=literal("unknown")) if funds else literal("unknown")
    pid = cast(p.id, String)
    collected = exists().where(_T.c.idempotency_key == literal("payment:") + pid)
    #: Paid after we closed it and never accepted: its money waits in escrow.
    late_hold = and_(p.late.is_(True), ~collected)
    received = or_(p.state.in_(PAID_STATES), p.late.is_(True))
    pending = exists().where(_O.c.state == "pending",
                             or_(_O.c.key == literal("payment_success:") + pid,
                                 _O.c.key == literal("payment_late:") + pid))
    considered = ~and_(p.method != "money", received, pending)
    user = _text("user:", p.user_id)
    return select(
        p.id, p.payment_order.label("ref"), p.scene, p.state, p.amount, p.refund_amount,
        p.income, p.settled_at, kind.label("kind"),
        _flag(late_hold).label("late_hold"), _flag(received).label("received"),
        _flag(considered).label("considered"),
        case((p.method == "money", user), else_=_text("channel:", p.method)).label("source"),
        user.label("payer"), _text("user:", p.seller_id).label("seller"),
        case((p.method == "money", literal("pay:") + p.payment_order),
             (late_hold, literal("late:") + pid),
             else_=literal("payment:") + pid).label("collect_key"),
        case((late_hold, literal(LATE)), else_=p.scene).label("collect_code"),
    ).cte("orders")


class _Orders:
    """Conditions over the ``orders`` CTE."""

    def __init__(self, scenes: dict[str, Scene]):
        self.o = o = _orders(scenes).c
        self.considered = o.considered == 1
        self.received = o.received == 1
        self.late_hold = o.late_hold == 1
        self.checked = and_(self.considered, self.received, o.kind != "unknown")
        self.settled = and_(o.settled_at.isnot(None), o.kind == "escrow", ~self.late_hold)
        self.destination = case((self.late_hold, literal("escrow")),
                                (o.kind == "payer", o.payer),
                                (o.kind == "escrow", literal("escrow")),
                                else_=literal("income"))
        #: DECISIONS.md 27: the commission returned by the refunds so far (funds.income_returned).
        self.income_back = (o.refund_amount * o.income) // o.amount

    def expected(self) -> list[Any]:
        o, zero = self.o, literal(0)
        return [
            select(o.ref, o.source.label("account"), (o.refund_amount - o.amount).label("exp"),
                   zero.label("act")).where(self.checked),
            select(o.ref, self.destination, o.amount - o.refund_amount, zero)
            .where(self.checked, ~self.settled),
            select(o.ref, o.seller, o.amount - o.income - (o.refund_amount - self.income_back),
                   zero).where(self.checked, self.settled),
            select(o.ref, literal("income"), o.income - self.income_back, zero)
            .where(self.checked, self.settled),
        ]

    def actual(self, codes: list[str]) -> list[Any]:
        considered = select(self.o.ref).where(self.considered)
        mine = or_(_T.c.ref.in_(considered),
                   and_(_T.c.code.in_(codes), _T.c.ref.not_in(select(_P.c.payment_order))))
        zero = literal(0)
        return [
            select(_T.c.ref, _A.c.code, zero, _T.c.amount)
            .join(_A, _A.c.id == _T.c.credit_id).where(mine),
            select(_T.c.ref, _A.c.code, zero, -_T.c.amount)
            .join(_A, _A.c.id == _T.c.debit_id).where(mine),
        ]


def _nets(q: _Orders, codes: list[str]) -> Any:
    both = union_all(*q.expected(), *q.actual(codes)).subquery()
    diff = (
        select(both.c.ref, both.c.account, func.sum(both.c.exp).label("exp"),
               func.sum(both.c.act).label("act"))
        .group_by(both.c.ref, both.c.account)
        .having(func.sum(both.c.exp) != func.sum(both.c.act))
        .subquery()
    )
    return (select(diff, _P.c.id).outerjoin(_P, _P.c.payment_order == diff.c.ref)
            .order_by(diff.c.ref, diff.c.account))


def _net_line(r: Any) -> str:
    if r.id is None:
        return (f"payment: transfers under ref {r.ref} move {r.account} by {r.act}, "
                f"but no payment has that number")
    return f"payment {r.id} ({r.ref}): {r.account} moved {r.act}, expected {r.exp}"


def _collect_keys(q: _Orders) -> Any:
    o, t = q.o, _T.c
    return (
        select(o.id, o.collect_key.label("key"), o.collect_code.label("want"), o.amount,
               t.id.label("tid"), t.code, t.amount.label("moved"))
        .select_from(o.id.table)
        .outerjoin(_T, t.idempotency_key == o.collect_key)
        .where(q.checked, or_(t.id.is_(None), t.code != o.collect_code, t.ref != o.ref,
                              t.amount != o.amount))
        .order_by(o.id)
    )


def _collect_line(r: Any) -> str:
    if r.tid is None:
        return f"payment {r.id}: its transfer {r.key} is missing"
    return (f"payment {r.id}: transfer {r.tid} ({r.key}) is {r.code} {r.moved}, "
            f"expected {r.want} {r.amount} under its order number")


def _settle_keys(q: _Orders) -> Any:
    """Settlement moved what the refunds before it left (the whole order when there were none):
    ``funds.settlement_split`` of some refunded amount R, between nothing and what is refunded
    now (refunds after settlement come back from the seller, not through these transfers).
    R is read off the two transfers; the commission must be the one R leaves. The
    per-account check above holds the rest to the row exactly."""
    o = q.o
    s, c = _T.alias("s"), _T.alias("c")

    def wrong(t: Any, code: str, amount: Any) -> Any:
        missing = or_(t.c.id.is_(None), t.c.code != code, t.c.amount != amount, t.c.ref != o.ref)
        return or_(and_(amount > 0, missing), and_(amount <= 0, t.c.id.isnot(None)))

    before = o.amount - func.coalesce(s.c.amount, 0) - func.coalesce(c.c.amount, 0)
    commission = o.income - (before * o.income) // o.amount
    return (
        select(o.id, s.c.id.label("settle_id"), c.c.id.label("commission_id"))
        .select_from(o.id.table)
        .outerjoin(s, s.c.idempotency_key == _text("settle:", o.id))
        .outerjoin(c, c.c.idempotency_key == _text("commission:", o.id))
        .where(q.checked, q.settled,
               or_(before < 0, before > o.refund_amount,
                   wrong(s, SETTLE, o.amount - before - commission),
                   wrong(c, COMMISSION, commission)))
        .order_by(o.id)
    )


def _stranded(q: _Orders) -> Any:
    """Orders whose money sits in escrow where no route can move it any more: escrow holds
    money for an order only while settlement or a refund still can (paid or refunded in part
    and not settled, or a refund under way), or while a late payment waits for review."""
    o = q.o
    held = o.amount - o.refund_amount
    movable = or_(
        and_(~q.late_hold, o.kind == "escrow", o.settled_at.is_(None),
             o.state.in_(("ok", "refund", "wait_refund", "fail_refund"))),
        and_(q.late_hold, o.state.in_(("close", "wait_refund", "fail_refund"))),
    )
    holds = or_(q.late_hold, and_(o.kind == "escrow", o.settled_at.is_(None)))
    return (select(o.id, o.ref, o.state, held.label("held"))
            .where(q.checked, holds, held > 0, ~movable).order_by(o.id))


def _foreign_codes(q: _Orders) -> Any:
    o = q.o
    return (
        select(o.id, _T.c.id.label("tid"), _T.c.code)
        .join(_T, _T.c.ref == o.ref)
        .where(q.considered, _T.c.code != o.scene, _T.c.code.not_in(FIXED_CODES))
        .order_by(_T.c.id)
    )


def _settlement_fields(q: _Orders) -> Any:
    o = q.o
    wrongly_settled = and_(o.settled_at.isnot(None), or_(~q.received, ~q.settled))
    stray_income = or_(and_(o.income != 0, o.settled_at.is_(None)), o.income < 0,
                       o.income > o.amount)
    return (select(o.id, o.settled_at, o.income, o.state, o.scene)
            .where(q.considered, or_(wrongly_settled, stray_income)).order_by(o.id))


def _escrow_total(session: Session, q: _Orders) -> list[str]:
    o = q.o
    balance = session.scalar(
        select(func.coalesce(func.sum(_B.c.balance), 0))
        .join(_A, _A.c.id == _B.c.account_id).where(_A.c.code == "escrow"))
    orders = session.scalar(
        select(func.coalesce(func.sum(o.amount - o.refund_amount), 0))
        .where(q.checked, or_(q.late_hold, and_(o.kind == "escrow", o.settled_at.is_(None)))))
    considered = select(o.ref).where(q.considered)
    sides = union_all(
        select(_T.c.amount.label("delta")).join(_A, _A.c.id == _T.c.credit_id)
        .where(_A.c.code == "escrow", _T.c.ref.not_in(considered)),
        select(-_T.c.amount).join(_A, _A.c.id == _T.c.debit_id)
        .where(_A.c.code == "escrow", _T.c.ref.not_in(considered)),
    ).subquery()
    holds = session.scalar(select(func.coalesce(func.sum(sides.c.delta), 0)))
    if int(balance) != int(orders) + int(holds):
        return [f"payment: escrow holds {balance}, but unsettled orders {orders} + open holds "
                f"{holds} = {int(orders) + int(holds)}"]
    return []


def _statements(session: Session) -> list[str]:
    """Days reconciled without a difference: the statement's paid total against the ledger.
    Only runs made after their day was over: a statement of a day under way is partial."""
    from gonglun.plugins.payment.recon_base import day_window

    out = []
    runs = session.execute(
        select(ReconRun.bill_date, ReconRun.channel, ReconRun.channel_paid, ReconRun.ran_at)
        .where(ReconRun.channel_paid.isnot(None), ReconRun.differences == 0)
        .order_by(ReconRun.bill_date, ReconRun.channel)
    ).all()
    for day, channel, paid, ran_at in runs:
        start, end = day_window(day)
        if ran_at < end:
            continue
        moved = session.scalar(
            select(func.coalesce(func.sum(_T.c.amount), 0))
            .join(_A, _A.c.id == _T.c.debit_id)
            .join(_P, _P.c.payment_order == _T.c.ref)
            .where(_A.c.code == f"channel:{channel}", _P.c.method == channel,
                   _P.c.paid_at >= start, _P.c.paid_at < end)
        )
        if int(moved) != int(paid):
            out.append(f"payment: channel:{channel} on {day}: the statement says {paid} paid, "
                       f"the ledger moved {moved} from the channel for those orders")
    return out


def payment_problems(rt: Any, session: Session, problems: list[str]) -> list[str]:
    scenes = scenes_for(rt)
    q = _Orders(scenes)
    codes = sorted(set(scenes) | set(FIXED_CODES))
    o = q.o
    unknown = (select(o.id, o.scene).where(q.considered, q.received, o.kind == "unknown")
               .order_by(o.id))
    checks = (
        (unknown, lambda r: f"payment {r.id}: scene {r.scene} is not configured; its money "
                            f"cannot be checked", "payment: {n} more orders of unknown scenes"),
        (_nets(q, codes), _net_line, "payment: {n} more order positions differ"),
        (_collect_keys(q), _collect_line, "payment: {n} more orders' transfers are wrong"),
        (_settle_keys(q), lambda r: (f"payment {r.id}: settlement transfers wrong or missing "
                                     f"(settle {r.settle_id}, commission {r.commission_id})"),
         "payment: {n} more settlements are wrong"),
        (_foreign_codes(q), lambda r: f"payment {r.id}: transfer {r.tid} has code {r.code}, "
                                      f"which its scene does not use",
         "payment: {n} more transfers with foreign codes"),
        (_settlement_fields(q), lambda r: (f"payment {r.id}: settled_at {r.settled_at} and "
                                           f"income {r.income} do not fit a {r.scene} order in "
                                           f"state {r.state}"),
         "payment: {n} more orders with wrong settlement fields"),
        (_stranded(q), lambda r: (f"payment {r.id} ({r.ref}): {r.held} stranded in escrow: the "
                                  f"order is {r.state} and no settlement or refund can move "
                                  f"it"),
         "payment: {n} more orders with money stranded in escrow"),
    )
    for stmt, line, summary in checks:
        report(problems, session.execute(stmt), line, summary)
    problems.extend(_escrow_total(session, q))
    problems.extend(_statements(session))
    return problems
