"""Faults armed through ``POST /sandbox/faults``: each applies to the next ``count`` calls.

Three independent kinds per channel, each with its own counter so one request can arm several:

- ``next_refund``: the outcome of the next refund requests, in the words each channel registers
  (:class:`RefundVocabulary`): outcomes that accept the refund (WeChat SUCCESS / PROCESSING /
  ABNORMAL / CLOSED; Alipay SUCCESS or PENDING, i.e. accepted with ``fund_change`` N) and
  refusals the channel answers instead (Alipay ``ACQ.*`` sub-codes, WeChat error codes);
- ``notify``: what happens to the next notifications (drop, duplicate, delay by ``delay_s``);
- ``http``: the next protocol calls fail with a 500 or hang for ``delay_s`` (a timeout).

The core knows no channel's words: each channel registers its refund vocabulary here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .store import CHANNELS

NOTIFY_MODES = {"normal", "drop", "duplicate", "delay"}
HTTP_MODES = {"500", "timeout"}
DEFAULT_TIMEOUT_HOLD = 30.0


class FaultError(ValueError):
    """Bad fault specification (answered as 400 sandbox.bad_fault)."""


@dataclass(frozen=True)
class RefundVocabulary:
    """The refund outcomes a channel can play.

    ``accepted``: outcomes that record a refund; ``settling``: those that may also be the
    default (what the bank does when nothing is armed); ``failures``: refusals answered
    instead of accepting; ``aliases``: other spellings (case-insensitive) of the same words.
    """

    default: str
    accepted: frozenset[str]
    settling: frozenset[str]
    failures: frozenset[str] = frozenset()
    aliases: Mapping[str, str] = field(default_factory=dict)

    def canonical(self, word: object) -> str | None:
        text = str(word).strip().upper()
        text = self.aliases.get(text, text)
        return text if text in self.accepted or text in self.failures else None

    def words(self) -> str:
        return ", ".join(sorted(self.accepted | self.failures))


@dataclass
class Armed:
    mode: str
    remaining: int
    delay_s: float = 0.0


class Faults:
    def __init__(self) -> None:
        self._armed: dict[tuple[str, str], Armed] = {}
        self._refunds: dict[str, RefundVocabulary] = {}

    # --- refund vocabularies -------------------------------------------------------------

    def register_refunds(self, channel: str, vocabulary: RefundVocabulary) -> None:
        self._refunds[channel] = vocabulary

    def refund_vocabulary(self, channel: str) -> RefundVocabulary:
        return self._refunds[channel]

    def refund_word(self, channel: str, word: object, *, settling: bool = False) -> str:
        """The canonical outcome ``word`` names for ``channel``; FaultError if none.

        With ``settling`` only outcomes that accept and settle a refund qualify (defaults)."""
        vocabulary = self._refunds.get(channel)
        if vocabulary is None:
            raise FaultError(f"channel {channel!r} plays no refunds")
        outcome = vocabulary.canonical(word)
        allowed = vocabulary.settling if settling else vocabulary.accepted | vocabulary.failures
        if outcome not in allowed:
            raise FaultError(f"refund outcome for {channel} must be one of "
                             f"{', '.join(sorted(allowed))}")
        return outcome

    # --- arming --------------------------------------------------------------------------

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
            try:
                outcome = self.refund_word(channel, spec["next_refund"])
            except FaultError as exc:
                raise FaultError(f"next_refund: {exc}") from exc
            armed.append(("refund", Armed(outcome, count)))
        if "notify" in spec:
            armed.append(("notify", _notify_fault(spec["notify"], count, delay)))
        if "http" in spec:
            armed.append(("http", _http_fault(spec["http"], count, delay)))
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


def _notify_fault(mode: object, count: int, delay: float | None) -> Armed:
    if mode not in NOTIFY_MODES:
        raise FaultError(f"notify must be one of {', '.join(sorted(NOTIFY_MODES))}")
    if mode == "delay" and delay is None:
        raise FaultError("notify delay needs delay_s")
    return Armed(str(mode), count, float(delay or 0))


def _http_fault(mode: object, count: int, delay: float | None) -> Armed:
    text = str(mode)
    if text not in HTTP_MODES:
        raise FaultError(f"http must be one of {', '.join(sorted(HTTP_MODES))}")
    return Armed(text, count, float(delay) if delay is not None else DEFAULT_TIMEOUT_HOLD)
