"""The face plugin's clock: UTC now, unless a test set ``rt.face_clock`` (no sleeps)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from gonglun.db import utcnow


def now(rt: Any) -> dt.datetime:
    clock = rt.__dict__.get("face_clock")
    return clock() if clock is not None else utcnow()
