"""Raw channel packets, one file per channel and Beijing day (OPS-01, OPS-02).

``<data_dir>/log/payment/<alipay|wxpay>[_refund]/YYYY-MM-DD.log``: every notification received
(before anything is decided, so a crash while handling it still leaves the packet on disk), one
JSON line each, Chinese kept readable. Retention: ``payment.log_days`` (default 90).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

from gonglun.plugins.payment.money import SHANGHAI

_lock = threading.Lock()
CHANNEL_DIRS = ("alipay", "wxpay", "alipay_refund", "wxpay_refund")
#: Open append handles by path: a packet costs one write, not a mkdir and an open.
_files: dict[tuple[Path, dt.date], Any] = {}


def log_dir(rt: Any) -> Path:
    return Path(rt.config.data_dir) / "log" / "payment"


def _folder(rt: Any, name: str) -> Path:
    folders: dict[str, Path] = rt.__dict__.setdefault("_payment_log_dirs", {})
    folder = folders.get(name)
    if folder is None:
        folder = folders[name] = log_dir(rt) / name
    return folder


def write(rt: Any, channel: str, record: dict[str, Any], *, refund: bool = False) -> None:
    folder = _folder(rt, f"{channel}_refund" if refund else channel)
    now = dt.datetime.now(SHANGHAI)
    line = json.dumps({"time": now.isoformat(timespec="seconds"), **record},
                      ensure_ascii=False, default=str)
    with _lock:
        path = (folder, now.date())
        fh = _files.get(path)
        if fh is None or fh.closed:
            for old in [k for k in _files if k[0] == folder]:  # yesterday's file
                _files.pop(old).close()
            folder.mkdir(parents=True, exist_ok=True)
            # Line-buffered: every packet reaches the OS before the notification is handled.
            fh = _files[path] = (folder / f"{now:%Y-%m-%d}.log").open(
                "a", encoding="utf-8", buffering=1)
        fh.write(line + "\n")


def clean(rt: Any, days: int | None = None, *, today: dt.date | None = None) -> int:
    """Delete log files older than ``days`` Beijing days; returns how many went."""
    days = int(days if days is not None else rt.config.get("payment.log_days", 90))
    today = today or dt.datetime.now(SHANGHAI).date()
    cutoff = today - dt.timedelta(days=days)
    removed = 0
    for name in CHANNEL_DIRS:
        for file in (log_dir(rt) / name).glob("*.log"):
            try:
                day = dt.date.fromisoformat(file.stem)
            except ValueError:
                continue
            if day < cutoff:
                with _lock:
                    handle = _files.pop((file.parent, day), None)
                    if handle is not None:
                        handle.close()
                file.unlink(missing_ok=True)
                removed += 1
    return removed
