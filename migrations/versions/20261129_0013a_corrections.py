"""Corrections: payouts can be REVERSED, measurements are versioned (corrected, voided) and never
overlap while current, contracts get a dispute window, funds a dual-control switch, and
disputes and change requests are recorded.

Revision ID: 0013a
Revises: 0012a
Create Date: 2026-11-29 22:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0013a'
down_revision = '0012a'
branch_labels = None
depends_on = None

OLD_PAYOUT_STATUSES = "status IN ('CALCULATED', 'APPROVED', 'POSTED', 'SUPERSEDED')"
NEW_PAYOUT_STATUSES = "status IN ('CALCULATED', 'APPROVED', 'POSTED', 'SUPERSEDED', 'REVERSED')"
MEASUREMENT_STATUSES = "status IN ('CURRENT', 'SUPERSEDED', 'VOIDED')"

# Two current measurements of one metric whose periods (both ends inclusive) overlap.
_OVERLAP = ("o.contract_id = {n}.contract_id AND o.metric_code = {n}.metric_code AND o.status = 'CURRENT' "
            "AND o.period_start <= {n}.period_end AND o.period_end >= {n}.period_start")


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _sqlite_rewrite_table_sql(table: str, old: str, new: str) -> None:
    """Change a CHECK constraint in SQLite's stored CREATE TABLE text.

    Rebuilding the table (batch mode) would drop it while other tables' foreign keys point at
    it, which SQLite refuses with foreign keys on. Editing the schema text is the procedure
    SQLite documents for constraint changes that do not alter the on-disk format
    (sqlite.org/lang_altertable.html, "other kinds of table schema changes"): only widening
    a CHECK here, so no existing row can violate it.
    """
    bind = op.get_bind()
    sql = bind.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).scalar()
    assert old in sql, (table, old)
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                         (sql.replace(old, new), table))
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def mark_reversed_payouts(bind) -> None:
    """A payout whose ledger transaction was already reversed is REVERSED."""
    bind.execute(sa.text(
        "UPDATE payouts SET status = 'REVERSED' WHERE status = 'POSTED' AND transaction_sequence IN "
        "(SELECT reverses FROM ledger_transactions WHERE reverses IS NOT NULL)"))


def void_overlapping_measurements(bind) -> None:
    """Before the database forbids it: a measurement overlapping an earlier current one is VOIDED
    (kept, with the reason), so at most one of each overlapping set stays current."""
    bind.execute(sa.text(
        "UPDATE measurements SET status = 'VOIDED', voided_by = 'migration 0013a', "
        "void_reason = 'overlapped an earlier measurement of the same metric' "
        "WHERE EXISTS (SELECT 1 FROM measurements o WHERE o.id < measurements.id AND "
        + _OVERLAP.format(n="measurements") + ")"))


def upgrade() -> None:
    bind = op.get_bind()
    # payouts: REVERSED
    if _pg():
        op.drop_constraint(op.f('ck_payouts_status'), 'payouts', type_='check')
        op.create_check_constraint(op.f('ck_payouts_status'), 'payouts', NEW_PAYOUT_STATUSES)
    else:
        _sqlite_rewrite_table_sql('payouts', OLD_PAYOUT_STATUSES, NEW_PAYOUT_STATUSES)
    mark_reversed_payouts(bind)

    # measurements: a version chain
    if _pg():
        op.add_column('measurements', sa.Column('status', sa.String(length=20), server_default='CURRENT',
                                                nullable=False))
        op.create_check_constraint(op.f('ck_measurements_status'), 'measurements', MEASUREMENT_STATUSES)
        op.add_column('measurements', sa.Column('superseded_by_id', sa.Integer(), nullable=True))
        op.create_foreign_key(op.f('fk_measurements_superseded_by_id_measurements'), 'measurements', 'measurements',
                              ['superseded_by_id'], ['id'])
    else:
        # ALTER TABLE ADD COLUMN keeps the table (and every foreign key pointing at it)
        op.execute("ALTER TABLE measurements ADD COLUMN status VARCHAR(20) DEFAULT 'CURRENT' NOT NULL "
                   f"CONSTRAINT ck_measurements_status CHECK ({MEASUREMENT_STATUSES})")
        op.execute("ALTER TABLE measurements ADD COLUMN superseded_by_id INTEGER "
                   "CONSTRAINT fk_measurements_superseded_by_id_measurements REFERENCES measurements (id)")
    op.add_column('measurements', sa.Column('correction_reason', sa.Text(), nullable=True))
    op.add_column('measurements', sa.Column('voided_by', sa.String(length=200), nullable=True))
    op.add_column('measurements', sa.Column('voided_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('measurements', sa.Column('void_reason', sa.Text(), nullable=True))
    void_overlapping_measurements(bind)
    if _pg():
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute("ALTER TABLE measurements ADD CONSTRAINT ex_measurements_current_overlap EXCLUDE USING gist "
                   "(contract_id WITH =, metric_code WITH =, daterange(period_start, period_end, '[]') WITH &&) "
                   "WHERE (status = 'CURRENT')")
    else:
        # SQLite serialises writers (BEGIN IMMEDIATE); these make the rule the database's own
        op.execute("CREATE TRIGGER measurements_no_overlap_insert BEFORE INSERT ON measurements "
                   "WHEN NEW.status = 'CURRENT' AND EXISTS (SELECT 1 FROM measurements o WHERE "
                   + _OVERLAP.format(n="NEW") + ") "
                   "BEGIN SELECT RAISE(ABORT, 'OVERLAPPING_MEASUREMENT: a current measurement covers the period'); END")
        op.execute("CREATE TRIGGER measurements_no_overlap_update BEFORE UPDATE ON measurements "
                   "WHEN NEW.status = 'CURRENT' AND EXISTS (SELECT 1 FROM measurements o WHERE o.id <> NEW.id AND "
                   + _OVERLAP.format(n="NEW") + ") "
                   "BEGIN SELECT RAISE(ABORT, 'OVERLAPPING_MEASUREMENT: a current measurement covers the period'); END")

    # contracts: the dispute window; funds: dual control (off for funds that exist already)
    op.add_column('outcome_contracts', sa.Column('dispute_window_days', sa.Integer(), server_default='30',
                                                 nullable=False))
    op.add_column('outcome_funds', sa.Column('dual_control', sa.Boolean(), server_default=sa.false(),
                                             nullable=False))

    op.create_table('disputes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('subject_type', sa.String(length=20), nullable=False),
    sa.Column('subject_id', sa.Integer(), nullable=False),
    sa.Column('evidence_id', sa.Integer(), nullable=True),
    sa.Column('payout_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('opened_by', sa.String(length=200), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deadline', sa.Date(), nullable=False),
    sa.Column('subject_status', sa.String(length=20), nullable=False),
    sa.Column('resolved_by', sa.String(length=200), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolution_reason', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('OPEN', 'UPHELD', 'DISMISSED')", name=op.f('ck_disputes_status')),
    sa.CheckConstraint("subject_type IN ('EVIDENCE', 'PAYOUT')", name=op.f('ck_disputes_subject_type')),
    sa.CheckConstraint('(evidence_id IS NULL) <> (payout_id IS NULL)', name=op.f('ck_disputes_one_subject')),
    sa.ForeignKeyConstraint(['contract_id'], ['outcome_contracts.id'], name=op.f('fk_disputes_contract_id_outcome_contracts')),
    sa.ForeignKeyConstraint(['evidence_id'], ['evidence.id'], name=op.f('fk_disputes_evidence_id_evidence')),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_disputes_payout_id_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_disputes')),
    sa.UniqueConstraint('subject_type', 'subject_id', name='subject'),
    )
    op.create_index('ix_disputes_contract_status', 'disputes', ['contract_id', 'status'], unique=False)

    op.create_table('change_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('fund_id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('requested_by', sa.String(length=200), nullable=False),
    sa.Column('requested_by_label', sa.String(length=200), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decision_reason', sa.Text(), nullable=True),
    sa.Column('result_type', sa.String(length=60), nullable=True),
    sa.Column('result_id', sa.String(length=60), nullable=True),
    sa.CheckConstraint("kind IN ('REVERSE_TRANSACTION', 'AMEND_CONTRACT', 'TERMINATE_CONTRACT', 'ISSUE_SANCTION')",
                       name=op.f('ck_change_requests_kind')),
    sa.CheckConstraint("status IN ('PENDING', 'APPROVED', 'REJECTED')", name=op.f('ck_change_requests_status')),
    sa.ForeignKeyConstraint(['contract_id'], ['outcome_contracts.id'], name=op.f('fk_change_requests_contract_id_outcome_contracts')),
    sa.ForeignKeyConstraint(['fund_id'], ['outcome_funds.id'], name=op.f('fk_change_requests_fund_id_outcome_funds')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_change_requests')),
    )
    op.create_index('ix_change_requests_fund_status', 'change_requests', ['fund_id', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_change_requests_fund_status', table_name='change_requests')
    op.drop_table('change_requests')
    op.drop_index('ix_disputes_contract_status', table_name='disputes')
    op.drop_table('disputes')
    op.drop_column('outcome_funds', 'dual_control')
    op.drop_column('outcome_contracts', 'dispute_window_days')
    if _pg():
        op.execute("ALTER TABLE measurements DROP CONSTRAINT ex_measurements_current_overlap")
    else:
        op.execute("DROP TRIGGER IF EXISTS measurements_no_overlap_insert")
        op.execute("DROP TRIGGER IF EXISTS measurements_no_overlap_update")
    for column in ('void_reason', 'voided_at', 'voided_by', 'correction_reason'):
        op.drop_column('measurements', column)
    if _pg():
        op.drop_constraint(op.f('fk_measurements_superseded_by_id_measurements'), 'measurements', type_='foreignkey')
        op.drop_column('measurements', 'superseded_by_id')
        op.drop_constraint(op.f('ck_measurements_status'), 'measurements', type_='check')
        op.drop_column('measurements', 'status')
        op.execute("UPDATE payouts SET status = 'POSTED' WHERE status = 'REVERSED'")
        op.drop_constraint(op.f('ck_payouts_status'), 'payouts', type_='check')
        op.create_check_constraint(op.f('ck_payouts_status'), 'payouts', OLD_PAYOUT_STATUSES)
    else:
        # SQLite cannot drop a column with a constraint in place; the versions stay readable
        op.execute("UPDATE payouts SET status = 'POSTED' WHERE status = 'REVERSED'")
        _sqlite_rewrite_table_sql('payouts', NEW_PAYOUT_STATUSES, OLD_PAYOUT_STATUSES)
