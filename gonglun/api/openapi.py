"""The OpenAPI 3.1 document, built from the registered routes (``GET /v1/openapi.json``)."""

from __future__ import annotations

import inspect
import re
from typing import Any

from gonglun import __version__
from gonglun.api.routes import Route

METHODS = ("get", "post", "put", "patch", "delete")

ENVELOPE = {
    "type": "object",
    "properties": {"code": {"type": "integer"}, "msg": {"type": "string"}, "data": {}},
    "required": ["code", "msg"],
}
ERROR = {
    "type": "object",
    "properties": {
        "code": {"type": "integer"},
        "error": {"type": "string", "description": "stable dotted error id"},
        "msg": {"type": "string"},
        "data": {},
    },
    "required": ["code", "error", "msg"],
}


def build(routes: list[Route], rt: Any) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in routes:
        auth = getattr(route.resource, "auth", "user")
        item = paths.setdefault(route.path, {})
        params = [
            {"name": n, "in": "path", "required": True,
             "schema": route.params.get(n, {"type": "string"})}
            for n in re.findall(r"{(\w+)}", route.path)
        ]
        suffix = f"_{route.suffix}" if route.suffix else ""
        for method in METHODS:
            responder = getattr(route.resource, f"on_{method}{suffix}", None)
            if responder is None:
                continue
            doc = inspect.getdoc(responder) or ""
            summary, _, description = doc.partition("\n")
            marks = getattr(responder, "__openapi__", None) or {}
            override = getattr(route.resource, "openapi_responses", None) or {}
            responses = override.get(f"{method}{suffix}") or marks.get("responses") or {
                str(marks.get("status", 200)): _json(marks.get("description", "success envelope"),
                                                     ENVELOPE),
                "4XX": _json("error envelope (stable `error` id, message)", ERROR),
                "5XX": _json("error envelope; the request id is in `X-Request-Id`", ERROR),
            }
            op: dict[str, Any] = {
                "operationId": f"{type(route.resource).__name__}.{method}{suffix}",
                "summary": summary.strip(),
                "tags": list(route.tags),
                "responses": responses,
            }
            if description.strip():
                op["description"] = description.strip()
            if params:
                op["parameters"] = params
            if auth != "public":
                op["security"] = [{"bearer": []}]
            elif getattr(route.resource, "auth_optional", False):
                op["security"] = [{}, {"bearer": []}]  # anonymous, or a user's token
            schema = route.schemas.get(method)
            if schema:
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": schema}},
                }
            item[method] = op
        if hasattr(route.resource, "on_websocket"):
            item["x-websocket"] = {
                "summary": inspect.getdoc(route.resource.on_websocket) or "",
                "authentication": ["query: ticket (POST /v1/ws/tickets)",
                                   "header: Authorization: Bearer <token>",
                                   "subprotocols: bearer, <token>"],
                "closeCodes": {"4401": "not authenticated, or signed out since (after "
                                       "{\"event\": \"signed_out\"})",
                               "1011": "the session could not be checked"},
            }
    document = {
        "openapi": "3.1.0",
        "info": {"title": "Gonglun", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Envelope": ENVELOPE, "Error": ERROR},
        },
    }
    return rt.hooks.apply_filters("openapi", document)


TOO_LARGE = {"413": {"description": "body over the limit",
                     "content": {"application/json": {"schema": ERROR}}}}


def plain_text(description: str, values: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if values:
        schema["enum"] = values
    return {"description": description, "content": {"text/plain": {"schema": schema}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}
