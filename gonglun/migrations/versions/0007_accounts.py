"""accounts: WeChat bindings per platform, session details on tokens

Revision ID: 0007_accounts
Revises: 0006_admin
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gonglun.db


revision: str = '0007_accounts'
down_revision: str | None = '0006_admin'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('wechat_bindings',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('user_id', ID, nullable=False),
    sa.Column('platform', sa.String(length=8), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('unionid', sa.String(length=64), nullable=True),
    sa.Column('created_at', gonglun.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_wechat_bindings_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wechat_bindings')),
    sa.UniqueConstraint('platform', 'openid', name=op.f('uq_wechat_bindings_platform_openid')),
    sa.UniqueConstraint('user_id', 'platform', name=op.f('uq_wechat_bindings_user_id_platform'))
    )
    with op.batch_alter_table('wechat_bindings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_wechat_bindings_unionid'), ['unionid'], unique=False)
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('platform', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('user_agent', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('ip', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('last_seen_at', gonglun.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('last_seen_at')
        batch_op.drop_column('ip')
        batch_op.drop_column('user_agent')
        batch_op.drop_column('platform')
    op.drop_table('wechat_bindings')
