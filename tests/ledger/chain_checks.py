"""What every posting test asserts of the ledger afterwards: the chain is whole."""
from __future__ import annotations

from sqlalchemy import select

from ledger import journal, tree
from ledger.db import Database
from ledger.models import Account, Transaction


def chain_length_if_whole(db: Database, balances: dict[int, int] | None = None) -> int:
    """Assert the chain is whole (gap-free, linear, verified, Merkle tree = journal) and, if given,
    that the accounts hold `balances`; its length."""
    with db.reading() as s:
        seqs = s.execute(select(Transaction.sequence).order_by(Transaction.sequence)).scalars().all()
        assert seqs == list(range(1, len(seqs) + 1))
        result = journal.verify(s)
        assert result.ok, result
        if seqs:
            conn = s.connection()
            assert tree.root(conn, len(seqs)) == tree.rebuilt_root(conn, len(seqs))
        if balances is not None:
            stored = dict(s.execute(select(Account.id, Account.balance_minor)
                                    .where(Account.id.in_(balances))).all())
            assert stored == balances
        return len(seqs)
