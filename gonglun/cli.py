"""The ``gonglun`` command line (API.md): serve, worker, scheduler, migrate, users, plugins,
hooks, audit, sandbox, plus whatever plugins add through ``register_commands``."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gonglun.config import Config, ConfigError
from gonglun.errors import GonglunError
from gonglun.hooks import SPECS, PluginError


@dataclass(frozen=True)
class Command:
    """A subcommand: ``add_arguments(parser)`` then ``run(rt, args) -> exit code``."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Any, argparse.Namespace], int]


def _runtime(config: Config) -> Any:
    from gonglun.runtime import Runtime

    return Runtime(config)


def _ensure_schema(rt: Any) -> None:
    """The embedded default migrates itself; a production database is migrated on purpose."""
    if rt.config.embedded and rt.db.dialect == "sqlite":
        from gonglun.migrate import upgrade

        upgrade(rt)


def _preflight(rt: Any) -> None:
    """A long-running process starts only on a database that answers and accepts writes
    (one line and exit 2 otherwise, never a traceback or a server that answers 500)."""
    from gonglun.storage import preflight

    preflight(rt)


# -- commands ----------------------------------------------------------------------------------


def cmd_serve(rt: Any, args: argparse.Namespace) -> int:
    import uvicorn

    from gonglun.api import create_app

    host = args.host or rt.config.get("server.host", "127.0.0.1")
    port = int(args.port or rt.config.get("server.port", 8000))
    # Notify URLs and the embedded gateway are derived from where we actually listen.
    rt.config.data["server"].update(host=host, port=port)
    _ensure_schema(rt)
    _preflight(rt)
    app = create_app(rt=rt)
    banner(rt, host, port)
    logging.getLogger("uvicorn.access").addFilter(RedactQuery())
    # NOTE: proxy_headers off: uvicorn would otherwise rewrite the client address from
    # X-Forwarded-For for loopback peers, under every limit; server.trusted_proxies decides.
    uvicorn.run(app, host=host, port=port, ws="auto", lifespan="on",
                log_level=args.log_level, proxy_headers=False)
    return 0


class RedactQuery(logging.Filter):
    """Access-log lines never carry credentials: ``token=``/``ticket=`` values are masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        import re

        if isinstance(record.args, tuple):
            record.args = tuple(
                re.sub(r"((?:token|ticket)=)[^&\s]+", r"\1***", a) if isinstance(a, str) else a
                for a in record.args)
        return True


def banner(rt: Any, host: str, port: int) -> None:
    """What this server is: where, on what, with which channels; loud if payments are fake."""
    from gonglun.embedded import SIMULATED

    mode = "embedded default" if rt.config.embedded_default else "configured services"
    lines = [f"gonglun: serving http://{host}:{port} ({mode}, database {rt.db.dialect})"]
    if rt.config.sandbox_enabled:
        lines.append("gonglun: gateway sandbox ON at /sandbox, /gateway.do, /v3: payments are "
                     "simulated")
    elif rt.config.simulated_payments:
        lines.append("gonglun: channels use the sandbox keyset of payment.keyset: payments are "
                     "simulated")
    for problem in rt.startup_problems():
        lines.append(f"gonglun: WARNING: {problem}")
    if rt.config.sandbox_explicit:
        bar = "!" * 78
        lines = [bar, f"!! {SIMULATED}", bar, *lines]
    print("\n".join(lines), file=sys.stderr, flush=True)


def cmd_worker(rt: Any, args: argparse.Namespace) -> int:
    import dramatiq

    _preflight(rt)
    rt.startup_problems()
    threads = args.threads or int(rt.config.get("broker.worker_threads", 4))
    if args.processes > 1:
        import multiprocessing

        procs = [
            multiprocessing.Process(target=_worker_process, args=(rt.config.data, threads))
            for _ in range(args.processes)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        return 0
    worker = dramatiq.Worker(rt.broker, worker_threads=threads)
    worker.start()
    rt.outbox.sweep()
    logging.getLogger("gonglun").info("worker started: %d threads, actors %s", threads,
                                      ", ".join(rt.actor_names))
    _wait_for_signal()
    worker.stop()
    return 0


def _worker_process(config_data: dict[str, Any], threads: int) -> None:
    import dramatiq

    rt = _runtime(Config(config_data))
    worker = dramatiq.Worker(rt.broker, worker_threads=threads)
    worker.start()
    _wait_for_signal()
    worker.stop()


def cmd_scheduler(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.scheduler import Scheduler

    _preflight(rt)
    scheduler = Scheduler(rt)
    thread = scheduler.start_thread()
    _wait_for_signal()
    scheduler.stop()
    thread.join(timeout=5)
    return 0


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1):
        pass


def cmd_migrate(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.migrate import current, upgrade

    upgrade(rt, args.target)
    print(json.dumps({"database": rt.db.dialect, "heads": current(rt)}))
    return 0


def read_password(args: argparse.Namespace) -> str:
    """``--password`` (visible in ``ps`` and shell history: avoid), ``--password-stdin``, or a
    prompt when stdin is a terminal; otherwise the first line of stdin."""
    if args.password is not None:
        return str(args.password)
    if not args.password_stdin and sys.stdin.isatty():
        import getpass

        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise GonglunError("user.password_mismatch", "两次输入的密码不一致")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_users_add(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.accounts import create_user, issue_token

    password = read_password(args)
    _ensure_schema(rt)
    with rt.db.write() as session:
        user = create_user(session, args.login, password, role=args.role,
                           nickname=args.nickname)
        token = issue_token(session, user.id, label="cli")
        out = {"id": user.id, "login": user.login, "role": user.role, "token": token}
    print(json.dumps(out, ensure_ascii=False))
    return 0


def cmd_plugins_list(rt: Any, args: argparse.Namespace) -> int:
    infos = [
        {"name": i.name, "source": i.source, "enabled": i.enabled, "requires": list(i.requires)}
        for i in rt.pm.plugin_infos()
    ]
    if args.json:
        print(json.dumps(infos, ensure_ascii=False, indent=2))
    else:
        for i in infos:
            state = "enabled " if i["enabled"] else "disabled"
            print(f"{i['name']:<16} {state} {i['source']}")
    return 0


def hooks_table(rt: Any) -> list[dict[str, Any]]:
    out = []
    for name, info in SPECS.items():
        impls = [
            {"plugin": i.plugin, "function": f"{i.function.__module__}.{i.function.__qualname__}",
             "priority": i.priority}
            for i in rt.pm.impls(name)
        ]
        out.append({"name": name, "kind": info.kind, "deferred": info.deferred,
                    "doc": info.doc, "implementations": impls})
    return out


def cmd_hooks_list(rt: Any, args: argparse.Namespace) -> int:
    table = hooks_table(rt)
    if args.json:
        print(json.dumps(table, ensure_ascii=False, indent=2))
        return 0
    for hook in table:
        flag = " deferred" if hook["deferred"] else ""
        print(f"{hook['name']} ({hook['kind']}{flag})")
        for impl in hook["implementations"]:
            print(f"    {impl['priority']:>4}  {impl['plugin']}  {impl['function']}")
    return 0


def cmd_audit(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.ledger import run_audit

    _ensure_schema(rt)
    problems = run_audit(rt)
    if args.json:
        print(json.dumps({"ok": not problems, "problems": problems}, ensure_ascii=False))
    elif problems:
        print(f"audit: {len(problems)} problem(s)")
        for p in problems:
            print(f"  - {p}")
    else:
        print("audit: ok")
    return 1 if problems else 0


def cmd_config_show(rt: Any, args: argparse.Namespace) -> int:
    """Every setting's effective value and where it came from; secrets masked."""
    from gonglun.settings import mask, schema

    declared = schema(rt.hooks)
    rows = []
    for path, setting in sorted(declared.items()):
        value = rt.config.get(path, setting.default)
        own = [s for p, s in rt.config.sources.items() if p == path or p.startswith(path + ".")]
        source = own[0] if own else "default"
        if value is None and not own and setting.default in (None, ""):
            continue  # an unset optional setting (a channel key nobody gave)
        if setting.type == "table":
            value = {k: "…" for k in (value or {})} if value else {}
        rows.append({"setting": path, "value": mask(setting, value), "source": source,
                     "secret": setting.secret})
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
        return 0
    width = max(len(r["setting"]) for r in rows)
    for r in rows:
        print(f"{r['setting']:<{width}}  {json.dumps(r['value'], ensure_ascii=False, default=str)}"
              f"  ({r['source']})")
    return 0


def cmd_doctor(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.doctor import report, run

    findings = run(rt, deploy_checks=args.deploy)
    if args.json:
        print(json.dumps([f.__dict__ for f in findings], ensure_ascii=False, indent=2))
        return 1 if any(f.level == "error" for f in findings) else 0
    text, code = report(findings)
    print(text)
    return code


def cmd_jobs_list(rt: Any, args: argparse.Namespace) -> int:
    jobs = [{"name": j.name, "every_s": j.every_s, "actor": j.actor} for j in rt.periodic_jobs()]
    actors = [{"name": a.name, "queue": a.queue, "max_retries": a.max_retries}
              for a in rt.actor_specs()]
    if args.json:
        print(json.dumps({"jobs": jobs, "actors": actors}, ensure_ascii=False, indent=2))
        return 0
    for job in jobs:
        print(f"{job['name']:<28} every {job['every_s']:>8g}s  -> {job['actor']}")
    return 0


def cmd_outbox(rt: Any, args: argparse.Namespace) -> int:
    from sqlalchemy import func, select, update

    from gonglun.db import utcnow
    from gonglun.hooks.deferred import OutboxEvent

    if args.sweep:
        print(json.dumps({"sent": rt.outbox.sweep()}))
        return 0
    if args.retry:
        with rt.db.write() as session:
            changed = session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_(args.retry), OutboxEvent.state == "failed")
                .values(state="pending", attempts=0, next_attempt_at=utcnow(),
                        claimed_until=None)
            ).rowcount
        print(json.dumps({"rearmed": changed, "sent": rt.outbox.sweep()}))
        return 0
    if args.failed:
        with rt.db.read() as session:
            rows = session.execute(
                select(OutboxEvent.id, OutboxEvent.key, OutboxEvent.hook, OutboxEvent.attempts,
                       OutboxEvent.created_at, OutboxEvent.last_error)
                .where(OutboxEvent.state == "failed").order_by(OutboxEvent.id).limit(500)
            ).all()
        print(json.dumps([{"id": r.id, "key": r.key, "hook": r.hook, "attempts": r.attempts,
                           "created_at": r.created_at.isoformat(), "error": r.last_error}
                          for r in rows], ensure_ascii=False, indent=2))
        return 1 if rows else 0
    with rt.db.read() as session:
        rows = session.execute(
            select(OutboxEvent.hook, OutboxEvent.state, func.count()).group_by(
                OutboxEvent.hook, OutboxEvent.state)
        ).all()
    print(json.dumps([{"hook": h, "state": s, "count": c} for h, s, c in rows]))
    return 0


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
    from gonglun.admin_cli import add_parsers

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
        rt = _runtime(config)
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


if __name__ == "__main__":
    raise SystemExit(main())
