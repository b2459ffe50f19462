"""Money, clocks and identifiers as the two channels write them on the wire."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import string
import time
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")

#: An openid (and a unionid) as WeChat issues them: 28 characters of the URL-safe base64
#: alphabet, such as ``oUpF8uMuAJO_M2pxb1Q9zNjWeS6o``. Every WeChat emulator (sign-in, template
#: messages, WeChat Pay's JSAPI payer) holds openids to this one rule.
OPENID_LENGTH = 28
_OPENID = re.compile(r"^[A-Za-z0-9_-]{28}$", re.ASCII)


def is_openid(value: object) -> bool:
    return isinstance(value, str) and _OPENID.match(value) is not None


#: Upper bound for one order, in fen (Alipay's own limit is 100,000,000 yuan).
MAX_FEN = 100_000_000_00

_YUAN = re.compile(r"^(0|[1-9]\d{0,9})(\.\d{1,2})?$")


class AmountError(ValueError):
    """An amount the channel would refuse."""


def yuan_to_fen(value: object) -> int:
    """Parse Alipay's yuan string ("12.34") into fen, refusing floats' rounding games."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise AmountError(f"amount must be a yuan string, got {value!r}")
    text = str(value).strip()
    m = _YUAN.match(text)
    if not m:
        raise AmountError(f"invalid yuan amount {value!r}")
    whole, frac = m.group(1), (m.group(2) or ".")[1:]
    fen = int(whole) * 100 + int((frac + "00")[:2])
    if fen > MAX_FEN:
        raise AmountError(f"amount {value!r} exceeds the limit")
    return fen


def fen_to_yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def now() -> float:
    return time.time()


def local(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, SHANGHAI)


def alipay_time(ts: float) -> str:
    """Alipay writes Shanghai wall-clock time without a zone: ``2024-01-01 12:00:00``."""
    return local(ts).strftime("%Y-%m-%d %H:%M:%S")


def wechat_time(ts: float) -> str:
    """WeChat writes RFC 3339 with the +08:00 offset: ``2024-01-01T12:00:00+08:00``."""
    return local(ts).isoformat(timespec="seconds")


def day_of(ts: float) -> str:
    """The Shanghai calendar day a timestamp belongs to (statements are per Shanghai day)."""
    return local(ts).strftime("%Y-%m-%d")


def parse_time(text: str) -> float:
    """Parse ``YYYY-MM-DD HH:MM:SS`` (Shanghai) or an ISO 8601 time with offset."""
    text = text.strip()
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"invalid time {text!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=SHANGHAI)
    return parsed.timestamp()


def digits(n: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(n))


def alipay_trade_no(ts: float) -> str:
    """28 digits, date first, like ``2024010122001404071234567890``."""
    return local(ts).strftime("%Y%m%d") + "2200" + digits(16)


def wechat_transaction_id(ts: float) -> str:
    """28 digits starting 4200, like WeChat's ``4200001234202401011234567890``."""
    return "42000" + digits(5) + local(ts).strftime("%Y%m%d") + digits(10)


def wechat_refund_id(ts: float) -> str:
    return "50300" + digits(5) + local(ts).strftime("%Y%m%d") + digits(11)


def notify_id() -> str:
    return secrets.token_hex(16)


def wechat_nonce(n: int = 32) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))
