"""Group commit (ledger.db.GroupCommit): units of work from many threads committed in batches by
one writer, each whole, each caller answered only once its own work is durable.

The guarantees a caller depends on are the ones a unit of work of its own gives: the chain stays
one gap-free linear sequence under concurrency; a caller's posting and its other writes commit
or vanish together; a caller whose work fails is refused alone and leaves nothing behind,
whatever else its batch holds.
"""
from __future__ import annotations

import threading
from datetime import date

import pytest
from sqlalchemy import func, select

from ledger import journal
from ledger import money as m
from ledger.db import Database
from ledger.errors import ValidationError
from ledger.models import Account, Party, Transaction
from tests.factories import accounts


@pytest.fixture
def grouped(fresh_engine):
    if fresh_engine.dialect.name != "postgresql":
        pytest.skip("group commit is for PostgreSQL; SQLite has one writer and a cheap commit")
    db = Database(fresh_engine, group_commit=True)
    yield db
    db.group_commit.close()


def _transfer(a: int, b: int, description: str, minor: int = 100):
    def work(uow):
        return journal.post(uow, actor="t", kind="TEST", description=description, effective_date=date(2026, 1, 1),
                            postings=[journal.Posting(a, m.from_minor(minor, "SEK")),
                                      journal.Posting(b, m.from_minor(-minor, "SEK"))]).sequence
    return work


def test_concurrent_postings_through_group_commit_keep_the_chain_gap_free_and_linear(grouped):
    """8 threads × 200 postings onto shared accounts, as the test without group commit does."""
    accs = [a.id for a in accounts(grouped, 3)]
    errors: list[BaseException] = []
    answered: list[int] = []

    def worker(n):
        try:
            for i in range(200):
                answered.append(grouped.write(_transfer(accs[(n + i) % 3], accs[(n + i + 1) % 3], f"{n}/{i}")))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with grouped.reading() as s:
        seqs = s.execute(select(Transaction.sequence).order_by(Transaction.sequence)).scalars().all()
        assert seqs == list(range(1, 1601)) and sorted(answered) == seqs
        assert sum(a.balance_minor for a in s.execute(select(Account)).scalars()) == 0
        assert journal.verify(s).ok
    # the postings were committed in batches, not one commit each
    assert grouped.group_commit.committed == 1600 and grouped.group_commit.batches < 1600


def test_a_failing_caller_is_refused_alone_and_its_other_writes_vanish_with_its_posting(grouped):
    # given callers that each post and add a party in the same unit of work; every third one
    # then fails (after its posting and its party were written in the batch's transaction)
    a, b = (acc.id for acc in accounts(grouped, 2))
    outcomes: dict[int, object] = {}

    def caller(i: int):
        def work(uow):
            uow.session.add(Party(name=f"caller {i}", role="PROVIDER"))
            uow.session.flush()
            sequence = _transfer(a, b, f"caller {i}")(uow)
            if i % 3 == 0:
                raise ValidationError("refused after posting", code="REFUSED")
            return sequence
        try:
            outcomes[i] = grouped.write(work)
        except ValidationError as exc:
            outcomes[i] = exc

    # when they arrive together
    threads = [threading.Thread(target=caller, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # then the refused ones got their own error and left nothing; the others are all there
    refused = {i for i, o in outcomes.items() if isinstance(o, ValidationError)}
    assert refused == {i for i in range(30) if i % 3 == 0}
    with grouped.reading() as s:
        described = set(s.execute(select(Transaction.description)).scalars())
        parties = set(s.execute(select(Party.name).where(Party.name.like("caller %"))).scalars())
        assert described == parties == {f"caller {i}" for i in range(30) if i not in refused}
        assert s.execute(select(func.count()).select_from(Transaction)).scalar_one() == 20
        assert s.execute(select(Account.balance_minor).where(Account.id == a)).scalar_one() == 20 * 100
        assert journal.verify(s).ok


def test_write_without_group_commit_is_one_unit_of_work(fresh_engine):
    # given a database without group commit (SQLite never has it)
    db = Database(fresh_engine)
    a, b = (acc.id for acc in accounts(db, 2))
    # when
    sequence = db.write(_transfer(a, b, "alone"))
    # then
    with db.reading() as s:
        assert s.get(Transaction, sequence).description == "alone"
        assert journal.verify(s).ok
