"""face verifications, identities and their slots, quota events, reset tokens, audit

Revision ID: 0001_face
Revises:
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gonglun.db


revision: str = '0001_face'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ('face',)
depends_on: str | Sequence[str] | None = '0006_admin'

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _dt(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, gonglun.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table('face_verifications',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('ref', sa.String(length=32), nullable=False),
    sa.Column('scene', sa.String(length=32), nullable=False),
    sa.Column('user_id', ID, nullable=False),
    sa.Column('requester_id', ID, nullable=True),
    sa.Column('identity_id', ID, nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('biz_token', sa.String(length=128), nullable=True),
    sa.Column('url', sa.Text(), nullable=True),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('sealed', sa.Text(), nullable=False),
    sa.Column('code_index', sa.String(length=64), nullable=False),
    sa.Column('err_code', sa.Integer(), nullable=True),
    sa.Column('err_msg', sa.String(length=255), nullable=True),
    sa.Column('sim', sa.Float(), nullable=True),
    sa.Column('charged', sa.Boolean(), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=False),
    sa.Column('ua_hash', sa.String(length=64), nullable=False),
    sa.Column('fingerprint', sa.String(length=128), nullable=True),
    _dt('created_at'),
    _dt('finished_at', True),
    sa.CheckConstraint("status IN ('starting', 'started', 'ok', 'fail', 'abandoned', 'error')",
                       name=op.f('ck_face_verifications_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_face_verifications')),
    sa.UniqueConstraint('biz_token', name=op.f('uq_face_verifications_biz_token')),
    sa.UniqueConstraint('ref', name=op.f('uq_face_verifications_ref')),
    )
    op.create_index('ix_face_verifications_user_status', 'face_verifications',
                    ['user_id', 'status'], unique=False)
    op.create_index(op.f('ix_face_verifications_code_index'), 'face_verifications',
                    ['code_index'], unique=False)
    op.create_table('face_identities',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('ref', sa.String(length=32), nullable=False),
    sa.Column('user_id', ID, nullable=False),
    sa.Column('verification_id', ID, nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('name_sealed', sa.Text(), nullable=False),
    sa.Column('code_sealed', sa.Text(), nullable=False),
    sa.Column('code_index', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    _dt('created_at'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_face_identities')),
    sa.UniqueConstraint('ref', name=op.f('uq_face_identities_ref')),
    sa.UniqueConstraint('user_id', name=op.f('uq_face_identities_user_id')),
    sa.UniqueConstraint('verification_id', name=op.f('uq_face_identities_verification_id')),
    )
    op.create_index(op.f('ix_face_identities_code_index'), 'face_identities', ['code_index'],
                    unique=False)
    op.create_table('face_identity_slots',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('code_index', sa.String(length=64), nullable=False),
    sa.Column('slot', sa.Integer(), nullable=False),
    sa.Column('identity_id', ID, nullable=False),
    _dt('created_at'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_face_identity_slots')),
    sa.UniqueConstraint('code_index', 'slot',
                        name=op.f('uq_face_identity_slots_code_index_slot')),
    sa.UniqueConstraint('identity_id', name=op.f('uq_face_identity_slots_identity_id')),
    )
    op.create_table('face_quota_events',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('user_id', ID, nullable=False),
    sa.Column('delta', sa.Integer(), nullable=False),
    _dt('created_at'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_face_quota_events')),
    sa.UniqueConstraint('key', name=op.f('uq_face_quota_events_key')),
    )
    op.create_index(op.f('ix_face_quota_events_user_id'), 'face_quota_events', ['user_id'],
                    unique=False)
    op.create_table('face_reset_tokens',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', ID, nullable=False),
    sa.Column('verification_id', ID, nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=False),
    sa.Column('ua_hash', sa.String(length=64), nullable=False),
    sa.Column('fingerprint', sa.String(length=128), nullable=True),
    _dt('created_at'),
    _dt('expires_at'),
    _dt('used_at', True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_face_reset_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_face_reset_tokens_token_hash')),
    sa.UniqueConstraint('verification_id', name=op.f('uq_face_reset_tokens_verification_id')),
    )
    op.create_index(op.f('ix_face_reset_tokens_user_id'), 'face_reset_tokens', ['user_id'],
                    unique=False)
    op.create_table('face_audit',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('scene', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=64), nullable=False),
    sa.Column('user_id', ID, nullable=True),
    sa.Column('requester_id', ID, nullable=True),
    sa.Column('identity_id', ID, nullable=True),
    sa.Column('verification_id', ID, nullable=True),
    sa.Column('ip', sa.String(length=64), nullable=False),
    sa.Column('user_agent', sa.String(length=255), nullable=True),
    sa.Column('fingerprint', sa.String(length=128), nullable=True),
    _dt('created_at'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_face_audit')),
    )
    op.create_index('ix_face_audit_user', 'face_audit', ['user_id', 'id'], unique=False)


def downgrade() -> None:
    for table in ('face_audit', 'face_reset_tokens', 'face_quota_events',
                  'face_identity_slots', 'face_identities', 'face_verifications'):
        op.drop_table(table)
