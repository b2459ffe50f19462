"""Migrations and models agree: an upgraded database has exactly the models' schema."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gonglun.db import Base


def test_models_match_migrations(rt: Any) -> None:
    with rt.db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models changed without a migration: {diff}"


def test_upgrade_is_idempotent(rt: Any) -> None:
    from gonglun.migrate import current, upgrade

    before = current(rt)
    upgrade(rt)
    assert current(rt) == before


def test_0007_keeps_accounts_and_gives_existing_nicknames_to_the_oldest(make_rt: Any) -> None:
    """Down to 0006 and up again: no row lost (SQLite must not re-create ``users``), and of two
    accounts that already shared a nickname the older one holds it."""
    from alembic import command
    from sqlalchemy import func, select, text

    from gonglun.accounts.models import User, UserMeta
    from gonglun.accounts.service import create_user, set_meta
    from gonglun.hooks import PluginManager
    from gonglun.migrate import alembic_config, upgrade

    rt = make_rt(pm=PluginManager())
    with rt.db.write() as session:
        older = create_user(session, "older", "long enough password", nickname="Twin").id
        set_meta(session, older, "kept", "yes")
    with rt.db.engine.begin() as conn:
        command.downgrade(alembic_config(rt, conn), "0006_admin")
        conn.execute(text(
            "INSERT INTO users (login, password_hash, nickname, role, status, created_at,"
            " updated_at) SELECT 'newer', password_hash, ' twin', role, status, created_at,"
            " updated_at FROM users WHERE id = :id"), {"id": older})
    upgrade(rt)
    with rt.db.read() as session:
        assert session.scalar(select(func.count()).select_from(UserMeta)) == 1
        keys = {login: key for login, key in session.execute(
            select(User.login, User.nickname_key))}
    assert keys == {"older": "twin", "newer": None}
