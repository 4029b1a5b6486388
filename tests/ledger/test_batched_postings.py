"""A group commit batch's postings sent as ONE statement (ledger.journal._BatchedPostings).

What a caller depends on does not change: a batch of N postings leaves the journal, the chain, the
Merkle tree, the balances and the business-date totals exactly as N postings one at a time would;
a memory that is out of date (another process posted, or closed an account) mid-batch makes the
batch run again, nothing half-written; and a unit of work that goes on after its posting (reads
its transaction, writes rows that reference it) finds it there.
"""
from __future__ import annotations

from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from sqlalchemy import select

from ledger import journal, schema
from ledger import money as m
from ledger.db import Database, _Job, make_engine
from ledger.errors import Conflict
from ledger.models import Account, EffectiveBalanceBucket, Entry, MerkleNode, Transaction
from tests.conftest import create_pg_database, drop_pg_database, pg_url
from tests.factories import accounts
from tests.ledger.chain_checks import chain_length_if_whole


@pytest.fixture
def one_at_a_time(grouped):
    """A second fresh database, where the same postings go one unit of work each (no group commit)."""
    name = create_pg_database("utfall_batch_single")
    url = pg_url(name)
    schema.upgrade(url)
    engine = make_engine(url)
    yield Database(engine)
    engine.dispose()
    drop_pg_database(name)


def _batch(db: Database, works) -> list[_Job]:
    """Run `works` as ONE batch of the group commit (as if they had all been waiting), in order."""
    jobs = [_Job(w) for w in works]
    db.group_commit._commit(jobs)
    return jobs


def _posting(a: int, b: int, minor: int, *, on: date = date(2026, 1, 1), description: str = "p",
             kind: str = "TEST", then=None):
    def work(uow):
        tx = journal.post(uow, actor="t", kind=kind, description=description, effective_date=on,
                          postings=[journal.Posting(a, m.from_minor(minor, "SEK")),
                                    journal.Posting(b, m.from_minor(-minor, "SEK"))])
        return then(uow, tx) if then is not None else tx.sequence
    return work


def _contents(db: Database) -> dict:
    """Everything a posting writes, but the hashes and times (which differ between two databases)."""
    T, E, B, A, N = Transaction, Entry, EffectiveBalanceBucket, Account, MerkleNode
    with db.reading() as s:
        return {
            "transactions": s.execute(select(T.sequence, T.effective_date, T.kind, T.description, T.actor,
                                             T.reverses, T.contract_id).order_by(T.sequence)).all(),
            "entries": s.execute(select(E.sequence, E.line, E.account_id, E.currency, E.amount_minor,
                                        E.balance_after_minor).order_by(E.sequence, E.line)).all(),
            "buckets": s.execute(select(B.account_id, B.level, B.bucket, B.sequence, B.cumulative_minor)
                                 .order_by(B.account_id, B.level, B.bucket, B.sequence)).all(),
            "accounts": s.execute(select(A.id, A.balance_minor, A.last_sequence, A.closed_at).order_by(A.id)).all(),
            "nodes": s.execute(select(N.level, N.position).order_by(N.level, N.position)).all(),
        }


_DATES = [date(2025, 12, 31), date(2026, 1, 1), date(2026, 1, 2), date(2026, 2, 1), date(2027, 1, 1)]
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
_BATCHES = st.lists(st.lists(st.tuples(
    st.integers(0, 3), st.integers(1, 3),  # the accounts (a, a + k), as indexes among 4
    st.integers(1, 10_000),  # öre
    st.sampled_from(_DATES), _TEXT,
    st.sampled_from(["post", "post twice", "post then fail"]),
), min_size=1, max_size=10), min_size=1, max_size=3)


class _Refused(Exception):
    pass


def _work(a: int, b: int, minor: int, on: date, description: str, action: str):
    if action == "post":
        return _posting(a, b, minor, on=on, description=description)
    if action == "post twice":
        def twice(uow):
            _posting(a, b, minor, on=on, description=description)(uow)
            return _posting(b, a, 1, on=date(2026, 1, 1), description="back")(uow)
        return twice

    def failing(uow):
        _posting(a, b, minor, on=on, description=description)(uow)
        raise _Refused()
    return failing


@hsettings(max_examples=15, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches=_BATCHES)
def test_property_a_batch_writes_what_its_postings_one_at_a_time_would(grouped, one_at_a_time, batches):
    # given the same four accounts in two databases (the first call makes them; later examples go on)
    accs = [acc.id for acc in accounts(grouped, 4)]
    assert [acc.id for acc in accounts(one_at_a_time, 4)] == accs
    for steps in batches:
        works = [_work(accs[i], accs[(i + k) % 4], minor, on, text, action) for i, k, minor, on, text, action in steps]
        # when they go as one batch in one database, one unit of work each in the other
        jobs = _batch(grouped, works)
        for work in works:
            try:
                one_at_a_time.write(work)
            except _Refused:
                pass
        # then the same callers were refused
        assert [isinstance(j.error, _Refused) for j in jobs] == [action == "post then fail" for *_, action in steps]
        assert all(j.error is None or isinstance(j.error, _Refused) for j in jobs)
    # and both journals hold the same transactions, entries, balances, business-date totals and
    # Merkle nodes; the batched one is a whole chain
    assert _contents(grouped) == _contents(one_at_a_time)
    assert chain_length_if_whole(grouped) == chain_length_if_whole(one_at_a_time)


def test_a_batch_whose_account_another_process_closed_refuses_that_posting_alone(grouped):
    # given a batch writer that remembers three accounts open (and c empty)
    a, b, c = (acc.id for acc in accounts(grouped, 3))
    _batch(grouped, [_posting(a, c, 100), _posting(c, b, 100)])
    # when another process closes c, then a batch posts to it in its middle
    other = make_engine(grouped.engine.url.render_as_string(hide_password=False))
    try:
        Database(other).write(lambda uow: journal.close_account(uow, c))
    finally:
        other.dispose()
    jobs = _batch(grouped, [_posting(a, b, 5), _posting(b, a, 7), _posting(a, c, 9), _posting(b, a, 11)])
    # then the batch ran again: the posting to the closed account was refused, the others committed
    assert [j.error for j in jobs[:2] + jobs[3:]] == [None] * 3
    assert isinstance(jobs[2].error, Conflict) and jobs[2].error.code == "ACCOUNT_CLOSED"
    assert grouped.group_commit.reruns >= 1
    assert [j.result for j in jobs[:2] + jobs[3:]] == [3, 4, 5]
    assert chain_length_if_whole(grouped) == 5
    with grouped.reading() as s:
        assert s.get(Account, c).balance_minor == 0 and s.get(Account, a).balance_minor == 100 + 5 - 7 - 11


def test_a_batch_behind_another_process_runs_again_nothing_half_written(grouped):
    # given a batch writer whose memory another process's posting makes stale
    a, b = (acc.id for acc in accounts(grouped, 2))
    _batch(grouped, [_posting(a, b, 1), _posting(b, a, 1)])
    other = make_engine(grouped.engine.url.render_as_string(hide_password=False))
    try:
        Database(other).write(_posting(a, b, 50))
    finally:
        other.dispose()
    # when
    jobs = _batch(grouped, [_posting(a, b, i, on=date(2026, 1, i)) for i in range(1, 11)])
    # then
    assert [j.error for j in jobs] == [None] * 10 and [j.result for j in jobs] == list(range(4, 14))
    assert grouped.group_commit.reruns == 1
    assert chain_length_if_whole(grouped) == 13
    with grouped.reading() as s:
        assert s.get(Account, a).balance_minor == 50 + 55


def test_a_unit_of_work_that_reads_and_references_its_transaction_after_posting_finds_it(grouped):
    # given units of work that post, then read their transaction back and reverse it (a row that
    # references the transaction), between others that only post
    a, b = (acc.id for acc in accounts(grouped, 2))

    def read_back(uow, tx):
        stored = uow.session.get(Transaction, tx.sequence)
        assert stored is not None and stored.description == "read back"
        return [e.amount_minor for e in stored.entries]

    def reversed_(uow, tx):
        return journal.reverse(uow, actor="t", sequence=tx.sequence, reason="undo").reverses

    sent = []
    import psycopg
    execute = psycopg.Cursor.execute

    def counting(cur, query, *args, **kwargs):
        sent.append(str(query))
        return execute(cur, query, *args, **kwargs)

    _batch(grouped, [_posting(a, b, 1), _posting(b, a, 1)])  # the memory is up to date
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(psycopg.Cursor, "execute", counting)
        jobs = _batch(grouped, [_posting(a, b, 10), _posting(a, b, 20, description="read back", then=read_back),
                                _posting(a, b, 30), _posting(a, b, 40, then=reversed_), _posting(a, b, 50)])
    # then each found its transaction, and the postings went as few statements, no posting's own
    assert [j.error for j in jobs] == [None] * 5 and grouped.group_commit.reruns == 0
    assert jobs[1].result == [20, -20] and jobs[3].result == 6
    assert sum(q.startswith("WITH head AS (UPDATE ledger_head SET sequence = %(head_sequence)s") for q in sent) == 3
    assert chain_length_if_whole(grouped) == 8
    with grouped.reading() as s:
        assert s.get(Account, a).balance_minor == 10 + 20 + 30 + 50


_ANY_TEXT = st.text(st.one_of(st.sampled_from('\\"{},; \t\nNULL'),
                              st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")), max_size=20)


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(_ANY_TEXT, max_size=6))
def test_property_a_batchs_texts_reach_the_database_as_written(engine, texts):
    # a batch sends its postings' kinds, descriptions and actors as array literals it quotes itself
    if engine.dialect.name != "postgresql":
        pytest.skip("the batched statement is PostgreSQL's")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT %(t)s::text[]", {"t": journal._text_array(texts)}).scalar_one() == texts


@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ints=st.lists(st.integers(-2**63, 2**63 - 1), max_size=6),
       words=st.lists(st.text("abcdefABCDEF0123456789", min_size=1, max_size=8), max_size=6),
       other=st.lists(st.one_of(st.floats(), st.none(), st.text(min_size=1).filter(lambda t: not (t.isascii()
                                                                                                  and t.isalnum()))),
                      min_size=1, max_size=3))
def test_property_a_batchs_numbers_and_words_reach_the_database_as_written_and_nothing_else_goes(engine, ints,
                                                                                                 words, other):
    if engine.dialect.name != "postgresql":
        pytest.skip("the batched statement is PostgreSQL's")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT %(a)s::bigint[]", {"a": journal._array(ints)}).scalar_one() == ints
        assert conn.exec_driver_sql("SELECT %(a)s::text[]", {"a": journal._array(words)}).scalar_one() == words
    for mixed in (other, [*ints, *other], [*words, *other], [*ints[:1], *words[:1]] if ints and words else other):
        with pytest.raises(ValueError):
            journal._array(mixed)
