"""double-entry ledger: accounts, balance rows, transfers; postings carried over

Every posting becomes a transfer between its user's wallet and the ``manual`` account (the only
counter-account the core knows); the payment plugin's ``0002_payment_ledger`` then moves the
postings of payments to the accounts their scene implies (a channel, escrow, income). Wallet
balances and ``balance_after`` chains are kept as they were; transfer ids are the posting ids,
so each chain keeps its order.

Revision ID: 0002_ledger
Revises: 0001_core
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import gonglun.db

revision: str = '0002_ledger'
down_revision: str | None = '0001_core'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
SYSTEM = (
    ("channel:alipay", "支付宝清算"),
    ("channel:wxpay", "微信支付清算"),
    ("escrow", "担保托管"),
    ("income", "平台收入"),
    ("manual", "人工处理"),
)
LEGACY_NOTE = "迁移: 原余额记录"


def upgrade() -> None:
    op.create_table('ledger_accounts',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('user_id', ID, nullable=True),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('created_at', gonglun.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(kind = 'wallet' AND user_id IS NOT NULL) OR (kind = 'system' AND user_id IS NULL)", name=op.f('ck_ledger_accounts_wallet_user')),
    sa.CheckConstraint("kind IN ('wallet', 'system')", name=op.f('ck_ledger_accounts_kind')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_ledger_accounts_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_accounts')),
    sa.UniqueConstraint('code', name=op.f('uq_ledger_accounts_code')),
    sa.UniqueConstraint('user_id', name=op.f('uq_ledger_accounts_user_id'))
    )
    op.create_table('ledger_balances',
    sa.Column('account_id', ID, nullable=False),
    sa.Column('shard', sa.Integer(), nullable=False),
    sa.Column('balance', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', gonglun.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_accounts.id'], name=op.f('fk_ledger_balances_account_id_ledger_accounts')),
    sa.PrimaryKeyConstraint('account_id', 'shard', name=op.f('pk_ledger_balances'))
    )
    op.create_table('ledger_transfers',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('debit_id', ID, nullable=False),
    sa.Column('credit_id', ID, nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('ref', sa.String(length=64), nullable=False),
    sa.Column('remark', sa.String(length=255), nullable=False),
    sa.Column('idempotency_key', sa.String(length=191), nullable=False),
    sa.Column('debit_after', sa.BigInteger(), nullable=True),
    sa.Column('credit_after', sa.BigInteger(), nullable=True),
    sa.Column('operator_id', ID, nullable=True),
    sa.Column('created_at', gonglun.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_ledger_transfers_amount_positive')),
    sa.CheckConstraint('debit_id <> credit_id', name=op.f('ck_ledger_transfers_two_accounts')),
    sa.ForeignKeyConstraint(['credit_id'], ['ledger_accounts.id'], name=op.f('fk_ledger_transfers_credit_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['debit_id'], ['ledger_accounts.id'], name=op.f('fk_ledger_transfers_debit_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['operator_id'], ['users.id'], name=op.f('fk_ledger_transfers_operator_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_transfers')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_ledger_transfers_idempotency_key'))
    )
    with op.batch_alter_table('ledger_transfers', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_transfers_credit_id_id', ['credit_id', 'id'], unique=False)
        batch_op.create_index('ix_ledger_transfers_debit_id_id', ['debit_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_transfers_ref'), ['ref'], unique=False)

    _carry_postings_over()

    # NOTE: indexes go with their tables (MariaDB refuses to drop one a foreign key uses).
    op.drop_table('postings')
    op.drop_table('balances')


def _tables() -> dict[str, sa.Table]:
    meta = sa.MetaData()
    out = {
        "accounts": sa.Table("ledger_accounts", meta, sa.Column("id", ID), sa.Column("code", sa.String),
                             sa.Column("kind", sa.String), sa.Column("user_id", ID),
                             sa.Column("name", sa.String),
                             sa.Column("created_at", gonglun.db.UTCDateTime())),
        "balances_new": sa.Table("ledger_balances", meta, sa.Column("account_id", ID),
                                 sa.Column("shard", sa.Integer), sa.Column("balance", sa.BigInteger),
                                 sa.Column("updated_at", gonglun.db.UTCDateTime())),
        "transfers": sa.Table("ledger_transfers", meta, *(
            sa.Column(n, t) for n, t in (
                ("id", ID), ("debit_id", ID), ("credit_id", ID), ("amount", sa.BigInteger),
                ("code", sa.String), ("ref", sa.String), ("remark", sa.String),
                ("idempotency_key", sa.String), ("debit_after", sa.BigInteger),
                ("credit_after", sa.BigInteger), ("operator_id", ID),
                ("created_at", gonglun.db.UTCDateTime())))),
        "balances": sa.Table("balances", meta, sa.Column("user_id", ID),
                             sa.Column("balance", sa.BigInteger), sa.Column("version", sa.Integer),
                             sa.Column("updated_at", gonglun.db.UTCDateTime())),
        "postings": sa.Table("postings", meta, *(
            sa.Column(n, t) for n, t in (
                ("id", ID), ("user_id", ID), ("delta", sa.BigInteger),
                ("balance_after", sa.BigInteger), ("scene", sa.String), ("ref", sa.String),
                ("remark", sa.String), ("idempotency_key", sa.String),
                ("created_at", gonglun.db.UTCDateTime())))),
    }
    return out


def _carry_postings_over() -> None:
    t = _tables()
    acc, bal, new_bal, tr, post = (t["accounts"], t["balances"], t["balances_new"],
                                   t["transfers"], t["postings"])
    now = gonglun.db.utcnow()
    conn = op.get_bind()
    conn.execute(acc.insert(), [{"code": c, "kind": "system", "user_id": None, "name": n,
                                 "created_at": now} for c, n in SYSTEM])
    conn.execute(acc.insert().from_select(
        ["code", "kind", "user_id", "name", "created_at"],
        sa.select(sa.literal("user:") + sa.cast(bal.c.user_id, sa.String), sa.literal("wallet"),
                  bal.c.user_id, sa.literal(""), bal.c.updated_at),
    ))
    conn.execute(new_bal.insert().from_select(
        ["account_id", "shard", "balance", "updated_at"],
        sa.select(acc.c.id, sa.literal(0), bal.c.balance, bal.c.updated_at)
        .join(acc, acc.c.user_id == bal.c.user_id),
    ))
    manual = conn.execute(sa.select(acc.c.id).where(acc.c.code == "manual")).scalar_one()
    credit = post.c.delta > 0
    conn.execute(tr.insert().from_select(
        ["id", "debit_id", "credit_id", "amount", "code", "ref", "remark", "idempotency_key",
         "debit_after", "credit_after", "operator_id", "created_at"],
        sa.select(
            post.c.id,
            sa.case((credit, sa.literal(manual)), else_=acc.c.id),
            sa.case((credit, acc.c.id), else_=sa.literal(manual)),
            sa.func.abs(post.c.delta), post.c.scene, post.c.ref,
            sa.case((post.c.remark == "", sa.literal(LEGACY_NOTE)), else_=post.c.remark),
            post.c.idempotency_key,
            sa.case((credit, sa.null()), else_=post.c.balance_after),
            sa.case((credit, post.c.balance_after), else_=sa.null()),
            sa.null(), post.c.created_at,
        ).join(acc, acc.c.user_id == post.c.user_id),
    ))
    conn.execute(new_bal.insert().from_select(
        ["account_id", "shard", "balance", "updated_at"],
        sa.select(acc.c.id, sa.literal(0), sa.literal(0), sa.literal(now, gonglun.db.UTCDateTime()))
        .where(acc.c.kind == "system", acc.c.id != manual),
    ))
    moved = sa.select(sa.func.coalesce(-sa.func.sum(post.c.delta), 0)).scalar_subquery()
    conn.execute(new_bal.insert().from_select(
        ["account_id", "shard", "balance", "updated_at"],
        sa.select(sa.literal(manual), sa.literal(0), moved, sa.literal(now, gonglun.db.UTCDateTime())),
    ))
    if conn.dialect.name == "postgresql":
        # Explicit ids do not advance the sequence: start it after the highest one.
        conn.execute(sa.text(
            "SELECT setval(pg_get_serial_sequence('ledger_transfers', 'id'), "
            "COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM ledger_transfers"))


def downgrade() -> None:
    op.create_table('balances',
    sa.Column('user_id', ID, nullable=False),
    sa.Column('balance', sa.BigInteger(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', gonglun.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_balances_user_id_users')),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_balances'))
    )
    op.create_table('postings',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('user_id', ID, nullable=False),
    sa.Column('delta', sa.BigInteger(), nullable=False),
    sa.Column('balance_after', sa.BigInteger(), nullable=False),
    sa.Column('scene', sa.String(length=64), nullable=False),
    sa.Column('ref', sa.String(length=64), nullable=False),
    sa.Column('remark', sa.String(length=255), nullable=False),
    sa.Column('idempotency_key', sa.String(length=191), nullable=False),
    sa.Column('created_at', gonglun.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_postings_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_postings')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_postings_idempotency_key'))
    )
    with op.batch_alter_table('postings', schema=None) as batch_op:
        batch_op.create_index('ix_postings_user_id_id', ['user_id', 'id'], unique=False)
    _wallet_sides_back()
    op.drop_table('ledger_transfers')
    op.drop_table('ledger_balances')
    op.drop_table('ledger_accounts')


def _wallet_sides_back() -> None:
    """Each wallet side becomes a posting again (system accounts have no place there)."""
    t = _tables()
    acc, bal, new_bal, tr, post = (t["accounts"], t["balances"], t["balances_new"],
                                   t["transfers"], t["postings"])
    conn = op.get_bind()
    conn.execute(bal.insert().from_select(
        ["user_id", "balance", "version", "updated_at"],
        sa.select(acc.c.user_id, sa.func.sum(new_bal.c.balance), sa.literal(0),
                  sa.func.max(new_bal.c.updated_at))
        .join(acc, acc.c.id == new_bal.c.account_id)
        .where(acc.c.kind == "wallet").group_by(acc.c.user_id),
    ))
    other = acc.alias("other")
    sides = sa.union_all(*(
        sa.select(tr.c.id.label("tid"), sa.literal(n).label("n"), acc.c.user_id,
                  (tr.c.amount * sign).label("delta"),
                  sa.func.coalesce(after, 0).label("after"), tr.c.code, tr.c.ref, tr.c.remark,
                  (tr.c.idempotency_key + sa.case((other.c.kind == "wallet", sa.literal(suffix)),
                                                  else_=sa.literal(""))).label("k"),
                  tr.c.created_at)
        .join(acc, acc.c.id == side).join(other, other.c.id == counter)
        .where(acc.c.kind == "wallet")
        for n, side, counter, sign, after, suffix in (
            (0, tr.c.debit_id, tr.c.credit_id, -1, tr.c.debit_after, "#d"),
            (1, tr.c.credit_id, tr.c.debit_id, 1, tr.c.credit_after, ""))
    )).subquery()
    # A wallet-to-wallet transfer gives two postings: the debit side's key gets "#d".
    conn.execute(post.insert().from_select(
        ["user_id", "delta", "balance_after", "scene", "ref", "remark", "idempotency_key",
         "created_at"],
        sa.select(sides.c.user_id, sides.c.delta, sides.c.after, sides.c.code, sides.c.ref,
                  sides.c.remark, sides.c.k, sides.c.created_at)
        .order_by(sides.c.tid, sides.c.n),
    ))
