"""Registration tickets: what WeChat said about a user who has no account yet (ACC-03).

After a WeChat sign-in finds no bound account, the client gets a ticket carrying the platform,
openid, unionid, nickname and avatar, and sends it back with the register/bind request. It is
``base64url(json).base64url(hmac_sha256)`` under ``accounts.ticket_key`` (on the embedded
default a key file under the data folder), expires after ``accounts.ticket_ttl_s`` (300 s: the
catalog's "WeChat token expired, re-authorise"), and is single use: the register/bind step burns
its id in Redis. Nothing in it can be changed without the key, so the client never chooses an
openid; it is not a cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from gonglun.errors import GonglunError
from gonglun.keyfiles import KeyMissing, key_from

#: Domain separation: a ticket's MAC can never be confused with another use of the key.
PURPOSE = b"gonglun-wechat-registration-v1\x00"
MAX_LEN = 2048

MSG_EXPIRED = "微信令牌过期,请重新进行授权"
MSG_INVALID = "微信令牌无效,请重新进行授权"


@dataclass(frozen=True)
class Ticket:
    id: str
    platform: str
    openid: str
    unionid: str | None
    nickname: str
    avatar: str
    expires_at: int


def _key(rt: Any) -> bytes:
    try:
        return key_from(rt, "accounts.ticket_key", "accounts/ticket.key")
    except KeyMissing:
        raise GonglunError("account.wechat_unavailable", "微信登录暂不可用", status=503) from None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _unb64(text: str) -> bytes:
    """Strict unpadded base64url: one encoding per value, so a ticket has one spelling."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        raise ValueError("non-canonical base64url")
    return raw


def _now(rt: Any) -> float:
    clock = getattr(rt, "accounts_clock", None)
    return float(clock()) if clock is not None else time.time()


def ttl(rt: Any) -> int:
    return int(rt.config.get("accounts.ticket_ttl_s", 300) or 300)


def issue(rt: Any, platform: str, openid: str, unionid: str | None, nickname: str,
          avatar: str) -> tuple[str, int]:
    """A signed ticket and its lifetime in seconds."""
    life = ttl(rt)
    body = {"i": secrets.token_urlsafe(12), "p": platform, "o": openid, "u": unionid,
            "n": nickname, "a": avatar, "e": int(_now(rt)) + life}
    payload = _b64(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    mac = hmac.new(_key(rt), PURPOSE + payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(mac)}", life


def read(rt: Any, text: Any) -> Ticket:
    """The ticket's content; missing or expired → ``account.ticket_expired``, anything forged
    or malformed → ``account.invalid_ticket``. Does not burn it (``burn`` does)."""
    if text is None or text == "":
        raise GonglunError("account.ticket_expired", MSG_EXPIRED)
    if not isinstance(text, str) or len(text) > MAX_LEN or text.count(".") != 1:
        raise GonglunError("account.invalid_ticket", MSG_INVALID)
    payload, mac = text.split(".")
    try:
        key = key_from(rt, "accounts.ticket_key", "accounts/ticket.key")
    except KeyMissing:  # no key: no ticket was ever issued here
        raise GonglunError("account.invalid_ticket", MSG_INVALID) from None
    expected = hmac.new(key, PURPOSE + payload.encode(), hashlib.sha256).digest()
    try:
        given = _unb64(mac)
        body = json.loads(_unb64(payload)) if hmac.compare_digest(given, expected) else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise GonglunError("account.invalid_ticket", MSG_INVALID)
    if not isinstance(body.get("e"), int) or body["e"] <= _now(rt):
        raise GonglunError("account.ticket_expired", MSG_EXPIRED)
    return Ticket(str(body["i"]), str(body["p"]), str(body["o"]), body.get("u") or None,
                  str(body.get("n") or ""), str(body.get("a") or ""), int(body["e"]))


def burn(rt: Any, ticket: Ticket) -> bool:
    """Mark the ticket used; False when it already was (a replay)."""
    left = max(1, int(ticket.expires_at - _now(rt)) + 1)
    return bool(rt.redis.set(rt.keys("regticket", ticket.id), "1", nx=True, ex=left))


def used(rt: Any, ticket: Ticket) -> bool:
    return bool(rt.redis.exists(rt.keys("regticket", ticket.id)))
