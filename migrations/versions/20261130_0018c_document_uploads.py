"""Document uploads: who uploaded which bytes (by SHA-256) when; append-only.

Revision ID: 0018c
Revises: 0018a
Create Date: 2026-11-30 01:00:00

The bytes themselves live in the document store (a directory, UTFALL_DOCUMENT_DIR), named
by their hash; a row here says a party uploaded them and is never changed or deleted. The
evidence documents' sha256 gets an index: downloads look up the evidence naming a hash.
Nothing to migrate: documents submitted before this revision stay metadata only
(`uploaded: false`) until their provider uploads the bytes.
"""
from alembic import op
import sqlalchemy as sa


revision = '0018c'
down_revision = '0018a'
branch_labels = None
depends_on = None

APPEND_ONLY = ("document_uploads",)


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
    op.create_table('document_uploads',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('party_id', sa.Integer(), nullable=False),
    sa.Column('media_type', sa.String(length=100), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('uploaded_by', sa.String(length=200), nullable=False),
    sa.Column('uploaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('size_bytes >= 0', name=op.f('ck_document_uploads_size_not_negative')),
    sa.ForeignKeyConstraint(['party_id'], ['parties.id'], name=op.f('fk_document_uploads_party_id_parties')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_document_uploads')),
    sa.UniqueConstraint('sha256', 'party_id', name='sha256_party')
    )
    with op.batch_alter_table('document_uploads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_document_uploads_sha256'), ['sha256'], unique=False)
    with op.batch_alter_table('evidence_documents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_evidence_documents_sha256'), ['sha256'], unique=False)
    create_append_only_triggers(APPEND_ONLY)


def downgrade() -> None:
    drop_append_only_triggers(APPEND_ONLY)
    with op.batch_alter_table('evidence_documents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_evidence_documents_sha256'))
    with op.batch_alter_table('document_uploads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_document_uploads_sha256'))
    op.drop_table('document_uploads')
