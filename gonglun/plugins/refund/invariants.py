"""The refund plugin's invariants, in ``gonglun audit`` (set-based: joins, not loops).

1. A payment in ``wait_refund``, ``refund`` or ``fail_refund`` has the refund record of its
   refund number, for its ``refund_amount``, in the matching status (2, 1, 3).
2. A refund record that holds money (status 1, 2, 3) is its payment's current refund.
3. A ``fail_refund`` refund's money is held in ``escrow`` under its number; a refund paid out
   (by hand or by a retry) holds nothing any more.
4. A refund paid twice (by hand, then by the channel: ``refund_paid_twice``) fails the audit
   while its reconciliation item is open, or if it has none.
"""

from __future__ import annotations

from sqlalchemy import and_, exists, func, or_, select, union_all
from sqlalchemy.orm import Session

from gonglun.ledger import Account, Transfer
from gonglun.ledger.audit import report
from gonglun.plugins.refund.models import FAILED, REFUNDING, SUCCESS, Refund

STATE_STATUS = {"wait_refund": REFUNDING, "refund": SUCCESS, "fail_refund": FAILED}


def refund_problems(session: Session, problems: list[str]) -> list[str]:
    from gonglun.plugins.payment import Payment

    p, r = Payment.__table__.c, Refund.__table__.c
    want = (select(p.id, p.state, p.refund_order, p.refund_amount, r.id.label("rid"),
                   r.amount, r.status)
            .outerjoin(Refund.__table__, r.refund_order == p.refund_order)
            .where(p.state.in_(tuple(STATE_STATUS)))
            .where(or_(r.id.is_(None), r.amount != p.refund_amount,
                       *[and_(p.state == s, r.status != code)
                         for s, code in STATE_STATUS.items()]))
            .order_by(p.id))
    report(problems, session.execute(want),
           lambda x: (f"refund: payment {x.id} is {x.state} with refund {x.refund_order} of "
                      f"{x.refund_amount}, but its record is " + (
                          "missing" if x.rid is None
                          else f"{x.rid} ({x.amount}, status {x.status})")),
           "refund: {n} more payments disagree with their refund records")
    stray = (select(r.id, r.refund_order, r.status, p.refund_order.label("current"))
             .join(Payment.__table__, p.id == r.payment_id)
             .where(r.status.in_((SUCCESS, REFUNDING, FAILED)), r.booked.is_(True),
                    or_(p.refund_order.is_(None), p.refund_order != r.refund_order))
             .order_by(r.id))
    report(problems, session.execute(stray),
           lambda x: (f"refund {x.id} ({x.refund_order}, status {x.status}) holds money but "
                      f"its payment's refund is {x.current}"),
           "refund: {n} more refund records are not their payment's")
    a, t = Account.__table__.c, Transfer.__table__.c
    legs = union_all(
        select(t.ref, t.amount.label("delta")).join(Account.__table__, a.id == t.credit_id)
        .where(a.code == "escrow"),
        select(t.ref, -t.amount).join(Account.__table__, a.id == t.debit_id)
        .where(a.code == "escrow"),
    ).subquery()
    held = (select(legs.c.ref, func.sum(legs.c.delta).label("held"))
            .group_by(legs.c.ref).subquery())
    holding = func.coalesce(held.c.held, 0)
    owed = (select(r.id, r.refund_order, r.status, r.amount, holding.label("held"))
            .outerjoin(held, held.c.ref == r.refund_order)
            .where(or_(and_(r.status == FAILED, holding != r.amount),
                       and_(r.status != FAILED, holding != 0)))
            .order_by(r.id))
    report(problems, session.execute(owed),
           lambda x: (f"refund {x.id} ({x.refund_order}, status {x.status}): escrow holds "
                      f"{x.held} for it, expected {x.amount if x.status == FAILED else 0}"),
           "refund: {n} more refunds' holds are wrong")
    return problems


def paid_twice_problems(session: Session, problems: list[str]) -> list[str]:
    """Money that left twice for one refund, until staff resolve its reconciliation item."""
    from gonglun.plugins.payment import Payment
    from gonglun.plugins.payment.models import ReconItem
    from gonglun.plugins.refund.channel_exits import TWICE

    p, i = Payment.__table__.c, ReconItem.__table__.c
    r, t = Refund.__table__.c, Transfer.__table__.c
    open_items = (select(i.id, i.payment_order, i.channel_amount, p.id.label("pid"))
                  .outerjoin(Payment.__table__, p.payment_order == i.payment_order)
                  .where(i.kind == TWICE, i.status == "open").order_by(i.id))
    unlisted = (select(t.id, t.amount, r.payment_id, r.payment_order)
                .join(Refund.__table__, r.refund_order == t.ref)
                .where(t.code == TWICE, ~exists().where(i.kind == TWICE,
                                                        i.payment_order == r.payment_order))
                .order_by(t.id))
    for stmt, line, summary in (
        (open_items, lambda x: (f"refund: payment {x.pid} ({x.payment_order}) was refunded "
                                f"twice (by hand and by the channel, {x.channel_amount}): "
                                f"reconciliation item {x.id} is open until the money is "
                                f"recovered"), "refund: {n} more refunds paid twice"),
        (unlisted, lambda x: (f"refund: payment {x.payment_id} ({x.payment_order}) was "
                              f"refunded twice (transfer {x.id}, {x.amount}) with no "
                              f"reconciliation item"),
         "refund: {n} more double refunds without an item"),
    ):
        report(problems, session.execute(stmt), line, summary)
    return problems
