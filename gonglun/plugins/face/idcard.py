"""ID-card numbers (GB 11643-1999) and names: validation and masking (FACE-02, SEC-09)."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Any

from gonglun.errors import GonglunError

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_SHAPE = re.compile(r"[1-9][0-9]{16}[0-9X]", re.ASCII)
#: Chinese names (with the middle dot of minority names) or Latin letters and spaces.
_NAME = re.compile(r"^(?:[\u3400-\u9fff\uf900-\ufaff][\u3400-\u9fff\uf900-\ufaff·•]{0,30}"
                   r"[\u3400-\u9fff\uf900-\ufaff]|[A-Za-z][A-Za-z .·-]{0,30}[A-Za-z])$")
MSG_CODE = "身份证号码格式错误"
MSG_NAME = "姓名格式错误"


def check_digit(first17: str) -> str:
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def normalize_code(value: Any) -> str:
    """The 18-character number, ``X`` upper-cased; shape, birth date and checksum checked."""
    # NFKC folds full-width digits into ASCII ones, so one number has one spelling (and one
    # blind index, one rate-limit subject); anything still not ASCII is refused.
    code = unicodedata.normalize("NFKC", value).strip().upper() if isinstance(value, str) else ""
    if not _SHAPE.fullmatch(code):
        raise GonglunError("face.invalid_idcard", MSG_CODE, data={"field": "code"})
    try:
        born = dt.date(int(code[6:10]), int(code[10:12]), int(code[12:14]))
    except ValueError:
        raise GonglunError("face.invalid_idcard", MSG_CODE, data={"field": "code"}) from None
    if born.year < 1900 or born > dt.date.today():
        raise GonglunError("face.invalid_idcard", MSG_CODE, data={"field": "code"})
    if check_digit(code[:17]) != code[17]:
        raise GonglunError("face.invalid_idcard", MSG_CODE, data={"field": "code"})
    return code


def normalize_name(value: Any) -> str:
    name = unicodedata.normalize("NFKC", value).strip() if isinstance(value, str) else ""
    if not _NAME.fullmatch(name):
        raise GonglunError("face.invalid_name", MSG_NAME, data={"field": "name"})
    return name


def mask_name(name: str) -> str:
    """``张三丰`` → ``张**``: the first character only."""
    return name[:1] + "*" * max(1, len(name) - 1)


def mask_code(code: str) -> str:
    """``362...123X`` → ``362***********123X``: three leading, four trailing characters."""
    return code[:3] + "*" * (len(code) - 7) + code[-4:]
