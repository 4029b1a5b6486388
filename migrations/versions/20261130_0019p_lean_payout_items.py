"""Payout items: a leaner table, so a payout over 100 000 items is written in one cheap COPY.

Revision ID: 0019p
Revises: 0018c
Create Date: 2026-11-30 05:00:00

Every payout item row was checked against four foreign keys (payout, evidence, measurement,
participant) and written into four indexes. The evidence, measurement and participant ids
are the rows the same transaction has just read them from (and none of those rows is ever
deleted), so those three keys checked nothing a calculation could get wrong, at one lookup
each per item: they are dropped. The key to the payout stays: an item always belongs to a
payout that exists (amount → payout → evidence). The index on measurement_id now holds only
the measurement items (a few per payout), not 100 000 NULLs per large payout.

Data-preserving: no row is changed. On SQLite the table is copied into its new shape (how
SQLite drops a foreign key), and its append-only triggers are created again.
"""
from alembic import op
import sqlalchemy as sa


revision = '0019p'
down_revision = '0018c'
branch_labels = None
depends_on = None

DROPPED_KEYS = (("evidence_id", "evidence"), ("measurement_id", "measurements"), ("participant_id", "participants"))
MEASURED = sa.text("measurement_id IS NOT NULL")


def _append_only_triggers(create: bool) -> None:
    # SQLite only: copying the table in batch mode drops its triggers (PostgreSQL keeps them)
    for verb in ("UPDATE", "DELETE"):
        name = f"payout_items_no_{verb.lower()}"
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
        if create:
            op.execute(f"CREATE TRIGGER {name} BEFORE {verb} ON payout_items "
                       f"BEGIN SELECT RAISE(ABORT, 'payout_items is append-only: {verb} refused'); END")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table('payout_items', schema=None) as batch_op:
        for column, table in DROPPED_KEYS:
            batch_op.drop_constraint(op.f(f'fk_payout_items_{column}_{table}'), type_='foreignkey')
        batch_op.drop_index('ix_payout_items_measurement')
        batch_op.create_index('ix_payout_items_measurement', ['measurement_id'], unique=False,
                              postgresql_where=MEASURED, sqlite_where=MEASURED)
    if sqlite:
        _append_only_triggers(create=True)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table('payout_items', schema=None) as batch_op:
        batch_op.drop_index('ix_payout_items_measurement')
        batch_op.create_index('ix_payout_items_measurement', ['measurement_id'], unique=False)
        for column, table in DROPPED_KEYS:
            batch_op.create_foreign_key(op.f(f'fk_payout_items_{column}_{table}'), table, [column], ['id'])
    if sqlite:
        _append_only_triggers(create=True)
