"""scheduler: periods already run, recorded in the database

Revision ID: 0008_scheduler
Revises: 0007_accounts
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0008_scheduler'
down_revision: str | None = '0007_accounts'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('scheduler_runs',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('job', sa.String(length=128), nullable=False),
    sa.Column('slot', sa.BigInteger(), nullable=False),
    sa.Column('ran_ms', sa.BigInteger(), nullable=False),
    sa.Column('owner', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduler_runs')),
    sa.UniqueConstraint('job', 'slot', name=op.f('uq_scheduler_runs_job_slot'))
    )


def downgrade() -> None:
    op.drop_table('scheduler_runs')
