"""Profile checks and helpers: phone format, nicknames (``xc_is_nickname``), avatars (ACC-09).

Phones are strings only (a JSON number, an array, anything else is the format error) and
mainland numbers only; they are stored as the 11 digits. Nicknames are 2-16 characters of
Chinese, letters, digits, ``_`` and ``-``: no markup, no emoji, no spaces, and unique.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gonglun.accounts.models import User, nickname_key
from gonglun.accounts.service import NICKNAME_TAKEN, get_meta
from gonglun.errors import GonglunError, conflict

_PHONE = re.compile(r"^(?:\+?86)?(1[3-9][0-9]{9})$")
_NICKNAME = re.compile(r"^[\u4e00-\u9fff\u3400-\u4dbfA-Za-z0-9_-]+$")
NICKNAME_MIN, NICKNAME_MAX = 2, 16
#: Shown for users without a picture of their own (``accounts.default_avatar`` overrides).
DEFAULT_AVATAR = "/static/avatar/default.png"


def check_phone(phone: Any) -> str:
    """The 11-digit mainland number, or ``account.invalid_phone`` (ACC-04, ACC-09)."""
    found = _PHONE.match(phone.strip()) if isinstance(phone, str) and len(phone) <= 20 else None
    if found is None:
        raise GonglunError("account.invalid_phone", "手机号格式错误,目前仅支持国内号码")
    return found.group(1)


def check_nickname(session: Session, nickname: Any) -> str:
    """``xc_is_nickname``: present, 2-16 allowed characters, not anybody's already."""
    if nickname is None or (isinstance(nickname, str) and not nickname.strip()):
        raise GonglunError("account.nickname_empty", "注册昵称不得为空")
    if not isinstance(nickname, str):
        raise GonglunError("account.invalid_nickname", "昵称只能包含中文、字母、数字、_和-")
    value = nickname.strip()
    if not NICKNAME_MIN <= len(value) <= NICKNAME_MAX:
        raise GonglunError("account.invalid_nickname",
                           f"昵称长度须为{NICKNAME_MIN}-{NICKNAME_MAX}个字符")
    if not _NICKNAME.match(value):
        raise GonglunError("account.invalid_nickname", "昵称只能包含中文、字母、数字、_和-")
    if nickname_taken(session, value):
        raise conflict("account.nickname_taken", NICKNAME_TAKEN)
    return value


def nickname_taken(session: Session, nickname: str) -> bool:
    """Whether an account holds the nickname (the check; the unique index is the guarantee)."""
    key = nickname_key(nickname)
    return session.scalar(select(User.id).where(User.nickname_key == key)) is not None


def user_by_phone(session: Session, phone: str) -> User | None:
    return session.scalars(select(User).where(User.phone == phone)).one_or_none()


def avatar_of(session: Session, user_id: int, default: str = DEFAULT_AVATAR) -> dict[str, str]:
    """``xc_get_avatar``: ``{"avatar_url": ...}``, the one place avatars come from (ACC-09):
    the user's own picture (meta ``avatar``), else their WeChat one, else the default."""
    url = get_meta(session, user_id, "avatar") or get_meta(session, user_id, "wechat_avatar")
    return {"avatar_url": url or default}
