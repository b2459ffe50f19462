"""``gonglun users list|show|ban|unban|role|passwd|tokens revoke`` (WP-CLI's ``wp user``).

Every change goes through ``gonglun.accounts.admin`` and is written to the admin audit log with
the machine and OS user that ran it. Passwords come from a prompt or stdin, never from argv.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from gonglun.commands.base import actor, read_password


def _out(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def cmd_list(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.accounts.admin import list_users

    with rt.db.read() as session:
        _out(list_users(session, query=args.search, role=args.role, status=args.status,
                        limit=args.limit))
    return 0


def cmd_show(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.accounts.admin import audit_log, find, user_view
    from gonglun.ledger.reads import balance

    with rt.db.read() as session:
        user = find(session, args.user)
        _out({"user": user_view(session, user, balance(session, user.id)),
              "actions": audit_log(session, target=user.id, limit=20)["actions"]})
    return 0


def cmd_ban(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.accounts.admin import ban, find, parse_until

    with rt.db.write() as session:
        user = find(session, args.user)
        ban(session, user, until=parse_until(args.until), reason=args.reason, actor=actor())
    print(json.dumps({"banned": user.id}))
    return 0


def cmd_unban(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.accounts.admin import find, unban

    with rt.db.write() as session:
        done = unban(session, find(session, args.user), actor=actor())
    print(json.dumps({"unbanned": done}))
    return 0 if done else 1


def cmd_role(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.accounts.admin import find, set_role

    with rt.db.write() as session:
        set_role(session, find(session, args.user), args.role, actor=actor())
    print(json.dumps({"role": args.role}))
    return 0


def cmd_passwd(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.accounts.admin import find, set_password

    password = read_password(args)
    with rt.db.write() as session:
        revoked = set_password(session, find(session, args.user), password, actor=actor())
    print(json.dumps({"password": "changed", "tokens_revoked": revoked}))
    return 0


def cmd_tokens_revoke(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.accounts.admin import find, revoke_tokens

    with rt.db.write() as session:
        revoked = revoke_tokens(session, find(session, args.user), actor=actor())
    print(json.dumps({"tokens_revoked": revoked}))
    return 0


def add_parsers(users: Any) -> None:
    """The user subcommands beside ``users add`` (the parser is the CLI's)."""
    lst = users.add_parser("list", help="users, newest first")
    lst.add_argument("--search", help="part of a login, nickname, phone or email")
    lst.add_argument("--role", choices=["user", "admin", "superadmin"])
    lst.add_argument("--status", choices=["active", "banned", "deleted"])
    lst.add_argument("--limit", type=int, default=50)
    lst.set_defaults(run=cmd_list)
    show = users.add_parser("show", help="one user (id or login) and the actions about them")
    show.add_argument("user")
    show.set_defaults(run=cmd_show)
    ban = users.add_parser("ban", help="ban a user and sign every device out")
    ban.add_argument("user")
    ban.add_argument("--reason", required=True)
    ban.add_argument("--until", help="7d, 12h, 30m or an ISO time with zone; default: forever")
    ban.set_defaults(run=cmd_ban)
    unban = users.add_parser("unban", help="lift a ban")
    unban.add_argument("user")
    unban.set_defaults(run=cmd_unban)
    role = users.add_parser("role", help="set a user's role")
    role.add_argument("user")
    role.add_argument("role", choices=["user", "admin", "superadmin"])
    role.set_defaults(run=cmd_role)
    passwd = users.add_parser("passwd", help="set a password (prompt or --password-stdin); "
                              "signs every device out")
    passwd.add_argument("user")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.set_defaults(run=cmd_passwd, password=None)
    tokens = users.add_parser("tokens", help="a user's tokens").add_subparsers(
        dest="tokens_cmd", required=True)
    revoke = tokens.add_parser("revoke", help="revoke every token of a user")
    revoke.add_argument("user")
    revoke.set_defaults(run=cmd_tokens_revoke)


__all__ = ["add_parsers"]
