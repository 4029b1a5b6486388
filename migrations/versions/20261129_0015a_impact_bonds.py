"""Impact bonds: investments, drawdowns, waterfall distributions, closings; INVESTOR tokens.

Every new table is append-only. api_tokens' role check gains INVESTOR (on SQLite the table is
recreated by batch mode: it has no triggers to lose, and its rows are copied as they are).

Revision ID: 0015a
Revises: 0013a
Create Date: 2026-11-29 22:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0015a'
down_revision = '0013a'
branch_labels = None
depends_on = None

APPEND_ONLY = ("investments", "investment_drawdowns", "distributions", "distribution_lines",
               "distribution_receipts", "investment_closings")
OLD_ROLES = "role IN ('ADMIN', 'FUND_MANAGER', 'MUNICIPALITY', 'PROVIDER', 'VERIFIER', 'AUDITOR')"
NEW_ROLES = "role IN ('ADMIN', 'FUND_MANAGER', 'MUNICIPALITY', 'PROVIDER', 'VERIFIER', 'AUDITOR', 'INVESTOR')"


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


def _token_roles(check: str) -> None:
    with op.batch_alter_table('api_tokens', schema=None, recreate='auto') as batch_op:
        batch_op.drop_constraint(op.f('ck_api_tokens_role'), type_='check')
        batch_op.create_check_constraint(op.f('ck_api_tokens_role'), sa.text(check))


def upgrade() -> None:
    _token_roles(NEW_ROLES)
    op.create_table('investments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('investor_id', sa.Integer(), nullable=False),
    sa.Column('tranche', sa.String(length=20), nullable=False),
    sa.Column('principal_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('return_cap', sa.String(length=40), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("tranche IN ('SENIOR', 'SUBORDINATE')", name=op.f('ck_investments_tranche')),
    sa.CheckConstraint('principal_minor > 0', name=op.f('ck_investments_principal_positive')),
    sa.ForeignKeyConstraint(['contract_id'], ['outcome_contracts.id'], name=op.f('fk_investments_contract_id_outcome_contracts')),
    sa.ForeignKeyConstraint(['investor_id'], ['parties.id'], name=op.f('fk_investments_investor_id_parties')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_investments'))
    )
    with op.batch_alter_table('investments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_investments_contract_id'), ['contract_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_investments_investor_id'), ['investor_id'], unique=False)

    op.create_table('investment_drawdowns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('investment_id', sa.Integer(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('paid_on', sa.Date(), nullable=False),
    sa.Column('reference', sa.String(length=200), nullable=False),
    sa.Column('transaction_sequence', sa.BigInteger(), nullable=False),
    sa.Column('recorded_by', sa.String(length=200), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_investment_drawdowns_amount_positive')),
    sa.ForeignKeyConstraint(['investment_id'], ['investments.id'], name=op.f('fk_investment_drawdowns_investment_id_investments')),
    sa.ForeignKeyConstraint(['transaction_sequence'], ['ledger_transactions.sequence'], name=op.f('fk_investment_drawdowns_transaction_sequence_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_investment_drawdowns'))
    )
    with op.batch_alter_table('investment_drawdowns', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_investment_drawdowns_investment_id'), ['investment_id'], unique=False)

    op.create_table('distributions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('up_to', sa.Date(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('inputs_hash', sa.String(length=64), nullable=False),
    sa.Column('inputs', sa.Text(), nullable=False),
    sa.Column('total_minor', sa.BigInteger(), nullable=False),
    sa.Column('transaction_sequence', sa.BigInteger(), nullable=True),
    sa.Column('distributed_by', sa.String(length=200), nullable=False),
    sa.Column('distributed_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('total_minor > 0', name=op.f('ck_distributions_total_positive')),
    sa.ForeignKeyConstraint(['contract_id'], ['outcome_contracts.id'], name=op.f('fk_distributions_contract_id_outcome_contracts')),
    sa.ForeignKeyConstraint(['transaction_sequence'], ['ledger_transactions.sequence'], name=op.f('fk_distributions_transaction_sequence_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_distributions'))
    )
    with op.batch_alter_table('distributions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_distributions_contract_id'), ['contract_id'], unique=False)

    op.create_table('distribution_lines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('distribution_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('investment_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("kind IN ('PRINCIPAL', 'RETURN', 'RESIDUAL')", name=op.f('ck_distribution_lines_kind')),
    sa.CheckConstraint('amount_minor > 0', name=op.f('ck_distribution_lines_amount_positive')),
    sa.CheckConstraint("(kind = 'RESIDUAL') = (investment_id IS NULL)", name=op.f('ck_distribution_lines_residual_has_no_investment')),
    sa.ForeignKeyConstraint(['distribution_id'], ['distributions.id'], name=op.f('fk_distribution_lines_distribution_id_distributions')),
    sa.ForeignKeyConstraint(['investment_id'], ['investments.id'], name=op.f('fk_distribution_lines_investment_id_investments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_distribution_lines'))
    )
    with op.batch_alter_table('distribution_lines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_distribution_lines_distribution_id'), ['distribution_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_distribution_lines_investment_id'), ['investment_id'], unique=False)

    op.create_table('distribution_receipts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('distribution_id', sa.Integer(), nullable=False),
    sa.Column('payment_id', sa.Integer(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('amount_minor <> 0', name=op.f('ck_distribution_receipts_amount_not_zero')),
    sa.ForeignKeyConstraint(['distribution_id'], ['distributions.id'], name=op.f('fk_distribution_receipts_distribution_id_distributions')),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_distribution_receipts_payment_id_payments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_distribution_receipts')),
    sa.UniqueConstraint('payment_id', name=op.f('uq_distribution_receipts_payment_id'))
    )
    with op.batch_alter_table('distribution_receipts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_distribution_receipts_distribution_id'), ['distribution_id'], unique=False)

    op.create_table('investment_closings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('transaction_sequence', sa.BigInteger(), nullable=True),
    sa.Column('closed_by', sa.String(length=200), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contract_id'], ['outcome_contracts.id'], name=op.f('fk_investment_closings_contract_id_outcome_contracts')),
    sa.ForeignKeyConstraint(['transaction_sequence'], ['ledger_transactions.sequence'], name=op.f('fk_investment_closings_transaction_sequence_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_investment_closings')),
    sa.UniqueConstraint('contract_id', name=op.f('uq_investment_closings_contract_id'))
    )
    create_append_only_triggers(APPEND_ONLY)


def downgrade() -> None:
    drop_append_only_triggers(APPEND_ONLY)
    op.drop_table('investment_closings')
    with op.batch_alter_table('distribution_receipts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_distribution_receipts_distribution_id'))
    op.drop_table('distribution_receipts')
    with op.batch_alter_table('distribution_lines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_distribution_lines_investment_id'))
        batch_op.drop_index(batch_op.f('ix_distribution_lines_distribution_id'))
    op.drop_table('distribution_lines')
    with op.batch_alter_table('distributions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_distributions_contract_id'))
    op.drop_table('distributions')
    with op.batch_alter_table('investment_drawdowns', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_investment_drawdowns_investment_id'))
    op.drop_table('investment_drawdowns')
    with op.batch_alter_table('investments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_investments_investor_id'))
        batch_op.drop_index(batch_op.f('ix_investments_contract_id'))
    op.drop_table('investments')
    # an INVESTOR token means nothing without this revision: it goes, or the old check fails
    op.execute("DELETE FROM api_tokens WHERE role = 'INVESTOR'")
    _token_roles(OLD_ROLES)
