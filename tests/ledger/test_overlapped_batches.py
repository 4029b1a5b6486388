"""Group commit batches built while the one before them commits (ledger.db.GroupCommit._send).

The writer sends a batch's statement and COMMIT without waiting and builds the next batch on
another connection meanwhile. What a caller depends on must not change: nothing of the next
batch reaches the server before the one before it has committed (so it sees that batch's rows),
a caller is answered only once its own batch is durable, a batch that fails runs again — and so
does the one built behind it — and the chain stays one linear sequence.
"""
from __future__ import annotations

import threading

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import func, select

from ledger.db import Database, GroupCommit, _Job, make_engine
from ledger.errors import ValidationError
from ledger.models import Party, Transaction
from tests.factories import accounts
from tests.ledger.chain_checks import chain_length_if_whole
from tests.ledger.transfers import transfer as _transfer


def _other_process_posts(grouped, a: int, b: int) -> None:
    """A posting by another process: the writer's chain memory is out of date behind its back."""
    other = make_engine(grouped.engine.url.render_as_string(hide_password=False))
    try:
        Database(other).write(_transfer(a, b, "other process"))
    finally:
        other.dispose()


def _overlapped(grouped, *batches) -> list[list[_Job]]:
    """Send `batches` (lists of units of work) as the writer does when callers keep coming: each
    built while the one before it commits; then wait for the last."""
    gc = grouped.group_commit
    sent = []
    for works in batches:
        jobs = [_Job(w) for w in works]
        gc._send(jobs)
        sent.append(jobs)
    gc._settle()
    assert gc._in_flight is None and gc._redo is None
    return sent


def test_a_batch_built_while_the_one_before_commits_sees_that_one_committed(grouped):
    # given a writer whose memory is up to date
    a, b = (acc.id for acc in accounts(grouped, 2))
    _overlapped(grouped, [_transfer(a, b, "warm-up"), _transfer(b, a, "warm-up")])
    seen = []

    def counting(uow):  # a statement of the second batch: it must wait for the first's COMMIT
        seen.append(uow.session.execute(select(func.count()).select_from(Transaction)).scalar_one())
        return _transfer(a, b, "after counting")(uow)

    # when two batches go one behind the other
    first, second = _overlapped(grouped, [_transfer(a, b, f"first {i}") for i in range(5)],
                                [_transfer(b, a, "second 0"), counting, _transfer(b, a, "second 2")])
    # then the second was built while the first was committing, and saw all of it committed (and
    # its own posting before the count)
    assert grouped.group_commit.overlapped >= 1
    assert seen == [2 + 5 + 1]
    assert [j.error for j in first + second] == [None] * 8
    assert [j.result for j in first + second] == list(range(3, 11))
    assert all(j.done.is_set() for j in first + second)
    assert chain_length_if_whole(grouped) == 10


def test_a_batch_that_fails_in_flight_runs_again_and_so_does_the_one_built_behind_it(grouped):
    # given a writer whose memory another process's posting has made out of date
    a, b, c = (acc.id for acc in accounts(grouped, 3))
    _overlapped(grouped, [_transfer(a, b, "warm-up"), _transfer(b, c, "warm-up")])
    _other_process_posts(grouped, c, a)
    reruns = grouped.group_commit.reruns
    # when a batch goes from that memory, and the next is built from the memory it left
    first, second = _overlapped(grouped, [_transfer(a, b, f"first {i}") for i in range(4)],
                                [_transfer(b, c, f"second {i}") for i in range(3)])
    # then the first failed at the server and both ran again, in order; nobody saw an error
    assert grouped.group_commit.reruns > reruns
    assert [j.error for j in first + second] == [None] * 7
    assert [j.result for j in first + second] == list(range(4, 11))
    # (a transfer from x to y adds to x and takes from y)
    assert chain_length_if_whole(grouped, {a: 100 - 100 + 4 * 100, b: -100 + 100 - 4 * 100 + 3 * 100,
                                           c: -100 + 100 - 3 * 100}) == 10


def test_a_caller_that_fails_in_an_overlapped_batch_is_refused_alone(grouped):
    a, b = (acc.id for acc in accounts(grouped, 2))

    def failing(uow):
        _transfer(a, b, "failing")(uow)
        raise ValidationError("refused after posting", code="REFUSED")

    first, second = _overlapped(grouped, [_transfer(a, b, "first 0"), _transfer(a, b, "first 1")],
                                [_transfer(b, a, "second 0"), failing, _transfer(b, a, "second 2")])
    assert [j.error for j in first] == [None, None]
    assert second[0].error is None and second[2].error is None
    assert isinstance(second[1].error, ValidationError)
    assert [j.result for j in first] + [second[0].result, second[2].result] == [1, 2, 3, 4]
    assert chain_length_if_whole(grouped, {a: 0, b: 0}) == 4


def test_a_unit_of_work_in_a_batch_keeps_its_other_writes_and_its_open_savepoint(grouped):
    # given units of work that add a row beside their posting, one of them inside a savepoint it
    # leaves open (its commit releases it)
    a, b = (acc.id for acc in accounts(grouped, 2))

    def with_party(name, nested):
        def work(uow):
            if nested:
                uow.session.begin_nested()
            uow.session.add(Party(name=name, role="PROVIDER"))
            return _transfer(a, b, name)(uow)
        return work

    # when they go in batches one behind the other
    first, second = _overlapped(grouped, [with_party("plain", False), _transfer(b, a, "posting only")],
                                [with_party("in a savepoint", True)])
    # then every row is there
    assert [j.error for j in first + second] == [None] * 3
    with grouped.reading() as s:
        assert set(s.execute(select(Party.name)).scalars()) >= {"plain", "in a savepoint"}
    assert chain_length_if_whole(grouped) == 3


_STEP = st.tuples(st.integers(0, 3), st.integers(1, 3), st.integers(1, 500), st.booleans())  # from, to+k, minor, fails
_BATCHES = st.lists(st.tuples(st.lists(_STEP, min_size=1, max_size=6), st.booleans()), min_size=1, max_size=5)


@hsettings(max_examples=12, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batches=_BATCHES)
def test_property_overlapped_batches_commit_exactly_their_callers_postings_in_one_chain(grouped, batches):
    # given four accounts (the first example makes them; later examples go on from what is there)
    accs = [acc.id for acc in accounts(grouped, 4)]
    with grouped.reading() as s:
        length = s.execute(select(func.count()).select_from(Transaction)).scalar_one()
        expected = {i: grouped_balance for i, grouped_balance in _balances(s, accs).items()}
    works, outcomes = [], []
    for steps, other_first in batches:
        if other_first:  # another process posts before this batch is built (its memory goes stale)
            _other_process_posts(grouped, accs[0], accs[1])
            expected[accs[0]] += 100
            expected[accs[1]] -= 100
            length += 1
        batch = []
        for i, k, minor, fails in steps:
            a, b = accs[i], accs[(i + k) % 4]
            batch.append(_failing(a, b, minor) if fails else _transfer(a, b, f"{a}->{b}", minor))
            outcomes.append((a, b, minor, fails))
        works.append(batch)
    # when the batches go each behind the one before
    sent = [job for jobs in _overlapped(grouped, *works) for job in jobs]
    # then exactly the callers that did not fail committed, in the order they were sent
    for job, (a, b, minor, fails) in zip(sent, outcomes):
        assert isinstance(job.error, ValidationError) if fails else job.error is None
        if not fails:
            expected[a] += minor
            expected[b] -= minor
    results = [job.result for job in sent if job.error is None]
    assert results == sorted(results) and len(set(results)) == len(results)
    assert chain_length_if_whole(grouped, expected) == length + len(results)


def _failing(a: int, b: int, minor: int):
    def work(uow):
        _transfer(a, b, "failing", minor)(uow)
        raise ValidationError("refused after posting", code="REFUSED")
    return work


def _balances(s, ids) -> dict[int, int]:
    from ledger.models import Account
    return dict(s.execute(select(Account.id, Account.balance_minor).where(Account.id.in_(ids))).all())


def test_a_busy_spell_answers_every_caller_and_gives_every_connection_back(grouped):
    # given callers posting all at once through the group commit
    a, b = (acc.id for acc in accounts(grouped, 2))
    errors = []

    def caller(n: int) -> None:
        try:
            for i in range(6):
                grouped.write(_transfer(a, b, f"caller {n} #{i}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then every caller committed, and once they are answered the pool has every connection back
    # (the writer kept some between batches) and nothing is left in flight
    assert errors == []
    assert chain_length_if_whole(grouped) == 48
    assert grouped.engine.pool.checkedout() == 0
    assert grouped.group_commit._spare == [] and grouped.group_commit._in_flight is None


def test_each_unit_of_work_in_a_batch_finds_the_session_as_fresh_as_its_own(grouped):
    # given units of work that leave things in their session: an added row, a loaded one, info
    a, b = (acc.id for acc in accounts(grouped, 2))
    found = []

    def leaving(name):
        def work(uow):
            s = uow.session
            found.append((len(s.identity_map), list(s.new), dict(s.info)))
            s.add(Party(name=name, role="PROVIDER"))
            s.info["left by"] = name
            s.flush()
            s.execute(select(Party).where(Party.name == name)).scalar_one()
            return _transfer(a, b, name)(uow)
        return work

    def failing(uow):
        found.append((len(uow.session.identity_map), list(uow.session.new), dict(uow.session.info)))
        uow.session.add(Party(name="failing", role="PROVIDER"))
        raise ValidationError("refused after adding a row", code="REFUSED")

    # when they run one after another in batches, one of them failing (the batch runs again)
    first, second = _overlapped(grouped, [leaving("one"), leaving("two"), failing, leaving("three")],
                                [leaving("four")])
    # then each found nothing of the one before it but the rows it wrote; the failing one's row is gone
    assert found and all(f == (0, [], {}) for f in found)
    assert [j.error is None for j in first + second] == [True, True, False, True, True]
    assert isinstance(first[2].error, ValidationError)
    with grouped.reading() as s:
        names = list(s.execute(select(Party.name).where(Party.name.in_(["one", "two", "three", "four", "failing"])))
                     .scalars())
    assert sorted(names) == ["four", "one", "three", "two"]
    assert chain_length_if_whole(grouped) == 4


def test_a_kept_connection_goes_back_to_the_pool_after_its_share_of_batches_and_the_next_is_kept(grouped,
                                                                                                 monkeypatch):
    # given a writer that keeps a connection for at most 3 batches
    monkeypatch.setattr(GroupCommit, "BATCHES_PER_CONNECTION", 3)
    a, b = (acc.id for acc in accounts(grouped, 2))
    gc = grouped.group_commit
    connected = []
    real_connect = grouped.engine.connect
    monkeypatch.setattr(grouped.engine, "connect", lambda: connected.append(1) or real_connect())
    # when 24 batches go one behind the other
    jobs = _overlapped(grouped, *[[_transfer(a, b, f"batch {n}")] for n in range(24)])
    # then all committed, on connections kept between batches: each checked out for at most 3
    # batches, so a few checkouts, not one per batch (nor one per batch once a connection is done)
    assert [j.error for batch in jobs for j in batch] == [None] * 24
    assert 24 // 3 <= len(connected) <= 24 // 3 + 2
    gc._release_spares()
    assert grouped.engine.pool.checkedout() == 0


def test_after_another_process_posted_the_writer_builds_its_next_batches_once_from_the_database(grouped, monkeypatch):
    # given a writer whose batch met another process's posting at the server, and ran again; and a
    # lone caller, whose posting was refused at its commit, and ran again
    a, b, c = (acc.id for acc in accounts(grouped, 3))
    gc = grouped.group_commit
    monkeypatch.setattr(gc, "CONTENDED_SECONDS", 600.0)  # (a slow machine must not end it mid-test)
    runs: dict[str, int] = {}

    def counted(label: str, x: int, y: int):
        def work(uow):
            runs[label] = runs.get(label, 0) + 1
            return _transfer(x, y, label)(uow)
        return work

    _overlapped(grouped, [_transfer(a, b, "warm-up"), _transfer(b, c, "warm-up")])
    _other_process_posts(grouped, c, a)
    _overlapped(grouped, [counted("met it", a, b), counted("met it too", b, c)])
    assert runs == {"met it": 2, "met it too": 2}
    reruns = gc.reruns
    # when the other process keeps posting between this writer's batches and lone postings
    for i in range(3):
        _other_process_posts(grouped, b, a)
        _overlapped(grouped, [counted(f"first {i}.{k}", a, b) for k in range(3)],
                    [counted(f"second {i}.{k}", b, c) for k in range(2)])
        _other_process_posts(grouped, c, b)
        grouped.write(counted(f"lone {i}", a, c))
    # then each was built once, from the head and balances the database holds, never refused
    assert {label: n for label, n in runs.items() if not label.startswith("met")} == {
        **{f"first {i}.{k}": 1 for i in range(3) for k in range(3)},
        **{f"second {i}.{k}": 1 for i in range(3) for k in range(2)}, **{f"lone {i}": 1 for i in range(3)}}
    assert gc.reruns == reruns
    assert chain_length_if_whole(grouped) == 4 + 1 + 3 * (5 + 2 + 1)
    # and once the other process has been quiet that long, batches are built from the memory again
    gc._contended_until = 0.0  # (CONTENDED_SECONDS gone by)
    _other_process_posts(grouped, a, c)
    _overlapped(grouped, [counted("from the memory", a, b), counted("from the memory too", b, c)])
    assert runs["from the memory"] == 2 and gc.reruns > reruns
    assert chain_length_if_whole(grouped) == 4 + 1 + 3 * (5 + 2 + 1) + 1 + 2
