"""What a payment channel sees of the sandbox, and the control API's error mapping.

The channels (``alipay/``, ``wxpay/``) are built on a ``SandboxCore`` (the store, faults,
settings, signed links and notifier that ``app.Sandbox`` holds) and never import ``app``, so
the sandbox's modules import each other without a circle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import falcon.asgi

from .faults import FaultError, Faults
from .keys import Keyset
from .links import LinkSigner
from .notifier import Notifier
from .settings import Settings
from .store import Store
from .web import ControlError, fail


class SandboxCore(Protocol):
    """The shared services of one sandbox (``app.Sandbox`` provides them)."""

    keyset: Keyset
    #: The notify URL of trades the control API creates, by channel.
    notify_urls: dict[str, str]
    store: Store
    faults: Faults
    settings: Settings
    links: LinkSigner
    notifier: Notifier

    async def http_fault(self, channel: str) -> bool:
        """Apply an armed ``http`` fault: True when the call must fail with a 500."""
        ...

    def next_refund(self, channel: str) -> str:
        """The outcome of a refund request the channel is about to accept."""
        ...


class Guarded(Protocol):
    """A control resource: it knows its sandbox."""

    sb: SandboxCore


Responder = Callable[..., Awaitable[None]]


def guard(fn: Responder) -> Responder:
    """Map ControlError to the project's error body; start the sender on the serving loop."""

    async def wrapper(self: Guarded, req: falcon.asgi.Request,
                      resp: falcon.asgi.Response, **kw: Any) -> None:
        self.sb.notifier.ensure_started()
        try:
            await fn(self, req, resp, **kw)
        except ControlError as exc:
            fail(resp, exc)
        except FaultError as exc:
            fail(resp, ControlError(400, "bad_fault", str(exc)))

    wrapper.__name__ = fn.__name__
    return wrapper
