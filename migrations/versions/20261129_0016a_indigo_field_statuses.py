"""INDIGO field statuses: which parts of a contract's INDIGO export a fund manager made private (append-only).

Revision ID: 0016a
Revises: 0015a
Create Date: 2026-11-29 22:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0016a'
down_revision = '0015a'
branch_labels = None
depends_on = None

APPEND_ONLY = ("indigo_field_statuses",)


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
    op.create_table('indigo_field_statuses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contract_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('set_by', sa.String(length=200), nullable=False),
    sa.Column('set_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('PUBLIC', 'PRIVATE')", name=op.f('ck_indigo_field_statuses_status')),
    sa.ForeignKeyConstraint(['contract_id'], ['outcome_contracts.id'],
                            name=op.f('fk_indigo_field_statuses_contract_id_outcome_contracts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_indigo_field_statuses'))
    )
    op.create_index('ix_indigo_field_statuses_contract_path', 'indigo_field_statuses', ['contract_id', 'path'],
                    unique=False)
    create_append_only_triggers(APPEND_ONLY)


def downgrade() -> None:
    drop_append_only_triggers(APPEND_ONLY)
    op.drop_index('ix_indigo_field_statuses_contract_path', table_name='indigo_field_statuses')
    op.drop_table('indigo_field_statuses')
