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
