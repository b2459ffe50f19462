"""accounts: WeChat bindings per platform, session details on tokens, unique nicknames

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
    op.create_table('wechat_unions',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('unionid', sa.String(length=64), nullable=False),
    sa.Column('user_id', ID, nullable=False),
    sa.Column('created_at', gonglun.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_wechat_unions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wechat_unions')),
    sa.UniqueConstraint('unionid', name=op.f('uq_wechat_unions_unionid'))
    )
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('platform', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('user_agent', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('ip', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('last_seen_at', gonglun.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('nickname_key', sa.String(length=191), nullable=True))
    _fill_nickname_keys()
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_users_nickname_key'), ['nickname_key'], unique=True)


def _fill_nickname_keys() -> None:
    """Existing nicknames get their key, oldest account first. A later account whose nickname
    collides (by the database's own comparison) keeps it for display without holding it."""
    users = sa.table('users', sa.column('id', ID), sa.column('nickname', sa.String),
                     sa.column('nickname_key', sa.String))
    conn = op.get_bind()
    rows = conn.execute(sa.select(users.c.id, users.c.nickname)
                        .where(users.c.nickname.is_not(None)).order_by(users.c.id)).all()
    for user_id, nickname in rows:
        key = nickname.strip().lower()  # gonglun.accounts.models.nickname_key, frozen here
        held = conn.execute(sa.select(users.c.id).where(users.c.nickname_key == key)).first()
        if key and held is None:
            conn.execute(sa.update(users).where(users.c.id == user_id)
                         .values(nickname_key=key))


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_nickname_key'))
    if op.get_bind().dialect.name == 'sqlite':
        # NOTE: not batch mode: re-creating users would cascade-delete every row that refers
        # to it (foreign keys are on); SQLite 3.35+ drops an unindexed column in place.
        op.execute('ALTER TABLE users DROP COLUMN nickname_key')
    else:
        op.drop_column('users', 'nickname_key')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('last_seen_at')
        batch_op.drop_column('ip')
        batch_op.drop_column('user_agent')
        batch_op.drop_column('platform')
    op.drop_table('wechat_unions')
    op.drop_table('wechat_bindings')
