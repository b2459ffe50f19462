"""``gonglun sandbox``: write a keyset, or serve the gateway sandbox alone.

``gonglun sandbox init --dir D`` writes ``D/sandbox.json``;
``gonglun sandbox [--host H] [--port P] [--dir D]`` serves it (writing the keyset first if the
directory has none), with state persisted in ``D/state.db`` unless ``--memory``.
``--notify-base URL`` is where orders created through the control API are notified
(``URL/v1/notify/alipay`` and ``URL/v1/notify/wxpay``, the way Gonglun serves them) and allows
that host; ``--notify-host H`` (repeatable) replaces the loopback default of hosts that
notifications may be sent to.

Wiring: ``add_parser(subparsers)`` adds the subcommand and sets ``func=run`` as its default;
``run(args)`` returns the exit status.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_DIR = os.environ.get("GONGLUN_SANDBOX_DIR", "var/sandbox")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``sandbox`` subcommand to an ``argparse`` subparsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sandbox",
        help="the gateway sandbox alone (Alipay openapi + WeChat Pay v3)",
        description="Serve the local Alipay / WeChat Pay sandbox, or write its keyset.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8600, help="port (default 8600)")
    parser.add_argument("--dir", default=DEFAULT_DIR,
                        help=f"directory holding sandbox.json (default {DEFAULT_DIR})")
    parser.add_argument("--memory", action="store_true",
                        help="keep state in memory instead of DIR/state.db")
    parser.add_argument("--retry", default=None,
                        help="notification retry gaps in seconds, comma separated "
                             "(default 1,2,5,10,30,60)")
    parser.add_argument("--notify-base", default=None, metavar="URL",
                        help="Gonglun's base URL: orders created through the control API notify "
                             "URL/v1/notify/{alipay,wxpay}, and its host may be notified")
    parser.add_argument("--notify-host", action="append", default=None, metavar="H",
                        help="a host (or host:port) notifications may be sent to; repeatable; "
                             "replaces the default (127.0.0.1, localhost, ::1); the "
                             "--notify-base host is always allowed")
    parser.add_argument("--log-level", default="info",
                        choices=["critical", "error", "warning", "info", "debug"],
                        help="uvicorn log level (default info)")
    actions = parser.add_subparsers(dest="sandbox_command", metavar="{init}")
    init = actions.add_parser("init", help="write DIR/sandbox.json (kept if it exists)")
    # A separate dest: argparse lets a subparser's default clobber the parent's --dir value.
    init.add_argument("--dir", dest="init_dir", default=None, help="target directory")
    init.add_argument("--force", action="store_true", help="replace an existing keyset")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from .keys import KEYSET_FILE, init_keyset, load_keyset
    from .notifier import HostAllowlist

    if getattr(args, "sandbox_command", None) == "init":
        directory = args.init_dir or args.dir
        existed = (Path(directory) / KEYSET_FILE).exists()
        keyset = init_keyset(directory, overwrite=args.force)
        verb = "kept existing" if existed and not args.force else "wrote"
        print(f"{verb} {Path(directory) / KEYSET_FILE}: alipay app_id "
              f"{keyset['alipay']['app_id']}, wxpay mchid {keyset['wxpay']['mchid']}")
        return 0

    try:
        notify_urls = notify_urls_for(args.notify_base)
        if args.notify_host is not None:
            HostAllowlist(args.notify_host)  # refuse a bad entry before serving
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    directory = Path(args.dir)
    if not (directory / KEYSET_FILE).exists():
        print(f"writing a new keyset to {directory / KEYSET_FILE}", file=sys.stderr)
    init_keyset(directory)  # an existing one is kept, and gains the keys of newer vendors
    try:
        keyset = load_keyset(directory)
    except (OSError, ValueError) as exc:
        print(f"cannot read {directory / KEYSET_FILE}: {exc}", file=sys.stderr)
        return 2
    schedule = None
    if args.retry:
        try:
            schedule = tuple(float(s) for s in args.retry.split(",") if s.strip())
        except ValueError:
            print("--retry takes numbers separated by commas", file=sys.stderr)
            return 2
    serve(keyset, host=args.host, port=args.port,
          state_path=None if args.memory else str(directory / "state.db"),
          retry_schedule=schedule, log_level=args.log_level, notify_urls=notify_urls,
          notify_hosts=args.notify_host)
    return 0


def notify_urls_for(base: str | None) -> dict[str, str]:
    """The notify URLs of a Gonglun deployment at ``base`` (none without a base)."""
    from .notifier import url_target
    from .store import CHANNELS

    if not base:
        return {}
    base = base.rstrip("/")
    if url_target(base) is None:
        raise ValueError(f"--notify-base must be an http(s) URL, got {base!r}")
    return {channel: f"{base}/v1/notify/{channel}" for channel in CHANNELS}


def serve(keyset: dict[str, Any], *, host: str, port: int, state_path: str | None,
          retry_schedule: tuple[float, ...] | None = None, log_level: str = "info",
          notify_urls: dict[str, str] | None = None,
          notify_hosts: list[str] | None = None) -> None:
    import uvicorn

    from .app import create_sandbox_app
    from .notifier import DEFAULT_RETRY_SCHEDULE, LOOPBACK_HOSTS

    app = create_sandbox_app(keyset, state_path=state_path,
                             retry_schedule=retry_schedule or DEFAULT_RETRY_SCHEDULE,
                             notify_urls=notify_urls, notify_hosts=notify_hosts)
    print(f"gateway sandbox on http://{host}:{port} (Alipay /gateway.do, WeChat Pay /v3, "
          f"control /sandbox; providers: {', '.join(app.sandbox.vendors) or 'none'})",
          file=sys.stderr)
    print(f"notifications only to: {', '.join(app.sandbox.notifier.allowlist.describe())}; "
          f"control-created orders notify: "
          f"{', '.join(app.sandbox.notify_urls.values()) or 'nobody (no --notify-base)'}",
          file=sys.stderr)
    if host not in LOOPBACK_HOSTS:
        print(f"WARNING: listening on {host}: the control API (/sandbox/...) is unauthenticated "
              "and pays orders; never expose it publicly", file=sys.stderr)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level,
                    access_log=log_level in ("info", "debug"))
    finally:
        app.sandbox.close()


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m gonglun.sandbox.cli``) until the main CLI wires it."""
    parser = argparse.ArgumentParser(prog="gonglun")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
