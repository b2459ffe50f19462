"""refund exits: the claim of a fail_refund's exit, how the money left, counted checks

Revision ID: 0002_refund_exits
Revises: 0001_refund
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gonglun.db

revision: str = '0002_refund_exits'
down_revision: str | None = '0001_refund'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ('claim', 'claimed_at', 'paid_by', 'checked_at', 'waits', 'stuck_at')


def upgrade() -> None:
    with op.batch_alter_table('refunds') as batch:
        batch.add_column(sa.Column('claim', sa.String(length=48), nullable=True))
        batch.add_column(sa.Column('claimed_at', gonglun.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('paid_by', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('checked_at', gonglun.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('waits', sa.Integer(), server_default='0', nullable=False))
        batch.add_column(sa.Column('stuck_at', gonglun.db.UTCDateTime(timezone=True), nullable=True))
    # Refunds already paid by hand (meta.refund.manual) keep saying so.
    op.execute("UPDATE refunds SET paid_by = 'manual' WHERE status = 1 AND resolution LIKE "
               "'manual:%'")


def downgrade() -> None:
    with op.batch_alter_table('refunds') as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
