"""The ``gonglun`` command line (API.md): serve, worker, scheduler, migrate, users, plugins,
hooks, audit, sandbox, plus whatever plugins add through ``register_commands``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from gonglun.admin_cli import add_parsers
from gonglun.commands.base import Command, make_runtime, read_password
from gonglun.commands.base import ensure_schema as _ensure_schema
from gonglun.commands.listing import (
    cmd_config_show,
    cmd_hooks_list,
    cmd_jobs_list,
    cmd_plugins_list,
    hooks_table,
)
from gonglun.commands.maintenance import (
    cmd_audit,
    cmd_doctor,
    cmd_migrate,
    cmd_outbox,
    cmd_users_add,
)
from gonglun.commands.serve import RedactQuery, banner, cmd_scheduler, cmd_serve, cmd_worker
from gonglun.config import Config, ConfigError
from gonglun.errors import GonglunError
from gonglun.hooks import PluginError

# -- parser --------------------------------------------------------------------------------


def core_commands() -> list[Command]:
    def serve_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host")
        p.add_argument("--port", type=int)
        p.add_argument("--log-level", default="info")

    def worker_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--processes", type=int, default=1)
        p.add_argument("--threads", type=int)

    def migrate_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("target", nargs="?", default="heads")

    def json_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true")

    def doctor_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--deploy", action="store_true",
                       help="also what a production deployment must have")
        p.add_argument("--json", action="store_true")

    def outbox_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--sweep", action="store_true", help="re-send pending events now")
        p.add_argument("--failed", action="store_true",
                       help="list events left failed, with the implementations that failed "
                            "(exit 1 when there are any)")
        p.add_argument("--retry", type=int, nargs="+", metavar="ID",
                       help="re-arm failed events (after fixing their cause)")

    return [
        Command("serve", "serve the REST API (and, embedded, everything else)", serve_args,
                cmd_serve),
        Command("worker", "run Dramatiq workers for deferred hooks and jobs", worker_args,
                cmd_worker),
        Command("scheduler", "enqueue periodic jobs", lambda p: None, cmd_scheduler),
        Command("migrate", "apply database migrations", migrate_args, cmd_migrate),
        Command("audit", "check the money invariants; exit 1 on a mismatch", json_flag,
                cmd_audit),
        Command("outbox", "deferred-hook outbox counts, or --sweep", outbox_args, cmd_outbox),
        Command("doctor", "check this installation (--deploy: for production); exit 1 on "
                "errors", doctor_args, cmd_doctor),
    ]


def build_parser(rt: Any) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gonglun", description=__doc__)
    parser.add_argument("--config", help="TOML file (default $GONGLUN_CONFIG or ./gonglun.toml)")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = rt.hooks.apply_filters("register_commands", core_commands())
    for command in commands:
        p = sub.add_parser(command.name, help=command.help)
        command.add_arguments(p)
        p.set_defaults(run=command.run)

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="sub", required=True)
    add = users.add_parser("add", help="create a user and print a token")
    add.add_argument("login")
    add.add_argument("--password", help="prefer --password-stdin or the prompt")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    add.add_argument("--role", default="user", choices=["user", "admin", "superadmin"])
    add.add_argument("--nickname")
    add.set_defaults(run=cmd_users_add)
    add_parsers(users)

    config = sub.add_parser("config", help="the configuration").add_subparsers(dest="sub",
                                                                                required=True)
    show = config.add_parser("show", help="effective settings, their source, secrets masked")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=cmd_config_show)

    for name, fn, helptext in (
        ("plugins", cmd_plugins_list, "every plugin: name, source, enabled"),
        ("hooks", cmd_hooks_list, "every hook: kind, deferred, implementations in call order"),
        ("jobs", cmd_jobs_list, "periodic jobs and the actors they enqueue"),
    ):
        group = sub.add_parser(name, help=helptext).add_subparsers(dest="sub", required=True)
        lst = group.add_parser("list", help=helptext)
        lst.add_argument("--json", action="store_true")
        lst.set_defaults(run=fn)

    from gonglun.embedded import gateway_sandbox

    if (gateway := gateway_sandbox()) is not None:
        gateway.add_parser(sub)
    return parser


INT64_MAX = 2**63 - 1


def _out_of_range(args: argparse.Namespace) -> str | None:
    """The first whole-number argument no database column holds (every command's, plugins'
    included): ``--user 99999999999999999999`` is a usage error, not an overflow later."""
    for name, value in vars(args).items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, int) and not isinstance(item, bool) \
                    and not -INT64_MAX <= item <= INT64_MAX:
                return f"--{name.replace('_', '-')} {item}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    import os

    # Databases, logs and key files this process creates are its owner's alone.
    os.umask(0o077)
    from gonglun.logs import plain_failure, setup

    setup(os.environ.get("GONGLUN_SERVER__LOG_FORMAT", "text").strip('"'))
    config_path = None
    if "--config" in argv:
        i = argv.index("--config")
        config_path = argv[i + 1] if i + 1 < len(argv) else None
    try:
        config = Config.load(config_path)
        setup(str(config.get("server.log_format", "text")))
        rt = make_runtime(config)
    except (ConfigError, PluginError) as exc:
        print(f"gonglun: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the data folder cannot be made (read-only, no space)
        print(f"gonglun: {plain_failure(exc, None) or exc}", file=sys.stderr)
        return 2
    parser = build_parser(rt)
    args = parser.parse_args(argv)
    wild = _out_of_range(args)
    if wild:
        rt.close()
        print(f"gonglun: {wild} is out of range (a whole number up to {INT64_MAX})",
              file=sys.stderr)
        return 2
    try:
        if getattr(args, "command", None) == "sandbox":
            from gonglun.embedded import gateway_sandbox

            return int(gateway_sandbox().run(args) or 0)  # the command exists only with one
        return int(args.run(rt, args) or 0)
    except GonglunError as exc:
        print(json.dumps(exc.to_dict(), ensure_ascii=False), file=sys.stderr)
        return 1
    except Exception as exc:
        line = plain_failure(exc, rt.config)
        if line is None:
            raise
        print(f"gonglun: {line}", file=sys.stderr)
        return 2
    finally:
        rt.close()


#: Still importable from here (plugins' ``register_commands`` use ``Command`` and
#: ``_ensure_schema``); the commands themselves live in ``gonglun.commands``.
__all__ = [
    "INT64_MAX",
    "Command",
    "RedactQuery",
    "_ensure_schema",
    "banner",
    "build_parser",
    "cmd_audit",
    "cmd_config_show",
    "cmd_doctor",
    "cmd_hooks_list",
    "cmd_jobs_list",
    "cmd_migrate",
    "cmd_outbox",
    "cmd_plugins_list",
    "cmd_scheduler",
    "cmd_serve",
    "cmd_users_add",
    "cmd_worker",
    "core_commands",
    "hooks_table",
    "main",
    "read_password",
]


if __name__ == "__main__":
    raise SystemExit(main())
