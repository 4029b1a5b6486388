"""The journal's Merkle tree: stored perfect-subtree hashes (append-only), backfilled.

Revision ID: 0017a
Revises: 0016a
Create Date: 2026-11-29 22:10:00

Node (level, position), level >= 1, is MTH of the 2**level transactions from sequence
position * 2**level + 1, as RFC 9162 §2.1 defines it with leaf = the 32 bytes of the
transaction's chain hash: leaf hash SHA-256(0x00 || leaf), node SHA-256(0x01 || left ||
right). The backfill streams the existing journal in sequence order and writes every
complete node, so proofs over old transactions work at once; the journal is only read.
"""
import hashlib

from alembic import op
import sqlalchemy as sa


revision = '0017a'
down_revision = '0016a'
branch_labels = None
depends_on = None

APPEND_ONLY = ("merkle_nodes",)
BATCH = 5000


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


def _backfill(conn, nodes: sa.Table) -> None:
    # the right edge of the tree: (level, hash) of the complete subtrees not yet joined
    edge: list[tuple[int, bytes]] = []
    pending: list[dict] = []
    index = 0
    last = 0
    while True:
        rows = conn.execute(sa.text("SELECT sequence, hash FROM ledger_transactions WHERE sequence > :last "
                                    "ORDER BY sequence LIMIT :n"), {"last": last, "n": BATCH}).all()
        if not rows:
            break
        for sequence, chain_hash in rows:
            if sequence != index + 1:
                raise RuntimeError(f"the journal has a gap before sequence {sequence}: repair it before migrating")
            h = hashlib.sha256(b"\x00" + bytes.fromhex(chain_hash)).digest()
            level = 0
            while edge and edge[-1][0] == level:
                h = hashlib.sha256(b"\x01" + edge.pop()[1] + h).digest()
                level += 1
                pending.append({"level": level, "position": index >> level, "hash": h.hex()})
            edge.append((level, h))
            index += 1
        last = rows[-1][0]
        if pending:
            conn.execute(nodes.insert(), pending)
            pending = []


def upgrade() -> None:
    nodes = op.create_table('merkle_nodes',
    sa.Column('level', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('position', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.CheckConstraint('level >= 1 AND level <= 62', name=op.f('ck_merkle_nodes_level_range')),
    sa.CheckConstraint('position >= 0', name=op.f('ck_merkle_nodes_position_not_negative')),
    sa.PrimaryKeyConstraint('level', 'position', name=op.f('pk_merkle_nodes'))
    )
    _backfill(op.get_bind(), nodes)
    create_append_only_triggers(APPEND_ONLY)


def downgrade() -> None:
    drop_append_only_triggers(APPEND_ONLY)
    op.drop_table('merkle_nodes')
