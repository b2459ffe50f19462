"""What an installation is made of: ``plugins list``, ``hooks list``, ``jobs list`` and
``config show``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gonglun.hooks import SPECS


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

