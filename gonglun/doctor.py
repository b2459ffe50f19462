"""``gonglun doctor [--deploy]``: check an installation as Django's ``check --deploy`` does.

Each check is a line: ``ok``, ``warning`` or ``error``, what was found, and a hint saying what
to do. ``--deploy`` adds what a production deployment must have (a real database, Redis and
broker, no sandbox, https, private metrics...); the exit code is 1 when any line is an error.
Plugins add lines through the ``startup_checks`` filter (their configuration problems: a channel
without keys, a provider without a server), shown as warnings, or errors under ``--deploy``.
"""

from __future__ import annotations

import datetime as dt
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Finding:
    level: str  #: ok, warning, error
    check: str
    message: str
    hint: str = ""

    def line(self) -> str:
        mark = {"ok": "ok     ", "warning": "WARNING", "error": "ERROR  "}[self.level]
        tail = f"\n          → {self.hint}" if self.hint and self.level != "ok" else ""
        return f"{mark} {self.check}: {self.message}{tail}"


def _probe(check: str, fn: Any, hint: str) -> Finding:
    try:
        return Finding("ok", check, fn() or "reachable")
    except Exception as exc:
        return Finding("error", check, f"{type(exc).__name__}: {str(exc)[:200]}", hint)


def services(rt: Any) -> list[Finding]:
    from sqlalchemy import text

    def database() -> str:
        with rt.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return f"{rt.db.dialect} reachable"

    def redis() -> str:
        rt.redis.ping()
        return "reachable" if rt.config.redis_url else "embedded (in-process)"

    def broker() -> str:
        from gonglun.health import health_checks

        result = health_checks(rt, {})["broker"]
        if not result.get("ok"):
            raise RuntimeError(result.get("error", "unreachable"))
        return f"{result.get('type')} reachable"

    return [
        _probe("database", database, "check database.url (GONGLUN_DATABASE_URL) and that the "
                                     "server runs"),
        _probe("redis", redis, "check redis.url (GONGLUN_REDIS_URL) and that Redis runs"),
        _probe("broker", broker, "check broker.url (GONGLUN_BROKER_URL) and that the broker runs"),
    ]


def migrations(rt: Any) -> Finding:
    from alembic.script import ScriptDirectory

    from gonglun.migrate import alembic_config, current

    try:
        script = ScriptDirectory.from_config(alembic_config(rt))
        wanted = set(script.get_heads())
        have = set(current(rt))
        applied = {r.revision for r in script.iterate_revisions(list(have), "base")} if have \
            else set()
    except Exception as exc:
        return Finding("error", "migrations", f"cannot read: {type(exc).__name__}: {exc}"[:200],
                       "run `gonglun migrate`")
    missing = sorted(wanted - applied)
    if missing:
        return Finding("error", "migrations", f"not applied: {', '.join(missing)}",
                       "run `gonglun migrate`")
    return Finding("ok", "migrations", "current")


def admins(rt: Any) -> Finding:
    """Someone receives the staff alarms: an active admin (or ``notify.alarm_recipients``)."""
    from sqlalchemy import func, select

    from gonglun.accounts.models import User

    wanted = rt.config.get("notify.alarm_recipients") or []
    where = User.id.in_([int(i) for i in wanted]) if wanted else User.role.in_(
        ("admin", "superadmin"))
    with rt.db.read() as session:
        count = int(session.scalar(select(func.count()).select_from(User).where(
            where, User.status == "active")) or 0)
    if count:
        return Finding("ok", "admins", f"{count} active to receive alarms")
    return Finding("warning", "admins", "no active admin: staff alarms (refunds failing, money "
                   "paid twice, late payments) reach nobody and are recorded as undelivered",
                   "create one: `gonglun users add NAME --role admin --password-stdin`"
                   + (" (notify.alarm_recipients names no active user)" if wanted else ""))


def heartbeats(rt: Any) -> list[Finding]:
    from gonglun.heartbeat import heartbeats as read

    try:
        beats = read(rt)
    except Exception as exc:
        return [Finding("error", "heartbeats", f"unreadable: {type(exc).__name__}",
                        "Redis must be reachable")]
    out = []
    for role, state in beats.items():
        command = "gonglun scheduler" if role == "scheduler" else "gonglun worker"
        if not state["seen"]:
            level = "warning" if not rt.config.embedded else "ok"
            msg = "never seen" if level == "warning" else "runs inside `gonglun serve`"
            out.append(Finding(level, role, msg, f"start `{command}`"))
        elif not state["ok"]:
            out.append(Finding("error", role, f"silent for {state['age_s']} s",
                               f"`{command}` stopped: restart it and read its log"))
        else:
            out.append(Finding("ok", role, f"last seen {state['age_s']} s ago"))
    return out


def clocks(rt: Any) -> Finding:
    """The database's clock against this machine's: order deadlines and tokens need both."""
    from sqlalchemy import text

    queries = {"postgresql": "SELECT now()", "mysql": "SELECT UTC_TIMESTAMP()",
               "sqlite": "SELECT CURRENT_TIMESTAMP"}
    try:
        with rt.db.engine.connect() as conn:
            value = conn.execute(text(queries.get(rt.db.dialect, "SELECT 1"))).scalar()
    except Exception:
        return Finding("warning", "clock", "the database's time could not be read")
    if not isinstance(value, dt.datetime | str):
        return Finding("ok", "clock", "not comparable on this database")
    theirs = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    if theirs.tzinfo is None:
        theirs = theirs.replace(tzinfo=dt.UTC)
    skew = abs((dt.datetime.now(dt.UTC) - theirs).total_seconds())
    if skew > 5:
        return Finding("warning", "clock", f"this machine and the database differ by {skew:.0f} s",
                       "run NTP (chrony, systemd-timesyncd) on every machine")
    return Finding("ok", "clock", f"within {skew:.1f} s of the database")


def permissions(rt: Any) -> list[Finding]:
    out = []
    paths = [rt.config.data_dir]
    db = rt.config.database_url
    if db.startswith("sqlite:///"):
        paths.append(Path(db.removeprefix("sqlite:///")))
    for setting in ("payment.keyset", "sandbox.dir"):
        found = rt.config.path(setting)
        if found is not None:
            paths.append(found if found.suffix else found / "sandbox.json")
    for path in paths:
        if not path.exists():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            out.append(Finding("warning", "permissions", f"{path} is mode {oct(mode)}",
                               f"chmod {'700' if path.is_dir() else '600'} {path}"))
    if not out:
        out.append(Finding("ok", "permissions", "data, database and key files are private"))
    return out


def deploy(rt: Any) -> list[Finding]:
    """What production must have, beyond what runs."""
    c = rt.config
    out = []

    def need(ok: bool, check: str, good: str, bad: str, hint: str, level: str = "error") -> None:
        out.append(Finding("ok", check, good) if ok else Finding(level, check, bad, hint))

    need(rt.db.dialect in ("postgresql", "mysql"), "database", f"{rt.db.dialect}",
         "SQLite: one machine only, no concurrent writers",
         "set database.url to PostgreSQL (or MariaDB)")
    need(bool(c.redis_url), "redis", "a Redis server", "the in-process Redis equivalent",
         "set redis.url: locks, limits and caches must be shared by every process")
    need(bool(c.broker_url), "broker", "a broker", "the in-process worker",
         "set broker.url (Redis or RabbitMQ) and run `gonglun worker`")
    need(not c.simulated_payments, "sandbox", "off: real channels",
         "payments are simulated (the gateway sandbox or a sandbox keyset)",
         "remove sandbox.enabled and payment.keyset; configure the channels' keys")
    public = str(c.get("server.public_url") or "")
    need(public.startswith("https://"), "public_url", public,
         f"server.public_url is {public or 'unset'}",
         "set server.public_url to the https address the channels notify")
    need(bool(c.get("server.metrics_token")), "metrics", "private (metrics_token)",
         "/metrics and health details only for admins", "set server.metrics_token for your "
         "Prometheus scraper", level="warning")
    need(bool(c.get("server.trusted_proxies")), "proxies", "configured",
         "no trusted proxy: rate limits see the proxy's address behind a proxy",
         "set server.trusted_proxies to your proxies' addresses", level="warning")
    ip_db = c.path("accounts.ip_db")
    unreadable = _unreadable(ip_db)
    need(unreadable is None, "accounts.ip_db", str(ip_db),
         f"{unreadable}: no remote-login alert (OPS-09)",
         "set accounts.ip_db to a readable MaxMind-format database with provinces "
         "(docs/accounts.md)", level="warning")
    ticket = str(c.get("accounts.ticket_key") or "")
    need(len(ticket) >= 16, "accounts.ticket_key", "set",
         "shorter than 16 characters: WeChat registration refused" if ticket else
         "from a key file in the data dir: tickets hold on this machine only"
         if c.embedded_default else "unset: WeChat registration refused",
         "set accounts.ticket_key to a long random string, the same on every process",
         level="warning")
    key = str(c.get("refund.key") or "")
    need(len(key) >= 32, "refund.key", "set", "unset or short: system refunds over HTTP refused",
         "set refund.key to 32+ random characters if services refund over HTTP",
         level="warning")
    if rt.hooks.implementations("face_provider"):
        need(bool(c.get("face.keys")) and bool(c.get("face.index_key")), "face keys",
             "configured", "identity keys come from a file under server.data_dir",
             "set face.keys, face.key_id and face.index_key (docs/face.md)", level="warning")
    return out


def _unreadable(path: Path | None) -> str | None:
    """Why the address database cannot serve the remote-login alert, or None when it can."""
    if path is None:
        return "unset"
    try:
        import maxminddb

        maxminddb.open_database(str(path)).close()
    except (OSError, ValueError, RuntimeError) as exc:  # missing, unreadable, not MaxMind
        return f"{path} cannot be read ({type(exc).__name__})"
    return None


def run(rt: Any, *, deploy_checks: bool = False) -> list[Finding]:
    findings = [*services(rt)]
    if findings[0].level == "ok":
        findings.append(migrations(rt))
        findings.append(clocks(rt))
        if findings[-2].level == "ok":
            findings.append(admins(rt))
    if findings[1].level == "ok":
        findings.extend(heartbeats(rt))
    findings.extend(permissions(rt))
    level = "error" if deploy_checks else "warning"
    for problem in rt.startup_problems():
        findings.append(Finding(level, "configuration", problem, "see docs/security.md and the "
                                "plugin's page in docs/"))
    if deploy_checks:
        findings.extend(deploy(rt))
    return findings


def report(findings: list[Finding]) -> tuple[str, int]:
    errors = sum(1 for f in findings if f.level == "error")
    warnings = sum(1 for f in findings if f.level == "warning")
    lines = [f.line() for f in findings]
    lines.append(f"{errors} error(s), {warnings} warning(s)")
    return "\n".join(lines), 1 if errors else 0


__all__ = ["Finding", "report", "run"]
