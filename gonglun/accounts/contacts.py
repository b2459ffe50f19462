"""Phones and email addresses as the accounts store them: one normal form each, shared by
bindings, verification codes and providers (so a code sent to ``+86 138...`` verifies the same
``138...`` a binding stores)."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

#: A mainland China mobile number, with or without ``+86`` / ``86``.
MAINLAND = re.compile(r"(?:\+?86)?(1[3-9][0-9]{9})", re.ASCII)
#: One ``@``, no spaces or control characters, a dotted domain; at most 191 (the column).
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")
EMAIL_MAX = 191


def mainland_phone(value: Any) -> str | None:
    """The 11-digit mainland number, or None (arrays and numbers included)."""
    # NFKC folds full-width digits to ASCII (one number, one spelling: one account, one code
    # limit); digits of other scripts stay non-ASCII and are refused.
    text = unicodedata.normalize("NFKC", value).strip() if isinstance(value, str) else None
    found = MAINLAND.fullmatch(text) if text is not None else None
    return found.group(1) if found else None


def email_address(value: Any) -> str | None:
    """The address lower-cased (one account per mailbox, whatever the case typed), or None
    when it is not one."""
    if not isinstance(value, str) or len(value.strip()) > EMAIL_MAX:
        return None
    value = value.strip()
    if not _EMAIL.match(value):
        return None
    return value.lower()


def contact(kind: str, value: Any) -> str | None:
    """``kind`` ``phone`` or ``email``: the stored form of ``value``, or None."""
    return mainland_phone(value) if kind == "phone" else email_address(value)


def mask(address: str | None) -> str | None:
    """An address as the delivery log shows it: ``138****8000``, ``a***@example.com``."""
    if not address:
        return address
    if "@" in address:
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    if address.lstrip("+").isdigit() and len(address) >= 7:
        return f"{address[:-8]}****{address[-4:]}"
    if len(address) > 8:
        return f"{address[:4]}…{address[-4:]}"
    return address
