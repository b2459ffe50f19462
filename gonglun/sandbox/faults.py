"""Faults armed through ``POST /sandbox/faults``: each applies to the next ``count`` calls.

Three independent kinds per channel, each with its own counter so one request can arm several:

- ``next_refund``: the outcome of the next refund requests (WeChat SUCCESS / PROCESSING /
  ABNORMAL / CLOSED; Alipay SUCCESS or PENDING, i.e. accepted with ``fund_change`` N);
- ``notify``: what happens to the next notifications (drop, duplicate, delay by ``delay_s``);
- ``http``: the next protocol calls fail with a 500 or hang for ``delay_s`` (a timeout).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .store import ALIPAY, CHANNELS, WXPAY

REFUND_OUTCOMES = {
    WXPAY: {"SUCCESS", "PROCESSING", "ABNORMAL", "CLOSED"},
    ALIPAY: {"SUCCESS", "PENDING"},
}
#: Words accepted for the other channel's equivalent, so callers need not special-case.
REFUND_ALIASES = {WXPAY: {"PENDING": "PROCESSING"}, ALIPAY: {"PROCESSING": "PENDING"}}
NOTIFY_MODES = {"normal", "drop", "duplicate", "delay"}
HTTP_MODES = {"500", "timeout"}
DEFAULT_TIMEOUT_HOLD = 30.0


class FaultError(ValueError):
    """Bad fault specification (answered as 400 sandbox.bad_fault)."""


@dataclass
class Armed:
    mode: str
    remaining: int
    delay_s: float = 0.0


class Faults:
    def __init__(self) -> None:
        self._armed: dict[tuple[str, str], Armed] = {}

    def arm(self, spec: Any) -> dict[str, Any]:
        """Validate and arm a fault spec; returns the channel's armed faults."""
        if not isinstance(spec, dict):
            raise FaultError("body must be a JSON object")
        channel = spec.get("channel")
        if channel not in CHANNELS:
            raise FaultError(f"channel must be one of {', '.join(CHANNELS)}")
        unknown = set(spec) - {"channel", "next_refund", "notify", "delay_s", "http", "count"}
        if unknown:
            raise FaultError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        count = spec.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise FaultError("count must be a positive integer")
        delay = spec.get("delay_s")
        if delay is not None and (
            isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0
        ):
            raise FaultError("delay_s must be a non-negative number of seconds")
        armed: list[tuple[str, Armed]] = []
        if "next_refund" in spec:
            outcome = str(spec["next_refund"]).upper()
            outcome = REFUND_ALIASES[channel].get(outcome, outcome)
            if outcome not in REFUND_OUTCOMES[channel]:
                allowed = ", ".join(sorted(REFUND_OUTCOMES[channel]))
                raise FaultError(f"next_refund for {channel} must be one of {allowed}")
            armed.append(("refund", Armed(outcome, count)))
        if "notify" in spec:
            mode = spec["notify"]
            if mode not in NOTIFY_MODES:
                raise FaultError(f"notify must be one of {', '.join(sorted(NOTIFY_MODES))}")
            if mode == "delay" and delay is None:
                raise FaultError("notify delay needs delay_s")
            armed.append(("notify", Armed(mode, count, float(delay or 0))))
        if "http" in spec:
            mode = str(spec["http"])
            if mode not in HTTP_MODES:
                raise FaultError(f"http must be one of {', '.join(sorted(HTTP_MODES))}")
            hold = float(delay) if delay is not None else DEFAULT_TIMEOUT_HOLD
            armed.append(("http", Armed(mode, count, hold)))
        if not armed:
            raise FaultError("give at least one of next_refund, notify, http")
        for kind, fault in armed:
            if kind == "notify" and fault.mode == "normal":
                self._armed.pop((channel, kind), None)
            else:
                self._armed[(channel, kind)] = fault
        return self.describe(channel)

    def take(self, channel: str, kind: str) -> Armed | None:
        """Consume one use of an armed fault, if any."""
        fault = self._armed.get((channel, kind))
        if fault is None:
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            del self._armed[(channel, kind)]
        return Armed(fault.mode, 1, fault.delay_s)

    def describe(self, channel: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (ch, kind), fault in self._armed.items():
            if channel is None or ch == channel:
                out.setdefault(ch, {})[kind] = asdict(fault)
        return out

    def clear(self) -> None:
        self._armed.clear()
