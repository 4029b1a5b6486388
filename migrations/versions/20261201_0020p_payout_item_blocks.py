"""Payout item blocks: a payout's evidence items as a few compact rows, not one row per item.

Revision ID: 0020p
Revises: 0019p
Create Date: 2026-12-01 05:00:00

A payout over 100 000 evidence items wrote 100 000 payout_items rows, each into the heap,
three indexes and a statement trigger's transition table: 43 % of the calculation's time
(ops/bench/payout.py). From this revision a payout's evidence items are written as
`payout_item_blocks`, up to 8 192 items a row: six packed columns of 64-bit integers
(evidence, participant, kind and metric code, gross, capped, net in minor units) in one
bytea/blob (see ledger/payout_items.py). Each item keeps the id it would have had as a row,
from the payout_items id sequence, so GraphQL cursors and the order of items are unchanged.

What the database enforces:
* a block names a payout that exists: a foreign key (one lookup per block, not per item);
* blocks are append-only (UPDATE, DELETE and TRUNCATE refused), as payout items are;
* on PostgreSQL built with lz4 the packed items are compressed with lz4 (half the size,
  about the cost of writing them uncompressed; pglz took four times as long).

Nothing is migrated: payouts calculated before keep their evidence items as payout_items
rows, and every reader reads both (a payout's items are the rows and the blocks together);
measurement items stay rows. Downgrading refuses while any block exists, as the items
would be lost.
"""
from alembic import op
import sqlalchemy as sa


revision = '0020p'
down_revision = '0019p'
branch_labels = None
depends_on = None

TABLE = "payout_item_blocks"


def _append_only_triggers(create: bool) -> None:
    # utfall_refuse_change() was created by revision 0001 on PostgreSQL
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE}")
        if create:
            op.execute(f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
                       "FOR EACH ROW EXECUTE FUNCTION utfall_refuse_change()")
            op.execute(f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION utfall_refuse_change()")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_{verb.lower()}")
            if create:
                op.execute(f"CREATE TRIGGER {TABLE}_no_{verb.lower()} BEFORE {verb} ON {TABLE} "
                           f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: {verb} refused'); END")


def upgrade() -> None:
    op.create_table(TABLE,
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payout_id', sa.Integer(), nullable=False),
    sa.Column('first_item_id', sa.BigInteger(), nullable=False),
    sa.Column('item_count', sa.Integer(), nullable=False),
    sa.Column('min_evidence_id', sa.BigInteger(), nullable=False),
    sa.Column('max_evidence_id', sa.BigInteger(), nullable=False),
    sa.Column('names', sa.Text(), nullable=False),
    sa.Column('packed', sa.LargeBinary(), nullable=False),
    sa.CheckConstraint('item_count > 0', name=op.f('ck_payout_item_blocks_item_count_positive')),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_payout_item_blocks_payout_id_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_item_blocks'))
    )
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payout_item_blocks_payout_id'), ['payout_id'], unique=False)
        batch_op.create_index('ix_payout_item_blocks_evidence', ['min_evidence_id', 'max_evidence_id'], unique=False)
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        available = bind.execute(sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"))
        if "lz4" in (available.scalar() or []):
            op.execute(f"ALTER TABLE {TABLE} ALTER COLUMN packed SET COMPRESSION lz4")
        else:  # pglz is slower to write than no compression at all
            op.execute(f"ALTER TABLE {TABLE} ALTER COLUMN packed SET STORAGE EXTERNAL")
    _append_only_triggers(create=True)


def downgrade() -> None:
    if op.get_bind().execute(sa.text(f"SELECT 1 FROM {TABLE} LIMIT 1")).first() is not None:
        raise RuntimeError(f"{TABLE} holds payout items: downgrading below 0020p would lose them")
    _append_only_triggers(create=False)
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.drop_index('ix_payout_item_blocks_evidence')
        batch_op.drop_index(batch_op.f('ix_payout_item_blocks_payout_id'))
    op.drop_table(TABLE)
