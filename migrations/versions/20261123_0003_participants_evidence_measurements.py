"""Participants (identity numbers only as keyed hashes), evidence with documents, measurements.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 10:47:52.563221
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('measurements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('metric_code', sa.String(length=60), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('observed_value', sa.String(length=40), nullable=False),
    sa.Column('comparison_value', sa.String(length=40), nullable=True),
    sa.Column('cohort_size', sa.Integer(), nullable=True),
    sa.Column('recorded_by', sa.String(length=200), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('period_end >= period_start', name=op.f('ck_measurements_period')),
    sa.ForeignKeyConstraint(['contract_id'], ['outcome_contracts.id'], name=op.f('fk_measurements_contract_id_outcome_contracts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_measurements'))
    )
    with op.batch_alter_table('measurements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_measurements_contract_id'), ['contract_id'], unique=False)

    op.create_table('participants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('identity_hash', sa.String(length=64), nullable=True),
    sa.Column('external_ref', sa.String(length=100), nullable=True),
    sa.Column('area', sa.String(length=60), nullable=True),
    sa.Column('enrolled_on', sa.Date(), nullable=False),
    sa.Column('enrolled_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('identity_hash IS NOT NULL OR external_ref IS NOT NULL', name=op.f('ck_participants_identified')),
    sa.ForeignKeyConstraint(['contract_id'], ['outcome_contracts.id'], name=op.f('fk_participants_contract_id_outcome_contracts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_participants')),
    sa.UniqueConstraint('contract_id', 'external_ref', name='external_ref'),
    sa.UniqueConstraint('contract_id', 'identity_hash', name='identity')
    )
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_participants_contract_id'), ['contract_id'], unique=False)

    op.create_table('evidence',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('participant_id', sa.Integer(), nullable=False),
    sa.Column('metric_code', sa.String(length=60), nullable=False),
    sa.Column('achieved_on', sa.Date(), nullable=True),
    sa.Column('period_start', sa.Date(), nullable=True),
    sa.Column('period_end', sa.Date(), nullable=True),
    sa.Column('value', sa.String(length=40), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('submitted_by', sa.String(length=200), nullable=False),
    sa.Column('submitted_party_id', sa.Integer(), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decision_note', sa.Text(), nullable=True),
    sa.Column('invalidated_by', sa.String(length=200), nullable=True),
    sa.Column('invalidated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('invalidation_reason', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('SUBMITTED', 'VERIFIED', 'REJECTED', 'INVALIDATED')", name=op.f('ck_evidence_status')),
    sa.ForeignKeyConstraint(['contract_id'], ['outcome_contracts.id'], name=op.f('fk_evidence_contract_id_outcome_contracts')),
    sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], name=op.f('fk_evidence_participant_id_participants')),
    sa.ForeignKeyConstraint(['submitted_party_id'], ['parties.id'], name=op.f('fk_evidence_submitted_party_id_parties')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_evidence'))
    )
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.create_index('ix_evidence_contract_status', ['contract_id', 'status'], unique=False)
        batch_op.create_index('ix_evidence_participant_metric', ['participant_id', 'metric_code'], unique=False)

    op.create_table('evidence_documents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('evidence_id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('media_type', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['evidence_id'], ['evidence.id'], name=op.f('fk_evidence_documents_evidence_id_evidence')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_evidence_documents'))
    )
    with op.batch_alter_table('evidence_documents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_evidence_documents_evidence_id'), ['evidence_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('evidence_documents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_evidence_documents_evidence_id'))

    op.drop_table('evidence_documents')
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.drop_index('ix_evidence_participant_metric')
        batch_op.drop_index('ix_evidence_contract_status')

    op.drop_table('evidence')
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_participants_contract_id'))

    op.drop_table('participants')
    with op.batch_alter_table('measurements', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_measurements_contract_id'))

    op.drop_table('measurements')
