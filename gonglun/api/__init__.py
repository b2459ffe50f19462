"""The REST API: ``create_app`` and the pieces plugins use to add routes."""

from gonglun.api.app import create_app
from gonglun.api.routes import Route
from gonglun.api.util import get_int, get_str, json_body, ok, query_int, require_role, run_sync

__all__ = [
    "Route",
    "create_app",
    "get_int",
    "get_str",
    "json_body",
    "ok",
    "query_int",
    "require_role",
    "run_sync",
]
