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
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select, update

from gonglun.db import insert_ignore, utcnow
from gonglun.errors import GonglunError
from gonglun.plugins.payment.apply import REVIEW_KIND
from gonglun.plugins.payment.channels import ChannelError, StatementRow, get_channel
from gonglun.plugins.payment.models import Payment, ReconItem, ReconRun
from gonglun.plugins.payment.money import SHANGHAI
from gonglun.plugins.payment.recon_twice import PAID_TWICE, paid_twice

log = logging.getLogger(__name__)

CHANNELS = ("alipay", "wxpay")
#: Opened by the settlement guard (``guard.py``): the channel refunded more than we did.
#: A person resolves it; a statement re-run never clears it.
REFUND_AT_CHANNEL = "refund_at_channel"
KINDS = ("missing_local", "missing_channel", "amount_mismatch", "status_mismatch",
         "refund_missing_local", "refund_amount_mismatch", "refund_missing_channel", PAID_TWICE,
         REFUND_AT_CHANNEL)
STATUSES = ("open", "resolved")
PAID_STATES = ("ok", "wait_refund", "refund", "fail_refund")
RECOVERED = "recovered by query"
CLEARED = "cleared on re-run: no longer differs"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
_CHUNK = 500
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


def day_window(bill_date: str) -> tuple[dt.datetime, dt.datetime]:
    """The Beijing day as a UTC half-open interval [start, end)."""
    start = dt.datetime.combine(dt.date.fromisoformat(bill_date), dt.time(), SHANGHAI)
    return start.astimezone(dt.UTC), (start + dt.timedelta(days=1)).astimezone(dt.UTC)


def yesterday(now: dt.datetime | None = None) -> str:
    """The previous Beijing day: the statement the daily job reconciles."""
    local = (now or dt.datetime.now(dt.UTC)).astimezone(SHANGHAI)
    return (local.date() - dt.timedelta(days=1)).isoformat()


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Local:
    """What reconciliation needs of one of our payments (a snapshot, no session attached)."""

    id: int
    payment_order: str
    method: str
    state: str
    late: bool
    amount: int
    paid_amount: int | None
    refund_amount: int
    paid_at: dt.datetime | None

    @property
    def paid(self) -> bool:
        return self.state in PAID_STATES or self.late


@dataclass
class Difference:
    kind: str
    payment_order: str
    trade_no: str | None = None
    local_amount: int | None = None
    channel_amount: int | None = None
    local_state: str | None = None
    channel_state: str | None = None
    #: Set when the run itself settled it (recovered by query): stored as resolved.
    resolution: str | None = None


@dataclass
class ReconReport:
    """One run: what the statement had, what we had, and the differences found."""

    bill_date: str
    channel: str
    channel_rows: int = 0
    local_rows: int = 0
    #: What the statement says was paid for our orders paid that day (fen): the audit holds
    #: the channel's clearing account to it on days without differences.
    channel_paid: int = 0
    #: The differences this run found, as stored (``status`` shows later resolutions too).
    items: list[dict[str, Any]] = field(default_factory=list)
    new_items: int = 0
    recovered: int = 0
    cleared: int = 0
    ran_at: str = ""

    @property
    def differences(self) -> int:
        return len(self.items)

    @property
    def open(self) -> int:
        return sum(1 for i in self.items if i["status"] == "open")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["differences"] = self.differences
        out["open"] = self.open
        return out


def item_dict(item: ReconItem) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for col in ReconItem.__table__.columns:
        value = getattr(item, col.name)
        out[col.name] = value.isoformat() if isinstance(value, dt.datetime) else value
    return out


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
    rows = {row.payment_order: row for row in _statement(rt, channel, bill_date)}
    start, end = day_window(bill_date)
    local = _load_local(rt, channel, start, end, rows)
    diffs: dict[tuple[str, str], Difference] = {}

    def add(d: Difference) -> None:
        diffs.setdefault((d.kind, d.payment_order), d)

    for order, row in rows.items():
        mine = local.get(order)
        if mine is None or mine.method != channel or not mine.paid:
            add(_missing_local(rt, row, mine, channel))
            continue
        for d in _compare(row, mine):
            add(d)
    in_day = [p for p in local.values()
              if p.method == channel and p.paid and p.paid_at is not None
              and start <= p.paid_at < end]
    for p in in_day:
        if p.payment_order not in rows:
            add(Difference("missing_channel", p.payment_order, local_amount=p.amount,
                           local_state=p.state))
    for p in _refunded_in(rt, channel, start, end):
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
    _record(rt, report, list(diffs.values()), confirmed)
    return report


def _statement(rt: Any, channel: str, bill_date: str) -> list[StatementRow]:
    try:
        return get_channel(rt, channel).statement(bill_date)
    except ChannelError as exc:
        raise GonglunError("recon.channel_error", "对账单下载失败, 请稍后重试", status=502,
                           data={"channel": channel, "detail": str(exc)[:200]}) from exc


def _snapshot(p: Payment) -> Local:
    return Local(p.id, p.payment_order, p.method, p.state, bool(p.late), p.amount, p.paid_amount,
                 p.refund_amount or 0, p.paid_at)


def _load_local(rt: Any, channel: str, start: dt.datetime, end: dt.datetime,
                rows: dict[str, StatementRow]) -> dict[str, Local]:
    """Our payments of ``channel`` paid within the day, and every order the statement names."""
    out: dict[str, Local] = {}
    with rt.db.read() as session:
        for p in session.scalars(
            select(Payment).where(Payment.method == channel, Payment.paid_at >= start,
                                  Payment.paid_at < end)
        ):
            out[p.payment_order] = _snapshot(p)
        wanted = [o for o in rows if o not in out]
        for chunk in _chunks(wanted, _CHUNK):
            for p in session.scalars(select(Payment).where(Payment.payment_order.in_(chunk))):
                out[p.payment_order] = _snapshot(p)
    return out


def _reload(rt: Any, payment_id: int) -> Local | None:
    with rt.db.read() as session:
        p = session.get(Payment, payment_id)
        return _snapshot(p) if p is not None else None


def _missing_local(rt: Any, row: StatementRow, mine: Local | None, channel: str) -> Difference:
    """The channel was paid and we were not: try the ordinary apply path first (DROP-05)."""
    d = Difference("missing_local", row.payment_order, trade_no=row.trade_no or None,
                   channel_amount=row.amount, channel_state=row.status)
    if mine is None:
        return d
    d.local_amount, d.local_state = mine.amount, mine.state
    if mine.method != channel or mine.state not in ("wait_pay", "close"):
        return d
    from gonglun.plugins.payment import lifecycle

    try:
        lifecycle.sync(rt, mine.id)
    except GonglunError as exc:
        log.warning("reconciliation: query of %s failed: %s", mine.payment_order, exc)
        return d
    after = _reload(rt, mine.id)
    if after is not None and after.paid:
        d.resolution = RECOVERED + (" (late payment, flagged for review)"
                                    if after.late and after.state == "close" else "")
    return d


def _refunded_in(rt: Any, channel: str, start: dt.datetime, end: dt.datetime) -> list[Local]:
    """Our refunds of ``channel`` settled that day through the channel (not by hand)."""
    with rt.db.read() as session:
        rows = session.scalars(
            select(Payment).where(Payment.method == channel, Payment.state == "refund",
                                  Payment.refund_time >= start, Payment.refund_time < end))
        return [_snapshot(p) for p in rows if '"manual": true' not in (p.meta or "")]


def _compare(row: StatementRow, mine: Local) -> list[Difference]:
    out: list[Difference] = []
    if row.amount != mine.amount or (mine.paid_amount is not None
                                     and mine.paid_amount != row.amount):
        out.append(Difference("amount_mismatch", row.payment_order, trade_no=row.trade_no or None,
                              local_amount=mine.amount, channel_amount=row.amount,
                              local_state=mine.state, channel_state=row.status))
    if row.refund_amount > 0:
        # Amounts of a refund difference are the refunded amounts on each side.
        kind = ("refund_missing_local" if mine.refund_amount == 0 else
                "refund_amount_mismatch" if mine.refund_amount != row.refund_amount else
                "status_mismatch" if mine.state != "refund" else None)
        if kind is not None:
            out.append(Difference(kind, row.payment_order, trade_no=row.trade_no or None,
                                  local_amount=mine.refund_amount,
                                  channel_amount=row.refund_amount, local_state=mine.state,
                                  channel_state=row.status))
    return out


def _record(rt: Any, report: ReconReport, diffs: list[Difference],
            confirmed: list[str]) -> None:
    """Store the differences, settle what no longer differs, count the run, raise the alarm."""
    bill_date, channel = report.bill_date, report.channel
    now = utcnow()
    new_keys: list[tuple[str, str]] = []
    with rt.db.write() as session:
        for d in diffs:
            values = asdict(d)
            values.update(bill_date=bill_date, channel=channel, created_at=now,
                          status="resolved" if d.resolution else "open",
                          resolved_at=now if d.resolution else None)
            if insert_ignore(session, ReconItem.__table__, values):
                if d.resolution:
                    report.recovered += 1
                else:
                    new_keys.append((d.kind, d.payment_order))
            elif d.resolution:
                # An earlier run could not settle it; this one did.
                report.recovered += _settle(session, _item_filter(bill_date, channel, d.kind,
                                                                  d.payment_order),
                                            d.resolution, now)
        open_keys = {(d.kind, d.payment_order) for d in diffs if not d.resolution}
        for item_id, kind, order in session.execute(
            select(ReconItem.id, ReconItem.kind, ReconItem.payment_order).where(
                ReconItem.bill_date == bill_date, ReconItem.channel == channel,
                ReconItem.status == "open",
                # Held notifications, money paid twice and the settlement guard's findings
                # are not statement differences: a person resolves them.
                ReconItem.kind.not_in((REVIEW_KIND, PAID_TWICE, REFUND_AT_CHANNEL)))
        ).all():
            if (kind, order) not in open_keys:
                report.cleared += _settle(session, (ReconItem.id == item_id,), CLEARED, now)
        for chunk in _chunks(confirmed, _CHUNK):
            # The scratch pool: booked by the channel on another day than the one we expected.
            report.cleared += session.execute(
                update(ReconItem)
                .where(ReconItem.channel == channel, ReconItem.kind == "missing_channel",
                       ReconItem.status == "open", ReconItem.bill_date != bill_date,
                       ReconItem.payment_order.in_(chunk))
                .values(status="resolved", resolution=f"found in statement of {bill_date}",
                        resolved_at=now)
            ).rowcount
        _count_run(session, report, len(diffs), now)
        items = _items_for(session, bill_date, channel,
                           [(d.kind, d.payment_order) for d in diffs])
        report.items = [item_dict(i) for i in items]
        report.new_items = len(new_keys)
        report.ran_at = now.isoformat()
        if new_keys:
            fresh = [i for i in report.items if (i["kind"], i["payment_order"]) in set(new_keys)]
            kinds: dict[str, int] = {}
            for i in fresh:
                kinds[i["kind"]] = kinds.get(i["kind"], 0) + 1
            rt.hooks.defer(
                session, "alarm", key=f"alarm:recon:{channel}:{bill_date}:{fresh[0]['id']}",
                kind="reconciliation",
                message=f"对账差异: {channel} {bill_date} 新增 {len(fresh)} 条",
                data={"bill_date": bill_date, "channel": channel, "kinds": kinds,
                      "items": [i["id"] for i in fresh[:100]]},
            )
    if report.new_items:
        log.warning("reconciliation %s %s: %d new difference(s)", channel, bill_date,
                    report.new_items)


def _item_filter(bill_date: str, channel: str, kind: str, order: str) -> tuple[Any, ...]:
    return (ReconItem.bill_date == bill_date, ReconItem.channel == channel,
            ReconItem.kind == kind, ReconItem.payment_order == order)


def _settle(session: Any, where: tuple[Any, ...], resolution: str, now: dt.datetime,
            by: int | None = None) -> int:
    """open → resolved, conditionally: returns 1 when this call changed it."""
    return int(session.execute(
        update(ReconItem).where(*where, ReconItem.status == "open")
        .values(status="resolved", resolution=resolution, resolved_by=by, resolved_at=now)
    ).rowcount)


def _count_run(session: Any, report: ReconReport, differences: int, now: dt.datetime) -> None:
    counters = {"channel_rows": report.channel_rows, "local_rows": report.local_rows,
                "differences": differences, "channel_paid": report.channel_paid, "ran_at": now}
    inserted = insert_ignore(session, ReconRun.__table__,
                             {"bill_date": report.bill_date, "channel": report.channel,
                              **counters})
    if not inserted:
        session.execute(update(ReconRun).where(ReconRun.bill_date == report.bill_date,
                                               ReconRun.channel == report.channel)
                        .values(**counters))


def _items_for(session: Any, bill_date: str, channel: str,
               keys: list[tuple[str, str]]) -> list[ReconItem]:
    wanted = set(keys)
    orders = sorted({o for _, o in keys})
    found: list[ReconItem] = []
    for chunk in _chunks(orders, _CHUNK):
        found.extend(
            i for i in session.scalars(
                select(ReconItem).where(ReconItem.bill_date == bill_date,
                                        ReconItem.channel == channel,
                                        ReconItem.payment_order.in_(chunk)))
            if (i.kind, i.payment_order) in wanted
        )
    return sorted(found, key=lambda i: i.id)


def _chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


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
        changed = _settle(session, (ReconItem.id == item_id,), text, utcnow(), by)
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
