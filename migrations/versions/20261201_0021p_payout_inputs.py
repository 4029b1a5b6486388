"""Payout inputs: a payout's recorded canonical inputs in a table of their own.

Revision ID: 0021p
Revises: 0020p
Create Date: 2026-12-01 09:00:00

A payout's recorded inputs are 11 MB of JSON for 100 000 items, and they were a column of the
payout's row. On SQLite every change of the row rewrites the whole record, inputs included:
calculating a payout again supersedes the earlier one with an UPDATE of its status, which
rewrote its 11 MB and wrote them again to the WAL (ops/bench/payout.py). From this revision
the inputs are written once into `payout_inputs` (one row per payout, keyed by the payout's
id) and never change: the payout's row holds only what moves (status, approval, posting,
the supersede link) and the small fixed facts.

What the database enforces:
* a payout's inputs name a payout that exists (a foreign key) and a payout has at most one
  (the primary key);
* recorded inputs are never changed: UPDATE, DELETE and TRUNCATE of `payout_inputs` are refused;
* on PostgreSQL built with lz4 they are compressed with lz4, as the column was (0019p).

Data-preserving: every payout's inputs are copied into `payout_inputs` before the column is
dropped (PostgreSQL: instant; SQLite 3.35+: ALTER TABLE DROP COLUMN rewrites the table in
place, keeping its triggers and the foreign keys that point at it). Downgrading copies them
back.
"""
from alembic import op
import sqlalchemy as sa


revision = '0021p'
down_revision = '0020p'
branch_labels = None
depends_on = None

TABLE = "payout_inputs"


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _append_only_triggers(create: bool) -> None:
    # utfall_refuse_change() was created by revision 0001 on PostgreSQL
    if _pg():
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


def _compression(table: str, method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    available = bind.execute(sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"))
    if method in (available.scalar() or []):
        op.execute(f"ALTER TABLE {table} ALTER COLUMN inputs SET COMPRESSION {method}")


def upgrade() -> None:
    op.create_table(TABLE,
    sa.Column('payout_id', sa.Integer(), nullable=False),
    sa.Column('inputs', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_payout_inputs_payout_id_payouts')),
    sa.PrimaryKeyConstraint('payout_id', name=op.f('pk_payout_inputs'))
    )
    _compression(TABLE, "lz4")
    op.execute(f"INSERT INTO {TABLE} (payout_id, inputs) SELECT id, inputs FROM payouts")
    _append_only_triggers(create=True)
    if _pg():
        op.drop_column('payouts', 'inputs')
    else:
        # native DROP COLUMN: a batch copy of the table would drop it while other tables'
        # foreign keys point at it, and would lose its triggers
        op.execute("ALTER TABLE payouts DROP COLUMN inputs")


def downgrade() -> None:
    if _pg():
        op.add_column('payouts', sa.Column('inputs', sa.Text(), nullable=True))
    else:
        # SQLite adds a NOT NULL column only with a default; every row gets its inputs below
        op.execute("ALTER TABLE payouts ADD COLUMN inputs TEXT NOT NULL DEFAULT ''")
    _compression("payouts", "lz4")
    op.execute(f"UPDATE payouts SET inputs = (SELECT i.inputs FROM {TABLE} i WHERE i.payout_id = payouts.id)")
    if _pg():
        op.alter_column('payouts', 'inputs', nullable=False)
    _append_only_triggers(create=False)
    op.drop_table(TABLE)
