"""The core plugin: the platform's own routes and health checks. Essential: cannot be disabled."""

from __future__ import annotations

from typing import Any

from gonglun.hooks import hookimpl
from gonglun.ledger.plugin import register_ledger_commands, register_ledger_routes

__all__ = ["health", "register_ledger_commands", "register_ledger_routes", "register_routes"]


@hookimpl(priority=0)
def register_routes(rt: Any, routes: list[Any]) -> list[Any]:
    from gonglun.api import core_resources as r
    from gonglun.api.binding_resources import binding_routes
    from gonglun.api.routes import Route

    return [
        *routes,
        Route("/v1/health", r.Health(rt), tags=("core",)),
        Route("/metrics", r.Metrics(rt), tags=("core",)),
        Route("/v1/openapi.json", r.OpenAPI(rt), tags=("core",)),
        Route("/v1/sessions", r.Sessions(rt), tags=("auth",), schemas={"post": r.login_schema()}),
        Route("/v1/me", r.Me(rt), tags=("auth",)),
        Route("/v1/me/ledger", r.MeLedger(rt), tags=("balance",)),
        Route("/v1/ws", r.Push(rt), tags=("push",)),
        Route("/v1/ws/tickets", r.WsTickets(rt), tags=("push",)),
        *admin_routes(rt),
        *binding_routes(rt),
    ]


def admin_routes(rt: Any) -> list[Any]:
    from gonglun.api import admin_resources as a
    from gonglun.api.routes import Route

    user = a.AdminUser(rt)
    tags = ("admin",)
    return [
        Route("/v1/admin/users", a.AdminUsers(rt), tags=tags),
        Route("/v1/admin/users/{user_id}", user, tags=tags, params=a.USER_ID),
        Route("/v1/admin/users/{user_id}/ban", user, tags=tags, suffix="ban", params=a.USER_ID,
              schemas={"post": a.BAN_SCHEMA}),
        Route("/v1/admin/users/{user_id}/unban", user, tags=tags, suffix="unban",
              params=a.USER_ID),
        Route("/v1/admin/users/{user_id}/tokens/revoke", user, tags=tags, suffix="revoke",
              params=a.USER_ID),
        Route("/v1/admin/users/{user_id}/role", a.AdminUserRole(rt), tags=tags,
              params=a.USER_ID, schemas={"post": a.ROLE_SCHEMA}),
        Route("/v1/admin/actions", a.AdminActions(rt), tags=tags),
    ]


@hookimpl(priority=0)
def health(rt: Any, checks: dict[str, Any]) -> dict[str, Any]:
    from gonglun.api.core_resources import health_checks

    return health_checks(rt, checks)


@hookimpl(priority=0)
def startup_checks(rt: Any, problems: list[str]) -> list[str]:
    """The sandbox outside the embedded default: payments are simulated (DECISIONS.md 23)."""
    from gonglun.embedded import SIMULATED

    if rt.config.sandbox_explicit:
        problems.append(SIMULATED)
    return problems
