"""Staff alarms (NTF-12, OPS-03): every ``alarm`` is recorded; some reach the admins.

Per kind and Asia/Shanghai day, every ``threshold``-th alarm notifies the admins (scene
``alarm``, on its channels), at most ``max_per_day`` times. Refund errors (kind ``refund``):
3 errors → an alarm, at most 3 a day (OPS-03). Other kinds default to every alarm, at most 20
a day; ``[notify.alarms.<kind>]`` (or ``[notify.alarms.default]``) sets ``threshold`` and
``max_per_day``. The counts are rows moved by conditional updates in the same transaction as
the alarm's record, so a redelivered alarm is neither counted nor sent twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update

from gonglun.db import insert_ignore
from gonglun.plugins.notify.counters import bump, day_of, give_back, now, take
from gonglun.plugins.notify.models import Alarm
from gonglun.plugins.notify.service import event_key, service

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlarmRule:
    threshold: int = 1
    max_per_day: int = 20


DEFAULT_RULES = {"refund": AlarmRule(threshold=3, max_per_day=3)}


def rule_for(rt: Any, kind: str) -> AlarmRule:
    """The built-in rule of ``kind``, else ``[notify.alarms.default]``; ``[notify.alarms.<kind>]``
    overrides either."""
    table = rt.config.get("notify.alarms") or {}
    table = table if isinstance(table, dict) else {}
    rule = DEFAULT_RULES.get(kind, AlarmRule())
    for name in (("default",) if kind not in DEFAULT_RULES else ()) + (kind,):
        own = table.get(name)
        if isinstance(own, dict):
            rule = AlarmRule(int(own.get("threshold", rule.threshold)),
                             int(own.get("max_per_day", rule.max_per_day)))
    return AlarmRule(max(1, rule.threshold), max(0, rule.max_per_day))


def raise_alarm(rt: Any, kind: str, message: str, data: dict[str, Any]) -> str:
    """The ``alarm`` hook: answers counted, sent, undelivered (no admin, or no channel, to
    receive it), suppressed or duplicate."""
    kind = str(kind)[:64] or "alarm"
    svc = service(rt)
    at = now(rt)
    day = day_of(at)
    key = event_key("alarm", kind, message, data)
    details = json.dumps(data or {}, ensure_ascii=False, sort_keys=True, default=str)
    rule = rule_for(rt, kind)
    with rt.db.write() as session:
        if not insert_ignore(session, Alarm.__table__, {
            "key": key, "kind": kind, "day": day, "message": str(message),
            "data": details, "number": 0, "outcome": "counted", "created_at": at,
        }):
            return "duplicate"
        count = bump(session, f"alarm:{kind}:{day}", day)
        session.execute(update(Alarm).where(Alarm.key == key).values(number=count))
        if count % rule.threshold:
            return "counted"
        quota = f"alarm_sent:{kind}:{day}"
        sent = take(session, quota, day, limit=rule.max_per_day, at=at)
        ids = svc.fan_out(session, "alarm", None, {
            "kind": kind, "message": str(message), "count": count, "day": day,
            "details": details[:1000],
        }, key) if sent else []
        outcome = ("sent" if ids else "undelivered") if sent else "suppressed"
        if outcome == "undelivered":  # nobody received it: it does not use the day's quota
            give_back(session, quota)
        session.execute(update(Alarm).where(Alarm.key == key).values(outcome=outcome))
    if not sent:
        log.warning("alarm %s (%s today) not sent: the daily maximum of %s is reached", kind,
                    count, rule.max_per_day)
    elif not ids:
        log.error("alarm %s UNDELIVERED: nobody could be told (no active admin, or no alarm "
                  "channel available; `gonglun doctor` says which): %s", kind, message)
    svc.enqueue(ids)
    return outcome
