"""verification codes go to a destination: a phone or an email address

Revision ID: 0002_notify_code_destination
Revises: 0001_notify
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002_notify_code_destination'
down_revision: str | None = '0001_notify'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index('ix_notify_sms_codes_phone', table_name='notify_sms_codes')
    with op.batch_alter_table('notify_sms_codes') as batch:
        batch.alter_column('phone', new_column_name='destination',
                           existing_type=sa.String(length=32), type_=sa.String(length=191),
                           existing_nullable=False)
    op.create_index('ix_notify_sms_codes_destination', 'notify_sms_codes',
                    ['destination', 'scene', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_notify_sms_codes_destination', table_name='notify_sms_codes')
    op.execute("DELETE FROM notify_sms_codes WHERE destination LIKE '%@%'")
    with op.batch_alter_table('notify_sms_codes') as batch:
        batch.alter_column('destination', new_column_name='phone',
                           existing_type=sa.String(length=191), type_=sa.String(length=32),
                           existing_nullable=False)
    op.create_index('ix_notify_sms_codes_phone', 'notify_sms_codes', ['phone', 'scene', 'id'],
                    unique=False)
