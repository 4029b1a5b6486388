"""The journal's Merkle tree as stored: every complete perfect subtree above the leaves.

Node (level, position) is the hash of the 2**level transactions from sequence
position * 2**level + 1 (ledger/merkle.py). A node is written once, in the transaction of
the posting that completes it, and never changes: the table is append-only like the
journal. Leaves (level 0) are not stored: a leaf's hash is SHA-256(0x00 || the
transaction's chain hash), read from ledger_transactions.
"""
from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models.base import Base


class MerkleNode(Base):
    __tablename__ = "merkle_nodes"
    __table_args__ = (
        CheckConstraint("level >= 1 AND level <= 62", name="level_range"),
        CheckConstraint("position >= 0", name="position_not_negative"),
    )

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))  # hex, lower case
