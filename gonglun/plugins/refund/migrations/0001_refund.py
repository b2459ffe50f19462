"""refund records

Revision ID: 0001_refund
Revises:
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gonglun.db


revision: str = '0001_refund'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ('refund',)
depends_on: str | Sequence[str] | None = '0002_payment_ledger'

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('refunds',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('payment_id', ID, nullable=False),
    sa.Column('payment_order', sa.String(length=32), nullable=False),
    sa.Column('refund_order', sa.String(length=32), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('scene', sa.String(length=32), nullable=False),
    sa.Column('way', sa.String(length=16), nullable=False),
    sa.Column('user_id', ID, nullable=True),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('channel_status', sa.String(length=16), nullable=True),
    sa.Column('channel_refund_id', sa.String(length=64), nullable=True),
    sa.Column('booked', sa.Boolean(), nullable=False),
    sa.Column('request', sa.Text(), nullable=False),
    sa.Column('success', sa.Text(), nullable=True),
    sa.Column('fail', sa.Text(), nullable=True),
    sa.Column('checks', sa.Integer(), nullable=False),
    sa.Column('holds', sa.Integer(), nullable=False),
    sa.Column('created_at', gonglun.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', gonglun.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('success_time', gonglun.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', gonglun.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', ID, nullable=True),
    sa.Column('resolution', sa.String(length=255), nullable=True),
    sa.CheckConstraint('amount > 0', name=op.f('ck_refunds_amount_positive')),
    sa.CheckConstraint('status IN (1, 2, 3, 4)', name=op.f('ck_refunds_status')),
    sa.CheckConstraint("way IN ('seller', 'admin', 'system')", name=op.f('ck_refunds_way')),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_refunds_payment_id_payments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refunds')),
    sa.UniqueConstraint('refund_order', name=op.f('uq_refunds_refund_order'))
    )
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refunds_payment_id'), ['payment_id'], unique=False)
        batch_op.create_index('ix_refunds_status_method', ['status', 'method'], unique=False)


def downgrade() -> None:
    op.drop_table('refunds')
