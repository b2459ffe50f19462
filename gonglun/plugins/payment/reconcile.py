"""Daily reconciliation: a channel's statement against our payments (DROP-05, DROP-09).

Notifications and drop-order queries settle about 99% of outcomes; the channel's statement of a
Beijing day is the final safety net for the rest. Each run compares the statement with our
orders of that channel paid that day (plus any order the statement names) and records every
difference as a ``ReconItem``:

- ``missing_local``: the channel was paid, we have no such order or ours is not paid. An order
  of ours still in ``wait_pay``/``close`` is first settled through the ordinary apply path
  (``lifecycle.sync``); when that settles it the item is kept, resolved "recovered by query".
- ``missing_channel``: we say paid, the statement does not have it.
- ``amount_mismatch``: both have it, the amounts differ.
- ``refund_missing_local``: the channel refunded it, we have no refund;
- ``refund_amount_mismatch``: both refunded, the amounts differ;
- ``status_mismatch``: the channel refunded it as we did, but ours is not settled yet
  (``wait_refund``) or failed (``fail_refund``);
- ``refund_missing_channel``: we refunded it that day through the channel, the statement has
  no such refund (a manual payout of a failed refund is not the channel's, and not counted);
- ``refund_paid_twice``: we refunded it by hand and the statement shows the channel refunded it
  too (``recon_twice.py``; also opened by the refund plugin when the channel's success arrives).

Runs are idempotent: items are unique on (day, channel, order, kind) and inserted with
insert-ignore, so the hourly job can re-run yesterday freely. A re-run resolves open items that
no longer differ ("cleared on re-run"), and a ``missing_channel`` item is settled when a later
day's statement shows the order (roncoo-pay's scratch pool: payments near midnight may be booked
on the neighbouring day). New differences raise the ``alarm`` hook, deferred in the same
transaction, once per batch.

Here: a run's input (days, channels), its outline and the items' listing and resolution. What a
run compares is ``recon_match.py``, how its differences are stored ``recon_items.py``, the
results they share ``recon_base.py``; each imports only those below it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select

from gonglun.db import utcnow
from gonglun.errors import GonglunError
from gonglun.plugins.payment.channels import get_channel
from gonglun.plugins.payment.models import ReconItem
from gonglun.plugins.payment.money import SHANGHAI
from gonglun.plugins.payment.recon_base import (
    REFUND_AT_CHANNEL,
    Difference,
    ReconReport,
    day_window,
    item_dict,
)
from gonglun.plugins.payment.recon_items import record, settle_item
from gonglun.plugins.payment.recon_match import (
    RECOVERED,
    compare,
    load_local,
    missing_local,
    refunded_in,
    statement,
)
from gonglun.plugins.payment.recon_twice import PAID_TWICE, paid_twice

log = logging.getLogger(__name__)

CHANNELS = ("alipay", "wxpay")
KINDS = ("missing_local", "missing_channel", "amount_mismatch", "status_mismatch",
         "refund_missing_local", "refund_amount_mismatch", "refund_missing_channel", PAID_TWICE,
         REFUND_AT_CHANNEL)
STATUSES = ("open", "resolved")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_MAX_RESOLUTION = 255


# -- input ---------------------------------------------------------------------------------


def parse_bill_date(value: Any, *, today: dt.date | None = None, finished: bool = True) -> str:
    """A Beijing calendar day ``YYYY-MM-DD``; anything else is refused. ``finished``: the day
    must be over (before today in Beijing), as a run needs: a statement of a day still under
    way is partial, and the audit would hold the next payment of that day against it.
    Filters (listing items) take any day that has started."""
    text = value.strip() if isinstance(value, str) else ""
    try:
        day = dt.date.fromisoformat(text) if _DATE.match(text) else None
    except ValueError:
        day = None
    if day is None:
        raise GonglunError("recon.invalid_date", "对账日期格式应为 YYYY-MM-DD",
                           data={"date": value if isinstance(value, str) else None})
    today = today or beijing_today()
    if finished and day >= today:
        latest = (today - dt.timedelta(days=1)).isoformat()
        raise GonglunError("recon.invalid_date",
                           f"只能对已结束的日期对账(北京时间 {latest} 及以前), {text} 尚未结束",
                           data={"date": text, "latest": latest})
    if day > today:
        raise GonglunError("recon.invalid_date", "对账日期不能晚于今天(北京时间)",
                           data={"date": text})
    return text


def beijing_today() -> dt.date:
    """Today in Asia/Shanghai (DECISIONS.md 4): the day not yet over."""
    return dt.datetime.now(SHANGHAI).date()


def check_channel(value: Any) -> str:
    if value not in CHANNELS:
        raise GonglunError("recon.invalid_channel", f"对账渠道无效, 可选: {', '.join(CHANNELS)}",
                           data={"channel": value if isinstance(value, str) else None,
                                 "choices": list(CHANNELS)})
    return str(value)


def check_resolution(value: Any) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > _MAX_RESOLUTION:
        raise GonglunError("recon.invalid_resolution",
                           f"请填写处理说明(1-{_MAX_RESOLUTION} 个字符)")
    return text


def yesterday(now: dt.datetime | None = None) -> str:
    """The previous Beijing day: the statement the daily job reconciles."""
    local = (now or dt.datetime.now(dt.UTC)).astimezone(SHANGHAI)
    return (local.date() - dt.timedelta(days=1)).isoformat()


# -- the run -------------------------------------------------------------------------------


def reconcile(rt: Any, bill_date: str, channel: str) -> ReconReport:
    """Reconcile ``channel``'s statement of the Beijing day ``bill_date`` with our payments.

    A Redis lock only keeps two runs of the same day from doing the work twice; correctness
    comes from the unique key on items and conditional updates.
    """
    from gonglun.kv.lock import lock_or_fail

    bill_date = parse_bill_date(bill_date)
    channel = check_channel(channel)
    key = rt.keys("lock", "recon", bill_date, channel)
    with lock_or_fail(rt.redis, key, float(rt.config.get("payment.reconcile_lock_s", 900)),
                      error="recon.busy", msg="该日对账正在进行, 请稍后再试"):
        return _run(rt, bill_date, channel)


def _run(rt: Any, bill_date: str, channel: str) -> ReconReport:
    rows = {row.payment_order: row for row in statement(rt, channel, bill_date)}
    start, end = day_window(bill_date)
    local = load_local(rt, channel, start, end, rows)
    diffs: dict[tuple[str, str], Difference] = {}

    def add(d: Difference) -> None:
        diffs.setdefault((d.kind, d.payment_order), d)

    for order, row in rows.items():
        mine = local.get(order)
        if mine is None or mine.method != channel or not mine.paid:
            add(missing_local(rt, row, mine, channel))
            continue
        for d in compare(row, mine):
            add(d)
    in_day = [p for p in local.values()
              if p.method == channel and p.paid and p.paid_at is not None
              and start <= p.paid_at < end]
    for p in in_day:
        if p.payment_order not in rows:
            add(Difference("missing_channel", p.payment_order, local_amount=p.amount,
                           local_state=p.state))
    for p in refunded_in(rt, channel, start, end):
        row = rows.get(p.payment_order)
        if row is None or row.refund_amount == 0:
            add(Difference("refund_missing_channel", p.payment_order, local_amount=p.refund_amount,
                           channel_amount=0, local_state=p.state,
                           channel_state=row.status if row else None))
    for d in paid_twice(rt, channel, rows):
        add(d)
    report = ReconReport(bill_date, channel, channel_rows=len(rows), local_rows=len(in_day),
                         channel_paid=sum(rows[p.payment_order].amount for p in in_day
                                          if p.payment_order in rows))
    confirmed = [o for o, r in rows.items() if o in local and local[o].paid]
    record(rt, report, list(diffs.values()), confirmed)
    return report


def reconcile_days(rt: Any, bill_date: str | None = None,
                   channels: Iterable[str] = CHANNELS) -> list[dict[str, Any]]:
    """The daily job: yesterday (by default) for every configured channel.

    A channel that is not configured is skipped. One that fails (statement not ready, channel
    unreachable, another run holding the day) is logged and reported, not raised: the job runs
    every hour, so the next run is the retry, and a worker traceback would only be noise.
    """
    day = bill_date or yesterday()
    configured = []
    for channel in channels:
        try:
            get_channel(rt, channel)
        except GonglunError:
            log.info("reconciliation: channel %s not configured; skipped", channel)
            continue
        configured.append(channel)
    return reconcile_each(rt, day, configured)


def reconcile_each(rt: Any, bill_date: str, channels: Iterable[str]) -> list[dict[str, Any]]:
    """Each channel's report, or its failure (``error``, ``msg``, ``status``, ``data``) in its
    place: one channel's failure (statement not ready, channel unreachable, another run holding
    the day) never hides the others' results."""
    out: list[dict[str, Any]] = []
    for channel in channels:
        try:
            out.append(reconcile(rt, bill_date, channel).to_dict())
        except GonglunError as exc:
            log.warning("reconciliation %s %s failed: %s", channel, bill_date, exc)
            out.append({"bill_date": bill_date, "channel": channel, "error": exc.error,
                        "msg": exc.msg, "status": exc.status, "data": exc.data})
    return out


# -- listing and resolving -----------------------------------------------------------------


def list_items(rt: Any, *, status: str | None = None, bill_date: str | None = None,
               channel: str | None = None, limit: int = 50,
               before: int | None = None) -> dict[str, Any]:
    """Items newest first, filtered; ``next_before`` pages on."""
    stmt = select(ReconItem).order_by(ReconItem.id.desc()).limit(limit)
    if status is not None:
        if status not in STATUSES:
            raise GonglunError("recon.invalid_status", f"状态无效, 可选: {', '.join(STATUSES)}",
                               data={"choices": list(STATUSES)})
        stmt = stmt.where(ReconItem.status == status)
    if bill_date is not None:
        stmt = stmt.where(ReconItem.bill_date == parse_bill_date(bill_date, finished=False))
    if channel is not None:
        stmt = stmt.where(ReconItem.channel == check_channel(channel))
    if before:
        stmt = stmt.where(ReconItem.id < before)
    with rt.db.read() as session:
        items = [item_dict(i) for i in session.scalars(stmt)]
        counts = dict(session.execute(
            select(ReconItem.status, func.count()).group_by(ReconItem.status)).all())
    return {"items": items, "next_before": items[-1]["id"] if len(items) == limit else None,
            "counts": {s: int(counts.get(s, 0)) for s in STATUSES}}


def resolve_item(rt: Any, item_id: int, resolution: Any, *, by: int | None = None
                 ) -> dict[str, Any]:
    """An operator settles an item: open → resolved, recording who and how."""
    text = check_resolution(resolution)
    with rt.db.write() as session:
        changed = settle_item(session, (ReconItem.id == item_id,), text, utcnow(), by)
        item = session.get(ReconItem, item_id)
        if item is None:
            raise GonglunError("recon.not_found", "对账差异不存在", status=404)
        if not changed:
            raise GonglunError("recon.already_resolved", "该差异已处理", status=409,
                               data={"item": item_dict(item)})
        session.refresh(item)
        return item_dict(item)


def parse_item_id(value: Any) -> int:
    from gonglun.api.util import path_id

    return path_id(str(value), error="recon.not_found", msg="对账差异不存在")


#: Also the names whose homes are ``recon_base.py`` and ``recon_match.py``, importable from here.
__all__ = ["CHANNELS", "KINDS", "RECOVERED", "REFUND_AT_CHANNEL", "STATUSES", "Difference",
           "ReconReport", "beijing_today", "check_channel", "check_resolution", "day_window",
           "item_dict", "list_items", "parse_bill_date", "parse_item_id", "reconcile",
           "reconcile_days", "reconcile_each", "resolve_item", "yesterday"]
