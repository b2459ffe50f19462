"""What a switched-off plugin leaves unserved, said at start-up and by ``gonglun doctor``.

A disabled plugin is never imported, so what it would have served is written here for the
built-ins; any other disabled plugin gets the generic line. The lines reach the operator through
the core's ``startup_checks`` (logged once at start, shown by ``doctor`` as warnings).
"""

from __future__ import annotations

from typing import Any

#: Built-in plugin → what is missing while it is disabled.
UNSERVED: dict[str, str] = {
    "notify": "verification codes unavailable: registration by phone refused, as are sign-in "
              "and binding by code; alarms have no listener",
    "payment": "payments unavailable: no order is created, paid or reconciled; balances stay "
               "as they are",
    "refund": "refunds unavailable: none can be requested, confirmed or resolved",
    "face": "face verification unavailable: real-name checks refused",
    "identify": "appraisal orders unavailable",
    "redpacket": "red packets unavailable",
}
GENERIC = "its routes, jobs and hooks are off"


def unserved(pm: Any) -> list[str]:
    """One line per installed plugin the configuration disabled."""
    return [f"plugin {name!r} is disabled: {UNSERVED.get(name, GENERIC)} (its tables are kept; "
            f"enable it again with plugins.disabled)" for name in pm.disabled()]


__all__ = ["GENERIC", "UNSERVED", "unserved"]
