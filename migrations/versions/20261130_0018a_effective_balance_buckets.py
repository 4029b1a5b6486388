"""Per-account totals by business-date bucket (day, month, year), versioned by sequence; backfilled.

Revision ID: 0018a
Revises: 0017a
Create Date: 2026-11-30 01:00:00

`effectiveOn` balances read these rows instead of summing the account's entries
(ledger/effective_balances.py). Row (account, level, bucket, sequence) is the sum of the
account's entries effective in the bucket among transactions up to `sequence`; one row per
level for each transaction that moves the account. The backfill streams the journal in
sequence order, so every effectiveOn balance reads the same after the migration as before;
the journal is only read.
"""
from datetime import date

from alembic import op
import sqlalchemy as sa


revision = '0018a'
down_revision = '0017a'
branch_labels = None
depends_on = None

APPEND_ONLY = ("effective_balance_buckets",)
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


def _backfill(conn, table: sa.Table) -> None:
    # the running total of every (account, level, bucket) seen so far
    totals: dict[tuple[int, int, int], int] = {}
    last = 0
    while True:
        hi = conn.execute(sa.text("SELECT max(sequence) FROM (SELECT sequence FROM ledger_transactions "
                                  "WHERE sequence > :last ORDER BY sequence LIMIT :n) AS w"),
                          {"last": last, "n": BATCH}).scalar()
        if hi is None:
            break
        net: dict[tuple[int, int], int] = {}
        dates: dict[int, date] = {}
        for sequence, account_id, amount, on in conn.execute(sa.text(
                "SELECT e.sequence, e.account_id, e.amount_minor, t.effective_date FROM ledger_entries e "
                "JOIN ledger_transactions t ON t.sequence = e.sequence "
                "WHERE e.sequence > :last AND e.sequence <= :hi ORDER BY e.sequence, e.line"),
                {"last": last, "hi": hi}):
            if isinstance(on, str):  # SQLite returns the text as stored
                on = date.fromisoformat(on)
            net[(sequence, account_id)] = net.get((sequence, account_id), 0) + amount
            dates[sequence] = on
        rows = []
        for (sequence, account_id), amount in net.items():
            if not amount:
                continue
            on = dates[sequence]
            for level, bucket in ((1, on.toordinal()), (2, on.year * 12 + on.month - 1), (3, on.year)):
                key = (account_id, level, bucket)
                totals[key] = totals.get(key, 0) + amount
                rows.append({"account_id": account_id, "level": level, "bucket": bucket, "sequence": sequence,
                             "cumulative_minor": totals[key]})
        if rows:
            conn.execute(table.insert(), rows)
        last = hi


def upgrade() -> None:
    table = op.create_table('effective_balance_buckets',
    sa.Column('account_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('level', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('bucket', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('sequence', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('cumulative_minor', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('level >= 1 AND level <= 3', name=op.f('ck_effective_balance_buckets_level_range')),
    sa.PrimaryKeyConstraint('account_id', 'level', 'bucket', 'sequence', name=op.f('pk_effective_balance_buckets')),
    sqlite_with_rowid=False,
    )
    _backfill(op.get_bind(), table)
    create_append_only_triggers(APPEND_ONLY)


def downgrade() -> None:
    drop_append_only_triggers(APPEND_ONLY)
    op.drop_table('effective_balance_buckets')
