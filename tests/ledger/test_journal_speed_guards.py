"""Guards for the journal's fast paths: they must change the speed and nothing else.

- `journal._canonical` writes the bytes `canonical_bytes` writes, for any values;
- `journal.post` returns, without reading it back, exactly the transaction the database holds,
  sends no SELECT beyond the head lock and the accounts, and reads balances from the database
  under the lock, never from an Account object the session loaded before;
- the PostgreSQL engine pings only connections that sat idle, and replaces a dead one.
"""
from __future__ import annotations

import enum
import time
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from sqlalchemy import event, inspect, select, text

from ledger import db as ledger_db
from ledger import journal
from ledger import money as m
from ledger.models import Account, Transaction
from tests.factories import accounts, post


# --- the fast canonical form ------------------------------------------------------------------

class IntLike(int):
    pass


class Flag(enum.IntEnum):
    ONE = 1


class StrLike(str):
    pass


def _outcome(fn, *args):
    """What a call gives: its value, or the type of what it raised."""
    try:
        return "value", fn(*args)
    except Exception as exc:  # noqa: BLE001 - the two paths must fail alike too
        return "raised", type(exc)


def _both(tx: dict, entries: list[tuple]):
    fast = _outcome(journal._canonical, tx["sequence"], tx["posted_at"], tx["effective_date"], tx["kind"],
                    tx["description"], tx["actor"], tx["reverses"], tx["contract_id"], entries)
    reference = _outcome(journal.canonical_bytes, tx, [dict(zip(journal._ENTRY_COLUMNS, e)) for e in entries])
    return fast, reference


# every character, lone surrogates included (they cannot be encoded: both paths must raise)
any_text = st.text(st.characters(blacklist_categories=()), max_size=30)
ints = st.integers(min_value=-(2**70), max_value=2**70)
utc_times = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(timezone.utc))
# what the database gives back, and what a caller or a tampered SQLite column might hand in
odd_ints = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True), ints.map(IntLike), st.just(Flag.ONE),
                     st.text(max_size=3))
odd_texts = st.one_of(st.none(), st.integers(), any_text.map(StrLike))
odd_times = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),  # naive
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                 timezones=st.integers(-14, 14).map(lambda h: timezone(timedelta(hours=h)))),
)
odd_dates = st.one_of(st.datetimes(), st.none())


def _maybe(normal, odd):
    """Mostly the normal values, sometimes an odd one."""
    return st.one_of(normal, normal, normal, odd)


@st.composite
def transactions(draw, odd: bool):
    pick = (lambda normal, weird: draw(_maybe(normal, weird))) if odd else (lambda normal, _weird: draw(normal))
    sequence = pick(st.integers(1, 2**62), odd_ints)
    tx = {
        "sequence": sequence,
        "posted_at": pick(utc_times, odd_times),
        "effective_date": pick(st.dates(), odd_dates),
        "kind": pick(any_text, odd_texts),
        "description": pick(any_text, odd_texts),
        "actor": pick(any_text, odd_texts),
        "reverses": pick(st.none() | st.integers(1, 2**62), odd_ints),
        "contract_id": pick(st.none() | st.integers(1, 2**31), odd_ints),
    }
    entries = [
        (sequence, pick(st.just(line), odd_ints), pick(ints, odd_ints), pick(st.sampled_from(["SEK", "EUR"]) | any_text,
                                                                           odd_texts),
         pick(ints, odd_ints), pick(ints, odd_ints))
        for line in range(1, draw(st.integers(0, 5)) + 1)
    ]
    return tx, entries


@hsettings(max_examples=1500, deadline=None)
@given(case=transactions(odd=False))
def test_the_fast_canonical_form_is_byte_identical_for_ledger_values(case):
    fast, reference = _both(*case)
    assert fast == reference


@hsettings(max_examples=1500, deadline=None)
@given(case=transactions(odd=True))
def test_the_fast_canonical_form_is_byte_identical_for_any_values(case):
    # bools, floats, int and str subclasses, other time zones, naive times, datetimes as dates,
    # years before 1000: the fast path hands these to canonical_bytes, or fails the same way
    fast, reference = _both(*case)
    assert fast == reference


def test_the_fast_canonical_form_matches_the_documented_example():
    posted = datetime(2026, 1, 15, 9, 30, 0, 5, tzinfo=timezone.utc)
    entries = [(7, 1, 3, "SEK", 1234, 1234), (7, 2, 4, "SEK", -1234, -1234)]
    tx = {"sequence": 7, "posted_at": posted, "effective_date": date(2026, 1, 15), "kind": "TEST",
          "description": 'Kapital "från" fonden – åäö\\\n', "actor": "test", "reverses": None, "contract_id": 12}
    fast, reference = _both(tx, entries)
    assert fast == reference
    assert fast[1].startswith(b'{"actor":"test","contractId":12,"description":"Kapital \\"fr\xc3\xa5n\\" fonden')
    assert b'"postedAt":"2026-01-15T09:30:00.000005Z","reverses":null,"sequence":7}' in fast[1]


# --- posting ----------------------------------------------------------------------------------

TX_COLUMNS = ("sequence", "posted_at", "effective_date", "kind", "description", "actor", "reverses", "contract_id",
              "previous_hash", "hash")
ENTRY_COLUMNS = ("sequence", "line", "account_id", "currency", "amount_minor", "balance_after_minor")


def _as_loaded(db, sequence: int):
    """The transaction and its entries as a fresh session reads them from the database."""
    with db.reading() as s:
        tx = s.get(Transaction, sequence)
        return ({c: getattr(tx, c) for c in TX_COLUMNS},
                [{c: getattr(e, c) for c in ENTRY_COLUMNS} for e in tx.entries])


def test_post_returns_exactly_what_the_database_holds(db):
    # given
    a, b, c = accounts(db, 3)
    first = post(db, [(a, "100.00"), (b, "-60.00"), (c, "-40.00")], description="Kapital från fonden – åäö \"x\"")
    # when: a reversal, which also carries `reverses` and reads the original's entries
    with db.uow() as uow:
        rev = journal.reverse(uow, actor="tester", sequence=first.sequence, reason="fel konto",
                              effective_date=date(2026, 2, 1))
        uow.commit()
    # then
    for tx in (first, rev):
        stored_tx, stored_entries = _as_loaded(db, tx.sequence)
        assert {c: getattr(tx, c) for c in TX_COLUMNS} == stored_tx
        assert [{c: getattr(e, c) for c in ENTRY_COLUMNS} for e in tx.entries] == stored_entries
        assert tx.posted_at.tzinfo is timezone.utc and type(tx.effective_date) is date
    assert rev.reverses == first.sequence and [e.balance_after_minor for e in rev.entries] == [0, 0, 0]
    with db.reading() as s:
        assert journal.verify(s).ok


def _recording_statements(engine, monkeypatch, seen: list[str]):
    """Record every statement sent: on PostgreSQL at the driver (postings pipeline their
    statements through psycopg itself), on SQLite through SQLAlchemy's event."""
    def remember(statement) -> None:
        statement = statement if isinstance(statement, str) else getattr(statement, "as_string", lambda _c: str(statement))(None)
        seen.append(" ".join(statement.split()).upper())

    if engine.dialect.name == "postgresql":
        import psycopg
        execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany

        def recorded_execute(self, query, *args, **kw):
            remember(query)
            return execute(self, query, *args, **kw)

        def recorded_executemany(self, query, *args, **kw):
            remember(query)
            return executemany(self, query, *args, **kw)
        monkeypatch.setattr(psycopg.Cursor, "execute", recorded_execute)
        monkeypatch.setattr(psycopg.Cursor, "executemany", recorded_executemany)
        return monkeypatch.undo

    def record(_conn, _cursor, statement, *_args):
        remember(statement)
    event.listen(engine, "before_cursor_execute", record)
    return lambda: event.remove(engine, "before_cursor_execute", record)


def test_post_sends_no_select_beyond_the_head_and_the_accounts(db, engine, monkeypatch):
    # given two accounts this process has posted to (on PostgreSQL its chain memory holds
    # the head and their balances)
    a, b = accounts(db, 2)
    post(db, [(a, "1.00"), (b, "-1.00")])
    seen: list[str] = []

    # when
    stop_recording = _recording_statements(engine, monkeypatch, seen)
    try:
        with db.uow() as uow:
            tx = journal.post(uow, actor="t", kind="TEST", description="d", effective_date=date(2026, 1, 1),
                              postings=[journal.Posting(a.id, m.money("1.00", "SEK")),
                                        journal.Posting(b.id, m.money("-1.00", "SEK"))])
            # the returned object is whole: reading it sends nothing either
            lines = [(e.line, e.account_id, e.currency, e.amount_minor, e.balance_after_minor) for e in tx.entries]
            assert (tx.sequence, tx.hash, tx.previous_hash, tx.kind) == (tx.sequence, tx.hash, tx.previous_hash, "TEST")
            assert inspect(tx).detached and all(inspect(e).detached for e in tx.entries)
            uow.commit()
    finally:
        stop_recording()
    # then
    ledger = [s for s in seen if "LEDGER_" in s]
    if engine.dialect.name == "postgresql":
        # no read at all: the head moved from the remembered one, the balances from the remembered ones,
        # the transaction, its entries, its Merkle nodes and business-date totals: all in one statement
        assert [s.split()[0] for s in ledger] == ["WITH"], ledger
        assert ledger[0].startswith("WITH HEAD AS (UPDATE LEDGER_HEAD ")
        for part in ("INTO LEDGER_TRANSACTIONS", "INTO LEDGER_ENTRIES", "INTO EFFECTIVE_BALANCE_BUCKETS",
                     "UPDATE LEDGER_ACCOUNTS"):
            assert part in ledger[0], part
    else:
        assert [s.split()[0] for s in ledger] == ["SELECT", "SELECT", "INSERT", "INSERT", "UPDATE", "UPDATE"], ledger
    assert lines == [(1, a.id, "SEK", 100, 200), (2, b.id, "SEK", -100, -200)]


def test_accounts_the_session_holds_show_the_balances_written(db):
    # given accounts loaded in the session before the posting
    a, b = accounts(db, 2)
    with db.uow() as uow:
        held = uow.session.get(Account, a.id)
        assert held.balance_minor == 0
        # when
        tx = journal.post(uow, actor="t", kind="TEST", description="d", effective_date=date(2026, 1, 1),
                          postings=[journal.Posting(a.id, m.money("2.50", "SEK")),
                                    journal.Posting(b.id, m.money("-2.50", "SEK"))])
        # then: the new balance, and no pending change for the unit of work to flush
        assert (held.balance_minor, held.last_sequence) == (250, tx.sequence)
        assert not uow.session.dirty
        assert journal.digest(uow.session) == journal.Digest(tx.sequence, tx.hash)
        uow.commit()
    with db.reading() as s:
        assert s.execute(select(Account.balance_minor).where(Account.id == a.id)).scalar_one() == 250
        assert journal.verify(s).ok


def test_post_reads_balances_under_the_lock_not_from_objects_loaded_before(db):
    # given: a unit of work holds an account object, then another one posts to that account
    a, b = accounts(db, 2)
    with db.uow() as slow:
        stale = slow.session.get(Account, a.id)
        assert stale.balance_minor == 0
        post(db, [(a, "100.00"), (b, "-100.00")])
        # when the first unit of work posts to it
        tx = journal.post(slow, actor="t", kind="TEST", description="d", effective_date=date(2026, 1, 1),
                          postings=[journal.Posting(a.id, m.money("1.00", "SEK")),
                                    journal.Posting(b.id, m.money("-1.00", "SEK"))])
        slow.commit()
    # then the running balance builds on the posting it did not see: no lost update
    assert tx.entries[0].balance_after_minor == 10100
    with db.reading() as s:
        assert s.execute(select(Account.balance_minor).where(Account.id == a.id)).scalar_one() == 10100
        assert journal.verify(s).ok


def test_verify_hands_odd_stored_values_to_the_reference_form(db, backend):
    # given an amount stored as text or a real, which SQLite's dynamic typing allows behind the code's back
    if backend != "sqlite":
        pytest.skip("only SQLite stores a value of another type in an integer column")
    a, b = accounts(db, 2)
    post(db, [(a, "1.00"), (b, "-1.00")])
    post(db, [(a, "2.00"), (b, "-2.00")])
    with db.uow() as uow:
        uow.session.execute(text("DROP TRIGGER ledger_entries_no_update"))
        for odd in ("'200 öre'", "200.5"):
            uow.session.execute(text(f"UPDATE ledger_entries SET amount_minor = {odd} WHERE sequence = 2 AND line = 1"))
            # then the hash no longer matches at that sequence
            v = journal.verify(uow.session)
            assert (v.ok, v.first_invalid_sequence, v.reason) == (
                False, 2, "hash does not match the transaction's contents")


@pytest.mark.parametrize("renumbered,with_entries", [(2, True), (3, False), (3, True)])
def test_verify_reports_a_sequence_stored_as_text_without_failing(db, backend, renumbered, with_entries):
    # given a transaction renumbered to text (with or without its entries), which SQLite's
    # typing allows: text sorts after every number, and a number and text do not compare
    if backend != "sqlite":
        pytest.skip("only SQLite stores text in an integer key")
    a, b = accounts(db, 2)
    for i in range(3):
        post(db, [(a, f"{i + 1}.00"), (b, f"-{i + 1}.00")])
    with db.uow() as uow:
        s = uow.session
        s.execute(text("PRAGMA defer_foreign_keys = ON"))
        for table in ("ledger_entries", "ledger_transactions"):
            s.execute(text(f"DROP TRIGGER {table}_no_update"))
        if with_entries:
            s.execute(text("UPDATE ledger_entries SET sequence = 'x' WHERE sequence = :n"), {"n": renumbered})
        s.execute(text("UPDATE ledger_transactions SET sequence = 'x' WHERE sequence = :n"), {"n": renumbered})
        # when / then: the gap is named, as for a deleted transaction
        v = journal.verify(s)
        assert (v.ok, v.checked_transactions, v.first_invalid_sequence, v.reason) == (
            False, renumbered - 1, renumbered, f"transaction {renumbered} is missing")


# --- the PostgreSQL pool ------------------------------------------------------------------------

@pytest.fixture
def pg_engine(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("the pool settings concern PostgreSQL")
    eng = ledger_db.make_engine(engine.url.render_as_string(hide_password=False), pool_size=1, max_overflow=0)
    yield eng
    eng.dispose()


def _backend_pid(eng) -> int:
    with eng.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def test_a_busy_pool_does_not_ping(pg_engine, monkeypatch):
    pings = []
    monkeypatch.setattr(pg_engine.dialect, "do_ping", lambda dbapi_conn: pings.append(1) or True)
    for _ in range(5):
        _backend_pid(pg_engine)
    assert pings == []
    assert pg_engine.pool._recycle == 1800 and not pg_engine.pool._pre_ping


def test_an_idle_connection_that_died_is_replaced_before_use(pg_engine, engine, monkeypatch):
    # given a pooled connection that the server ended while it sat idle
    dead = _backend_pid(pg_engine)
    with engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": dead})
        admin.commit()
    monkeypatch.setattr(ledger_db, "IDLE_PING_SECONDS", 0.0)
    time.sleep(0.05)
    # when a unit of work checks it out, then it gets a live connection and no error
    assert _backend_pid(pg_engine) != dead


def _generic_plan(raw, sql: str, params: dict) -> str:
    """The plan PostgreSQL runs `sql` with once it is prepared and planned once for any parameters
    (psycopg prepares a statement run 5 times; the server then keeps a generic plan)."""
    import psycopg
    from psycopg import sql as psql
    from psycopg._queries import PostgresQuery
    from psycopg.adapt import Transformer
    query = PostgresQuery(Transformer(raw))
    query.convert(sql, params)
    raw.execute("PREPARE utfall_generic AS " + query.query.decode())
    try:
        raw.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        literals = ", ".join(psql.Literal(params[name]).as_string(raw) for name in query._order)
        cur = psycopg.ClientCursor(raw)
        cur.execute(f"EXPLAIN EXECUTE utfall_generic({literals})")
        return "\n".join(row[0] for row in cur.fetchall())
    finally:
        raw.execute("DEALLOCATE utfall_generic")


def test_the_posting_statement_finds_its_accounts_by_key_under_a_generic_plan(db, engine, monkeypatch):
    if engine.dialect.name != "postgresql":
        pytest.skip("the prepared statement's plan concerns PostgreSQL")
    # given the statement a posting sends, and its parameters, among a thousand accounts (on a
    # table of a page or two a sequential scan is the cheaper plan, and rightly chosen)
    a, b, *_ = accounts(db, 1000)
    db.bind.exec_driver_sql("ANALYZE ledger_accounts")
    sent = []
    statement = journal._PipelinedStatements._statement
    monkeypatch.setattr(journal._PipelinedStatements, "_statement",
                        lambda self, *args: sent.append(statement(self, *args)) or sent[-1])
    post(db, [(a, "1.00"), (b, "-1.00")])
    sql, params = sent[-1]
    # when it is planned once for any parameters, as the prepared statement is after its first runs
    plan = _generic_plan(db.bind.connection.driver_connection, sql, params)
    # then its accounts are found by primary key, not by reading every account
    assert "Seq Scan on ledger_accounts" not in plan, plan
    assert "pk_ledger_accounts" in plan, plan
