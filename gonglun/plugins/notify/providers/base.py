"""What every notification provider is: an address for a user, and ``send``.

A provider raises ``TransientError`` for what may work later (a timeout, a 5xx, a rate limit:
the delivery is retried with backoff) and ``PermanentError`` for what never will (a refused
number, a user who does not follow the official account, bad keys: the delivery fails at
once, with the vendor's code in the log).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Outbound:
    """One message as the provider gets it."""

    delivery_id: int
    key: str
    scene: str
    user_id: int | None
    address: str | None
    content: dict[str, Any]
    #: The vendor template of this scene and channel (SMS, WeChat), if any.
    template_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class DeliveryError(Exception):
    transient = False

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        #: The vendor's hint of when to try again, in seconds (a rate limit's window).
        self.retry_after = retry_after


class TransientError(DeliveryError):
    transient = True


class PermanentError(DeliveryError):
    transient = False


class Provider:
    """Base of the built-in providers. Subclasses set ``channel`` and ``name`` and implement
    ``address`` and ``send``; both run on worker threads (``send`` may block on the network,
    bounded by the provider's own timeout)."""

    channel = ""
    name = ""
    #: Set by providers that need a vendor template per scene (SMS, WeChat).
    needs_template = False

    @classmethod
    def from_config(cls, rt: Any) -> Provider:
        """The provider as this runtime's configuration makes it (``SettingsError`` if it
        cannot); providers without settings need nothing."""
        return cls()

    def address(self, session: Session, user: Any) -> str | None:
        """Where ``user`` is reached on this channel; None when they cannot be."""
        return str(user.id)

    def recipient(self, message: Outbound) -> int:
        """The user a per-user channel (inbox, websocket) delivers to."""
        if message.user_id is None:
            raise PermanentError("no_user", f"{self.channel} needs a user")
        return message.user_id

    def send(self, rt: Any, message: Outbound) -> str:
        """Send ``message``; return the provider's id for it. Raises ``DeliveryError``."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name
