"""Secret keys the accounts make for themselves on the embedded default.

``key_from(rt, setting, name)``: the configured value of ``setting`` (at least 16 characters),
else on the embedded default a random key kept in ``<data_dir>/accounts/<name>.key`` (made on
first use, mode 0600); elsewhere, without the setting, ``KeyMissing`` (fail closed).
"""

from __future__ import annotations

import os
import secrets
from typing import Any


class KeyMissing(ValueError):
    """The setting is not configured and this is not the embedded default."""


def key_from(rt: Any, setting: str, name: str) -> bytes:
    configured = rt.config.get(setting)
    if configured:
        if len(str(configured)) < 16:
            raise KeyMissing(f"{setting} must be at least 16 characters")
        return str(configured).encode()
    if not rt.config.embedded_default:
        raise KeyMissing(f"set {setting} (a long random string, the same on every process)")
    path = rt.config.data_dir / "accounts" / f"{name}.key"
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another thread made it first
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()
