"""Verification in sequence ranges (PostgreSQL, worker processes) answers exactly as the sequential walk.

The ranged check only ever says "verified"; whatever it finds wrong goes to the sequential
walk, which names the first bad sequence. These tests need real commits: the workers read
what is committed, in the session's exported snapshot.
"""
from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text

from ledger import journal
from ledger.db import Database
from tests.factories import accounts, post

SEQUENTIAL = 10**12  # ranges_from no ledger reaches: the sequential walk only


@pytest.fixture
def ledger(fresh_engine):
    """30 committed transactions over 3 accounts, so 3 ranges of 10 each split the accounts' histories."""
    if fresh_engine.dialect.name != "postgresql":
        pytest.skip("the ranged check runs on PostgreSQL; SQLite always walks sequentially")
    db = Database(fresh_engine)
    a, b, c = accounts(db, 3)
    txs = [post(db, [((a, b, c)[i % 3], f"{i + 1}.00"), ((b, c, a)[i % 3], f"-{i + 1}.00")], description=f"n°{i} – åäö \"q\"")
           for i in range(30)]
    return db, txs


def both(db, digest=None) -> tuple[journal.Verification, journal.Verification]:
    with db.reading() as s:
        ranged = journal.verify(s, digest, workers=3, ranges_from=1)
    with db.reading() as s:
        sequential = journal.verify(s, digest, ranges_from=SEQUENTIAL)
    return ranged, sequential


def tamper(db, *statements: str) -> None:
    with db.uow() as uow:
        for table in ("ledger_entries", "ledger_transactions"):
            uow.session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        for sql in statements:
            uow.session.execute(text(sql))
        for table in ("ledger_entries", "ledger_transactions"):
            uow.session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
        uow.commit()


def test_a_sound_ledger_is_verified_by_the_ranges_themselves(ledger):
    db, txs = ledger
    with db.reading() as s:
        # the ranged check decides on its own (no sequential walk behind it)
        assert journal._verify_in_ranges(s, None, 3, 1) == journal.Verification(True, 30, None)
        assert journal._verify_in_ranges(s, journal.Digest(12, txs[11].hash), 3, 1) == journal.Verification(True, 30, None)
    ranged, sequential = both(db)
    assert ranged == sequential == journal.Verification(True, 30, None)


@pytest.mark.parametrize("digest_at, wrong", [(12, True), (30, True), (31, False), (0, False)])
def test_digests_answer_as_the_sequential_walk(ledger, digest_at, wrong):
    db, txs = ledger
    held = txs[digest_at - 1].hash if 0 < digest_at <= 30 else journal.GENESIS_HASH
    digest = journal.Digest(digest_at, "f" * 64 if wrong else held)
    ranged, sequential = both(db, digest)
    assert ranged == sequential


@pytest.mark.parametrize("statements, first_bad", [
    # a changed amount in the second range: its running balance and its hash
    (["UPDATE ledger_entries SET amount_minor = amount_minor * 10 WHERE sequence = 17"], 17),
    # a balance changed where a range starts: only the boundary between ranges shows it
    (["UPDATE ledger_entries SET balance_after_minor = balance_after_minor + 1 WHERE sequence = 11 AND line = 1"], 11),
    # a transaction deleted at a range's first sequence
    (["DELETE FROM ledger_entries WHERE sequence = 21", "DELETE FROM ledger_transactions WHERE sequence = 21"], 21),
    # a changed description in the last range
    (["UPDATE ledger_transactions SET description = 'x' WHERE sequence = 29"], 29),
    # a quote turned into a backslash and a quote: JSON escapes both, and the bytes differ
    (["UPDATE ledger_transactions SET description = replace(description, '\"', '\\\"') WHERE sequence = 4"], 4),
    # a microsecond later, a day later, another currency on both lines, a contract named
    (["UPDATE ledger_transactions SET posted_at = posted_at + interval '1 microsecond' WHERE sequence = 2"], 2),
    (["UPDATE ledger_transactions SET effective_date = effective_date + 1 WHERE sequence = 15"], 15),
    (["UPDATE ledger_entries SET currency = 'EUR' WHERE sequence = 20"], 20),
    (["UPDATE ledger_transactions SET contract_id = 7 WHERE sequence = 30"], 30),
    # two lines swapped: the same rows, written in another order
    (["UPDATE ledger_entries SET line = line + 10 WHERE sequence = 9",
      "UPDATE ledger_entries SET line = 13 - line WHERE sequence = 9"], 9),
    # a forged transaction: the whole row replaced by one hashed over other contents
    (["DELETE FROM ledger_entries WHERE sequence = 25", "DELETE FROM ledger_transactions WHERE sequence = 25",
      "INSERT INTO ledger_transactions SELECT 25, posted_at, effective_date, kind, 'forged', actor, reverses, "
      "contract_id, previous_hash, repeat('ab', 32) FROM ledger_transactions WHERE sequence = 24",
      "INSERT INTO ledger_entries SELECT 25, line, account_id, currency, amount_minor, balance_after_minor "
      "FROM ledger_entries WHERE sequence = 24"], 25),
])
def test_tampering_is_named_at_the_same_sequence_as_the_sequential_walk(ledger, statements, first_bad):
    db, _ = ledger
    tamper(db, *statements)
    with db.reading() as s:
        assert journal._verify_in_ranges(s, None, 3, 1) is None  # the ranges refuse to vouch for it
    ranged, sequential = both(db)
    assert ranged == sequential
    assert (ranged.ok, ranged.first_invalid_sequence) == (False, first_bad)


def test_uncommitted_changes_in_the_session_are_verified_sequentially(ledger):
    db, _ = ledger
    with db.uow() as uow:
        uow.session.execute(text("ALTER TABLE ledger_entries DISABLE TRIGGER USER"))
        uow.session.execute(text("UPDATE ledger_entries SET amount_minor = amount_minor * 10 WHERE sequence = 5"))
        # the workers could not see this change: the session's own walk must find it
        v = journal.verify(uow.session, workers=3, ranges_from=1)
        assert (v.ok, v.first_invalid_sequence) == (False, 5)


def test_rows_sql_leaves_to_python_are_hashed_in_python(fresh_engine):
    """Dates PostgreSQL would write unlike Python (years before 1000) are hashed in Python, not guessed."""
    if fresh_engine.dialect.name != "postgresql":
        pytest.skip("the ranged check runs on PostgreSQL; SQLite always walks sequentially")
    db = Database(fresh_engine)
    a, b = accounts(db, 2)
    for i in range(12):
        post(db, [(a, "1.00"), (b, "-1.00")], effective=date(999, 12, 31) if i in (3, 10) else date(2026, 1, 15))
    with db.reading() as s:
        assert journal._verify_in_ranges(s, None, 2, 1) == journal.Verification(True, 12, None)
    tamper(db, "UPDATE ledger_transactions SET effective_date = '0999-12-30' WHERE sequence = 11")
    ranged, sequential = both(db)
    assert ranged == sequential
    assert (ranged.ok, ranged.first_invalid_sequence) == (False, 11)
