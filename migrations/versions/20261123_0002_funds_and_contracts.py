"""Outcomes funds, contracts with versioned terms (append-only), sanctions; accounts get a fund.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:42:52.173504
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# Terms are frozen: a change is a new version, never an edit (the database refuses edits).
FROZEN_TERMS = ("contract_terms", "payer_shares", "metrics", "area_supplements")


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
    op.create_table('outcome_funds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('manager_id', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['manager_id'], ['parties.id'], name=op.f('fk_outcome_funds_manager_id_parties')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outcome_funds'))
    )
    with op.batch_alter_table('outcome_funds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outcome_funds_manager_id'), ['manager_id'], unique=False)

    op.create_table('outcome_contracts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('fund_id', sa.Integer(), nullable=False),
    sa.Column('municipality_id', sa.Integer(), nullable=False),
    sa.Column('provider_id', sa.Integer(), nullable=False),
    sa.Column('verifier_id', sa.Integer(), nullable=True),
    sa.Column('investor_id', sa.Integer(), nullable=True),
    sa.Column('policy_area', sa.String(length=100), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('start_date', sa.Date(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('DRAFT', 'ACTIVE', 'SUSPENDED', 'COMPLETED', 'TERMINATED')", name=op.f('ck_outcome_contracts_status')),
    sa.CheckConstraint('end_date >= start_date', name=op.f('ck_outcome_contracts_term')),
    sa.ForeignKeyConstraint(['fund_id'], ['outcome_funds.id'], name=op.f('fk_outcome_contracts_fund_id_outcome_funds')),
    sa.ForeignKeyConstraint(['investor_id'], ['parties.id'], name=op.f('fk_outcome_contracts_investor_id_parties')),
    sa.ForeignKeyConstraint(['municipality_id'], ['parties.id'], name=op.f('fk_outcome_contracts_municipality_id_parties')),
    sa.ForeignKeyConstraint(['provider_id'], ['parties.id'], name=op.f('fk_outcome_contracts_provider_id_parties')),
    sa.ForeignKeyConstraint(['verifier_id'], ['parties.id'], name=op.f('fk_outcome_contracts_verifier_id_parties')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outcome_contracts'))
    )
    with op.batch_alter_table('outcome_contracts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outcome_contracts_fund_id'), ['fund_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outcome_contracts_municipality_id'), ['municipality_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outcome_contracts_provider_id'), ['provider_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_outcome_contracts_verifier_id'), ['verifier_id'], unique=False)

    op.create_table('contract_terms',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('max_value_minor', sa.BigInteger(), nullable=False),
    sa.Column('participant_cap_minor', sa.BigInteger(), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contract_id'], ['outcome_contracts.id'], name=op.f('fk_contract_terms_contract_id_outcome_contracts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contract_terms')),
    sa.UniqueConstraint('contract_id', 'version', name='version')
    )
    with op.batch_alter_table('contract_terms', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contract_terms_contract_id'), ['contract_id'], unique=False)

    op.create_table('sanctions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('level', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('penalty_minor', sa.BigInteger(), nullable=True),
    sa.Column('transaction_sequence', sa.BigInteger(), nullable=True),
    sa.Column('issued_by', sa.String(length=200), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lifted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lifted_by', sa.String(length=200), nullable=True),
    sa.CheckConstraint("level IN ('WARNING', 'PENALTY', 'SUSPENSION', 'DEAUTHORISATION')", name=op.f('ck_sanctions_level')),
    sa.ForeignKeyConstraint(['contract_id'], ['outcome_contracts.id'], name=op.f('fk_sanctions_contract_id_outcome_contracts')),
    sa.ForeignKeyConstraint(['transaction_sequence'], ['ledger_transactions.sequence'], name=op.f('fk_sanctions_transaction_sequence_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sanctions'))
    )
    with op.batch_alter_table('sanctions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sanctions_contract_id'), ['contract_id'], unique=False)

    op.create_table('metrics',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('terms_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=60), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('direction', sa.String(length=20), nullable=False),
    sa.Column('unit_price_minor', sa.BigInteger(), nullable=False),
    sa.Column('baseline', sa.String(length=40), nullable=True),
    sa.Column('baseline_source', sa.Text(), nullable=True),
    sa.Column('baseline_method', sa.Text(), nullable=True),
    sa.Column('threshold', sa.String(length=40), nullable=True),
    sa.Column('cap_per_participant_minor', sa.BigInteger(), nullable=True),
    sa.Column('cap_per_period_minor', sa.BigInteger(), nullable=True),
    sa.Column('cap_total_minor', sa.BigInteger(), nullable=True),
    sa.Column('once_only', sa.Boolean(), nullable=False),
    sa.CheckConstraint("direction IN ('HIGHER_IS_BETTER', 'LOWER_IS_BETTER')", name=op.f('ck_metrics_direction')),
    sa.CheckConstraint("kind IN ('RATE_CARD', 'BASELINE_IMPROVEMENT', 'COMPARISON_THRESHOLD')", name=op.f('ck_metrics_kind')),
    sa.CheckConstraint('unit_price_minor > 0', name=op.f('ck_metrics_unit_price_positive')),
    sa.ForeignKeyConstraint(['terms_id'], ['contract_terms.id'], name=op.f('fk_metrics_terms_id_contract_terms')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_metrics')),
    sa.UniqueConstraint('terms_id', 'code', name='code')
    )
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_metrics_terms_id'), ['terms_id'], unique=False)

    op.create_table('payer_shares',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('terms_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('party_id', sa.Integer(), nullable=False),
    sa.Column('percent', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['party_id'], ['parties.id'], name=op.f('fk_payer_shares_party_id_parties')),
    sa.ForeignKeyConstraint(['terms_id'], ['contract_terms.id'], name=op.f('fk_payer_shares_terms_id_contract_terms')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payer_shares')),
    sa.UniqueConstraint('terms_id', 'party_id', name='party')
    )
    with op.batch_alter_table('payer_shares', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payer_shares_terms_id'), ['terms_id'], unique=False)

    op.create_table('area_supplements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('metric_id', sa.Integer(), nullable=False),
    sa.Column('area', sa.String(length=60), nullable=False),
    sa.Column('percent', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['metric_id'], ['metrics.id'], name=op.f('fk_area_supplements_metric_id_metrics')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_area_supplements')),
    sa.UniqueConstraint('metric_id', 'area', name='area')
    )
    with op.batch_alter_table('area_supplements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_area_supplements_metric_id'), ['metric_id'], unique=False)

    # not batch mode: on SQLite that would recreate ledger_accounts under the journal's
    # foreign keys; a plain ADD COLUMN with a named REFERENCES clause works on both
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE ledger_accounts ADD COLUMN fund_id INTEGER "
                   "CONSTRAINT fk_ledger_accounts_fund_id_outcome_funds REFERENCES outcome_funds (id)")
    else:
        op.add_column('ledger_accounts', sa.Column('fund_id', sa.Integer(), nullable=True))
        op.create_foreign_key('fk_ledger_accounts_fund_id_outcome_funds', 'ledger_accounts', 'outcome_funds',
                              ['fund_id'], ['id'])
    op.create_index('ix_ledger_accounts_fund_id', 'ledger_accounts', ['fund_id'], unique=False)
    create_append_only_triggers(FROZEN_TERMS)



def downgrade() -> None:
    drop_append_only_triggers(FROZEN_TERMS)
    with op.batch_alter_table('ledger_accounts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_ledger_accounts_fund_id_outcome_funds'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_ledger_accounts_fund_id'))
        batch_op.drop_column('fund_id')

    with op.batch_alter_table('area_supplements', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_area_supplements_metric_id'))

    op.drop_table('area_supplements')
    with op.batch_alter_table('payer_shares', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payer_shares_terms_id'))

    op.drop_table('payer_shares')
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_metrics_terms_id'))

    op.drop_table('metrics')
    with op.batch_alter_table('sanctions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sanctions_contract_id'))

    op.drop_table('sanctions')
    with op.batch_alter_table('contract_terms', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contract_terms_contract_id'))

    op.drop_table('contract_terms')
    with op.batch_alter_table('outcome_contracts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outcome_contracts_verifier_id'))
        batch_op.drop_index(batch_op.f('ix_outcome_contracts_provider_id'))
        batch_op.drop_index(batch_op.f('ix_outcome_contracts_municipality_id'))
        batch_op.drop_index(batch_op.f('ix_outcome_contracts_fund_id'))

    op.drop_table('outcome_contracts')
    with op.batch_alter_table('outcome_funds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outcome_funds_manager_id'))

    op.drop_table('outcome_funds')
