"""Payout items: a leaner table, so a payout over 100 000 items is written in one cheap COPY.

Revision ID: 0019p
Revises: 0018c
Create Date: 2026-11-30 05:00:00

Every payout item row was checked against four foreign keys (payout, evidence, measurement,
participant), one lookup each per row, and written into four indexes. They go, and what the
database must enforce stays enforced:

* the evidence, measurement and participant ids are the rows the same transaction has just
  read them from (none of those rows is ever deleted): those three keys are dropped;
* an item belongs to a payout that exists (amount → payout → evidence): checked once per
  statement over all the rows it inserted (a statement trigger over its transition table on
  PostgreSQL, where a foreign key costs a trigger call per row and was half the time of a
  large payout's COPY; a row trigger on SQLite), and payouts, which only ever change
  status, can no longer be deleted (the foreign key refused that for a payout with items);
* the index on measurement_id holds only the measurement items (a few per payout), not
  100 000 NULLs per large payout;
* on PostgreSQL built with lz4, a payout's recorded inputs (11 MB of JSON for 100 000 items)
  are compressed with lz4 instead of pglz: twice as fast to write, about the same size. Values
  written before stay as they are; PostgreSQL reads either.

Data-preserving: no row is changed. On SQLite the table is copied into its new shape (how
SQLite drops a foreign key), and its append-only triggers are created again.
"""
from alembic import op
import sqlalchemy as sa


revision = '0019p'
down_revision = '0018c'
branch_labels = None
depends_on = None

DROPPED_KEYS = (("payout_id", "payouts"), ("evidence_id", "evidence"), ("measurement_id", "measurements"),
                ("participant_id", "participants"))
MEASURED = sa.text("measurement_id IS NOT NULL")


def _append_only_triggers(create: bool) -> None:
    # SQLite only: copying the table in batch mode drops its triggers (PostgreSQL keeps them)
    for verb in ("UPDATE", "DELETE"):
        name = f"payout_items_no_{verb.lower()}"
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
        if create:
            op.execute(f"CREATE TRIGGER {name} BEFORE {verb} ON payout_items "
                       f"BEGIN SELECT RAISE(ABORT, 'payout_items is append-only: {verb} refused'); END")


def _payout_integrity_triggers(create: bool) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS payout_items_payout_exists ON payout_items")
        op.execute("DROP TRIGGER IF EXISTS payouts_no_delete ON payouts")
        op.execute("DROP TRIGGER IF EXISTS payouts_no_truncate ON payouts")
        op.execute("DROP FUNCTION IF EXISTS utfall_payout_items_have_payouts()")
        if not create:
            return
        op.execute(
            "CREATE FUNCTION utfall_payout_items_have_payouts() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF EXISTS (SELECT 1 FROM new_items n WHERE NOT EXISTS (SELECT 1 FROM payouts p WHERE p.id = n.payout_id)) "
            "THEN RAISE EXCEPTION 'payout_items: an item names a payout that does not exist' "
            "USING ERRCODE = 'foreign_key_violation'; END IF; RETURN NULL; END $$")
        op.execute("CREATE TRIGGER payout_items_payout_exists AFTER INSERT ON payout_items "
                   "REFERENCING NEW TABLE AS new_items FOR EACH STATEMENT "
                   "EXECUTE FUNCTION utfall_payout_items_have_payouts()")
        # utfall_refuse_change() was created by revision 0001
        op.execute("CREATE TRIGGER payouts_no_delete BEFORE DELETE ON payouts "
                   "FOR EACH ROW EXECUTE FUNCTION utfall_refuse_change()")
        op.execute("CREATE TRIGGER payouts_no_truncate BEFORE TRUNCATE ON payouts "
                   "FOR EACH STATEMENT EXECUTE FUNCTION utfall_refuse_change()")
    else:
        op.execute("DROP TRIGGER IF EXISTS payout_items_payout_exists")
        op.execute("DROP TRIGGER IF EXISTS payouts_no_delete")
        if not create:
            return
        op.execute("CREATE TRIGGER payout_items_payout_exists BEFORE INSERT ON payout_items "
                   "WHEN NOT EXISTS (SELECT 1 FROM payouts WHERE id = NEW.payout_id) "
                   "BEGIN SELECT RAISE(ABORT, 'payout_items: an item names a payout that does not exist'); END")
        op.execute("CREATE TRIGGER payouts_no_delete BEFORE DELETE ON payouts "
                   "BEGIN SELECT RAISE(ABORT, 'payouts are never deleted: DELETE refused'); END")


def _inputs_compression(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    available = bind.execute(sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'"))
    if method in (available.scalar() or []):
        op.execute(f"ALTER TABLE payouts ALTER COLUMN inputs SET COMPRESSION {method}")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    _inputs_compression("lz4")
    with op.batch_alter_table('payout_items', schema=None) as batch_op:
        for column, table in DROPPED_KEYS:
            batch_op.drop_constraint(op.f(f'fk_payout_items_{column}_{table}'), type_='foreignkey')
        batch_op.drop_index('ix_payout_items_measurement')
        batch_op.create_index('ix_payout_items_measurement', ['measurement_id'], unique=False,
                              postgresql_where=MEASURED, sqlite_where=MEASURED)
    if sqlite:
        _append_only_triggers(create=True)
    _payout_integrity_triggers(create=True)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    _inputs_compression("pglz")
    _payout_integrity_triggers(create=False)
    with op.batch_alter_table('payout_items', schema=None) as batch_op:
        batch_op.drop_index('ix_payout_items_measurement')
        batch_op.create_index('ix_payout_items_measurement', ['measurement_id'], unique=False)
        for column, table in DROPPED_KEYS:
            batch_op.create_foreign_key(op.f(f'fk_payout_items_{column}_{table}'), table, [column], ['id'])
    if sqlite:
        _append_only_triggers(create=True)
