"""Fen and yuan: integers inside, yuan strings only at the Alipay edge (DECISIONS.md 1)."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
_YUAN = re.compile(r"^(0|[1-9]\d{0,12})(?:\.(\d{1,2}))?$", re.ASCII)


def fen_to_yuan(fen: int) -> str:
    if isinstance(fen, bool) or not isinstance(fen, int) or fen < 0:
        raise ValueError(f"not an amount in fen: {fen!r}")
    return f"{fen // 100}.{fen % 100:02d}"


def yuan_to_fen(text: str) -> int:
    """Parse a channel's yuan string exactly ("12.3" → 1230); anything else is an error."""
    match = _YUAN.match(str(text).strip())
    if not match:
        raise ValueError(f"not a yuan amount: {text!r}")
    whole, frac = match.group(1), (match.group(2) or "").ljust(2, "0")
    return int(whole) * 100 + int(frac)


def shanghai_naive_to_utc(text: str | None) -> dt.datetime | None:
    """Alipay's ``YYYY-MM-DD HH:MM:SS`` (Beijing time) as an aware UTC datetime."""
    if not text:
        return None
    try:
        local = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return local.replace(tzinfo=SHANGHAI).astimezone(dt.UTC)


def as_datetime(value: dt.datetime | str) -> dt.datetime:
    """A payment dict carries ISO text; rows carry datetimes. Either, as a datetime."""
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(SHANGHAI).isoformat(timespec="seconds")


def parse_rfc3339(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text).astimezone(dt.UTC)
    except ValueError:
        return None
