"""The writer lease (ledger.db.GroupCommit._lease_if_contended): processes posting at once take
turns as the database's one writer, each for a few batches, instead of batch by batch.

What a caller depends on is unchanged — every acknowledged posting is in one gap-free chain,
balances are the database's — and two things are new: a writer that has taken the lease builds
its batches from its chain memory, caught up once with what the others posted (no refusal, no
read under the head lock per posting); and a writer never keeps another waiting when it has
nothing to post, nor waits for ever on one that is stuck.
"""
from __future__ import annotations

import threading

import psycopg
import pytest
from sqlalchemy import select

from ledger import journal
from ledger.db import _WRITER_LEASE, Database, GroupCommit, make_engine
from ledger.models import Account
from tests.factories import accounts
from tests.ledger.chain_checks import chain_length_if_whole
from tests.ledger.transfers import transfer as _transfer


@pytest.fixture
def other_writer(grouped):
    """A second process's group commit on the same database (its own pool, chain memory and lease)."""
    db = Database(make_engine(grouped.engine.url.render_as_string(hide_password=False)), group_commit=True)
    yield db
    db.group_commit.close()
    db.engine.dispose()


def _conninfo(db: Database) -> str:
    return db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _lease_holders(db: Database) -> int:
    """Sessions holding the writer lease of `db`'s database (other than the caller's)."""
    with psycopg.connect(_conninfo(db), autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                            "AND classid::bigint = %s", (_WRITER_LEASE,)).fetchone()[0]


def _balances(db: Database, ids) -> dict[int, int]:
    with db.reading() as s:
        return dict(s.execute(select(Account.id, Account.balance_minor).where(Account.id.in_(ids))).all())


def test_two_processes_posting_at_once_take_turns_with_the_lease_and_lose_nothing(grouped, other_writer, monkeypatch):
    # given two processes, each with its group commit, whose writers have met each other's postings
    monkeypatch.setattr(GroupCommit, "CONTENDED_SECONDS", 600.0)  # (a slow machine must not end it mid-test)
    accs = [a.id for a in accounts(grouped, 4)]
    grouped.group_commit._contended()
    other_writer.group_commit._contended()
    errors: list[BaseException] = []
    answered: list[int] = []

    def client(db: Database, n: int):
        try:
            for i in range(40):
                answered.append(db.write(_transfer(accs[(n + i) % 4], accs[(n + i + 1) % 4], f"{n}/{i}")))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    # when 3 clients of each post 40 times at once
    threads = [threading.Thread(target=client, args=(db, n)) for n, db in enumerate([grouped, other_writer] * 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then every posting was answered once, in one whole chain, and the accounts sum to nothing
    assert not errors
    assert sorted(answered) == list(range(1, 241))
    assert chain_length_if_whole(grouped) == 240
    assert sum(_balances(grouped, accs).values()) == 0
    # and both writers took the lease, and neither holds it now that nobody posts
    assert grouped.group_commit.leases > 0 and other_writer.group_commit.leases > 0
    assert _lease_holders(grouped) == 0


def test_a_writer_taking_the_lease_catches_its_memory_up_and_posts_from_it_unrefused(grouped, other_writer):
    # given a writer that remembers the chain, and another process that then posted to two of the
    # accounts (and the writer has seen another process's posting refuse its batch lately)
    a, b, c, d = (acc.id for acc in accounts(grouped, 4))
    gc = grouped.group_commit
    grouped.write(_transfer(a, b, "remembered"))
    grouped.write(_transfer(c, d, "remembered"))
    memory = journal.chain_memory(grouped.engine)
    other_writer.write(_transfer(a, c, "the other process", minor=7))
    other_writer.write(_transfer(a, c, "the other process", minor=5))
    gc._contended()
    stale, reruns = memory.stale, gc.reruns
    # when it takes the lease
    gc._lease_if_contended()
    try:
        # then its memory holds the database's head and the balances the other process left
        head, remembered, _nodes = memory.recall([a, b, c, d])
        memory.release()
        assert head[0] == 4
        assert {i: row.balance_minor for i, row in remembered.items()} == _balances(grouped, [a, b, c, d])
        assert remembered[a].balance_minor == 100 + 12 and remembered[c].balance_minor == 100 - 12
        # and its next postings, from that memory, are neither refused nor made again
        grouped.write(_transfer(c, a, "after the catch-up"))
        grouped.write(_transfer(b, d, "after the catch-up"))
    finally:
        gc._release_lease()
    assert memory.stale == stale and gc.reruns == reruns
    assert chain_length_if_whole(grouped, {a: 12, b: 0, c: 188, d: -200}) == 6


def test_a_memory_caught_up_after_a_chain_it_does_not_know_is_forgotten(grouped):
    # given a writer remembering a head the database no longer holds (a restore, say)
    a, b = (acc.id for acc in accounts(grouped, 2))
    grouped.write(_transfer(a, b, "remembered"))
    memory = journal.chain_memory(grouped.engine)
    head, remembered, nodes = memory.recall([a, b])
    memory.learn(head, (head[0], "0" * 64, head[2]), remembered, nodes, returning=True)
    # when it catches up
    with psycopg.connect(_conninfo(grouped), autocommit=True) as conn:
        memory.catch_up(conn)
    # then it remembers nothing, and the next posting is made from the database
    assert memory.recall([a, b]) is None
    grouped.write(_transfer(b, a, "from the database"))
    assert chain_length_if_whole(grouped, {a: 0, b: 0}) == 2


def test_a_writer_with_nothing_to_post_lets_the_lease_go(grouped, other_writer):
    # given a writer that takes the lease for a batch, the other process's posting having been met
    a, b = (acc.id for acc in accounts(grouped, 2))
    grouped.write(_transfer(a, b, "first"))
    other_writer.write(_transfer(b, a, "the other process"))
    grouped.group_commit._contended()
    leases = grouped.group_commit.leases
    # when its callers are answered and nobody else comes
    grouped.write(_transfer(a, b, "under the lease"))
    # then it took the lease for that, and nobody holds it now: the other process never waits on it
    assert grouped.group_commit.leases == leases + 1
    assert _lease_holders(grouped) == 0
    other_writer.write(_transfer(b, a, "the other process, at once"))
    assert chain_length_if_whole(grouped, {a: 0, b: 0}) == 4


def test_a_writer_whose_lease_is_held_too_long_posts_without_it(grouped, monkeypatch):
    # given a stuck process holding the writer lease, and a writer that has met another's posting
    monkeypatch.setattr(GroupCommit, "LEASE_WAIT", "50ms")
    a, b = (acc.id for acc in accounts(grouped, 2))
    grouped.write(_transfer(a, b, "first"))
    with psycopg.connect(_conninfo(grouped), autocommit=True) as stuck:
        stuck.execute("SELECT pg_advisory_lock(%s, hashtext(current_schema()))", (_WRITER_LEASE,))
        grouped.group_commit._contended()
        # when a caller posts
        sequence = grouped.write(_transfer(b, a, "without the lease"))
        # then it is posted all the same, without the lease (the database checks every posting)
        assert sequence == 2
        assert grouped.group_commit.leases == 0 and grouped.group_commit.leases_given_up == 1
        # and the next ones do not wait for it again while the holder may still be stuck
        monkeypatch.setattr(GroupCommit, "LEASE_WAIT", "60s")
        grouped.group_commit._contended()
        assert grouped.write(_transfer(a, b, "still without it")) == 3
        assert grouped.group_commit.leases_given_up == 1
    assert chain_length_if_whole(grouped, {a: 100, b: -100}) == 3


def test_a_memory_far_behind_the_database_is_forgotten_not_caught_up(grouped, other_writer, monkeypatch):
    # given a writer remembering the chain, and another process that has since posted more than a
    # catch-up reads
    a, b = (acc.id for acc in accounts(grouped, 2))
    grouped.write(_transfer(a, b, "remembered"))
    memory = journal.chain_memory(grouped.engine)
    monkeypatch.setattr(memory, "CATCH_UP_MOST", 2)
    for i in range(3):
        other_writer.write(_transfer(b, a, f"the other process {i}"))
    # when it catches up
    with psycopg.connect(_conninfo(grouped), autocommit=True) as conn:
        memory.catch_up(conn)
    # then it remembers nothing, and its next posting is made from the database
    assert memory.recall([a, b]) is None
    grouped.write(_transfer(a, b, "from the database"))
    assert chain_length_if_whole(grouped, {a: -100, b: 100}) == 5


def test_a_lease_found_not_held_when_let_go_is_never_taken_again(grouped, other_writer):
    # given a writer whose lease was not held by its session when it let it go (as behind a pooler
    # that gives each statement a server session of its own)
    a, b = (acc.id for acc in accounts(grouped, 2))
    grouped.write(_transfer(a, b, "first"))
    other_writer.write(_transfer(b, a, "the other process"))
    gc = grouped.group_commit
    gc._contended()
    gc._lease_if_contended()
    assert gc.leases == 1
    gc._lease_conn.execute("SELECT pg_advisory_unlock_all()")
    gc._release_lease()
    # when its callers post again while others are posting
    gc._contended()
    grouped.write(_transfer(a, b, "without the lease"))
    # then it posts without the lease from then on, and says so
    assert gc.leases == 1 and gc.leases_given_up == 1
    assert chain_length_if_whole(grouped, {a: 100, b: -100}) == 3
