"""Balances on a business date (`effectiveOn`) from versioned calendar buckets, flat in ledger size.

The question is bitemporal: the sum of an account's entries recorded up to sequence S and
effective on or before date D. Summing the entries grows with the account's history; this
module answers from `effective_balance_buckets` instead (ledger/models/effective_balances.py):
for every transaction that moves an account, one row per level (the day, the month and the
year of the transaction's effective date) carrying the bucket's total as of that sequence.

Writing (`record`, called by `journal.post` under the chain head lock): per account moved,
append the bucket's new total, each row's INSERT reading the bucket's latest row itself (no
other posting can write one meanwhile); 3 rows per account in one statement, whatever the
effective date, back-dated or not.

Reading (`balance_minor`): (S, D) is covered by whole buckets — the years before D's year,
the months before D's month, the days up to D — and each bucket's value at S is its latest
row at or before S, one primary-key probe. A part of a bucket is taken from whichever side
is shorter (the days up to the 20th as the month minus the days after it), and a date at
the end of a month or year takes the month or year whole, so a read is at most
(years the account spans) + 7 + 16 probes, all in one statement, however many entries the
account or the ledger holds. Rows are only appended: nothing is ever updated.
"""
from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import date

from sqlalchemy import BigInteger, Integer, SmallInteger, bindparam, func, insert, literal, select, union_all
from sqlalchemy.engine import Connection

from ledger.models import EffectiveBalanceBucket, Entry, Transaction

DAY, MONTH, YEAR = 1, 2, 3
Key = tuple[int, int, int]  # (account, level, bucket)

_B, _E, _T = EffectiveBalanceBucket.__table__, Entry.__table__, Transaction.__table__
_INSERT = insert(_B)
# sequences are BIGINT: the largest one is "no limit" for the write path's reads
_NO_LIMIT = 2**63 - 1


def buckets(on: date) -> tuple[tuple[int, int], ...]:
    """The (level, bucket) of each level a date falls in."""
    return (DAY, on.toordinal()), (MONTH, on.year * 12 + on.month - 1), (YEAR, on.year)


# --- reading the latest rows ------------------------------------------------------------------

_LATEST: dict[int, object] = {}


def _latest_statement(n: int):
    """One row of `n` columns: for key i, the total of bucket (a{i}, l{i}, b{i}) in its latest
    row at or before :upto, 0 if it has none. One statement object per n, built once."""
    stmt = _LATEST.get(n)
    if stmt is None:
        upto = bindparam("upto")
        columns = [func.coalesce(
            select(_B.c.cumulative_minor)
            .where(_B.c.account_id == bindparam(f"a{i}"), _B.c.level == bindparam(f"l{i}"),
                   _B.c.bucket == bindparam(f"b{i}"), _B.c.sequence <= upto)
            .order_by(_B.c.sequence.desc()).limit(1).scalar_subquery(), 0).label(f"v{i}") for i in range(n)]
        stmt = _LATEST[n] = select(*columns) if columns else select(literal(0))
    return stmt


def latest(conn: Connection, keys: Sequence[Key], upto: int = _NO_LIMIT) -> list[int]:
    """The total of each bucket key as of sequence `upto`, in the order of `keys`."""
    if not keys:
        return []
    params: dict[str, int] = {"upto": upto}
    for i, (account_id, level, bucket) in enumerate(keys):
        params[f"a{i}"], params[f"l{i}"], params[f"b{i}"] = account_id, level, bucket
    return list(conn.execute(_latest_statement(len(keys)), params).one())


# --- writing ----------------------------------------------------------------------------------

def _moves(entries: Iterable[Sequence]) -> dict[int, int]:
    """Net amount per account of a transaction's entries (tuples as journal._ENTRY_COLUMNS:
    sequence, line, account_id, currency, amount_minor, balance_after_minor)."""
    net: dict[int, int] = {}
    for _, _, account_id, _, amount, _ in entries:
        net[account_id] = net.get(account_id, 0) + amount
    return {account_id: amount for account_id, amount in net.items() if amount}


_INSERTS: dict[int, object] = {}


def _insert_from_latest(n: int):
    """INSERT `n` bucket rows in one statement, each total the bucket's latest total plus the
    move, the latest read by the statement itself: no read round trip before the write (the
    chain head lock keeps any other posting from writing the bucket meanwhile). Built once per n."""
    stmt = _INSERTS.get(n)
    if stmt is None:
        rows = []
        for i in range(n):
            account, level, bucket = (bindparam(f"a{i}", type_=Integer), bindparam(f"l{i}", type_=SmallInteger),
                                      bindparam(f"b{i}", type_=Integer))
            previous = (select(_B.c.cumulative_minor)
                        .where(_B.c.account_id == account, _B.c.level == level, _B.c.bucket == bucket)
                        .order_by(_B.c.sequence.desc()).limit(1).scalar_subquery())
            rows.append(select(account, level, bucket, bindparam("sequence", type_=BigInteger),
                               bindparam(f"m{i}", type_=BigInteger) + func.coalesce(previous, 0)))
        stmt = _INSERTS[n] = insert(_B).from_select(
            ["account_id", "level", "bucket", "sequence", "cumulative_minor"], union_all(*rows) if n > 1 else rows[0])
    return stmt


def record(conn: Connection, sequence: int, effective_date: date, entries: Iterable[Sequence]) -> None:
    """Append the bucket rows of transaction `sequence`; call under the chain head lock, in the
    posting's own database transaction (as the journal rows are written). One statement."""
    moves = _moves(entries)
    if not moves:
        return
    params: dict[str, int] = {"sequence": sequence}
    keys = [(a, move, level, bucket) for a, move in moves.items() for level, bucket in buckets(effective_date)]
    for i, (a, move, level, bucket) in enumerate(keys):
        params[f"a{i}"], params[f"l{i}"], params[f"b{i}"], params[f"m{i}"] = a, level, bucket, move
    conn.execute(_insert_from_latest(len(keys)), params)


# `record` on PostgreSQL, as driver SQL with one array per column, so a posting sends it within
# its one writing statement (ledger.journal): the same rows, each total the bucket's latest plus
# the move, read by the statement itself under the chain head lock.
RECORD_POSTGRESQL = (
    "INSERT INTO effective_balance_buckets (account_id, level, bucket, sequence, cumulative_minor) "
    "SELECT v.a, v.l, v.b, %(sequence)s, v.m + COALESCE((SELECT x.cumulative_minor FROM effective_balance_buckets "
    "AS x WHERE x.account_id = v.a AND x.level = v.l AND x.bucket = v.b ORDER BY x.sequence DESC LIMIT 1), 0) "
    "FROM unnest(%(a)s::integer[], %(l)s::smallint[], %(b)s::integer[], %(m)s::bigint[]) AS v(a, l, b, m)")


def record_parameters(sequence: int, effective_date: date, entries: Iterable[Sequence]) -> dict | None:
    """RECORD_POSTGRESQL's parameters for transaction `sequence`; None if it moves no account."""
    moves = _moves(entries)
    if not moves:
        return None
    keys = [(a, move, level, bucket) for a, move in moves.items() for level, bucket in buckets(effective_date)]
    return {"sequence": sequence, "a": [k[0] for k in keys], "l": [k[2] for k in keys],
            "b": [k[3] for k in keys], "m": [k[1] for k in keys]}


def rows_for(conn: Connection, after: int, upto: int, batch: int = 5000) -> Iterator[list[dict]]:
    """The bucket rows of transactions after+1..upto, in batches, for a journal written without
    them (a migration's backfill, a benchmark's bulk load): the rows of the first `after` must
    be there. A bucket's total before the range is read once, the first time it is needed."""
    totals: dict[Key, int] = {}
    stmt = (select(_E.c.sequence, _E.c.line, _E.c.account_id, _E.c.currency, _E.c.amount_minor,
                   _E.c.balance_after_minor, _T.c.effective_date)
            .join(_T, _T.c.sequence == _E.c.sequence)
            .where(_E.c.sequence > bindparam("last"), _E.c.sequence <= bindparam("hi"))
            .order_by(_E.c.sequence, _E.c.line))
    last = after
    while last < upto:
        # the next `batch` transactions, whole, with their entries
        hi = conn.execute(select(func.max(_T.c.sequence)).where(
            _T.c.sequence.in_(select(_T.c.sequence).where(_T.c.sequence > last, _T.c.sequence <= upto)
                              .order_by(_T.c.sequence).limit(batch)))).scalar()
        if hi is None:
            return
        by_tx: dict[int, list] = {}
        for row in conn.execute(stmt, {"last": last, "hi": hi}):
            by_tx.setdefault(row[0], []).append(row)
        new = list({(row[2], level, bucket) for rows in by_tx.values() for row in rows
                    for level, bucket in buckets(row[6])} - totals.keys())
        for i in range(0, len(new), 300):
            part = new[i:i + 300]
            totals.update(zip(part, latest(conn, part, after)) if after else ((k, 0) for k in part))
        out = []
        for sequence, rows in by_tx.items():
            on = rows[0][6]
            for account_id, amount in _moves(row[:6] for row in rows).items():
                for level, bucket in buckets(on):
                    key = (account_id, level, bucket)
                    totals[key] += amount
                    out.append({"account_id": account_id, "level": level, "bucket": bucket,
                                "sequence": sequence, "cumulative_minor": totals[key]})
        last = hi
        if out:
            yield out


def extend(conn: Connection, after: int, upto: int) -> int:
    """Write the bucket rows of transactions after+1..upto (see `rows_for`); the row count."""
    written = 0
    for rows in rows_for(conn, after, upto):
        conn.execute(_INSERT, rows)
        written += len(rows)
    return written


# --- reading a balance ------------------------------------------------------------------------

def _cover(whole: tuple[int, int], parts: Sequence[tuple[int, int]], upto: int) -> Counter:
    """The sum of parts[:upto] as signed buckets: those parts, or the whole minus the others,
    whichever needs fewer probes."""
    signs: Counter = Counter()
    if upto <= len(parts) - upto + 1:
        for p in parts[:upto]:
            signs[p] += 1
    else:
        signs[whole] += 1
        for p in parts[upto:]:
            signs[p] -= 1
    return signs


def cover(on: date, first_year: int, last_year: int) -> dict[tuple[int, int], int]:
    """Signed (level, bucket)s whose sum is everything effective on or before `on`, for an
    account whose entries are effective from `first_year` to `last_year`."""
    if on.year > last_year:  # every year the account has entries in, whole
        return {(YEAR, y): 1 for y in range(first_year, last_year + 1)}
    signs: Counter = Counter({(YEAR, y): 1 for y in range(first_year, on.year)})
    year = (YEAR, on.year)
    months = [(MONTH, on.year * 12 + i) for i in range(12)]
    month_days = calendar.monthrange(on.year, on.month)[1]
    if on.day == month_days:  # the month whole
        signs.update(_cover(year, months, on.month))
    else:
        signs.update(_cover(year, months, on.month - 1))
        first = date(on.year, on.month, 1).toordinal()
        days = [(DAY, first + i) for i in range(month_days)]
        signs.update(_cover(months[on.month - 1], days, on.day))
    return {k: v for k, v in signs.items() if v}


# two scalar subqueries, not min() and max() in one SELECT: SQLite answers a lone min or max from
# the index end, but both together by scanning every year row of the account
_YEAR_ROWS = select(_B.c.bucket).where(_B.c.account_id == bindparam("account"), _B.c.level == YEAR)
_YEARS = select(_YEAR_ROWS.order_by(_B.c.bucket).limit(1).scalar_subquery(),
                _YEAR_ROWS.order_by(_B.c.bucket.desc()).limit(1).scalar_subquery())


def balance_minor(conn: Connection, account_id: int, *, upto: int, on: date) -> int:
    """The sum of the account's entries recorded up to sequence `upto` and effective on or
    before `on`: two statements, the first and last year the account has entries in (two
    probes of the key) and the buckets that cover `on` (one probe each)."""
    first_year, last_year = conn.execute(_YEARS, {"account": account_id}).one()
    if first_year is None or on.year < first_year or upto <= 0:
        return 0
    signed = cover(on, first_year, last_year)
    keys = [(account_id, level, bucket) for level, bucket in signed]
    return sum(sign * total for sign, total in zip(signed.values(), latest(conn, keys, upto)))
