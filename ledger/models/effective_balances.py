"""Per-account totals by business-date bucket, versioned by sequence: the index behind `effectiveOn`.

A row (account, level, bucket, sequence) holds the sum of the account's entries whose
effective date falls in the bucket (a day, a month or a year) among the transactions up to
and including `sequence`. One row per bucket and level is written for each transaction that
moves the account (ledger/effective_balances.py), so the rows are append-only like the
journal they are derived from, and "the bucket as the ledger held it at sequence S" is the
latest row at or before S: one probe of the primary key.
"""
from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Integer, SmallInteger
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models.base import Base


class EffectiveBalanceBucket(Base):
    __tablename__ = "effective_balance_buckets"
    __table_args__ = (
        CheckConstraint("level >= 1 AND level <= 3", name="level_range"),
        # the primary key is the only index and is the lookup order; SQLite stores the rows in it
        {"sqlite_with_rowid": False},
    )

    # no foreign keys: the rows are derived from ledger_entries, written only beside them
    account_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)  # 1 day, 2 month, 3 year
    # day: the date's ordinal; month: year * 12 + month - 1; year: the year
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    cumulative_minor: Mapped[int] = mapped_column(BigInteger)
