"""What every command shares: the ``Command`` record plugins add through ``register_commands``,
the runtime a command runs on, the schema and database checks, the password a command
reads (``users add``, ``users passwd``) and who ran it, for the admin audit log (``actor``)."""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gonglun.config import Config
from gonglun.errors import GonglunError


@dataclass(frozen=True)
class Command:
    """A subcommand: ``add_arguments(parser)`` then ``run(rt, args) -> exit code``."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Any, argparse.Namespace], int]


def make_runtime(config: Config) -> Any:
    from gonglun.runtime import Runtime

    return Runtime(config)


def ensure_schema(rt: Any) -> None:
    """The embedded default migrates itself; a production database is migrated on purpose."""
    if rt.config.embedded and rt.db.dialect == "sqlite":
        from gonglun.migrate import upgrade

        upgrade(rt)


def preflight(rt: Any) -> None:
    """A long-running process starts only on a database that answers and accepts writes
    (one line and exit 2 otherwise, never a traceback or a server that answers 500)."""
    from gonglun import storage

    storage.preflight(rt)


def read_password(args: argparse.Namespace) -> str:
    """``--password`` (visible in ``ps`` and shell history: avoid), ``--password-stdin``, or a
    prompt when stdin is a terminal; otherwise the first line of stdin."""
    if args.password is not None:
        return str(args.password)
    if not args.password_stdin and sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise GonglunError("user.password_mismatch", "两次输入的密码不一致")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def actor() -> tuple[None, str, str]:
    """Who runs a command, for the admin audit log: no user id, the OS user and the machine."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "?"
    return None, f"cli:{user}", f"host:{socket.gethostname()}"
