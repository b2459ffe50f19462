"""``gonglun ledger accounts|transfers|adjust``: the ledger from the command line, added by the
core plugin (``gonglun.core_plugin``) through ``register_commands``."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from gonglun.accounts.admin import find
from gonglun.commands.base import Command, actor, ensure_schema
from gonglun.db import utcnow
from gonglun.errors import GonglunError
from gonglun.ledger import adjust
from gonglun.ledger.accounts import check_code
from gonglun.ledger.reads import accounts_report, list_transfers


def cmd_ledger_accounts(rt: Any, args: argparse.Namespace) -> int:
    ensure_schema(rt)
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
    ensure_schema(rt)
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
    ensure_schema(rt)
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


def ledger_command() -> Command:
    return Command("ledger", "the ledger: accounts, transfers, adjustments", _ledger_args,
                   _no_subcommand)


__all__ = ["ledger_command"]
