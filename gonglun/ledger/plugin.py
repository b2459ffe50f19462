"""The ledger's hook implementations, registered as part of the essential ``core`` plugin:
admin REST routes (``/v1/ledger/accounts``, ``/v1/ledger/transfers``) and ``gonglun ledger``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gonglun.api.util import ok, query_int, run_sync
from gonglun.errors import GonglunError
from gonglun.hooks import hookimpl
from gonglun.ledger.accounts import INCOME


class LedgerAccounts:
    """``GET /v1/ledger/accounts`` (admin)."""

    auth = "admin"

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_get(self, req: Any, resp: Any) -> None:
        """System accounts with their balances, the wallets in total, and the sum (always 0).
        ``income`` shows its balance to super admins only (PAY-22)."""
        report = await run_sync(accounts_report, self.rt)
        if not _sees_income(req):
            for account in report["accounts"]:
                if account["code"] == INCOME:
                    account["balance"] = None
        ok(resp, report)


class LedgerTransfers:
    """``GET /v1/ledger/transfers`` (admin)."""

    auth = "admin"

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_get(self, req: Any, resp: Any) -> None:
        """Transfers newest first; filter by ``account`` (``escrow``, ``user:7``...), ``code``
        and ``ref``; page with ``limit`` and ``before``. Amounts to or from ``income`` show to
        super admins only (PAY-22)."""
        from gonglun.ledger import list_transfers
        from gonglun.ledger.accounts import check_code

        account = req.get_param("account") or None
        if account is not None:
            check_code(self.rt, account)
        code, ref = _param(req, "code"), _param(req, "ref")
        limit = query_int(req, "limit", 50, minimum=1, maximum=500)
        before = query_int(req, "before", 0, minimum=0) or None

        def load() -> dict[str, Any]:
            with self.rt.db.read() as session:
                return list_transfers(session, account=account, code=code, ref=ref,
                                      limit=limit, before=before)

        listing = await run_sync(load)
        if not _sees_income(req):
            for t in listing["transfers"]:
                if INCOME in (t["debit"], t["credit"]):
                    t.update(amount=None, debit_after=None, credit_after=None)
        ok(resp, listing)


def _sees_income(req: Any) -> bool:
    """PAY-22: platform revenue is for super admins; admins see that it moved, not how much."""
    return bool(req.context.user is not None and req.context.user.role == "superadmin")


def _param(req: Any, name: str) -> str | None:
    value = req.get_param(name) or None
    if value is not None and len(value) > 64:
        raise GonglunError("request.too_long", f"参数 {name} 过长", data={"field": name})
    return value


def accounts_report(rt: Any) -> dict[str, Any]:
    from gonglun.ledger import list_accounts
    from gonglun.ledger.accounts import ensure_system_accounts

    with rt.db.write() as session:
        ensure_system_accounts(rt, session)
    with rt.db.read() as session:
        return list_accounts(rt, session)


@hookimpl(specname="register_routes", priority=0)
def register_ledger_routes(rt: Any, routes: list[Any]) -> list[Any]:
    from gonglun.api.routes import Route

    tags = ("ledger", "admin")
    return [
        *routes,
        Route("/v1/ledger/accounts", LedgerAccounts(rt), tags=tags),
        Route("/v1/ledger/transfers", LedgerTransfers(rt), tags=tags),
    ]


# -- CLI -----------------------------------------------------------------------------------


def cmd_ledger_accounts(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.cli import _ensure_schema

    _ensure_schema(rt)
    report = accounts_report(rt)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    for a in report["accounts"]:
        print(f"{a['code']:<20} {a['balance']:>16}  {a['name']}")
    w = report["wallets"]
    print(f"{'wallets':<20} {w['balance']:>16}  {w['count']} wallets, {w['negative']} negative")
    print(f"{'total':<20} {report['total']:>16}")
    return 0


def _ledger_args(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="ledger_command", required=True)
    accounts = sub.add_parser("accounts", help="system accounts and wallets with balances")
    accounts.add_argument("--json", action="store_true")
    accounts.set_defaults(run=cmd_ledger_accounts)


def _no_subcommand(rt: Any, args: argparse.Namespace) -> int:
    raise GonglunError("cli.usage", "usage: gonglun ledger accounts [--json]")


@hookimpl(specname="register_commands", priority=0)
def register_ledger_commands(rt: Any, commands: list[Any]) -> list[Any]:
    from gonglun.cli import Command

    return [*commands, Command("ledger", "the ledger: accounts and balances", _ledger_args,
                               _no_subcommand)]
