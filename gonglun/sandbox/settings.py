"""What a tester may change while the sandbox runs: ``GET|POST /sandbox/config``.

Defaults play production: WeChat refunds are ``PROCESSING`` until the bank settles them, Alipay
refunds move money at once (``fund_change`` Y), statements exist only for days (and months) that
are over, and a statement download URL works for 30 seconds, as Alipay documents for
``bill_download_url``. Tests that want otherwise opt in here or through ``Sandbox(settings=)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .faults import FaultError, Faults
from .web import ControlError

#: Alipay: "账单下载地址链接，获取连接后30秒后未下载，链接地址失效".
DEFAULT_BILL_URL_TTL_S = 30.0
MAX_BILL_URL_TTL_S = 86400.0


@dataclass
class Settings:
    """``refund_defaults``: per channel, the outcome of a refund nothing was armed for (a
    channel left out keeps its own default). ``partial_bills``: also serve statements of the
    current day and month, which no real gateway does (for tests that reconcile what just
    happened). ``bill_url_ttl_s``: how long a statement download URL works."""

    refund_defaults: dict[str, str] = field(default_factory=dict)
    partial_bills: bool = False
    bill_url_ttl_s: float = DEFAULT_BILL_URL_TTL_S

    def describe(self) -> dict[str, Any]:
        return asdict(self)

    def resolve(self, faults: Faults, channels: tuple[str, ...]) -> None:
        """Fill in every channel's refund default, checking the ones given (ValueError)."""
        unknown = set(self.refund_defaults) - set(channels)
        if unknown:
            raise ValueError(f"refund_defaults: unknown channel(s) {', '.join(sorted(unknown))}")
        try:
            self.refund_defaults = {
                ch: faults.refund_word(ch, self.refund_defaults[ch], settling=True)
                if ch in self.refund_defaults else faults.refund_vocabulary(ch).default
                for ch in channels
            }
        except FaultError as exc:
            raise ValueError(f"refund_defaults: {exc}") from exc


def bad(msg: str) -> ControlError:
    return ControlError(400, "bad_config", msg)


def _refund_defaults(value: Any, faults: Faults) -> dict[str, str]:
    if not isinstance(value, dict):
        raise bad('refund_defaults must be an object like {"wxpay": "SUCCESS"}')
    try:
        return {ch: faults.refund_word(ch, word, settling=True) for ch, word in value.items()}
    except FaultError as exc:
        raise bad(f"refund_defaults: {exc}") from exc


def _partial_bills(value: Any, faults: Faults) -> bool:
    if not isinstance(value, bool):
        raise bad("partial_bills must be true or false")
    return value


def _bill_url_ttl(value: Any, faults: Faults) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0 < value <= MAX_BILL_URL_TTL_S):
        raise bad(f"bill_url_ttl_s must be a number of seconds in (0, {MAX_BILL_URL_TTL_S:g}]")
    return float(value)


def _retry_schedule(value: Any, faults: Faults) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) > 20 or not all(
        isinstance(s, int | float) and not isinstance(s, bool) and 0 <= s <= 86400 for s in value
    ):
        raise bad("retry_schedule must be a list of at most 20 non-negative numbers of seconds")
    return tuple(float(s) for s in value)


def _notify_timeout(value: Any, faults: Faults) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise bad("notify_timeout must be a positive number")
    return float(value)


_CHECKS: Mapping[str, Callable[[Any, Faults], Any]] = {
    "retry_schedule": _retry_schedule,
    "notify_timeout": _notify_timeout,
    "refund_defaults": _refund_defaults,
    "partial_bills": _partial_bills,
    "bill_url_ttl_s": _bill_url_ttl,
}


def check_config(data: Mapping[str, Any], faults: Faults) -> dict[str, Any]:
    """Every change a config body asks for, checked before any is made (ControlError)."""
    unknown = set(data) - set(_CHECKS)
    if unknown:
        raise bad(f"unknown setting(s): {', '.join(sorted(unknown))}; "
                  f"known: {', '.join(_CHECKS)}")
    return {key: _CHECKS[key](value, faults) for key, value in data.items()
            if value is not None}


def apply_settings(settings: Settings, changes: Mapping[str, Any]) -> None:
    """Apply the checked changes that belong to :class:`Settings`."""
    if "refund_defaults" in changes:
        settings.refund_defaults = {**settings.refund_defaults, **changes["refund_defaults"]}
    if "partial_bills" in changes:
        settings.partial_bills = changes["partial_bills"]
    if "bill_url_ttl_s" in changes:
        settings.bill_url_ttl_s = changes["bill_url_ttl_s"]
