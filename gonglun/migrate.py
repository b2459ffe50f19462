"""Alembic migrations, run programmatically (``gonglun migrate``).

The core's revisions live in ``gonglun/migrations/versions``; a plugin adds its own directory
through the ``register_migrations`` filter (each plugin's first revision carries a branch label
with the plugin's name and ``depends_on`` the core head it needs). ``upgrade`` goes to every
head, so enabling a plugin later just adds its branch.

Every *installed* plugin's revisions stay known, enabled or not: a disabled plugin's folder
(``migrations`` beside its module, found without importing it) is added to the enabled ones'.
A database that ran a plugin's migrations thus still resolves its revisions after the plugin
is switched off, and ``upgrade`` keeps the disabled plugin's branch at its head too: its tables
stay (nothing is dropped) and follow its upgrades, so enabling it again needs no migration and
finds its rows as they were.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig

HERE = Path(__file__).parent / "migrations"


def alembic_config(rt: Any, connection: Any = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(HERE))
    locations = version_locations(rt)
    cfg.set_main_option("version_locations", os.pathsep.join(locations))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = connection
    #: Data migrations that need configuration (payment scenes) read it from here.
    cfg.attributes["rt"] = rt
    return cfg


def version_locations(rt: Any) -> list[str]:
    """The core's folder, the enabled plugins' (``register_migrations``), the disabled ones'."""
    locations = rt.hooks.apply_filters("register_migrations", [str(HERE / "versions")])
    pm = getattr(rt.hooks, "pm", None)
    disabled = pm.migration_dirs(pm.disabled()) if pm is not None else []
    return [*locations, *(d for d in disabled if d not in locations)]


def upgrade(rt: Any, target: str = "heads") -> None:
    with rt.db.engine.begin() as connection:
        command.upgrade(alembic_config(rt, connection), target)


def current(rt: Any) -> list[str]:
    from alembic.runtime.migration import MigrationContext

    with rt.db.engine.connect() as connection:
        return list(MigrationContext.configure(connection).get_current_heads())


def autogenerate(rt: Any, message: str, *, version_path: str | None = None, **kw: Any) -> None:
    """Developer helper: write a new revision from the difference between models and the DB."""
    with rt.db.engine.begin() as connection:
        command.revision(
            alembic_config(rt, connection),
            message=message,
            autogenerate=True,
            version_path=version_path,
            **kw,
        )
