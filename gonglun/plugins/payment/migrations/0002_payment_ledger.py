"""payments on the double-entry ledger: settled_at, statement totals, payment postings re-pointed

``0002_ledger`` carried every posting over against ``manual``. Here the postings of payments get
their real counter-accounts: a balance payment (key ``pay:<order>``) now credits ``escrow`` when
its scene settles to a seller and ``income`` otherwise; a recharge credit (key
``payment:<id>``) now debits the clearing account of its channel. The system accounts' balances
are then recomputed from their transfers.

Revision ID: 0002_payment_ledger
Revises: 0001_payment
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gonglun.db

revision: str = '0002_payment_ledger'
down_revision: str | None = '0001_payment'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = '0002_ledger'

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
META = sa.MetaData()
ACCOUNTS = sa.Table("ledger_accounts", META, sa.Column("id", ID), sa.Column("code", sa.String),
                    sa.Column("kind", sa.String))
BALANCES = sa.Table("ledger_balances", META, sa.Column("account_id", ID),
                    sa.Column("shard", sa.Integer), sa.Column("balance", sa.BigInteger),
                    sa.Column("updated_at", gonglun.db.UTCDateTime()))
TRANSFERS = sa.Table("ledger_transfers", META, sa.Column("id", ID), sa.Column("debit_id", ID),
                     sa.Column("credit_id", ID), sa.Column("amount", sa.BigInteger),
                     sa.Column("idempotency_key", sa.String))
PAYMENTS = sa.Table("payments", META, sa.Column("id", ID), sa.Column("payment_order", sa.String),
                    sa.Column("method", sa.String), sa.Column("scene", sa.String))


def upgrade() -> None:
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('settled_at', gonglun.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('recon_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channel_paid', sa.BigInteger(), nullable=True))
    _repoint(to_real=True)


def downgrade() -> None:
    _repoint(to_real=False)
    with op.batch_alter_table('recon_runs', schema=None) as batch_op:
        batch_op.drop_column('channel_paid')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_column('settled_at')


def _escrow_scenes() -> list[str]:
    from gonglun.plugins.payment.scenes import DEFAULT_SCENES, load_scenes

    rt = op.get_context().config.attributes.get("rt")
    scenes = load_scenes(rt) if rt is not None else DEFAULT_SCENES
    return sorted(key for key, scene in scenes.items() if scene.settle)


def _repoint(*, to_real: bool) -> None:
    conn = op.get_bind()
    ids = dict(conn.execute(sa.select(ACCOUNTS.c.code, ACCOUNTS.c.id)
                            .where(ACCOUNTS.c.kind == "system")).all())
    manual = ids["manual"]
    escrow_scenes = _escrow_scenes()
    money = PAYMENTS.c.method == "money"
    pay_keys = sa.literal("pay:") + PAYMENTS.c.payment_order
    moves = [
        ("credit_id", ids["escrow"], sa.select(pay_keys).where(
            money, PAYMENTS.c.scene.in_(escrow_scenes))),
        ("credit_id", ids["income"], sa.select(pay_keys).where(
            money, PAYMENTS.c.scene.not_in(escrow_scenes))),
    ]
    for channel in ("alipay", "wxpay"):
        moves.append(("debit_id", ids[f"channel:{channel}"], sa.select(
            sa.literal("payment:") + sa.cast(PAYMENTS.c.id, sa.String)
        ).where(PAYMENTS.c.method == channel)))
    for column, real, keys in moves:
        old, new = (manual, real) if to_real else (real, manual)
        conn.execute(TRANSFERS.update()
                     .where(TRANSFERS.c[column] == old, TRANSFERS.c.idempotency_key.in_(keys))
                     .values({column: new}))
    _recompute_system_balances(conn)


def _recompute_system_balances(conn: sa.engine.Connection) -> None:
    legs = sa.union_all(
        sa.select(TRANSFERS.c.credit_id.label("account_id"), TRANSFERS.c.amount.label("delta")),
        sa.select(TRANSFERS.c.debit_id, -TRANSFERS.c.amount),
    ).subquery()
    system = sa.select(ACCOUNTS.c.id).where(ACCOUNTS.c.kind == "system")
    conn.execute(BALANCES.delete().where(BALANCES.c.account_id.in_(system)))
    total = (sa.select(sa.func.coalesce(sa.func.sum(legs.c.delta), 0))
             .where(legs.c.account_id == ACCOUNTS.c.id).scalar_subquery())
    conn.execute(BALANCES.insert().from_select(
        ["account_id", "shard", "balance", "updated_at"],
        sa.select(ACCOUNTS.c.id, sa.literal(0), total, sa.literal(gonglun.db.utcnow(), gonglun.db.UTCDateTime()))
        .where(ACCOUNTS.c.kind == "system"),
    ))
