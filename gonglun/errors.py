"""Domain errors with a stable id, an HTTP status and a user-facing message (DECISIONS.md 3).

Business code raises ``GonglunError``; the API maps it once to
``{"code": <non-zero>, "error": "<stable.dotted.id>", "msg": "<text>"}``. Messages default to the
seeds' Chinese text; ``\\n``, never ``<br>`` (AMB-07).
"""

from __future__ import annotations

from typing import Any


class GonglunError(Exception):
    """A refusal the client should see: nothing was changed."""

    def __init__(
        self,
        error: str,
        msg: str,
        *,
        status: int = 400,
        code: int = 1,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(f"{error}: {msg}")
        self.error = error
        self.msg = msg
        self.status = status
        self.code = code
        self.data = data
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "error": self.error, "msg": self.msg}
        if self.data is not None:
            body["data"] = self.data
        return body


def not_found(error: str, msg: str) -> GonglunError:
    return GonglunError(error, msg, status=404)


def forbidden(error: str, msg: str = "非法请求") -> GonglunError:
    return GonglunError(error, msg, status=403)


def conflict(error: str, msg: str) -> GonglunError:
    return GonglunError(error, msg, status=409)
