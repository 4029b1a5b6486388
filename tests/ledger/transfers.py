"""The unit of work the group commit tests post with: a transfer between two accounts."""
from __future__ import annotations

from datetime import date

from ledger import journal
from ledger import money as m


def transfer(a: int, b: int, description: str, minor: int = 100):
    """A unit of work moving `minor` öre from `b` to `a` (debit a, credit b); returns its sequence."""
    def work(uow):
        return journal.post(uow, actor="t", kind="TEST", description=description, effective_date=date(2026, 1, 1),
                            postings=[journal.Posting(a, m.from_minor(minor, "SEK")),
                                      journal.Posting(b, m.from_minor(-minor, "SEK"))]).sequence
    return work
