"""The values a client sends, checked wherever they arrive (an API body, a command's argument, a
plugin's form): bounded strings free of control characters, int64 integers, ASCII references.

Below the API: the accounts and the plugins use them as the REST resources do (they are
re-exported from ``gonglun.api.util``)."""

from __future__ import annotations

import re
from typing import Any

from gonglun.errors import GonglunError

#: Largest amount accepted anywhere unless configured lower: 10 million yuan, in fen.
MAX_AMOUNT_FEN = 1_000_000_000
#: Every integer a client sends fits a signed 64-bit column.
INT64_MAX = 2**63 - 1

#: C0 controls and DEL (NUL breaks PostgreSQL text; the others have no place in a field).
#: Tab and newline are allowed only where a field says so (``multiline``).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_LINE = re.compile(r"[\x00-\x1f\x7f]")
_ASCII_REF = re.compile(r"[0-9]{1,32}")


def clean_text(name: str, value: str, *, multiline: bool = False) -> str:
    """Refuse control characters (NUL above all: PostgreSQL text cannot hold it)."""
    pattern = _CONTROL if multiline else _CONTROL_LINE
    if pattern.search(value):
        raise GonglunError("request.invalid_characters", f"参数 {name} 含有非法字符",
                           data={"field": name})
    return value


def ascii_ref(value: Any, *, error: str, msg: str, max_len: int = 32) -> str:
    """A reference made of ASCII digits only (``isdigit`` admits ``²`` and ``١``, which
    ``int()`` and the database then choke on); anything else is ``error`` (400)."""
    text = value.strip() if isinstance(value, str) else ""
    if len(text) > max_len or not _ASCII_REF.fullmatch(text):
        raise GonglunError(error, msg)
    return text


def path_id(value: Any, *, error: str, msg: str, status: int = 404) -> int:
    """A positive int64 primary key from a path segment; anything else answers like a miss."""
    text = value.strip() if isinstance(value, str) else str(value)
    if not _ASCII_REF.fullmatch(text) or not 0 < int(text) <= INT64_MAX:
        raise GonglunError(error, msg, status=status)
    return int(text)


def get_str(
    body: dict[str, Any],
    name: str,
    *,
    required: bool = True,
    max_len: int = 255,
    choices: tuple[str, ...] | None = None,
    default: str | None = None,
    multiline: bool = False,
) -> str | None:
    """A string field: length-bounded, free of control characters (``multiline`` allows tab
    and newline), one of ``choices`` when given."""
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise GonglunError("request.missing_field", f"缺少参数: {name}", data={"field": name})
        return default
    if not isinstance(value, str):
        raise GonglunError("request.invalid_type", f"参数 {name} 必须是字符串",
                           data={"field": name})
    if len(value) > max_len:
        raise GonglunError("request.too_long", f"参数 {name} 过长", data={"field": name})
    clean_text(name, value, multiline=multiline)
    if choices is not None and value not in choices:
        raise GonglunError(
            "request.invalid_choice",
            f"参数 {name} 取值无效, 可选: {', '.join(choices)}",
            data={"field": name, "choices": list(choices)},
        )
    return value


def get_int(
    body: dict[str, Any],
    name: str,
    *,
    required: bool = True,
    minimum: int | None = None,
    maximum: int | None = None,
    default: int | None = None,
) -> int | None:
    """An integer field; floats, booleans and numeric strings are refused (money is fen).

    Bounded to a signed 64-bit value whatever the caller asks, so no database overflows.
    """
    minimum = -INT64_MAX if minimum is None else max(minimum, -INT64_MAX)
    maximum = INT64_MAX if maximum is None else min(maximum, INT64_MAX)
    value = body.get(name)
    if value is None:
        if required:
            raise GonglunError("request.missing_field", f"缺少参数: {name}", data={"field": name})
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise GonglunError("request.invalid_type", f"参数 {name} 必须是整数", data={"field": name})
    if minimum is not None and value < minimum:
        raise GonglunError("request.out_of_range", f"参数 {name} 不能小于 {minimum}",
                           data={"field": name})
    if maximum is not None and value > maximum:
        raise GonglunError("request.out_of_range", f"参数 {name} 不能大于 {maximum}",
                           data={"field": name})
    return value


__all__ = ["INT64_MAX", "MAX_AMOUNT_FEN", "ascii_ref", "clean_text", "get_int", "get_str",
           "path_id"]
