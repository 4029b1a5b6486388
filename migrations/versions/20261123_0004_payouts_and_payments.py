"""Payout calculations (lines, items, shares append-only) and payments (append-only).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 11:09:00.971568
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# A calculation's figures and every payment are facts: the database refuses edits.
APPEND_ONLY = ("payout_lines", "payout_items", "payout_shares", "payments")


def create_append_only_triggers(tables) -> None:
    # utfall_refuse_change() was created by revision 0001 on PostgreSQL
    for t in tables:
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
                       "FOR EACH ROW EXECUTE FUNCTION utfall_refuse_change()")
            op.execute(f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION utfall_refuse_change()")
        else:
            for verb in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {t}_no_{verb.lower()} BEFORE {verb} ON {t} "
                           f"BEGIN SELECT RAISE(ABORT, '{t} is append-only: {verb} refused'); END")


def drop_append_only_triggers(tables) -> None:
    for t in tables:
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {t}_append_only ON {t}")
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t}")
        else:
            for verb in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {t}_no_{verb}")


def upgrade() -> None:
    op.create_table('payments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('debtor_id', sa.Integer(), nullable=False),
    sa.Column('creditor_id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('paid_on', sa.Date(), nullable=False),
    sa.Column('reference', sa.String(length=200), nullable=False),
    sa.Column('transaction_sequence', sa.BigInteger(), nullable=False),
    sa.Column('recorded_by', sa.String(length=200), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_payments_amount_positive')),
    sa.ForeignKeyConstraint(['contract_id'], ['outcome_contracts.id'], name=op.f('fk_payments_contract_id_outcome_contracts')),
    sa.ForeignKeyConstraint(['creditor_id'], ['parties.id'], name=op.f('fk_payments_creditor_id_parties')),
    sa.ForeignKeyConstraint(['debtor_id'], ['parties.id'], name=op.f('fk_payments_debtor_id_parties')),
    sa.ForeignKeyConstraint(['transaction_sequence'], ['ledger_transactions.sequence'], name=op.f('fk_payments_transaction_sequence_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments'))
    )
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payments_contract_id'), ['contract_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payments_creditor_id'), ['creditor_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payments_debtor_id'), ['debtor_id'], unique=False)

    op.create_table('payouts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('terms_version', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('inputs_hash', sa.String(length=64), nullable=False),
    sa.Column('inputs', sa.Text(), nullable=False),
    sa.Column('total_minor', sa.BigInteger(), nullable=False),
    sa.Column('posted_before', sa.Integer(), nullable=False),
    sa.Column('calculated_by', sa.String(length=200), nullable=False),
    sa.Column('calculated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('approved_by', sa.String(length=200), nullable=True),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('transaction_sequence', sa.BigInteger(), nullable=True),
    sa.Column('superseded_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("status IN ('CALCULATED', 'APPROVED', 'POSTED', 'SUPERSEDED')", name=op.f('ck_payouts_status')),
    sa.CheckConstraint('period_end >= period_start', name=op.f('ck_payouts_period')),
    sa.ForeignKeyConstraint(['contract_id'], ['outcome_contracts.id'], name=op.f('fk_payouts_contract_id_outcome_contracts')),
    sa.ForeignKeyConstraint(['superseded_by_id'], ['payouts.id'], name=op.f('fk_payouts_superseded_by_id_payouts')),
    sa.ForeignKeyConstraint(['transaction_sequence'], ['ledger_transactions.sequence'], name=op.f('fk_payouts_transaction_sequence_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payouts'))
    )
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.create_index('ix_payouts_contract_status', ['contract_id', 'status'], unique=False)

    op.create_table('payout_lines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payout_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('metric_code', sa.String(length=60), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('quantity', sa.String(length=40), nullable=False),
    sa.Column('unit_price_minor', sa.BigInteger(), nullable=False),
    sa.Column('gross_minor', sa.BigInteger(), nullable=False),
    sa.Column('capped_minor', sa.BigInteger(), nullable=False),
    sa.Column('net_minor', sa.BigInteger(), nullable=False),
    sa.Column('caps', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_payout_lines_payout_id_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_lines'))
    )
    with op.batch_alter_table('payout_lines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payout_lines_payout_id'), ['payout_id'], unique=False)

    op.create_table('payout_shares',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payout_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('party_id', sa.Integer(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['party_id'], ['parties.id'], name=op.f('fk_payout_shares_party_id_parties')),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_payout_shares_payout_id_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_shares'))
    )
    with op.batch_alter_table('payout_shares', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payout_shares_payout_id'), ['payout_id'], unique=False)

    op.create_table('payout_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payout_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('evidence_id', sa.Integer(), nullable=True),
    sa.Column('measurement_id', sa.Integer(), nullable=True),
    sa.Column('participant_id', sa.Integer(), nullable=True),
    sa.Column('metric_code', sa.String(length=60), nullable=False),
    sa.Column('gross_minor', sa.BigInteger(), nullable=False),
    sa.Column('capped_minor', sa.BigInteger(), nullable=False),
    sa.Column('net_minor', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['evidence_id'], ['evidence.id'], name=op.f('fk_payout_items_evidence_id_evidence')),
    sa.ForeignKeyConstraint(['measurement_id'], ['measurements.id'], name=op.f('fk_payout_items_measurement_id_measurements')),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_payout_items_participant_id_participants')),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_payout_items_payout_id_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_items'))
    )
    with op.batch_alter_table('payout_items', schema=None) as batch_op:
        batch_op.create_index('ix_payout_items_evidence', ['evidence_id'], unique=False)
        batch_op.create_index('ix_payout_items_measurement', ['measurement_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payout_items_payout_id'), ['payout_id'], unique=False)
    create_append_only_triggers(APPEND_ONLY)


def downgrade() -> None:
    drop_append_only_triggers(APPEND_ONLY)
    with op.batch_alter_table('payout_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payout_items_payout_id'))
        batch_op.drop_index('ix_payout_items_measurement')
        batch_op.drop_index('ix_payout_items_evidence')

    op.drop_table('payout_items')
    with op.batch_alter_table('payout_shares', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payout_shares_payout_id'))

    op.drop_table('payout_shares')
    with op.batch_alter_table('payout_lines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payout_lines_payout_id'))

    op.drop_table('payout_lines')
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_index('ix_payouts_contract_status')

    op.drop_table('payouts')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payments_debtor_id'))
        batch_op.drop_index(batch_op.f('ix_payments_creditor_id'))
        batch_op.drop_index(batch_op.f('ix_payments_contract_id'))

    op.drop_table('payments')
