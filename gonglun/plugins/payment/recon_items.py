"""A run's differences stored as items (insert-ignore, unique on day, channel, order and kind),
open items that no longer differ settled, the run counted, and one alarm per batch of new ones.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict
from typing import Any

from sqlalchemy import select, update

from gonglun.db import insert_ignore, utcnow
from gonglun.plugins.payment.apply import REVIEW_KIND
from gonglun.plugins.payment.models import ReconItem, ReconRun
from gonglun.plugins.payment.recon_base import (
    CHUNK,
    REFUND_AT_CHANNEL,
    Difference,
    ReconReport,
    chunks,
    item_dict,
)
from gonglun.plugins.payment.recon_twice import PAID_TWICE

log = logging.getLogger(__name__)

CLEARED = "cleared on re-run: no longer differs"


def record(rt: Any, report: ReconReport, diffs: list[Difference],
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
                report.recovered += settle_item(session, _item_filter(bill_date, channel, d.kind,
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
                report.cleared += settle_item(session, (ReconItem.id == item_id,), CLEARED, now)
        for chunk in chunks(confirmed, CHUNK):
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


def settle_item(session: Any, where: tuple[Any, ...], resolution: str, now: dt.datetime,
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
    for chunk in chunks(orders, CHUNK):
        found.extend(
            i for i in session.scalars(
                select(ReconItem).where(ReconItem.bill_date == bill_date,
                                        ReconItem.channel == channel,
                                        ReconItem.payment_order.in_(chunk)))
            if (i.kind, i.payment_order) in wanted
        )
    return sorted(found, key=lambda i: i.id)


__all__ = ["CLEARED", "record", "settle_item"]
