"""Balances on a business date read from the accounts' totals by day, month and year.

What a user depends on: `effectiveOn` (with `asOf`/`asOfSequence`) answers exactly what the
journal says — the sum of the entries recorded up to a sequence and effective on or before
a date — for back-dated postings, month and year ends and leap days; the rows behind it are
append-only; and a database migrated with a journal already in it answers the same.
"""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from ledger import effective_balances, journal, schema
from ledger.db import Database, make_engine
from ledger.models import Account, Entry, Transaction
from tests.conftest import drop_pg_database, empty_database_url
from tests.factories import accounts, post

EDGES = [date(2024, 2, 29), date(2024, 12, 31), date(2025, 1, 1), date(2025, 1, 31), date(2025, 3, 1),
         date(2025, 6, 30), date(2025, 12, 31), date(2026, 11, 30)]
dates = st.one_of(st.dates(date(2023, 12, 1), date(2026, 12, 31)), st.sampled_from(EDGES))


def brute_force(s, account_id: int, upto: int, on: date) -> int:
    """The definition: sum the account's entries."""
    return s.execute(
        select(func.coalesce(func.sum(Entry.amount_minor), 0))
        .join(Transaction, Transaction.sequence == Entry.sequence)
        .where(Entry.account_id == account_id, Entry.sequence <= upto, Transaction.effective_date <= on)
    ).scalar_one()


def days_to_ask(effective: list[date]) -> list[date]:
    """Every date a balance can change on, the day before each, and month and year ends."""
    out = set(EDGES) | {date(2023, 1, 1), date(2030, 5, 17)}
    for d in effective:
        out |= {d, d - timedelta(days=1), d + timedelta(days=1), date(d.year, 12, 31),
                (d.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)}
    return sorted(out)


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(postings=st.lists(st.tuples(st.integers(1, 10**9), dates, st.booleans()), min_size=1, max_size=10))
def test_the_balance_on_a_date_equals_the_sum_of_the_journal_for_every_sequence_and_date(db, postings):
    # given postings in random order of business date (back-dated ones among them), some of
    # which touch one account twice
    a, b, c = accounts(db, 3)
    sequences = []
    for units, on, split in postings:
        amount = f"{units / 100:.2f}"
        legs = ([(a, amount), (a, amount), (b, f"{-units / 50:.2f}")] if split
                else [(a, amount), (c, f"{-units / 100:.2f}")])
        sequences.append(post(db, legs, effective=on).sequence)
    # then for every sequence and every date, each account's balance is the journal's sum
    with db.reading() as s:
        for acc in (a, b, c):
            fresh = s.get(Account, acc.id)
            for upto in [sequences[0] - 1, *sequences]:
                for on in days_to_ask([p[1] for p in postings]):
                    got = journal.balance_minor(s, fresh, as_of_sequence=upto, effective_on=on)
                    assert got == brute_force(s, acc.id, upto, on), (acc.id, upto, on)


def test_a_read_is_a_bounded_number_of_lookups_however_many_entries(db):
    # given an account with entries on every day of two years
    a, b = accounts(db)
    start = date(2025, 1, 1)
    for i in range(0, 730, 7):
        post(db, [(a, "1.00"), (b, "-1.00")], effective=start + timedelta(days=i))
    # then a balance on any date is covered by at most years + 7 months + 16 days of buckets
    for day in range(0, 730):
        on = start + timedelta(days=day)
        assert len(effective_balances.cover(on, 2025, 2026)) <= 2 + 7 + 16


def test_the_bucket_rows_cannot_be_changed(db):
    a, b = accounts(db)
    post(db, [(a, "1.00"), (b, "-1.00")])
    with pytest.raises(DBAPIError):
        with db.uow() as uow:
            uow.session.execute(text("UPDATE effective_balance_buckets SET cumulative_minor = 0"))
            uow.commit()


def test_the_migration_backfills_the_totals_of_an_existing_journal(backend, tmp_path, monkeypatch):
    # given a journal with back-dated postings written before the totals existed
    url, pg_name = empty_database_url(backend, tmp_path, "utfall_effective")
    try:
        command.upgrade(schema.alembic_config(url), "0017a")
        engine = make_engine(url)
        db = Database(engine)
        monkeypatch.setattr(effective_balances, "record", lambda *a, **k: None)
        monkeypatch.setattr(effective_balances, "record_parameters", lambda *a, **k: None)
        a, b, c = accounts(db, 3)
        days = [date(2026, 3, 5), date(2025, 12, 31), date(2026, 3, 5), date(2024, 2, 29), date(2026, 7, 1)]
        for i, on in enumerate(days * 3):
            post(db, [(a, f"{i + 1}.00"), (b if i % 2 else c, f"-{i + 1}.00")], effective=on)
        monkeypatch.undo()
        # when
        schema.upgrade(url)
        # then every balance on every date, as of every sequence, reads as the journal sums it
        with db.reading() as s:
            head = journal.digest(s).sequence
            for acc in (a, b, c):
                fresh = s.get(Account, acc.id)
                for upto in range(0, head + 1):
                    for on in days_to_ask(days):
                        assert journal.balance_minor(s, fresh, as_of_sequence=upto, effective_on=on) \
                            == brute_force(s, acc.id, upto, on)
        # and postings after the migration go on from the backfilled totals
        post(db, [(a, "5.00"), (b, "-5.00")], effective=date(2025, 12, 31))
        with db.reading() as s:
            assert journal.balance_minor(s, s.get(Account, a.id), effective_on=date(2025, 12, 31)) \
                == brute_force(s, a.id, head + 1, date(2025, 12, 31))
        engine.dispose()
    finally:
        if pg_name:
            drop_pg_database(pg_name)


def test_extend_writes_the_totals_of_a_bulk_loaded_journal(db, monkeypatch):
    # given 6 postings with their totals, then 9 written without (a bulk load)
    a, b = accounts(db)
    for i in range(6):
        post(db, [(a, "1.00"), (b, "-1.00")], effective=date(2026, 1, 1) + timedelta(days=40 * i))
    monkeypatch.setattr(effective_balances, "record", lambda *a, **k: None)
    monkeypatch.setattr(effective_balances, "record_parameters", lambda *a, **k: None)
    for i in range(9):
        post(db, [(a, "2.00"), (b, "-2.00")], effective=date(2026, 1, 1) + timedelta(days=25 * i))
    monkeypatch.undo()
    # when
    with db.uow() as uow:
        head = journal.digest(uow.session).sequence
        effective_balances.extend(uow.session.connection(), head - 9, head)
        uow.commit()
    # then
    with db.reading() as s:
        fresh = s.get(Account, a.id)
        for upto in range(head - 10, head + 1):
            for i in range(0, 300, 9):
                on = date(2026, 1, 1) + timedelta(days=i)
                assert journal.balance_minor(s, fresh, as_of_sequence=upto, effective_on=on) \
                    == brute_force(s, a.id, upto, on)
