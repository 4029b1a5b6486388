"""Group commit (ledger.db.GroupCommit): units of work from many threads committed in batches by
one writer, each whole, each caller answered only once its own work is durable.

The guarantees a caller depends on are the ones a unit of work of its own gives: the chain stays
one gap-free linear sequence under concurrency; a caller's posting and its other writes commit
or vanish together; a caller whose work fails is refused alone and leaves nothing behind,
whatever else its batch holds.
"""
from __future__ import annotations

import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, select, text

from ledger import journal
from ledger.db import Database, _Answered, _Job
from ledger.errors import Conflict, ValidationError
from ledger.models import Account, Party, Transaction
from tests.factories import accounts
from tests.ledger.transfers import transfer as _transfer


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


def _batch(grouped, works) -> list[_Job]:
    """Run `works` as ONE batch of the group commit (as if they had all been waiting), in order."""
    jobs = [_Job(w) for w in works]
    grouped.group_commit._commit(jobs)
    return jobs


def _head_locks(engine):
    """A counter of the head lock reads sent from now on (postings that read the head afresh)."""
    import psycopg
    seen = []
    execute = psycopg.Cursor.execute

    def counting(cur, query, *a, **k):
        if "FOR UPDATE" in str(query):
            seen.append(query)
        return execute(cur, query, *a, **k)
    return seen, counting


def _verified(grouped, expected_transactions: int) -> None:
    with grouped.reading() as s:
        seqs = s.execute(select(Transaction.sequence).order_by(Transaction.sequence)).scalars().all()
        assert seqs == list(range(1, expected_transactions + 1))
        assert sum(a.balance_minor for a in s.execute(select(Account)).scalars()) == 0
        result = journal.verify(s)
        assert result.ok, result
        from ledger import tree
        conn = s.connection()
        assert tree.root(conn, expected_transactions) == tree.rebuilt_root(conn, expected_transactions)


def test_a_batch_reads_the_head_once_and_posts_the_rest_from_its_memory(grouped, monkeypatch):
    # given 3 accounts and a batch of 40 postings between them
    import psycopg
    accs = [a.id for a in accounts(grouped, 3)]
    seen, counting = _head_locks(grouped.engine)
    monkeypatch.setattr(psycopg.Cursor, "execute", counting)
    # when
    jobs = _batch(grouped, [_transfer(accs[i % 3], accs[(i + 1) % 3], f"p{i}") for i in range(40)])
    monkeypatch.undo()
    # then every posting is there, chained, balanced, in the Merkle tree; the head was read once
    assert [j.error for j in jobs] == [None] * 40 and [j.result for j in jobs] == list(range(1, 41))
    assert len(seen) == 1
    _verified(grouped, 40)


def test_a_batch_sends_no_savepoint_and_one_statement_for_all_its_postings(grouped, monkeypatch):
    # given a batch of postings whose memory is up to date (a first batch read the head)
    import psycopg
    accs = [a.id for a in accounts(grouped, 3)]
    _batch(grouped, [_transfer(accs[0], accs[1], "first"), _transfer(accs[1], accs[2], "second")])
    sent: list[str] = []
    execute = psycopg.Cursor.execute
    monkeypatch.setattr(psycopg.Cursor, "execute", lambda cur, query, *a, **k: (sent.append(str(query)),
                                                                                 execute(cur, query, *a, **k))[1])
    # when
    jobs = _batch(grouped, [_transfer(accs[i % 3], accs[(i + 1) % 3], f"p{i}") for i in range(10)])
    monkeypatch.undo()
    # then
    assert [j.error for j in jobs] == [None] * 10 and grouped.group_commit.reruns == 0
    assert not [q for q in sent if "SAVEPOINT" in q.upper()], sent
    assert len(sent) == 1 and sent[0].startswith("WITH head AS (UPDATE ledger_head"), sent
    _verified(grouped, 12)


def test_a_batch_whose_queued_postings_met_another_process_runs_again_and_loses_nothing(grouped):
    # given a batch writer whose memory is up to date, then another process posts (the head moves
    # behind the memory's back)
    from ledger.db import make_engine
    accs = [a.id for a in accounts(grouped, 3)]
    _batch(grouped, [_transfer(accs[0], accs[1], "first"), _transfer(accs[1], accs[2], "second")])
    other = make_engine(grouped.engine.url.render_as_string(hide_password=False))
    try:
        Database(other).write(_transfer(accs[2], accs[0], "other process"))
    finally:
        other.dispose()

    def renaming(uow):  # an ORM read and update after postings were queued: their own rowcount
        account = uow.session.get(Account, accs[0])
        account.name = "renamed in the batch"
        uow.session.flush()
        return _transfer(accs[0], accs[2], "after the rename")(uow)

    # when a batch's postings are queued from the stale memory, with an ORM write among them
    jobs = _batch(grouped, [_transfer(accs[i % 3], accs[(i + 1) % 3], f"p{i}") for i in range(4)] + [renaming])
    # then the batch was run again, and every caller got its posting in one whole chain
    assert [j.error for j in jobs] == [None] * 5 and [j.result for j in jobs] == [4, 5, 6, 7, 8]
    assert grouped.group_commit.reruns == 1
    _verified(grouped, 8)
    with grouped.reading() as s:
        assert s.get(Account, accs[0]).name == "renamed in the batch"


def test_a_caller_rolled_back_after_posting_leaves_the_batch_memory_no_fork(grouped):
    # given postings in one batch where every third caller fails after posting, and some callers
    # post inside a nested savepoint they roll back (as evidence and disputes use cases do)
    a, b, c = (acc.id for acc in accounts(grouped, 3))

    def failing(i):
        def work(uow):
            _transfer(a, b, f"failing {i}")(uow)
            raise ValidationError("refused after posting", code="REFUSED")
        return work

    def nested_rolled_back(i):
        def work(uow):
            first = _transfer(b, c, f"kept {i}")(uow)
            nested = uow.session.begin_nested()
            _transfer(a, c, f"undone {i}")(uow)
            nested.rollback()
            return first, _transfer(c, a, f"after {i}")(uow)
        return work

    works = []
    for i in range(12):
        works += [_transfer(a, b, f"plain {i}"), failing(i), nested_rolled_back(i)]
    # when
    jobs = _batch(grouped, works)
    # then the failed callers got their error and left nothing; the chain has no fork or gap
    assert all(isinstance(j.error, ValidationError) for j in jobs[1::3])
    assert all(j.error is None for j in jobs[0::3] + jobs[2::3])
    # and each posting after a rollback found the memory out of date and read the head instead
    _verified(grouped, 12 * 3)
    with grouped.reading() as s:
        described = s.execute(select(Transaction.description)).scalars().all()
        assert not [d for d in described if d.startswith(("failing", "undone"))]


@pytest.mark.parametrize("ahead, other_hash", [(5, False), (-1, False), (0, True)],
                         ids=["later head", "earlier head", "same sequence, other hash"])
def test_a_stale_chain_memory_is_caught_and_the_posting_made_again(grouped, ahead, other_hash):
    # given a batch whose chain memory of the head goes wrong behind its back (what a missed
    # rollback or another process would do): the second caller makes the memory claim another
    # head than the database's
    a, b = (acc.id for acc in accounts(grouped, 2))

    def corrupting(uow):
        sequence = _transfer(a, b, "second")(uow)
        memory = journal.chain_memory(uow.session.connection())
        head_sequence, head_hash, posted_at = memory._head
        memory._head = (head_sequence + ahead, "ab" * 32 if other_hash else head_hash, posted_at)
        return sequence

    memory = journal.chain_memory(grouped.engine)
    stale_before = memory.stale
    # when
    jobs = _batch(grouped, [_transfer(a, b, "first"), corrupting, _transfer(a, b, "third"),
                            _transfer(b, a, "fourth")])
    # then the posting that met the stale memory was refused: if by the database, the batch (its
    # postings queued without savepoints) was rolled back and run again, where the corrupting
    # caller corrupted the memory again, and the posting, now with a savepoint to fall back to,
    # was rolled back to it (if refused before it wrote, at once) and made again from what the
    # database holds: nobody sees an error, the chain is whole
    assert [j.error for j in jobs] == [None] * 4 and [j.result for j in jobs] == [1, 2, 3, 4]
    reruns = grouped.group_commit.reruns
    assert reruns in (0, 1) and stale_before < memory.stale <= stale_before + 1 + reruns
    _verified(grouped, 4)


def test_an_account_closed_in_a_batch_refuses_later_postings_of_the_batch(grouped):
    # given two accounts that post in a batch, then are emptied and one is closed in the batch
    a, b, c = (acc.id for acc in accounts(grouped, 3))

    def close(uow):
        return journal.close_account(uow, c).id

    jobs = _batch(grouped, [_transfer(a, c, "in", 100), _transfer(c, a, "out", 100), close,
                            _transfer(a, c, "after closing")])
    # then the posting after the close is refused, as it is outside a batch
    assert [j.error for j in jobs[:3]] == [None] * 3
    assert isinstance(jobs[3].error, Conflict) and jobs[3].error.code == "ACCOUNT_CLOSED"
    _verified(grouped, 2)


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


@pytest.mark.parametrize("first_run", ["sent", "committed"])
def test_a_batch_with_many_refused_callers_runs_each_unit_of_work_at_most_twice(grouped, first_run):
    # given a batch of 16 callers that each post and add a party, every other one then refused
    # (an adversary's invalid mutations arriving among valid ones): the batch's first run fails
    # on the first refusal; what runs after it must not start over at every later refusal, or
    # a batch of 64 would run its units of work hundreds of times
    a, b = (acc.id for acc in accounts(grouped, 2))
    runs = [0] * 16

    def work(i: int):
        def run(uow):
            runs[i] += 1
            uow.session.add(Party(name=f"caller {i}", role="PROVIDER"))
            uow.session.flush()
            sequence = _transfer(a, b, f"caller {i}")(uow)
            if i % 2:
                raise ValidationError("refused after posting", code="REFUSED")
            return sequence
        return run

    # when they run as one batch: sent as a batch's first run is, or committed after one failed
    jobs = [_Job(work(i)) for i in range(16)]
    if first_run == "sent":
        grouped.group_commit._send(jobs)
        grouped.group_commit._settle()
    else:
        grouped.group_commit._commit(jobs)

    # then each refused caller got its own error, the others their postings, and nobody's work
    # ran more than twice
    assert [type(j.error).__name__ for j in jobs] == ["NoneType", "ValidationError"] * 8
    assert all(j.done.is_set() for j in jobs)
    assert max(runs) <= 2, runs
    with grouped.reading() as s:
        parties = set(s.execute(select(Party.name).where(Party.name.like("caller %"))).scalars())
        assert parties == {f"caller {i}" for i in range(0, 16, 2)}
        assert s.execute(select(Account.balance_minor).where(Account.id == a)).scalar_one() == 8 * 100
    _verified(grouped, 8)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(refused=st.lists(st.booleans(), min_size=1, max_size=12), first_run=st.sampled_from(["sent", "committed"]))
def test_any_mix_of_refused_callers_leaves_exactly_the_others_and_runs_nobody_more_than_twice(
        grouped, refused, first_run):
    # given a batch of callers that each post and add a party, some of them then refused
    a, b = (acc.id for acc in accounts(grouped, 2))
    with grouped.reading() as s:
        before = s.execute(select(func.count()).select_from(Transaction)).scalar_one()
    runs = [0] * len(refused)

    def work(i: int):
        def run(uow):
            runs[i] += 1
            uow.session.add(Party(name=f"mix {a} {i}", role="PROVIDER"))
            uow.session.flush()
            _transfer(a, b, f"mix {a} {i}")(uow)
            if refused[i]:
                raise ValidationError("refused after posting", code="REFUSED")
        return run

    jobs = [_Job(work(i)) for i in range(len(refused))]
    if first_run == "sent":
        grouped.group_commit._send(jobs)
        grouped.group_commit._settle()
    else:
        grouped.group_commit._commit(jobs)

    # then exactly the refused ones got an error and left nothing, and nobody ran more than twice
    assert [isinstance(j.error, ValidationError) for j in jobs] == refused
    assert max(runs) <= 2, runs
    kept = {f"mix {a} {i}" for i, r in enumerate(refused) if not r}
    with grouped.reading() as s:
        assert set(s.execute(select(Party.name).where(Party.name.like(f"mix {a} %"))).scalars()) == kept
        assert set(s.execute(select(Transaction.description).where(
            Transaction.description.like(f"mix {a} %"))).scalars()) == kept
        assert s.execute(select(Account.balance_minor).where(Account.id == a)).scalar_one() == 100 * len(kept)
    _verified(grouped, before + len(kept))


def test_callers_the_writer_leaves_waiting_run_their_units_of_work_themselves(grouped, monkeypatch):
    # given a writer held up inside a unit of work (waiting, as one does for a row lock another
    # transaction holds, or a payout over many items)
    monkeypatch.setattr(grouped.group_commit, "WAIT_FOR_WRITER_SECONDS", 0.2)
    a, b = (acc.id for acc in accounts(grouped, 2))
    inside, release = threading.Event(), threading.Event()
    held: list = []
    meanwhile: dict[str, int] = {}
    runs: list[str] = []

    def held_up(uow):
        inside.set()
        assert release.wait(30)
        return _transfer(a, b, "held up")(uow)

    def posting(name: str):
        def run(uow):
            runs.append(name)
            return _transfer(a, b, name)(uow)
        return run

    writer = threading.Thread(target=lambda: held.append(grouped.write(held_up)))
    writer.start()
    assert inside.wait(30)

    # when four other callers write meanwhile
    callers = [threading.Thread(target=lambda n=n: meanwhile.__setitem__(f"meanwhile {n}", grouped.write(
        posting(f"meanwhile {n}")))) for n in range(4)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(30)

    # then they are answered while the writer is still held up: each ran its own unit of work, once
    assert not release.is_set() and writer.is_alive()
    assert set(runs) == set(meanwhile) == {f"meanwhile {n}" for n in range(4)}
    assert grouped.group_commit.taken_back == 4
    ran_alone = list(runs)
    release.set()
    writer.join(30)
    # and the writer, let go, commits its own and skips the units of work taken back (still queued)
    assert held and runs == ran_alone
    with grouped.reading() as s:
        committed = dict(s.execute(select(Transaction.description, Transaction.sequence)).all())
    assert committed == {**meanwhile, "held up": held[0]}
    _verified(grouped, 5)


def _head_held_by_another(grouped):
    """Two accounts with a posting between them (the writer's chain memory holds the head), and a
    connection of another transaction holding the chain head's row lock: postings sent wait for it."""
    a, b = (acc.id for acc in accounts(grouped, 2))
    grouped.write(_transfer(a, b, "before"))
    outsider = grouped.engine.connect()
    outsider.begin()
    outsider.execute(text("SELECT 1 FROM ledger_head WHERE id = 1 FOR UPDATE"))
    return a, b, outsider


def test_the_writer_goes_back_to_its_own_work_once_answered_and_a_caller_whose_batch_is_out_writes_on(grouped):
    # given a chain memory (one posting made) and another transaction holding the chain head's row
    # lock, so that a batch of postings sent to the server waits there for it
    a, b, outsider = _head_held_by_another(grouped)
    group_commit = grouped.group_commit
    inside = threading.Event()
    answered: dict[str, object] = {}

    def own_work(uow):
        # the writer's own unit of work adds a party (no posting: it would wait for the head too),
        # and ends only once two other callers are queued behind it
        inside.set()
        deadline = time.monotonic() + 30
        while group_commit._jobs.qsize() < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        uow.session.add(Party(name="the writer's own", role="PROVIDER"))
        uow.session.flush()
        return "own"

    def write(name, fn):
        return threading.Thread(target=lambda: answered.__setitem__(name, grouped.write(fn)))

    writer = write("own", own_work)
    writer.start()
    assert inside.wait(30)
    others = [write(name, _transfer(a, b, name)) for name in ("first", "second")]
    for t in others:
        t.start()
    try:
        # when its own is committed and the others' batch is sent, waiting at the server
        writer.join(10)
        # then the writer is answered and back at its own work while the others still wait
        assert not writer.is_alive() and answered == {"own": "own"}
        assert all(t.is_alive() for t in others)
    finally:
        outsider.rollback()
        outsider.close()
    # and once the head is free, a caller of that batch, woken, wrote on: both answered, committed
    for t in others:
        t.join(30)
    assert set(answered) == {"own", "first", "second"}
    with grouped.reading() as s:
        committed = dict(s.execute(select(Transaction.description, Transaction.sequence)).all())
        assert s.execute(select(Party.name).where(Party.name == "the writer's own")).scalar_one()
    assert committed == {"before": 1, "first": answered["first"], "second": answered["second"]}
    _verified(grouped, 3)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.sampled_from(["wake", "set", "wait"]), max_size=12))
def test_a_caller_woken_to_write_on_is_not_answered_and_an_answer_is_never_missed(steps):
    # a waiting caller is woken either by its answer or to write on (`_Answered.wake`); in any
    # order of wakes, answers and waits, a wait says whether it was answered, never raises, and
    # returns at once once woken or answered
    answered, woken = _Answered(), False
    for step in steps:
        if step == "wake":
            answered.wake()
            woken = True
        elif step == "set":
            answered.set()
        else:
            started = time.monotonic()
            assert answered.wait(5 if (woken or answered.is_set()) else 0) == answered.is_set()
            assert time.monotonic() - started < 1
            woken = False
    assert answered.wait(0) == ("set" in steps)


def test_callers_who_come_while_a_batch_is_out_go_in_the_batch_built_meanwhile(grouped):
    # given a chain memory and another transaction holding the chain head's row lock, so that a
    # batch sent to the server (first, second) waits there, and a next batch (third) built meanwhile
    a, b, outsider = _head_held_by_another(grouped)
    group_commit = grouped.group_commit
    answered: dict[str, object] = {}
    threads: list[threading.Thread] = []

    def write(name, fn):
        def call():
            try:
                answered[name] = grouped.write(fn)
            except ValidationError as exc:
                answered[name] = exc
        threads.append(threading.Thread(target=call))
        threads[-1].start()

    def until(condition, what):
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline, what
            time.sleep(0.001)

    writing = threading.Event()

    def own_work(uow):  # the first writer's own (no posting), done once first and second are queued
        writing.set()
        until(lambda: group_commit._jobs.qsize() >= 2, "first and second queued")
        uow.session.add(Party(name="the writer's own", role="PROVIDER"))
        uow.session.flush()
        return "own"

    def first(uow):  # built into the batch that goes out; third comes while it is built
        sequence = _transfer(a, b, "first")(uow)
        write("third", _transfer(a, b, "third"))
        until(lambda: group_commit._jobs.qsize() >= 1, "third queued")
        return sequence

    def refused(uow):
        _transfer(a, b, "fifth")(uow)
        raise ValidationError("refused after posting", code="REFUSED")

    try:
        write("own", own_work)
        assert writing.wait(30)  # (its caller is the writer)
        write("first", first)
        write("second", _transfer(a, b, "second"))
        # when third's batch is built and the writer waits for the batch out (held at the head)
        until(lambda: group_commit._absorbing, "the writer waiting for the batch out with a batch built")
        before = group_commit.batches
        # and two more callers come meanwhile, one of them refused after posting
        write("fourth", _transfer(a, b, "fourth"))
        write("fifth", refused)
        until(lambda: group_commit._jobs.qsize() == 0, "fourth and fifth taken")
        time.sleep(0.05)
        assert group_commit.batches == before  # all still held at the server
    finally:
        outsider.rollback()
        outsider.close()
    for t in threads:
        t.join(30)
    # then they went in third's batch: the two batches held up and, for the refused one's rerun,
    # nothing more than a rerun of that same batch (not a batch of their own after it)
    assert group_commit.batches - before == 2
    assert isinstance(answered["fifth"], ValidationError)
    assert {k: v for k, v in answered.items() if k != "fifth"}.keys() == {"own", "first", "second", "third", "fourth"}
    with grouped.reading() as s:
        committed = dict(s.execute(select(Transaction.description, Transaction.sequence)).all())
    assert committed == {"before": 1, **{name: answered[name] for name in ("first", "second", "third", "fourth")}}
    _verified(grouped, 5)
