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
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in re.findall(r"{(\w+)}", route.path)
        ]
        suffix = f"_{route.suffix}" if route.suffix else ""
        for method in METHODS:
            responder = getattr(route.resource, f"on_{method}{suffix}", None)
            if responder is None:
                continue
            doc = inspect.getdoc(responder) or ""
            summary, _, description = doc.partition("\n")
            op: dict[str, Any] = {
                "operationId": f"{type(route.resource).__name__}.{method}{suffix}",
                "summary": summary.strip(),
                "tags": list(route.tags),
                "responses": {
                    "200": _json("success envelope", ENVELOPE),
                    "4XX": _json("error envelope", ERROR),
                },
            }
            if description.strip():
                op["description"] = description.strip()
            if params:
                op["parameters"] = params
            if auth != "public":
                op["security"] = [{"bearer": []}]
            schema = route.schemas.get(method)
            if schema:
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": schema}},
                }
            item[method] = op
        if hasattr(route.resource, "on_websocket"):
            item["x-websocket"] = {"summary": inspect.getdoc(route.resource.on_websocket) or ""}
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


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}
