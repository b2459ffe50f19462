"""Password hashing with Argon2id (argon2-cffi).

The hasher's parameters can be changed (``configure``) without invalidating stored hashes: a
hash made with older parameters still verifies, and ``needs_rehash`` tells the login path to
store a fresh one. Unknown logins are verified against a dummy hash so that "no such user" and
"wrong password" take the same time.
"""

from __future__ import annotations

import threading
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 8
#: Argon2 hashes any length, but a megabyte password is a denial-of-service, not a secret.
MAX_LENGTH = 256

_lock = threading.Lock()
_hasher = PasswordHasher()
_dummy: str | None = None


def configure(**params: Any) -> PasswordHasher:
    """Replace the hasher (``time_cost``, ``memory_cost``, ``parallelism``...); returns the old one.

    Existing hashes keep verifying; they are upgraded at their owner's next login.
    """
    global _hasher, _dummy
    with _lock:
        old, _hasher, _dummy = _hasher, PasswordHasher(**params), None
    return old


def use(hasher: PasswordHasher) -> PasswordHasher:
    """Install an already built hasher; returns the previous one (tests restore it)."""
    global _hasher, _dummy
    with _lock:
        old, _hasher, _dummy = _hasher, hasher, None
    return old


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return bool(_hasher.check_needs_rehash(password_hash))
    except InvalidHashError:
        return True


def burn_time(password: str) -> None:
    """Spend what a real verification costs, for logins that do not exist."""
    global _dummy
    if _dummy is None:
        _dummy = _hasher.hash("gonglun-dummy-password")
    verify_password(_dummy, password)
