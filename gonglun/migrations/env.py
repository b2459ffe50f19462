"""Alembic environment: the connection and metadata come from ``gonglun.migrate``."""

from __future__ import annotations

from alembic import context

from gonglun.db import Base

config = context.config
target_metadata = Base.metadata
connection = config.attributes["connection"]

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
