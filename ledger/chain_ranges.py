"""Verifying the hash chain on PostgreSQL inside the database, in sequence ranges on parallel connections.

Every transaction row carries its `previous_hash`, so a range of sequences can be checked on
its own: its hashes, the links inside it, its entries' sums, and its running balances from
each account's first entry in the range. What a range cannot know is carried over by
`journal.verify`, range by range in order: the range's first `previous_hash` is the hash the
range before ended with, and each account's balance before its first entry in the range is
the balance the ranges before left it at.

Verification is bound by reading and serialising rows (BENCHMARKS.md), so a range is checked
by PostgreSQL itself: it builds each transaction's canonical bytes with string functions
(`CANONICAL`), hashes them with `sha256()` and compares them, with the links, sums and
running balances, where the rows are; only a summary of the range and its accounts' first
and last balances come back. Each range runs on a connection of its own, every one in the
snapshot the caller's session exported (`pg_export_snapshot`), from threads of the calling
process: the work is in the server's backends, so no worker process is needed.

The SQL canonical form is `journal.canonical_bytes` byte for byte
(tests/ledger/test_chain_sql_canonical.py proves it on generated rows):
- strings: `to_json(text)` escapes with PostgreSQL's `escape_json`, which escapes exactly
  what `json.encoder.encode_basestring` escapes (`"`, `\\`, \\b \\f \\n \\r \\t as short forms,
  every other character below U+0020 as \\u00xx in lower-case hex) and writes every other
  character as itself, as `ensure_ascii=False` does; PostgreSQL text holds no NUL and no
  lone surrogate, the only characters where the two could part;
- integers: PostgreSQL writes an integer as Python does (`-` and the digits);
- `posted_at` in UTC with six digits of microseconds, `effective_date` as YYYY-MM-DD: the
  same as Python for years 1000–9999 only. A row outside those years (or infinite) is not
  hashed in SQL: the range names it, and the caller hashes it in Python (`rehash`);
- entries in line order (`string_agg(... ORDER BY line)`), joined with ",".

This path only ever answers "the ledger verifies". Anything else (a failed check, a
connection that cannot be made) sends `journal.verify` to its sequential walk, which names
the first bad sequence exactly as it always did.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

# The canonical text of transaction `t` whose entries, already joined, are `e.entries`.
_ENTRY_TEXT = ("""'{"account":' || account_id || ',"amount":' || amount_minor || ',"balanceAfter":' """
               """|| balance_after_minor || ',"currency":' || to_json(currency)::text || ',"line":' || line || '}'""")
CANONICAL = ("""'{"actor":' || to_json(t.actor)::text || ',"contractId":' || coalesce(t.contract_id::text, 'null') """
             """|| ',"description":' || to_json(t.description)::text """
             """|| ',"effectiveDate":"' || to_char(t.effective_date, 'YYYY-MM-DD') """
             """|| '","entries":[' || coalesce(e.entries, '') || '],"kind":' || to_json(t.kind)::text """
             """|| ',"postedAt":"' || to_char(t.posted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') """
             """|| 'Z","reverses":' || coalesce(t.reverses::text, 'null') || ',"sequence":' || t.sequence || '}'""")
# Rows PostgreSQL would not write as Python does: hashed in Python. Dates outside the years
# 1000-9999 (or infinite); entries that reached string_agg out of line order (they come from
# an ordered subquery, which PostgreSQL follows in practice but does not promise; a sort
# inside the aggregate would cost a third of the check).
IN_PYTHON = ("NOT (t.posted_at >= '1000-01-01 00:00:00+00' AND t.posted_at < '10000-01-01 00:00:00+00' "
             "AND t.effective_date BETWEEN '1000-01-01' AND '9999-12-31' "
             "AND CASE WHEN e.line_order IS NULL OR cardinality(e.line_order) < 2 THEN true "
             "WHEN cardinality(e.line_order) = 2 THEN e.line_order[1] < e.line_order[2] "
             "ELSE e.line_order = (SELECT array_agg(x ORDER BY x) FROM unnest(e.line_order) x) END)")

# Transactions of a range with their entries joined in line order, their canonical text and
# what it hashes to. psycopg's %(lo)s and %(hi)s bound the range. The currencies' min and
# max compare bytes (C): they only tell whether a transaction has one currency.
_RANGE = f"""
WITH e AS (
    SELECT sequence, string_agg({_ENTRY_TEXT}, ',') AS entries, array_agg(line) AS line_order,
           count(*) AS lines, sum(amount_minor) AS total,
           min(currency COLLATE "C") AS currency_lo, max(currency COLLATE "C") AS currency_hi
    FROM (SELECT * FROM ledger_entries WHERE sequence BETWEEN %(lo)s AND %(hi)s ORDER BY sequence, line) ordered
    GROUP BY sequence
), linked AS (
    SELECT *, lag(hash) OVER (ORDER BY sequence) AS prior_hash
    FROM ledger_transactions WHERE sequence BETWEEN %(lo)s AND %(hi)s
), t AS (
    SELECT t.sequence, t.previous_hash, t.hash, t.prior_hash, {IN_PYTHON} AS in_python, {CANONICAL} AS canonical,
           e.lines, e.total, e.currency_lo, e.currency_hi
    FROM linked t LEFT JOIN e ON e.sequence = t.sequence
)"""

CANONICAL_ROWS = _RANGE + """
SELECT sequence, in_python, convert_to(canonical, 'UTF8'),
       encode(sha256(convert_to(previous_hash || canonical, 'UTF8')), 'hex')
FROM t ORDER BY sequence"""

# One row: how many transactions, the lowest and highest sequence, the range's first
# previous_hash and last hash, the first sequence that fails a check, and the sequences
# to hash in Python.
_CHECK = _RANGE + """, checked AS (
    SELECT sequence, previous_hash, hash, in_python,
           (prior_hash IS NOT NULL AND prior_hash IS DISTINCT FROM previous_hash)
           OR (NOT in_python AND encode(sha256(convert_to(previous_hash || canonical, 'UTF8')), 'hex')
                                 IS DISTINCT FROM hash)
           OR lines IS NULL OR lines < 2
           OR CASE WHEN currency_lo = currency_hi THEN total <> 0
                   ELSE EXISTS (SELECT FROM ledger_entries x WHERE x.sequence = t.sequence
                                GROUP BY x.currency HAVING sum(x.amount_minor) <> 0) END AS bad
    FROM t
)
SELECT count(*), min(sequence), max(sequence), min(previous_hash) FILTER (WHERE sequence = %(lo)s),
       min(hash) FILTER (WHERE sequence = %(hi)s), min(sequence) FILTER (WHERE bad),
       array_agg(sequence) FILTER (WHERE in_python)
FROM checked"""

# Each account's entries in the range in (sequence, line) order: its first entry (prior is
# null), its last (is_last) and any whose balance before it is not the one its previous left.
_BALANCES = """
SELECT account_id, prior, before, after, is_last FROM (
    SELECT account_id, balance_after_minor - amount_minor AS before, balance_after_minor AS after,
           lag(balance_after_minor) OVER w AS prior, lead(line) OVER w IS NULL AS is_last
    FROM ledger_entries WHERE sequence BETWEEN %(lo)s AND %(hi)s
    WINDOW w AS (PARTITION BY account_id ORDER BY sequence, line)
) s WHERE prior IS NULL OR is_last OR prior <> before"""

_TX_SQL = ("SELECT sequence, posted_at, effective_date, kind, description, actor, reverses, contract_id, "
           "previous_hash, hash FROM ledger_transactions WHERE sequence = ANY(%s) ORDER BY sequence")
_ENTRY_SQL = ("SELECT sequence, line, account_id, currency, amount_minor, balance_after_minor FROM ledger_entries "
              "WHERE sequence = ANY(%s) ORDER BY sequence, line")

# hash of a transaction row (as _TX_SQL reads it) and its entry rows, as journal.verify computes it
Rehash = Callable[[tuple, Sequence[tuple]], str]


@dataclass(frozen=True)
class RangeCheck:
    """What the check of sequences lo..hi found."""

    lo: int
    hi: int
    ok: bool  # every check inside the range passed
    first_previous_hash: str | None
    last_hash: str | None
    # account -> its balance before its first entry in the range, as that entry implies
    opening: dict[int, int]
    # account -> its balance after its last entry in the range
    closing: dict[int, int]


def check_range_on(conn, lo: int, hi: int, rehash: Rehash) -> RangeCheck:
    """Check sequences lo..hi on a psycopg connection, in whatever snapshot it reads."""
    failed = RangeCheck(lo, hi, False, None, None, {}, {})
    bounds = {"lo": lo, "hi": hi}
    count, low, high, first_previous, last, first_bad, in_python = conn.execute(_CHECK, bounds).fetchone()
    if count != hi - lo + 1 or low != lo or high != hi or first_bad is not None:
        return failed
    if in_python and not _rehashed(conn, in_python, rehash):
        return failed
    opening: dict[int, int] = {}
    closing: dict[int, int] = {}
    for account, prior, before, after, is_last in conn.execute(_BALANCES, bounds):
        if prior is None:
            opening[account] = before
        elif prior != before:
            return failed
        if is_last:
            closing[account] = after
    return RangeCheck(lo, hi, True, first_previous, last, opening, closing)


def _rehashed(conn, sequences: list[int], rehash: Rehash) -> bool:
    """Whether the rows PostgreSQL cannot write as Python does hash, in Python, to their stored hashes."""
    entries: dict[int, list[tuple]] = {}
    for row in conn.execute(_ENTRY_SQL, (sequences,)):
        entries.setdefault(row[0], []).append(row)
    return all(rehash(tx, entries.get(tx[0], [])) == tx[-1] for tx in conn.execute(_TX_SQL, (sequences,)))


def check_range(conninfo: str, snapshot: str, lo: int, hi: int, rehash: Rehash) -> RangeCheck:
    """Check sequences lo..hi on a connection of its own, in the exported snapshot."""
    import psycopg

    with psycopg.connect(conninfo) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")  # an id pg_export_snapshot made, not user input
        # the running balances sort a range's entries by account: in memory, not on disk;
        # the statements are short, so compiling them (JIT) costs more than it saves
        conn.execute("SET LOCAL work_mem = '256MB'")
        conn.execute("SET LOCAL jit = off")
        # parallel workers would each aggregate the whole range again; the ranges are the parallelism
        conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        try:
            return check_range_on(conn, lo, hi, rehash)
        finally:
            conn.rollback()


def check_ranges(conninfo: str, snapshot: str, parts: Sequence[tuple[int, int]], rehash: Rehash) -> list[RangeCheck]:
    """Every range checked at once, one connection each (from threads: the work is PostgreSQL's)."""
    with ThreadPoolExecutor(len(parts)) as pool:
        return list(pool.map(lambda part: check_range(conninfo, snapshot, *part, rehash), parts))


def ranges(last: int, parts: int) -> list[tuple[int, int]]:
    """1..last in `parts` consecutive ranges of (nearly) equal size."""
    step, extra = divmod(last, parts)
    out, lo = [], 1
    for i in range(parts):
        hi = lo + step - 1 + (1 if i < extra else 0)
        if hi >= lo:
            out.append((lo, hi))
        lo = hi + 1
    return out


def joined(checks: list[RangeCheck], genesis: str) -> dict[int, int] | None:
    """The accounts' balances after the last range if the ranges, in order, make one valid
    chain (each starts where the one before ended); None if not."""
    previous = genesis
    balances: dict[int, int] = {}
    for c in checks:
        if not c.ok or c.first_previous_hash != previous:
            return None
        for account, before in c.opening.items():
            if balances.get(account, 0) != before:
                return None
        balances.update(c.closing)
        previous = c.last_hash
    return balances


@dataclass(frozen=True)
class Ends:
    """The head, the last transaction, the accounts' stored balances and a digest's hash, as the snapshot sees them."""

    head_sequence: int
    head_hash: str
    last_sequence: int
    balances: dict[int, int]
    hash_at_digest: str | None


def ends(conninfo: str, snapshot: str, digest_sequence: int | None) -> Ends:
    import psycopg

    with psycopg.connect(conninfo) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        head = conn.execute("SELECT sequence, hash FROM ledger_head WHERE id = 1").fetchone() or (0, None)
        last = conn.execute("SELECT coalesce(max(sequence), 0) FROM ledger_transactions").fetchone()[0]
        balances = dict(conn.execute("SELECT id, balance_minor FROM ledger_accounts").fetchall())
        at = None
        if digest_sequence is not None:
            row = conn.execute("SELECT hash FROM ledger_transactions WHERE sequence = %s", (digest_sequence,)).fetchone()
            at = row[0] if row else None
        conn.rollback()
    return Ends(head[0], head[1], last, balances, at)
