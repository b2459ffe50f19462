"""Reconciliation's hook implementations: admin routes, CLI commands, the actor and its timer.

Kept apart from ``plugin.py`` so reconciliation can be read (and removed) as one piece; the
functions carry distinct names and name their hook with ``specname`` because the plugin module
already implements these hooks.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from gonglun.api.util import json_body, ok, query_int, run_sync
from gonglun.errors import GonglunError
from gonglun.hooks import hookimpl

if TYPE_CHECKING:
    from types import ModuleType

ACTOR = "payment.reconcile"


def _recon() -> ModuleType:
    """The service module, imported on first use like the rest of the plugin's hooks do, so
    loading the plugin does not import its models."""
    from gonglun.plugins.payment import reconcile

    return reconcile


# -- REST ----------------------------------------------------------------------------------


class ReconItems:
    """``GET /v1/admin/reconciliation``: differences, newest first."""

    auth = "admin"

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_get(self, req: Any, resp: Any) -> None:
        """Filter by ``status`` (open/resolved), ``date`` (YYYY-MM-DD), ``channel``;
        page with ``limit`` and ``before``."""
        recon = _recon()
        ok(resp, await run_sync(
            recon.list_items, self.rt,
            status=req.get_param("status") or None,
            bill_date=req.get_param("date") or None,
            channel=req.get_param("channel") or None,
            limit=query_int(req, "limit", 50, minimum=1, maximum=500),
            before=query_int(req, "before", 0) or None,
        ))


class ReconResolve:
    """``POST /v1/admin/reconciliation/{item_id}/resolve``: an admin settles a difference."""

    auth = "admin"

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_post(self, req: Any, resp: Any, item_id: str) -> None:
        """Body ``{"resolution": "..."}``; 409 ``recon.already_resolved`` when already done."""
        recon = _recon()
        item = recon.parse_item_id(item_id)
        body = await json_body(req)
        ok(resp, await run_sync(recon.resolve_item, self.rt, item, body.get("resolution"),
                                by=req.context.user.id))


class ReconRunNow:
    """``POST /v1/admin/reconciliation/run``: reconcile a day now."""

    auth = "admin"

    def __init__(self, rt: Any):
        self.rt = rt

    async def on_post(self, req: Any, resp: Any) -> None:
        """Body ``{"date": "YYYY-MM-DD", "channel": "alipay"|"wxpay"}``: a day that is over
        (Beijing). With a channel, its report (or its error); without, both reports, a
        channel that failed answering its ``error`` and ``msg`` in its place."""
        recon = _recon()
        body = await json_body(req)
        day = recon.parse_bill_date(body.get("date"))
        if body.get("channel"):
            report = await run_sync(recon.reconcile, self.rt, day,
                                    recon.check_channel(body["channel"]))
            ok(resp, {"reports": [report.to_dict()]})
            return
        ok(resp, {"reports": await run_sync(recon.reconcile_each, self.rt, day,
                                            list(recon.CHANNELS))})


@hookimpl(specname="register_routes")
def register_recon_routes(rt: Any, routes: list[Any]) -> list[Any]:
    from gonglun.api.routes import Route

    tags = ("payment", "admin")
    return [
        *routes,
        Route("/v1/admin/reconciliation", ReconItems(rt), tags=tags),
        Route("/v1/admin/reconciliation/run", ReconRunNow(rt), tags=tags),
        Route("/v1/admin/reconciliation/{item_id}/resolve", ReconResolve(rt), tags=tags,
              params={"item_id": {"type": "string", "pattern": "^[0-9]{1,18}$"}}),
    ]


# -- CLI -----------------------------------------------------------------------------------


def _print(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def cmd_reconcile(rt: Any, args: argparse.Namespace) -> int:
    """Exit 0 when no difference is open, 3 when some are (scripts can alert on it), 1 when a
    channel failed (its error is printed in its report's place, beside the others)."""
    recon = _recon()
    _ensure_schema(rt)
    day = recon.parse_bill_date(args.date)
    if args.channel:
        reports = [recon.reconcile(rt, day, recon.check_channel(args.channel)).to_dict()]
    else:
        reports = recon.reconcile_each(rt, day, list(recon.CHANNELS))
    _print({"reports": reports})
    if any("error" in r for r in reports):
        return 1
    return 3 if any(r["open"] for r in reports) else 0


def cmd_recon_list(rt: Any, args: argparse.Namespace) -> int:
    recon = _recon()
    _ensure_schema(rt)
    _print(recon.list_items(rt, status=args.status, bill_date=args.date, channel=args.channel,
                            limit=args.limit))
    return 0


def cmd_recon_resolve(rt: Any, args: argparse.Namespace) -> int:
    recon = _recon()
    _ensure_schema(rt)
    _print(recon.resolve_item(rt, recon.parse_item_id(args.id), args.note, by=args.by))
    return 0


def _ensure_schema(rt: Any) -> None:
    from gonglun.commands.base import ensure_schema as ensure

    ensure(rt)


def _payments_args(parser: argparse.ArgumentParser) -> None:
    recon = _recon()
    sub = parser.add_subparsers(dest="payments_command", required=True)
    run = sub.add_parser("reconcile", help="reconcile a Beijing day's statements; prints JSON")
    run.add_argument("--date", required=True, help="YYYY-MM-DD (Beijing day)")
    run.add_argument("--channel", choices=recon.CHANNELS, help="default: both")
    run.set_defaults(run=cmd_reconcile)

    lst = sub.add_parser("recon-list", help="reconciliation differences as JSON")
    lst.add_argument("--status", choices=recon.STATUSES)
    lst.add_argument("--date", help="YYYY-MM-DD")
    lst.add_argument("--channel", choices=recon.CHANNELS)
    lst.add_argument("--limit", type=int, default=100)
    lst.set_defaults(run=cmd_recon_list)

    res = sub.add_parser("recon-resolve", help="mark a difference resolved")
    res.add_argument("id")
    res.add_argument("--note", required=True, help="how it was settled")
    res.add_argument("--by", type=int, help="the operator's user id")
    res.set_defaults(run=cmd_recon_resolve)


def _no_subcommand(rt: Any, args: argparse.Namespace) -> int:
    raise GonglunError("cli.usage", "usage: gonglun payments {reconcile,recon-list,recon-resolve}")


@hookimpl(specname="register_commands")
def register_recon_commands(rt: Any, commands: list[Any]) -> list[Any]:
    from gonglun.commands.base import Command

    return [*commands, Command("payments", "payment operations: reconciliation",
                               _payments_args, _no_subcommand)]


# -- jobs ----------------------------------------------------------------------------------


def run_daily(rt: Any, bill_date: str | None = None) -> list[dict[str, Any]]:
    """The actor: yesterday's reconciliation (or ``bill_date``'s) for both channels."""
    recon = _recon()
    return recon.reconcile_days(rt, bill_date)


@hookimpl(specname="register_actors")
def register_recon_actors(rt: Any, actors: list[Any]) -> list[Any]:
    from gonglun.tasks import ActorSpec

    # No retries: the job is hourly and idempotent, so the next period is the retry.
    return [*actors, ActorSpec(ACTOR, run_daily, max_retries=0, time_limit_ms=1_800_000)]


@hookimpl(specname="register_periodic_jobs")
def register_recon_jobs(rt: Any, jobs: list[Any]) -> list[Any]:
    """Hourly by default: idempotent, so re-running yesterday only picks up what changed."""
    from gonglun.tasks import PeriodicJob

    every = float(rt.config.get("payment.reconcile_every_s", 3600))
    return [*jobs, PeriodicJob(ACTOR, every, ACTOR)]
