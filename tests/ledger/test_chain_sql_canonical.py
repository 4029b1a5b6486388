"""PostgreSQL's own check of the chain (ledger.chain_ranges) writes the very bytes Python hashes.

The service verifies large ledgers by building each transaction's canonical bytes in SQL and
hashing them there. A single byte written differently would make a sound ledger look
tampered, or worse, let SQL vouch for a row Python would reject. These properties insert
rows with awkward values (every kind of character in the strings, quotes, backslashes and
control characters, the whole range of bigints, timestamps with and without microseconds in
any offset, nulls, many entries in shuffled line order) and compare SQL's bytes and hash
with `journal.canonical_bytes` and `journal.chain_hash`; and check whole ranges of such rows
the way `journal.verify` does.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from ledger import chain_ranges, journal
from ledger.models import GENESIS_HASH
from tests.factories import accounts

BIGINT = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# every character PostgreSQL text can hold (no NUL, no lone surrogate), the awkward ones often
AWKWARD = ['"', "\\", "\n", "\r", "\t", "\b", "\f", "\x01", "\x1f", "\x7f", "\u2028", "é", "ö", "€", "😀", "\\u0000",
           "/", "'", "%s", "%(lo)s", "{", "}", ","]
char = st.one_of(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), st.sampled_from(AWKWARD))


def texts(max_size: int) -> st.SearchStrategy[str]:
    return st.lists(char, max_size=max_size).map("".join).filter(lambda s: len(s) <= max_size)


CURRENCIES = st.one_of(st.sampled_from(["SEK", "EUR", "USD", "NOK", "DKK", "GBP", "JPY", "CHF"]), texts(3))
OFFSETS = st.integers(min_value=-23 * 60, max_value=23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
# from the years SQL writes itself (1000-9999) and a few it leaves to Python
POSTED = st.one_of(
    st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30), timezones=OFFSETS),
    st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30),
                 timezones=st.just(timezone.utc)).map(lambda d: d.replace(microsecond=0)),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(1000, 1, 3), timezones=st.just(timezone.utc)),
)
EFFECTIVE = st.one_of(st.dates(min_value=date(1000, 1, 1), max_value=date(9999, 12, 31)),
                      st.dates(min_value=date(1, 1, 1), max_value=date(1000, 1, 1)))


def in_sql(posted_at: datetime, effective: date) -> bool:
    """Whether SQL writes the row itself (else it leaves it to Python)."""
    utc = posted_at.astimezone(timezone.utc)
    return 1000 <= utc.year <= 9999 and 1000 <= effective.year


@st.composite
def transactions(draw, n_accounts: int, balanced: bool):
    tx = {"posted_at": draw(POSTED), "effective_date": draw(EFFECTIVE), "kind": draw(texts(40)),
          "description": draw(texts(60)), "actor": draw(texts(200)),
          "contract_id": draw(st.none() | st.integers(min_value=-(2**31), max_value=2**31 - 1)),
          "reverses_self": draw(st.booleans())}
    legs = []
    for _ in range(draw(st.integers(min_value=1 if balanced else 0, max_value=6))):
        # running balances of a balanced ledger must stay within bigint: 60 legs of 2^56 at most
        bound = 2**56 if balanced else 2**63 - 1
        amount = draw(st.integers(min_value=-bound, max_value=bound).filter(bool))
        currency = draw(CURRENCIES)
        account = draw(st.integers(min_value=0, max_value=n_accounts - 1))
        legs.append((account, currency, amount))
        if balanced:  # each leg with its counter-leg: every currency sums to zero
            legs.append((draw(st.integers(min_value=0, max_value=n_accounts - 1)), currency, -amount))
    lines = draw(st.lists(st.integers(min_value=-(2**31), max_value=2**31 - 1), min_size=len(legs),
                          max_size=len(legs), unique=True))
    tx["legs"] = [(line, account, currency, amount) for line, (account, currency, amount) in zip(lines, legs)]
    tx["insert_order"] = draw(st.permutations(range(len(legs))))
    tx["afters"] = [draw(BIGINT) for _ in legs]
    return tx


LO = 10**15  # far beyond any sequence another test has left in the database


def insert(raw: psycopg.Connection, txs: list[dict], account_ids: list[int], balanced: bool) -> list[tuple]:
    """Insert `txs` from sequence LO on, chained from the genesis hash; the rows as Python's walk reads them."""
    previous = GENESIS_HASH
    running: dict[int, int] = {}
    rows = []
    for i, tx in enumerate(txs):
        seq = LO + i
        entries = []
        for line, account, currency, amount in sorted(tx["legs"]):
            account_id = account_ids[account]
            if balanced:
                after = running[account_id] = running.get(account_id, 0) + amount
            else:
                after = tx["afters"][len(entries)]
            entries.append((seq, line, account_id, currency, amount, after))
        row = {"sequence": seq, "posted_at": tx["posted_at"], "effective_date": tx["effective_date"],
               "kind": tx["kind"], "description": tx["description"], "actor": tx["actor"],
               "reverses": seq if tx["reverses_self"] else None, "contract_id": tx["contract_id"]}
        canonical = journal.canonical_bytes(row, [dict(zip(journal._ENTRY_COLUMNS, e)) for e in entries])
        hash_ = journal.chain_hash(previous, canonical)
        raw.execute("INSERT INTO ledger_transactions (sequence, posted_at, effective_date, kind, description, actor, "
                    "reverses, contract_id, previous_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, NULL, %s, %s, %s)",
                    (seq, row["posted_at"], row["effective_date"], row["kind"], row["description"], row["actor"],
                     row["contract_id"], previous, hash_))
        if row["reverses"] is not None:  # a row can only name an existing transaction; itself is one
            raw.execute("SET LOCAL session_replication_role = replica")  # past the append-only trigger
            raw.execute("UPDATE ledger_transactions SET reverses = sequence WHERE sequence = %s", (seq,))
            raw.execute("SET LOCAL session_replication_role = origin")
        for k in tx["insert_order"]:  # physical order unlike line order
            raw.execute("INSERT INTO ledger_entries (sequence, line, account_id, currency, amount_minor, "
                        "balance_after_minor) VALUES (%s, %s, %s, %s, %s, %s)", entries[k])
        rows.append((row, entries, canonical, hash_))
        previous = hash_
    return rows


@pytest.fixture
def pg(db):
    if db.dialect != "postgresql":
        pytest.skip("the chain is checked in SQL on PostgreSQL only")
    ids = [a.id for a in accounts(db, 3)]
    raw = db.bind.connection.driver_connection
    return raw, ids


class Rollback(Exception):
    pass


def in_savepoint(raw: psycopg.Connection, fn):
    """Run fn() in a savepoint rolled back afterwards, so every example starts from the same database."""
    try:
        with raw.transaction():
            out = fn()
            raise Rollback
    except Rollback:
        return out


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(txs=st.lists(transactions(3, balanced=False), min_size=1, max_size=4))
def test_sql_writes_the_canonical_bytes_and_hash_python_writes(pg, txs):
    raw, ids = pg

    def run():
        rows = insert(raw, txs, ids, balanced=False)
        got = raw.execute(chain_ranges.CANONICAL_ROWS, {"lo": LO, "hi": LO + len(txs) - 1}).fetchall()
        return rows, got

    rows, got = in_savepoint(raw, run)
    assert [g[0] for g in got] == [r[0]["sequence"] for r in rows]
    for (row, entries, canonical, hash_), (_, in_python, sql_bytes, sql_hash) in zip(rows, got):
        if in_sql(row["posted_at"], row["effective_date"]):
            assert in_python is False
            assert bytes(sql_bytes) == canonical
            assert sql_hash == hash_
        else:
            assert in_python is True  # left to Python: never guessed in SQL


@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(txs=st.lists(transactions(3, balanced=True), min_size=1, max_size=5), tamper=st.integers(min_value=0))
def test_a_range_of_awkward_rows_is_checked_as_python_checks_it(pg, txs, tamper):
    raw, ids = pg
    hi = LO + len(txs) - 1

    def run():
        rows = insert(raw, txs, ids, balanced=True)
        sound = chain_ranges.check_range_on(raw, LO, hi, journal._rehash)
        # a forged row: one transaction's description is not what its hash covers
        victim = LO + tamper % len(txs)
        raw.execute("SET LOCAL session_replication_role = replica")
        raw.execute("UPDATE ledger_transactions SET description = description || 'x' WHERE sequence = %s", (victim,))
        raw.execute("SET LOCAL session_replication_role = origin")
        forged = chain_ranges.check_range_on(raw, LO, hi, journal._rehash)
        return rows, sound, forged

    rows, sound, forged = in_savepoint(raw, run)
    assert sound.ok and sound.first_previous_hash == GENESIS_HASH and sound.last_hash == rows[-1][3]
    closing: dict[int, int] = {}
    for _, entries, _, _ in rows:
        for _, _, account_id, _, _, after in entries:
            closing[account_id] = after
    assert sound.closing == closing
    assert sound.opening == {a: 0 for a in closing}
    assert not forged.ok
