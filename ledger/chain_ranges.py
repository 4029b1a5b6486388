"""Verifying the hash chain on PostgreSQL in sequence ranges, one worker process each.

Every transaction row carries its `previous_hash`, so a range of sequences can be checked on
its own: its hashes, the links inside it, its entries' sums, and its running balances from
each account's first entry in the range. What a range cannot know is carried over by
`journal.verify`, range by range in order: the range's first `previous_hash` is the hash the
range before ended with, and each account's balance before its first entry in the range is
the balance the ranges before left it at.

This path only ever answers "the ledger verifies". Anything else (a failed check, a worker
that cannot connect, a ledger too small to split) sends `journal.verify` to its sequential
walk, which names the first bad sequence exactly as it always did. It is used only where it
sees exactly what the caller's session sees: the session's transaction has written nothing
(so there is nothing uncommitted the workers could miss) and each worker imports the
session's snapshot (`pg_export_snapshot`).

Workers read plain tuples with psycopg, never SQLAlchemy rows, and take `posted_at` and the
effective date as text already in the canonical form; a value PostgreSQL would write
differently from Python changes a hash, so at worst the sequential walk runs.

This module imports only the standard library (and psycopg in the workers), so a worker
process starts quickly.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from json.encoder import encode_basestring

_TX_SQL = ("SELECT sequence, to_char(posted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), "
           "to_char(effective_date, 'YYYY-MM-DD'), kind, description, actor, reverses, contract_id, previous_hash, "
           "hash FROM ledger_transactions WHERE sequence BETWEEN %s AND %s ORDER BY sequence")
_ENTRY_SQL = ("SELECT sequence, line, account_id, currency, amount_minor, balance_after_minor FROM ledger_entries "
              "WHERE sequence BETWEEN %s AND %s ORDER BY sequence, line")
# journal._TX_JSON and journal._ENTRY_JSON: the canonical bytes, keys in sorted order
_TX_JSON = ('{"actor":%s,"contractId":%s,"description":%s,"effectiveDate":"%s","entries":[%s],"kind":%s,'
            '"postedAt":"%sZ","reverses":%s,"sequence":%d}')
_ENTRY_JSON = '{"account":%d,"amount":%d,"balanceAfter":%d,"currency":%s,"line":%d}'


@dataclass(frozen=True)
class RangeCheck:
    """What one worker found in sequences lo..hi."""

    lo: int
    hi: int
    ok: bool  # every check inside the range passed
    first_previous_hash: str | None
    last_hash: str | None
    # account -> its balance before its first entry in the range, as that entry implies
    opening: dict[int, int]
    # account -> its balance after its last entry in the range
    closing: dict[int, int]


def check_range(conninfo: str, snapshot: str, lo: int, hi: int, itersize: int = 5000) -> RangeCheck:
    """Check sequences lo..hi in the exported snapshot (run in a worker process)."""
    import psycopg

    sha256 = hashlib.sha256
    enc = encode_basestring
    opening: dict[int, int] = {}
    running: dict[int, int] = {}

    def failed() -> RangeCheck:
        return RangeCheck(lo, hi, False, None, None, {}, {})

    with psycopg.connect(conninfo) as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")  # an id pg_export_snapshot made, not user input
        with conn.cursor(name="chain_range_tx") as txs, conn.cursor(name="chain_range_entries") as lines:
            txs.itersize = lines.itersize = itersize
            txs.execute(_TX_SQL, (lo, hi))
            lines.execute(_ENTRY_SQL, (lo, hi))
            entries = iter(lines)
            entry = next(entries, None)
            expected = lo
            first_previous = previous = None
            for seq, posted_at, effective, kind, description, actor, reverses, contract_id, previous_hash, hash_ in txs:
                if seq != expected or posted_at is None or effective is None:
                    return failed()
                if previous is None:
                    first_previous = previous_hash
                elif previous_hash != previous:
                    return failed()
                group = []
                while entry is not None and entry[0] == seq:
                    group.append(entry)
                    entry = next(entries, None)
                canonical = _TX_JSON % (
                    enc(actor), "null" if contract_id is None else contract_id, enc(description), effective,
                    ",".join([_ENTRY_JSON % (account, amount, after, enc(currency), line)
                              for _, line, account, currency, amount, after in group]),
                    enc(kind), posted_at, "null" if reverses is None else reverses, seq)
                if sha256((previous_hash + canonical).encode("utf-8")).hexdigest() != hash_:
                    return failed()
                sums: dict[str, int] = {}
                for _, _, account, currency, amount, after in group:
                    if account not in running:
                        opening[account] = after - amount
                    elif running[account] + amount != after:
                        return failed()
                    running[account] = after
                    sums[currency] = sums.get(currency, 0) + amount
                if len(group) < 2 or any(sums.values()):
                    return failed()
                previous = hash_
                expected += 1
            if expected != hi + 1:
                return failed()
        conn.rollback()
    return RangeCheck(lo, hi, True, first_previous, previous, opening, running)


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
