"""The chain memory (ledger.journal.ChainMemory): a process posts from the head, balances and
Merkle nodes it wrote last, without reading them, and the database refuses any of it that has
gone out of date. Several processes (here: several engines, each with its own pool and memory)
post to one database; whatever order their postings and rollbacks come in, the chain stays one
gap-free linear sequence, every running balance is the sum of the account's entries, and the
Merkle tree matches the journal.
"""
from __future__ import annotations

import contextlib
import threading
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from sqlalchemy import select

from ledger import journal, tree
from ledger import money as m
from ledger.db import Database, make_engine
from ledger.errors import Conflict
from ledger.models import Account
from tests.factories import accounts
from tests.ledger.chain_checks import chain_length_if_whole


class _Refused(Exception):
    """Raised by a unit of work after its posting, so the posting is rolled back."""


def _url(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
def processes(fresh_engine):
    """Three Databases on one database, each on an engine of its own: three processes' memories."""
    engines = [make_engine(_url(fresh_engine)) for _ in range(3)]
    yield [Database(e) for e in engines]
    for e in engines:
        e.dispose()


def _post(db: Database, a: int, b: int, minor: int, description: str = "p") -> int:
    def work(uow):
        return journal.post(uow, actor="t", kind="TEST", description=description, effective_date=date(2026, 2, 1),
                            postings=[journal.Posting(a, m.from_minor(minor, "SEK")),
                                      journal.Posting(b, m.from_minor(-minor, "SEK"))]).sequence
    return db.write(work)


def _whole(db: Database, expected: dict[int, int] | None = None) -> int:
    """Assert the chain is whole (gap-free, linear, balances = entries, Merkle tree = journal); its length."""
    return chain_length_if_whole(db, expected)


def test_two_processes_posting_alternately_keep_one_chain_and_right_balances(processes):
    # given two processes that both remember what they posted last
    first, second = processes[:2]
    a, b, c = (acc.id for acc in accounts(first, 3))
    expected = {a: 0, b: 0, c: 0}
    # when they post in turn to the same accounts, each time after the other moved the head
    for i in range(1, 21):
        db = first if i % 2 else second
        x, y = (a, b) if i % 3 else (b, c)
        assert _post(db, x, y, i) == i
        expected[x] += i
        expected[y] -= i
    # then every posting after the other's was caught out of date and made from the database
    assert _whole(first, expected) == 20
    if first.dialect == "postgresql":  # SQLite posts without a memory (a round trip is a call)
        assert sum(journal.chain_memory(db.engine).stale for db in (first, second)) >= 18


def test_a_process_that_remembers_an_account_open_cannot_post_to_it_once_another_closed_it(processes):
    # given a process that posted to an account and back (it remembers it open, balance 0)
    first, second = processes[:2]
    a, b = (acc.id for acc in accounts(first, 2))
    _post(first, a, b, 500)
    _post(first, b, a, 500)
    # when another process closes it (without moving the head)
    second.write(lambda uow: journal.close_account(uow, b))
    # then the first process's next posting to it is refused, as from a fresh read
    with pytest.raises(Conflict) as refused:
        _post(first, a, b, 100)
    assert refused.value.code == "ACCOUNT_CLOSED"
    assert _whole(first, {a: 0, b: 0}) == 2


def test_processes_posting_side_by_side_from_threads_keep_the_chain_whole(processes):
    # given three processes of four threads each, posting onto shared accounts
    accs = [acc.id for acc in accounts(processes[0], 4)]
    errors: list[BaseException] = []
    posted: list[int] = []

    def worker(db: Database, n: int):
        try:
            for i in range(30):
                posted.append(_post(db, accs[(n + i) % 4], accs[(n + i + 1) % 4], 100 + i, f"{n}/{i}"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(db, 4 * k + n)) for k, db in enumerate(processes)
               for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then every acknowledged posting is in one gap-free chain, balances sum to zero
    assert not errors
    assert _whole(processes[0]) == 360 and sorted(posted) == list(range(1, 361))
    with processes[0].reading() as s:
        assert sum(s.execute(select(Account.balance_minor).where(Account.id.in_(accs))).scalars()) == 0


_STEPS = st.lists(st.tuples(
    st.integers(0, 2),  # which process
    st.sampled_from(["post", "post then fail", "post, undo a nested one, post", "close an empty account"]),
    st.integers(0, 3), st.integers(1, 3),  # the accounts (a, a + k), as indexes among 4
    st.integers(1, 10_000),  # öre
), min_size=1, max_size=12)


@hsettings(max_examples=20, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=_STEPS)
def test_property_interleaved_processes_never_fork_the_chain_or_misstate_a_balance(processes, steps):
    # given four accounts every process may post to, and a closable one per example
    accs = [acc.id for acc in accounts(processes[0], 4)]
    expected = dict.fromkeys(accs, 0)
    closable = [acc.id for acc in accounts(processes[0], 1)][0]
    length = _whole(processes[0])
    for who, action, i, k, minor in steps:
        db, x, y = processes[who], accs[i], accs[(i + k) % 4]
        if action == "post":
            _post(db, x, y, minor)
            expected[x] += minor
            expected[y] -= minor
            length += 1
        elif action == "post then fail":
            def failing(uow):
                _post_in(uow, x, y, minor)
                raise _Refused()
            with pytest.raises(_Refused):
                db.write(failing)
        elif action == "post, undo a nested one, post":
            def nested(uow):
                _post_in(uow, x, y, minor)
                savepoint = uow.session.begin_nested()
                _post_in(uow, y, x, minor + 1)
                savepoint.rollback()
                _post_in(uow, y, x, 1)
            db.write(nested)
            expected[x] += minor - 1
            expected[y] -= minor - 1
            length += 2
        else:
            # a process remembers the account open (posted to and back), another closes it
            _post(db, closable, x, minor)
            _post(db, x, closable, minor)
            length += 2
            processes[(who + 1) % 3].write(lambda uow: journal.close_account(uow, closable))
            with pytest.raises(Conflict):
                _post(db, x, closable, minor)
            closable = [acc.id for acc in accounts(processes[0], 1)][0]
    # then one gap-free linear chain of every committed posting, balances as posted
    assert _whole(processes[0], expected) == length


def _post_in(uow, a: int, b: int, minor: int) -> None:
    journal.post(uow, actor="t", kind="TEST", description="in a unit of work", effective_date=date(2026, 2, 1),
                 postings=[journal.Posting(a, m.from_minor(minor, "SEK")),
                           journal.Posting(b, m.from_minor(-minor, "SEK"))])


def test_a_unit_of_work_that_met_an_out_of_date_memory_runs_again_whole(processes):
    # given a process whose memory another process has put out of date
    first, second = processes[:2]
    a, b, c = (acc.id for acc in accounts(first, 3))
    _post(first, a, b, 100)
    _post(second, b, c, 40)
    runs: list[bool] = []

    def work(uow):
        # a unit of work that writes before its posting, and swallows whatever the posting raises
        runs.append(uow.may_rerun)
        journal.open_account(uow, code=f"SIDE_{len(runs)}", name="side", party_id=_party_of(first, a),
                             currency="SEK")
        try:
            return journal.post(uow, actor="t", kind="TEST", description="third", effective_date=date(2026, 2, 1),
                                postings=[journal.Posting(a, m.from_minor(7, "SEK")),
                                          journal.Posting(c, m.from_minor(-7, "SEK"))]).sequence
        except Exception:  # noqa: BLE001 - what a careless use case does: it must not commit a failed transaction
            return None

    # when
    sequence = first.write(work)
    # then
    assert _whole(first, {a: 107, b: -60, c: -47}) == 3 and sequence == 3
    with first.reading() as s:
        sides = s.execute(select(Account.code).where(Account.code.like("SIDE_%"))).scalars().all()
    if first.dialect == "postgresql":
        # the first run sent no savepoint and failed whole; the second, with savepoints, made it
        assert runs == [True, False] and sides == ["SIDE_2"]
    else:  # SQLite posts without a memory
        assert runs == [True] and sides == ["SIDE_1"]


def _party_of(db: Database, account_id: int) -> int:
    with db.reading() as s:
        return s.get(Account, account_id).party_id


def _posting(a: int, b: int, minor: int, runs: list | None = None, then=None):
    def work(uow):
        if runs is not None:
            runs.append(uow.may_rerun)
        tx = journal.post(uow, actor="t", kind="TEST", description="p", effective_date=date(2026, 2, 1),
                          postings=[journal.Posting(a, m.from_minor(minor, "SEK")),
                                    journal.Posting(b, m.from_minor(-minor, "SEK"))])
        if then is not None:
            then(uow)
        return tx.sequence
    return work


def test_a_posting_through_write_waits_for_the_server_once_and_runs_once(processes, tmp_path):
    # given a process that remembers the head and both accounts
    first = processes[0]
    if first.dialect != "postgresql":
        pytest.skip("the round trips concern PostgreSQL")
    a, b = (acc.id for acc in accounts(first, 2))
    _post(first, a, b, 1)
    _post(first, b, a, 1)
    assert first.engine.pool.checkedin() == 1  # one connection, used one unit of work at a time: the one traced
    with first.engine.connect() as conn:
        raw = conn.connection.driver_connection
    import psycopg
    trace = tmp_path / "libpq.trace"
    with open(trace, "w") as f:
        raw.pgconn.trace(f.fileno())
        raw.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)
        runs: list[bool] = []
        try:
            # when a unit of work that only posts runs through Database.write
            sequence = first.write(_posting(a, b, 5, runs))
        finally:
            raw.pgconn.untrace()
    # then BEGIN, the posting and COMMIT went together, and the client waited for the server once
    sent = [line for line in trace.read_text().splitlines() if line.startswith("F")]
    received = [line for line in trace.read_text().splitlines() if line.startswith("B")]
    assert sum("ReadyForQuery" in line for line in received) == 1, received
    parsed = [line for line in sent if "Parse" in line or "Query" in line]
    assert '"BEGIN"' in parsed[0] and '"COMMIT"' in parsed[-1], parsed
    assert runs == [True] and sequence == 3
    assert _whole(first, {a: 5, b: -5}) == 3


def test_a_unit_of_work_that_posts_then_fails_leaves_nothing_and_the_next_posts(processes):
    # given a process that remembers the head and the accounts
    first = processes[0]
    a, b = (acc.id for acc in accounts(first, 2))
    _post(first, a, b, 10)
    runs: list[bool] = []

    def refuse(_uow):
        raise _Refused()

    # when a unit of work posts (queued, on PostgreSQL) and then raises
    with pytest.raises(_Refused):
        first.write(_posting(a, b, 7, runs, then=refuse))
    # then nothing of it is written, and the next posting takes the head as it is
    assert _whole(first, {a: 10, b: -10}) == 1
    assert _post(first, b, a, 3) == 2
    assert _whole(first, {a: 7, b: -7}) == 2


def test_a_unit_of_work_that_posts_then_writes_more_commits_both(processes):
    # given a process that remembers the head and the accounts
    first = processes[0]
    a, b = (acc.id for acc in accounts(first, 2))
    _post(first, a, b, 10)
    party = _party_of(first, a)
    runs: list[bool] = []

    def more(uow):
        journal.open_account(uow, code="AFTER", name="after", party_id=party, currency="SEK")

    # when a unit of work posts (queued, on PostgreSQL) and then reads and writes through the ORM
    assert first.write(_posting(a, b, 7, runs, then=more)) == 2
    # then both are committed, in one run
    assert runs == [True]
    assert _whole(first, {a: 17, b: -17}) == 2
    with first.reading() as s:
        assert s.execute(select(Account.code).where(Account.code == "AFTER")).scalars().all() == ["AFTER"]


def test_a_connection_goes_back_to_the_pool_out_of_pipeline_mode(processes):
    # given a unit of work that commits itself, then posts again (queued, on PostgreSQL), never committed
    first = processes[0]
    a, b = (acc.id for acc in accounts(first, 2))
    _post(first, a, b, 10)

    def work(uow):
        _posting(a, b, 1)(uow)
        uow.commit()
        return _posting(a, b, 2)(uow)

    # when it runs through Database.write
    first.write(work)
    # then every pooled connection is out of pipeline mode, what was committed is whole, and the next
    # posting finds the head as it is
    if first.dialect == "postgresql":
        import psycopg
        with first.engine.connect() as conn:
            assert conn.connection.driver_connection.pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF
    assert _whole(first, {a: 11, b: -11}) == 2
    assert _post(first, b, a, 11) == 3
    assert _whole(first, {a: 0, b: 0}) == 3


@pytest.mark.parametrize("legs", [2, 8, 9, 12])
def test_postings_of_many_accounts_move_every_balance_once(processes, legs):
    # given a process that remembers the head and the accounts (the statement names up to 8 of them
    # one parameter each, more only as an array)
    first = processes[0]
    ids = [acc.id for acc in accounts(first, legs)]
    amounts = [100 * (i + 1) for i in range(legs - 1)]
    legs_of = lambda sign: [journal.Posting(i, m.from_minor(sign * x, "SEK"))  # noqa: E731
                            for i, x in zip(ids, amounts + [-sum(amounts)])]
    # when it posts to all of them, and back
    for sign in (1, -1, 1):
        first.write(lambda uow, sign=sign: journal.post(uow, actor="t", kind="TEST", description="many",
                                                        effective_date=date(2026, 2, 1), postings=legs_of(sign)))
    # then each balance moved by its own amount, once per posting
    assert _whole(first, dict(zip(ids, amounts + [-sum(amounts)]))) == 3


def test_what_a_unit_of_work_sends_after_its_posting_runs_after_it(processes):
    # given a process that remembers the head and the accounts (its next posting, through
    # Database.write, is held back on PostgreSQL to go with the unit of work's COMMIT)
    first = processes[0]
    a, b = (acc.id for acc in accounts(first, 2))
    _post(first, a, b, 10)
    seen = []

    def read_through_the_driver(uow):
        conn = uow.session.connection()
        if conn.dialect.name == "postgresql":  # past SQLAlchemy, straight on the driver's cursor
            cur = conn.connection.driver_connection.cursor()
            seen.append(cur.execute("SELECT sequence FROM ledger_head").fetchone()[0])
        else:
            seen.append(conn.exec_driver_sql("SELECT sequence FROM ledger_head").scalar_one())

    # when a unit of work posts, then reads the head on the driver itself
    assert first.write(_posting(a, b, 7, then=read_through_the_driver)) == 2
    # then the read ran after the posting, in the same transaction, and both are committed
    assert seen == [2]
    assert _whole(first, {a: 17, b: -17}) == 2


def test_a_statement_held_on_a_connection_that_goes_back_unsent_is_never_sent(processes):
    first = processes[0]
    if first.dialect != "postgresql":
        pytest.skip("statements are held back on PostgreSQL only")
    from ledger.db import queue_statement
    # given a statement held back on a connection (as a posting is, to go with its COMMIT)
    with first.engine.connect() as conn:
        queue_statement(conn, "SELECT 1 / 0", {}, alone=True)
        # when the connection goes back to the pool without a commit
        conn.rollback()
    # then the next user of the connection never sends it
    with first.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
        assert getattr(conn.connection.driver_connection, "_utfall_held", None) is None


def _deallocate_all_by_a_rollback(uow):
    """psycopg, holding a prepared statement of its own, sends DEALLOCATE ALL after a ROLLBACK."""
    uow.session.connection().connection.driver_connection.execute("SELECT 1", prepare=True)
    raise _Refused()


def _deallocate_all_as_sql(uow):
    """DEALLOCATE ALL sent by hand (psycopg holding none of its own, it forgets nothing)."""
    uow.session.connection().connection.driver_connection.execute("DEALLOCATE ALL", prepare=False)


@pytest.mark.parametrize("deallocate", [_deallocate_all_by_a_rollback, _deallocate_all_as_sql])
def test_a_held_posting_after_its_prepared_statement_was_deallocated_is_prepared_again(processes, deallocate):
    # given one connection on which held postings prepared their statement
    first = processes[0]
    if first.dialect != "postgresql":
        pytest.skip("statements are held back on PostgreSQL only")
    a, b = (acc.id for acc in accounts(first, 2))
    for i in range(1, 4):
        _post(first, a, b, 1)
    assert first.engine.pool.checkedin() == 1
    stale = journal.chain_memory(first.engine).stale
    # when every prepared statement of the connection is deallocated (a rollback psycopg follows with
    # DEALLOCATE ALL, or one sent by hand)
    with contextlib.suppress(_Refused):
        first.write(deallocate)
    # then the held postings after it run once each, from the chain memory (after a DEALLOCATE ALL
    # psycopg never saw, only the first runs again); the chain and balances are whole
    runs: list[bool] = []
    for minor in (2, 3, 4):
        first.write(_posting(a, b, minor, runs))
    if deallocate is _deallocate_all_by_a_rollback:
        assert runs == [True, True, True]
        assert journal.chain_memory(first.engine).stale == stale
    else:
        assert runs == [True, False, True, True]
        assert journal.chain_memory(first.engine).stale == stale + 1
    assert _whole(first, {a: 12, b: -12}) == 6


def test_a_psycopg_without_the_pieces_to_hold_a_posting_posts_through_its_pipeline(fresh_engine, monkeypatch):
    # given a psycopg whose private pieces the held posting sends through are missing
    import ledger.db
    monkeypatch.setattr(ledger.db, "_can_hold", lambda: False)
    engine = make_engine(_url(fresh_engine))
    try:
        db = Database(engine)
        a, b = (acc.id for acc in accounts(db, 2))
        # when a process posts through Database.write, from its memory and afresh
        for i in range(1, 5):
            assert _post(db, a, b, i) == i
        with engine.connect() as conn:  # (nothing held back on its connections)
            assert getattr(conn.connection.driver_connection, "_utfall_held", None) is None
    finally:
        engine.dispose()
    # then every posting is there, chained, with its balances
    assert _whole(Database(fresh_engine), {a: 10, b: -10}) == 4
