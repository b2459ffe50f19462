"""Small HTTP helpers shared by the control API: JSON bodies in, project-shaped JSON out."""

from __future__ import annotations

import json
from typing import Any

import falcon
import falcon.asgi

MAX_BODY = 1 << 20
#: Fields no control body may carry: where notifications go is the sandbox's configuration
#: (``Sandbox(notify_urls=...)``), never a control caller's choice.
REFUSED_FIELDS = ("notify_url",)


class ControlError(Exception):
    """A refused control request: ``{"code": <status>, "error": "sandbox.<id>", "msg": ...}``."""

    def __init__(self, status: int, error: str, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.error = error if error.startswith("sandbox.") else f"sandbox.{error}"
        self.msg = msg


def send_json(resp: falcon.asgi.Response, payload: Any, status: int = 200) -> None:
    resp.status = status
    resp.content_type = "application/json; charset=utf-8"
    resp.text = json.dumps(payload, ensure_ascii=False)


def ok(resp: falcon.asgi.Response, data: Any, status: int = 200) -> None:
    send_json(resp, {"code": 0, "msg": "ok", "data": data}, status)


def fail(resp: falcon.asgi.Response, error: ControlError) -> None:
    send_json(resp, {"code": error.status, "error": error.error, "msg": error.msg}, error.status)


async def read_body(req: falcon.asgi.Request) -> bytes:
    body = await req.stream.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise ControlError(413, "body_too_large", "request body too large")
    return body


async def read_json(req: falcon.asgi.Request, *, required: bool = False) -> dict[str, Any]:
    """The request's JSON object; an empty body is ``{}`` unless ``required``.

    Every control body is read here, so a refused field is refused before anything changes."""
    body = await read_body(req)
    if not body.strip():
        if required:
            raise ControlError(400, "bad_json", "a JSON object body is required")
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlError(400, "bad_json", f"body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ControlError(400, "bad_json", "body must be a JSON object")
    for name in REFUSED_FIELDS:
        if name in data:
            raise ControlError(
                400, f"{name}_not_allowed",
                f"{name} is not accepted by the control API: the sandbox notifies the URL the "
                "merchant gave in its signed order, or for orders the control API creates the "
                "URL configured with Sandbox(notify_urls=...) / gonglun sandbox --notify-base",
            )
    return data


def fen_field(data: dict[str, Any], name: str) -> int | None:
    """An optional positive integer fen amount from a control body."""
    if name not in data or data[name] is None:
        return None
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ControlError(400, "bad_amount", f"{name} must be a positive integer (fen)")
    return value


def str_field(data: dict[str, Any], name: str, default: str = "") -> str:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ControlError(400, "bad_field", f"{name} must be a string")
    return value
