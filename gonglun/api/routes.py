"""Route declarations gathered through the ``register_routes`` filter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

Auth = Literal["public", "user", "admin", "superadmin"]


@dataclass(frozen=True)
class Route:
    """``path`` served by ``resource``.

    The resource's ``auth`` attribute (default ``"user"``) says who may call it; ``public``
    routes still see ``req.context.user`` when a valid token is sent. ``tags`` group the route
    in the OpenAPI document; ``schemas`` maps a lower-case method to its request JSON schema.
    """

    path: str
    resource: Any
    tags: tuple[str, ...] = ()
    schemas: dict[str, Any] = field(default_factory=dict)
    suffix: str | None = None
    #: JSON schemas of path parameters (default: a string), e.g. ``{"ref": REF_SCHEMA}``.
    params: dict[str, Any] = field(default_factory=dict)


#: Payment and order references (DECISIONS.md 2): ASCII digits only.
REF_SCHEMA = {"type": "string", "pattern": "^[0-9]{1,32}$"}


def responds(status: int = 200, *, responses: dict[str, Any] | None = None,
             description: str = "success envelope") -> Callable[[F], F]:
    """Document a responder's success status (201 for creations), or replace its responses
    entirely (``responses``: an OpenAPI responses object, for channel callbacks that answer in
    the channel's own format)."""

    def mark(fn: F) -> F:
        fn.__openapi__ = {"status": status, "responses": responses,  # type: ignore[attr-defined]
                          "description": description}
        return fn

    return mark
