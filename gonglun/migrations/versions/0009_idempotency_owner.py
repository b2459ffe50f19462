"""idempotency keys name the process holding them (released as soon as it is known dead)

Revision ID: 0009_idempotency_owner
Revises: 0008_scheduler
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009_idempotency_owner'
down_revision: str | None = '0008_scheduler'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=96), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.drop_column('owner')
