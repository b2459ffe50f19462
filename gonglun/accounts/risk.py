"""Remote-login alert (OPS-09): a login from another province than the last one.

The province of the login's address comes from an offline MaxMind-format database
(``accounts.ip_db``, read with ``maxminddb``): the record's ``province`` field, else its first
``subdivisions`` name (zh-CN, else en). Without a database the alert is off. The alert (the
notify scene ``login_alert``) goes out when the user turned it on (user meta ``login_alert`` =
``1``) and the last known province differs; it is skipped for SMS, phone and WeChat logins and
for WeChat clients (the WeChat browser, mini programs). Every login with a known province
updates the last one.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from gonglun.accounts.service import get_meta, set_meta

log = logging.getLogger(__name__)
SKIPPED_METHODS = frozenset({"sms", "phone", "wechat"})
WECHAT_PLATFORMS = frozenset({"mp", "mini"})
ENABLED_META = "login_alert"
LAST_META = "last_login_province"


def reader(rt: Any) -> Any:
    """The opened database (cached on the runtime), or None when none is configured."""
    path = rt.config.path("accounts.ip_db")
    if path is None:
        return None
    cached = rt.__dict__.get("_ip_db")
    if cached is None or cached[0] != str(path):
        import maxminddb

        cached = rt.__dict__["_ip_db"] = (str(path), maxminddb.open_database(str(path)))
    return cached[1]


def province(rt: Any, ip: str) -> str | None:
    db = reader(rt)
    if db is None or not ip:
        return None
    try:
        record = db.get(ip)
    except ValueError:  # not an address
        return None
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("province"), str) and record["province"]:
        return str(record["province"])[:64]
    for sub in record.get("subdivisions") or []:
        names = sub.get("names") or {} if isinstance(sub, dict) else {}
        name = names.get("zh-CN") or names.get("en")
        if name:
            return str(name)[:64]
    return None


def skipped(method: str, platform: str, user_agent: str) -> bool:
    agent = user_agent or ""
    return (method in SKIPPED_METHODS or platform in WECHAT_PLATFORMS
            or "MicroMessenger" in agent or "miniProgram" in agent)


def on_login(rt: Any, user_id: int, method: str, ip: str, platform: str,
             user_agent: str) -> bool:
    """Update the last province and send the alert; True when an alert was sent."""
    where = province(rt, ip)
    if where is None:
        return False
    with rt.db.write() as session:
        last = get_meta(session, user_id, LAST_META)
        if last != where:
            set_meta(session, user_id, LAST_META, where)
        alert = (last is not None and last != where and not skipped(method, platform, user_agent)
                 and get_meta(session, user_id, ENABLED_META) == "1")
        if alert:
            rt.hooks.defer(session, "notify", key=f"login_alert:{user_id}:{secrets.token_hex(8)}",
                           scene="login_alert", user_id=user_id,
                           data={"province": where, "last_province": last, "method": method,
                                 "platform": platform})
    return alert
