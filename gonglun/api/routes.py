"""Route declarations gathered through the ``register_routes`` filter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

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
