"""Keeping an installation right: ``migrate``, ``users add``, ``audit``, ``doctor`` and
``outbox``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gonglun.commands.base import ensure_schema, read_password


def cmd_migrate(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.migrate import current, upgrade

    upgrade(rt, args.target)
    print(json.dumps({"database": rt.db.dialect, "heads": current(rt)}))
    return 0


def cmd_users_add(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.accounts import create_user, issue_token

    password = read_password(args)
    ensure_schema(rt)
    with rt.db.write() as session:
        user = create_user(session, args.login, password, role=args.role,
                           nickname=args.nickname)
        token = issue_token(session, user.id, label="cli")
        out = {"id": user.id, "login": user.login, "role": user.role, "token": token}
    print(json.dumps(out, ensure_ascii=False))
    return 0


def cmd_audit(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.ledger import run_audit

    ensure_schema(rt)
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


def cmd_doctor(rt: Any, args: argparse.Namespace) -> int:
    from gonglun.doctor import report, run

    findings = run(rt, deploy_checks=args.deploy)
    if args.json:
        print(json.dumps([f.__dict__ for f in findings], ensure_ascii=False, indent=2))
        return 1 if any(f.level == "error" for f in findings) else 0
    text, code = report(findings)
    print(text)
    return code


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

