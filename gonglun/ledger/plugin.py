"""The ledger's hook implementations, registered as part of the essential ``core`` plugin:
admin REST routes (``/v1/ledger/accounts``, ``/v1/ledger/transfers``,
``/v1/ledger/adjustments``) and ``gonglun ledger``."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from gonglun.api.routes import responds
from gonglun.api.util import client_ip, json_body, ok, query_int, run_sync
from gonglun.db import utcnow
from gonglun.errors import GonglunError
from gonglun.hooks import hookimpl
from gonglun.ledger import adjust
from gonglun.ledger.accounts import INCOME
from gonglun.ledger.transfers import MAX_AMOUNT

ADJUST_SCHEMA = {
    "type": "object", "required": ["user_id", "amount", "reason", "key"],
    "additionalProperties": False,
    "properties": {
        "user_id": {"type": "integer", "minimum": 1, "maximum": adjust.INT64_MAX},
        "amount": {"type": "integer", "minimum": -MAX_AMOUNT, "maximum": MAX_AMOUNT,
                   "not": {"const": 0},
                   "description": "signed fen: positive credits the user from manual"},
        "reason": {"type": "string", "minLength": 1, "maxLength": adjust.MAX_REASON,
                   "description": "plain text on one line"},
        "key": {"type": "string", "minLength": 1, "maxLength": adjust.MAX_KEY,
                "pattern": "^[!-~]+$", "description": "idempotency key naming the adjustment"},
        "allow_negative": {"type": "boolean", "default": False,
                           "description": "let a debit leave the wallet below zero"},
    },
}


class _Resource:
    """The ledger's routes are staff's: admins, or super admins where ``auth`` says so."""

    auth = "admin"

    def __init__(self, rt: Any):
        self.rt = rt


class LedgerAccounts(_Resource):
    """``GET /v1/ledger/accounts`` (admin)."""

    async def on_get(self, req: Any, resp: Any) -> None:
        """System accounts with their balances, the wallets in total, and the sum (always 0).
        ``income`` shows its balance to super admins only (PAY-22)."""
        report = await run_sync(accounts_report, self.rt)
        if not _sees_income(req):
            for account in report["accounts"]:
                if account["code"] == INCOME:
                    account["balance"] = None
        ok(resp, report)


class LedgerTransfers(_Resource):
    """``GET /v1/ledger/transfers`` (admin)."""

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


class LedgerAdjustments(_Resource):
    """``POST /v1/ledger/adjustments`` (super admins)."""

    auth = "superadmin"

    @responds(201, description="the adjustment (the same one again for a repeated key)")
    async def on_post(self, req: Any, resp: Any) -> None:
        """Adjust a wallet against ``manual``: repair a negative balance, record a payout made
        outside the system.

        ``amount`` is signed fen (positive credits the user, negative debits); ``key`` names the
        adjustment: repeated with the same body it answers the stored adjustment
        (``Idempotent-Replayed: true``) and moves nothing, with another body it is refused
        (422 ``ledger.adjustment_mismatch``). A debit below zero is refused
        (``ledger.adjustment_negative``) unless ``allow_negative`` is true. Written to the admin
        audit log."""
        adj = adjust.parse(await json_body(req))
        me = req.context.user
        actor = (me.id, f"{me.role}:{me.login}", f"ip:{client_ip(req)}")
        view, created = await run_sync(adjust.adjust, self.rt, adj, actor=actor)
        if not created:
            resp.set_header("Idempotent-Replayed", "true")
        ok(resp, {"adjustment": view, "balance": view["balance_after"]}, status=201)


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
        Route("/v1/ledger/adjustments", LedgerAdjustments(rt), tags=tags,
              schemas={"post": ADJUST_SCHEMA}),
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


def cmd_ledger_transfers(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.cli import _ensure_schema
    from gonglun.ledger import list_transfers
    from gonglun.ledger.accounts import check_code

    _ensure_schema(rt)
    if args.account is not None:
        check_code(rt, args.account)
    if not 1 <= args.limit <= 500 or not 0 < (args.before or 1) <= adjust.INT64_MAX:
        raise GonglunError("cli.usage", "--limit: 1-500; --before: a transfer id")
    with rt.db.read() as session:
        listing = list_transfers(session, account=args.account, code=args.code, ref=args.ref,
                                 limit=args.limit, before=args.before)
    if args.json:
        print(json.dumps(listing, ensure_ascii=False, indent=2))
        return 0
    for t in listing["transfers"]:
        print(f"{t['id']:>8} {t['created_at'][:19]} {t['debit']:>16} -> {t['credit']:<16} "
              f"{t['amount']:>12} {t['code']:<16} {t['ref']}  {t['remark']}")
    return 0


def cmd_ledger_adjust(rt: Any, args: argparse.Namespace) -> int:
    """``gonglun ledger adjust USER AMOUNT --reason R [--key K] [--allow-negative] [--by S]``."""
    from gonglun.accounts.admin import find
    from gonglun.admin_cli import actor
    from gonglun.cli import _ensure_schema

    _ensure_schema(rt)
    with rt.db.read() as session:
        user_id = find(session, args.user).id
        by = find(session, args.by).id if args.by else None
    text = args.amount.strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,20}", text):
        raise GonglunError("ledger.invalid_amount", "金额必须是整数(分),正数增加、负数扣减",
                           data={"field": "amount"})
    adj = adjust.parse({"user_id": user_id, "amount": int(text), "reason": args.reason,
                        "key": args.key or _default_key(user_id, int(text), args.reason),
                        "allow_negative": args.allow_negative})
    who = actor()
    view, created = adjust.adjust(rt, adj, actor=(by, who[1], who[2]), console=by is None)
    print(json.dumps({"adjustment": view, "created": created,
                      "balance": view["balance_after"]}, ensure_ascii=False, indent=2))
    return 0


def _default_key(user_id: int, amount: int, reason: Any) -> str:
    """A rerun of the same command (after a timeout, an unclear answer) is a replay, not a
    second credit: the default key is the adjustment's own content and its UTC day."""
    import hashlib

    day = utcnow().strftime("%Y%m%d")
    digest = hashlib.sha256(f"{user_id}|{amount}|{reason}|{day}".encode()).hexdigest()[:32]
    return f"cli-{day}-{digest}"


def _ledger_args(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="ledger_command", required=True)
    accounts = sub.add_parser("accounts", help="system accounts and wallets with balances")
    accounts.add_argument("--json", action="store_true")
    accounts.set_defaults(run=cmd_ledger_accounts)
    transfers = sub.add_parser("transfers", help="transfers, newest first")
    transfers.add_argument("--account", help="an account code: escrow, manual, user:<id>...")
    transfers.add_argument("--ref", help="a reference (an order number, adjust:<user id>...)")
    transfers.add_argument("--code", help="a transfer code (tao, settle, admin_adjust...)")
    transfers.add_argument("--limit", type=int, default=50)
    transfers.add_argument("--before", type=int, help="page: the last id seen")
    transfers.add_argument("--json", action="store_true")
    transfers.set_defaults(run=cmd_ledger_transfers)
    adj = sub.add_parser("adjust", help="adjust a wallet against manual (audited): repair a "
                         "negative balance, record a payout made outside the system")
    adj.add_argument("user", help="user id or login")
    adj.add_argument("amount", help="signed fen: 300 credits the user, -300 debits")
    adj.add_argument("--reason", required=True, help="why (plain text, 1-200 characters)")
    adj.add_argument("--key", help="idempotency key: a rerun with it moves nothing (default: "
                     "user, amount, reason and UTC day, so the same command rerun the same day "
                     "after a timeout moves nothing; give distinct keys for two alike "
                     "adjustments on one day)")
    adj.add_argument("--allow-negative", action="store_true",
                     help="let a debit leave the wallet below zero")
    adj.add_argument("--by", help="the super admin (id or login) to record as operator")
    adj.set_defaults(run=cmd_ledger_adjust)


def _no_subcommand(rt: Any, args: argparse.Namespace) -> int:
    raise GonglunError("cli.usage", "usage: gonglun ledger {accounts,transfers,adjust}")


@hookimpl(specname="register_commands", priority=0)
def register_ledger_commands(rt: Any, commands: list[Any]) -> list[Any]:
    from gonglun.cli import Command

    return [*commands, Command("ledger", "the ledger: accounts, transfers, adjustments",
                               _ledger_args, _no_subcommand)]
