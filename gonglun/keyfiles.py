"""Secret keys the embedded default makes for itself, in one place.

``made_once(path, content)``: the text of a private file, written once with ``content()``
(mode 0600 in a 0700 folder; when two threads race, the first write wins and both read it).
``key_from(rt, setting, file)``: the configured value of ``setting`` (at least 16 characters),
else on the embedded default a random key kept in ``<data_dir>/<file>`` (made on first use);
elsewhere, without the setting, ``KeyMissing`` (fail closed).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any


class KeyMissing(ValueError):
    """The setting is not configured and this is not the embedded default."""


def made_once(path: Path, content: Callable[[], str]) -> str:
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another thread made it first
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(content())
    return path.read_text()


def key_from(rt: Any, setting: str, file: str, purpose: str = "") -> bytes:
    """``purpose`` ends the message of a missing key (" to send verification codes")."""
    configured = rt.config.get(setting)
    if configured:
        if len(str(configured)) < 16:
            raise KeyMissing(f"{setting} must be at least 16 characters")
        return str(configured).encode()
    if not rt.config.embedded_default:
        raise KeyMissing(f"set {setting} (a long random string, the same on every process)"
                         f"{purpose}")
    text = made_once(rt.config.data_dir / file, lambda: secrets.token_hex(32))
    return text.strip().encode()
