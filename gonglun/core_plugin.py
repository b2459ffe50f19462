"""The core plugin: the platform's own routes (the ledger's among them), its ``gonglun ledger``
command and its health checks. Essential: cannot be disabled."""

from __future__ import annotations

from typing import Any

from gonglun.hooks import hookimpl

__all__ = ["find_account", "health", "register_ledger_commands", "register_ledger_routes",
           "register_routes", "sms_code_guard", "user_login"]


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
        *account_routes(rt),
        Route("/v1/ws", r.Push(rt), tags=("push",)),
        Route("/v1/ws/tickets", r.WsTickets(rt), tags=("push",)),
        *admin_routes(rt),
        *binding_routes(rt),
    ]


def account_routes(rt: Any) -> list[Any]:
    from gonglun.api import account_resources as a
    from gonglun.api.routes import Route

    tags = ("auth",)
    return [
        Route("/v1/sessions/wechat", a.WechatSessions(rt), tags=tags,
              schemas={"post": a.WECHAT_SCHEMA}),
        Route("/v1/registrations", a.Registrations(rt), tags=tags,
              schemas={"post": a.REGISTER_SCHEMA}),
        Route("/v1/me/sessions", a.MeSessions(rt), tags=tags),
        Route("/v1/me/sessions/{session_id}", a.MeSession(rt), tags=tags, params=a.SESSION_ID),
        Route("/v1/me/login-alert", a.LoginAlert(rt), tags=tags,
              schemas={"put": a.ALERT_SCHEMA}),
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


@hookimpl(specname="register_routes", priority=0)
def register_ledger_routes(rt: Any, routes: list[Any]) -> list[Any]:
    """The ledger's admin routes (``gonglun/api/ledger_resources.py``)."""
    from gonglun.api import ledger_resources as lr
    from gonglun.api.routes import Route

    tags = ("ledger", "admin")
    return [
        *routes,
        Route("/v1/ledger/accounts", lr.LedgerAccounts(rt), tags=tags),
        Route("/v1/ledger/transfers", lr.LedgerTransfers(rt), tags=tags),
        Route("/v1/ledger/adjustments", lr.LedgerAdjustments(rt), tags=tags,
              schemas={"post": lr.ADJUST_SCHEMA}),
    ]


@hookimpl(specname="register_commands", priority=0)
def register_ledger_commands(rt: Any, commands: list[Any]) -> list[Any]:
    """``gonglun ledger`` (``gonglun/commands/ledger.py``)."""
    from gonglun.commands.ledger import ledger_command

    return [*commands, ledger_command()]


@hookimpl(priority=0)
def health(rt: Any, checks: dict[str, Any]) -> dict[str, Any]:
    from gonglun.health import health_checks

    return health_checks(rt, checks)


@hookimpl(priority=0)
def find_account(rt: Any, kind: str, value: Any) -> Any:
    from gonglun.accounts.signin import find_account as find

    return find(rt, kind, value)


@hookimpl(priority=0)
def user_login(rt: Any, user_id: int, method: str, ip: str, platform: str,
               user_agent: str) -> None:
    """The remote-login alert (OPS-09)."""
    from gonglun.accounts.risk import on_login

    on_login(rt, user_id, method, ip, platform, user_agent)


@hookimpl(priority=0)
def sms_code_guard(rt: Any, errors: list[Any], phone: str, scene: str,
                   user_id: int | None) -> list[Any]:
    """NTF-14: no official-account registration code for a phone whose account has WeChat."""
    from gonglun.accounts.wechat import phone_has_wechat

    if scene == "wechat_reg" and phone_has_wechat(rt, phone, "mp"):
        from gonglun.errors import GonglunError

        errors.append(GonglunError("account.phone_wechat_bound",
                                   "短信发送失败:该手机号已绑定过微信", status=409))
    return errors


@hookimpl(priority=0)
def startup_checks(rt: Any, problems: list[str]) -> list[str]:
    """The sandbox outside the embedded default: payments are simulated (DECISIONS.md 23);
    what each disabled plugin leaves unserved."""
    from gonglun.embedded import SIMULATED
    from gonglun.hooks.unserved import unserved

    if rt.config.sandbox_explicit:
        problems.append(SIMULATED)
    pm = getattr(rt, "pm", None)
    if pm is not None:
        problems.extend(unserved(pm))
    return problems
