"""``gonglun notify ...``: the delivery log, scenes and providers, re-arming, a test send."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="notify_command", required=True)
    log = sub.add_parser("deliveries", help="the delivery log, newest first")
    log.add_argument("--scene")
    log.add_argument("--user", type=int)
    log.add_argument("--channel")
    log.add_argument("--status")
    log.add_argument("--limit", type=int, default=50)
    log.add_argument("--json", action="store_true")
    scenes = sub.add_parser("scenes", help="scenes, their channels and caps; providers")
    scenes.add_argument("--json", action="store_true")
    retry = sub.add_parser("retry", help="re-arm failed deliveries")
    retry.add_argument("ids", type=int, nargs="+")
    send = sub.add_parser("send", help="fire a notification through the outbox")
    send.add_argument("scene")
    send.add_argument("--user", type=int, required=True)
    send.add_argument("--data", default="{}", help="the scene's data, as a JSON object")


def run(rt: Any, args: argparse.Namespace) -> int:
    return int(COMMANDS[args.notify_command](rt, args))


def _deliveries(rt: Any, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from gonglun.plugins.notify.models import Delivery
    from gonglun.plugins.notify.resources import delivery_dict

    query = select(Delivery)
    for column, value in (("scene", args.scene), ("user_id", args.user),
                          ("channel", args.channel), ("status", args.status)):
        if value is not None:
            query = query.where(getattr(Delivery, column) == value)
    with rt.db.read() as session:
        rows = [delivery_dict(d) for d in session.scalars(
            query.order_by(Delivery.id.desc()).limit(max(1, min(args.limit, 10_000))))]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for d in rows:
        why = d["reason"] or d["error"] or d["provider_id"] or ""
        print(f"{d['id']:>8} {d['created_at'][:19]} {d['scene']:<22} user {d['user_id']!s:<8}"
              f" {d['channel']:<9} {d['status']:<11} tries {d['attempts']}  {why}")
    return 0


def _scenes(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.plugins.notify.providers import provider_problems
    from gonglun.plugins.notify.scenes import channels_used, scenes_for

    scenes = [s.public() for s in scenes_for(rt).values()]
    problems = provider_problems(rt, channels_used(rt))
    if args.json:
        print(json.dumps({"scenes": scenes, "unavailable": problems}, ensure_ascii=False,
                         indent=2))
        return 0
    for s in scenes:
        channels = ", ".join(c if v["cap"] is None else f"{c} (cap {v['cap']})"
                             for c, v in s["channels"].items())
        print(f"{s['scene']:<24} {s['category']:<10} {'locked ' if s['locked'] else ''}"
              f"{channels}")
    for channel, why in problems.items():
        print(f"unavailable: {channel}: {why}")
    return 0


def _retry(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.plugins.notify.delivery import retry

    print(json.dumps({"rearmed": retry(rt, args.ids)}))
    return 0


def _send(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.errors import GonglunError
    from gonglun.plugins.notify.scenes import get_scene

    try:
        data = json.loads(args.data)
    except ValueError as exc:
        raise GonglunError("notify.invalid_data", f"--data 不是合法的 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise GonglunError("notify.invalid_data", "--data 必须是 JSON 对象")
    get_scene(rt, args.scene)
    with rt.db.write() as session:
        key = rt.hooks.defer(session, "notify", scene=args.scene, user_id=args.user, data=data)
    print(json.dumps({"deferred": key}))
    return 0


COMMANDS = {"deliveries": _deliveries, "scenes": _scenes, "retry": _retry, "send": _send}
