#!/usr/bin/env python3
"""Verify an Utfall ledger from a copy of its database, without trusting the service's code.

    python verify_chain.py DATABASE [--sequence N --hash H]

DATABASE is an SQLite file (a path, or `sqlite:///path`) or a PostgreSQL URL
(`postgresql://user:password@host:5432/name`; needs the psycopg package). The database is
only read (SQLite is opened read-only; PostgreSQL in a read-only, repeatable-read transaction,
so a live database is verified as one consistent snapshot).

This file is deliberately standalone: it imports nothing from Utfall, only the Python
standard library (and psycopg for PostgreSQL), and rebuilds everything from the published
format (README, "The ledger, and checking it without trusting this service"):

    hash = hex(SHA-256(UTF-8(previous_hash_hex + canonical_json)))

where canonical_json is this object with keys sorted, no whitespace (separators "," and
":"), non-ASCII characters written as themselves, integers as JSON integers:

    {"actor": str, "contractId": int|null, "description": str, "effectiveDate": "YYYY-MM-DD",
     "entries": [{"account": int, "amount": int, "balanceAfter": int, "currency": str,
                  "line": int}, ...in line order],
     "kind": str, "postedAt": "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC), "reverses": int|null,
     "sequence": int}

and the first transaction's previous hash is 64 zeros. Checked, in sequence order, streaming
in batches: sequences run 1, 2, 3... without a gap; each previous_hash is the hash before it;
each hash matches the recomputed one; each transaction has two or more entries summing to
zero per currency; each entry's balanceAfter is its account's running sum. Then: the chain
head (ledger_head) names the last transaction (so a deleted tail is caught), every account's
stored balance (ledger_accounts) equals the sum of its entries, and with --sequence/--hash
the ledger still holds that digest.

Prints `ok N transactions ...` and exits 0, or `FAILED at sequence S: reason` and exits 1.
Exits 2 when the database cannot be read.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sqlite3
import sys
from datetime import date, datetime, timezone
from pathlib import Path
from urllib.parse import quote

GENESIS_HASH = "0" * 64
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

TX_SQL = ("SELECT sequence, posted_at, effective_date, kind, description, actor, reverses, contract_id, "
          "previous_hash, hash FROM ledger_transactions WHERE sequence > {p} ORDER BY sequence LIMIT {p}")
ENTRY_SQL = ("SELECT sequence, line, account_id, currency, amount_minor, balance_after_minor FROM ledger_entries "
             "WHERE sequence >= {p} AND sequence <= {p} ORDER BY sequence, line")
HEAD_SQL = "SELECT sequence, hash FROM ledger_head WHERE id = 1"
ACCOUNTS_SQL = "SELECT id, balance_minor FROM ledger_accounts WHERE id > {p} ORDER BY id LIMIT {p}"


class Unreadable(Exception):
    """The database, or a value in it, cannot be read as an Utfall ledger."""


# --- the database ---------------------------------------------------------------------------

class Source:
    """A read-only connection and its driver's placeholder."""

    def __init__(self, target: str):
        if re.match(r"postgres(ql)?(\+\w+)?://", target):
            try:
                import psycopg
            except ImportError:
                raise Unreadable("reading PostgreSQL needs psycopg: pip install 'psycopg[binary]'") from None
            url = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", target)
            try:
                self.conn = psycopg.connect(url, connect_timeout=10)
            except psycopg.Error as exc:
                raise Unreadable(f"cannot connect: {exc}") from None
            self.conn.read_only = True
            self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            self.placeholder = "%s"
            self.errors: tuple[type[Exception], ...] = (psycopg.Error,)
        else:
            path = Path(target[len("sqlite:///"):] if target.startswith("sqlite:///") else target)
            if not path.is_file():
                raise Unreadable(f"no such database file: {path}")
            try:
                self.conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True,
                                            isolation_level=None)
                self.conn.execute("BEGIN")  # one snapshot for the whole walk
            except sqlite3.Error as exc:
                raise Unreadable(f"cannot open {path}: {exc}") from None
            self.placeholder = "?"
            self.errors = (sqlite3.Error,)

    def rows(self, sql: str, *params) -> list[tuple]:
        try:
            cur = self.conn.cursor()
            cur.execute(sql.format(p=self.placeholder), params)
            return cur.fetchall()
        except self.errors as exc:
            raise Unreadable(f"cannot read the ledger tables: {exc}") from None

    def close(self) -> None:
        self.conn.close()


def walk(src: Source, batch: int):
    """(transaction row, its entry rows by line) in sequence order, read in batches."""
    last = 0
    while True:
        txs = src.rows(TX_SQL, last, batch)
        if not txs:
            return
        lo, hi = txs[0][0], txs[-1][0]
        by_seq: dict = {}
        for e in src.rows(ENTRY_SQL, lo, hi):
            by_seq.setdefault(e[0], []).append(e)
        for tx in txs:
            yield tx, by_seq.get(tx[0], [])
        last = hi


# --- the canonical form ---------------------------------------------------------------------

def posted_at_text(value) -> str:
    """A stored timestamp as the canonical UTC text. SQLite holds UTC as naive text."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise Unreadable(f"posted_at {value!r} is not a timestamp") from None
    if not isinstance(value, datetime):
        raise Unreadable(f"posted_at {value!r} is not a timestamp")
    value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def date_text(value) -> str:
    if isinstance(value, datetime):
        raise Unreadable(f"effective_date {value!r} is not a date")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise Unreadable(f"effective_date {value!r} is not a date")


def canonical_json(tx: tuple, entries: list[tuple]) -> bytes:
    sequence, posted_at, effective_date, kind, description, actor, reverses, contract_id = tx[:8]
    doc = {
        "actor": actor,
        "contractId": contract_id,
        "description": description,
        "effectiveDate": date_text(effective_date),
        "entries": [{"account": account, "amount": amount, "balanceAfter": balance_after, "currency": currency,
                     "line": line}
                    for _, line, account, currency, amount, balance_after in entries],
        "kind": kind,
        "postedAt": posted_at_text(posted_at),
        "reverses": reverses,
        "sequence": sequence,
    }
    try:
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise Unreadable(f"a value cannot be written as JSON: {exc}") from None


def chain_hash(previous_hash: str, canonical: bytes) -> str:
    return hashlib.sha256(previous_hash.encode("ascii") + canonical).hexdigest()


# --- verification ---------------------------------------------------------------------------

class Failed(Exception):
    """The first thing found wrong: at which sequence (None: not one transaction's), and why."""

    def __init__(self, sequence: int | None, reason: str, checked: int = 0):
        super().__init__(reason)
        self.sequence = sequence
        self.reason = reason
        self.checked = checked


def verify(src: Source, digest: tuple[int, str] | None = None, batch: int = 5000) -> tuple[int, str]:
    """Check the whole ledger; return (transactions checked, last hash) or raise Failed."""
    previous, expected, checked = GENESIS_HASH, 1, 0
    running: dict = {}
    if digest is not None and digest[0] == 0 and digest[1] != GENESIS_HASH:
        raise Failed(0, "the digest for sequence 0 must be the genesis hash")
    for tx, entries in walk(src, batch):
        sequence, previous_hash, stored_hash = tx[0], tx[8], tx[9]
        if type(sequence) is not int or sequence != expected:
            raise Failed(expected, f"transaction {expected} is missing", checked)
        if previous_hash != previous:
            raise Failed(sequence, "previous hash does not match the chain", checked)
        try:
            recomputed = chain_hash(previous, canonical_json(tx, entries))
        except Unreadable as exc:
            raise Failed(sequence, str(exc), checked) from None
        if recomputed != stored_hash:
            raise Failed(sequence, "hash does not match the transaction's contents", checked)
        sums: dict = {}
        for _, _, account, currency, amount, balance_after in entries:
            running[account] = running.get(account, 0) + amount
            sums[currency] = sums.get(currency, 0) + amount
            if running[account] != balance_after:
                raise Failed(sequence, f"running balance of account {account} does not match", checked)
        if len(entries) < 2 or any(sums.values()):
            raise Failed(sequence, "transaction does not balance", checked)
        if digest is not None and sequence == digest[0] and stored_hash != digest[1]:
            raise Failed(sequence, "the ledger no longer holds the digest's hash", checked)
        previous, expected, checked = stored_hash, expected + 1, checked + 1
    head = src.rows(HEAD_SQL)
    head_sequence, head_hash = head[0] if head else (0, GENESIS_HASH)
    if head_sequence != checked or head_hash != previous:
        raise Failed(checked + 1 if head_sequence > checked else checked,
                     "the chain head does not match the last transaction", checked)
    if digest is not None and digest[0] > checked:
        raise Failed(digest[0], "the digest's sequence is beyond the ledger", checked)
    last_id = 0
    while rows := src.rows(ACCOUNTS_SQL, last_id, batch):
        for account, balance in rows:
            if running.get(account, 0) != balance:
                raise Failed(None, f"current balance of account {account} does not match its entries", checked)
        last_id = rows[-1][0]
    return checked, previous


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="verify_chain.py", description=__doc__.split("\n\n")[0])
    p.add_argument("database", help="an SQLite file (or sqlite:///path) or a postgresql:// URL")
    p.add_argument("--sequence", type=int, help="a digest's sequence to prove (with --hash)")
    p.add_argument("--hash", help="a digest's hash to prove (with --sequence)")
    p.add_argument("--batch", type=int, default=5000, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if (args.sequence is None) != (args.hash is None):
        p.error("--sequence and --hash go together")
    if args.sequence is not None and args.sequence < 0:
        p.error("--sequence must not be negative")
    digest = None if args.sequence is None else (args.sequence, args.hash.strip().lower())
    try:
        src = Source(args.database)
        try:
            checked, last = verify(src, digest, max(1, args.batch))
        finally:
            src.close()
    except Unreadable as exc:
        print(f"verify_chain: {exc}", file=sys.stderr)
        return 2
    except Failed as f:
        where = "" if f.sequence is None else f" at sequence {f.sequence}"
        print(f"FAILED{where}: {f.reason} ({f.checked} transactions verified before it)")
        return 1
    proven = "" if digest is None else f"; digest ({digest[0]}, {digest[1]}) holds"
    print(f"ok {checked} transactions (last: sequence {checked}, hash {last}){proven}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
