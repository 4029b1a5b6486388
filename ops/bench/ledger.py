"""Ledger benchmark: postings per second, balance-read latency as the ledger grows, verification.

    python -m ops.bench.ledger [--quick] [--backend sqlite|postgresql|both]
                               [--sizes 10000,100000,1000000] [--runs N] [--seconds S]
                               [--clients 1,8,32] [--postings-only] [--json PATH]

This is a measurement, not a timed test: it prints figures and asserts nothing about speed
(it does insist that the ledger it filled still verifies). Every figure is printed beside a
bare-database reference measured in the same run on the same database, with the ratio
figure ÷ reference: absolute figures on the shared 2-core machine move by 10–50 % from run
to run, a ratio taken in one sitting much less (BENCHMARKS.md).

Per backend, one freshly migrated ledger per size (SQLite: files in a temporary directory;
PostgreSQL: schemas in a fresh database `utfall_bench_<pid>`, dropped at the end), so that
reads on all sizes are interleaved in the same rounds:

1. Postings per second: one `journal.post` of two entries per unit of work, committed, each
   client repeating it for `--seconds` (10 s; 1 s with --quick); 1 client, and on PostgreSQL
   also 8 and 32 threads. On PostgreSQL the ledger is measured three ways: one commit per
   posting (`ledger`: the service with `UTFALL_GROUP_COMMIT=0`); through the group commit
   (`ledger.db.GroupCommit`) of this process (the service's default on PostgreSQL); and with
   the clients split over 2 worker processes sharing one writer (`ledger.shared_writer`: the
   process holding the writer seat makes both processes' postings in its group commit's batches;
   `--posting-worker`, started off the clock; as `uvicorn --factory api.asgi:create --workers 2`
   serves). References, in
   the same rounds:
   - `pgledger transfer` (PostgreSQL): pgledger (../shared/reference/pgledger, or
     UTFALL_PGLEDGER), a pure-PostgreSQL ledger without a chain, loaded into a database of
     its own and driven as its README says it was measured (one autocommit
     `pgledger_create_transfer` per transfer between random accounts);
   - through the raw driver, on a second freshly migrated ledger, so into tables with the
     journal's own keys, indexes, constraints and append-only triggers:
     `bare insert`: a transaction inserting a transaction row and its two entries, nothing else;
     `bare chained`: the same serialised on the head row locked FOR UPDATE (on SQLite the
     writer lock of BEGIN IMMEDIATE) whose sha256 hash is advanced;
     `bare posting-shaped`: chained, plus reading and rewriting the two account rows'
     running balances: the 7 statements a posting cannot do without, minus the ORM.
   The gaps between the references and the ledger say where postings/s goes: the commit,
   the chain lock, the balances, or the client (ORM and driver in Python). At 32 clients only
   `bare posting-shaped` and pgledger are measured. The postings/s at each client count are
   printed under the table: more clients must never be slower than fewer.
2. Latency of a balance read in its own read session: current (`journal.balance`), as of a
   sequence in the middle of the ledger (`as_of_sequence=`) and as of that transaction's
   time (`as_of=`), on a ledger of each of `--sizes` entries. Reference: a bare `SELECT` of one
   column from one row by primary key. These must stay flat as the ledger grows; the
   ratios of the largest to the smallest size are printed under the table.
3. `journal.verify` in transactions per second on the largest ledger. Reference: reading
   every transaction and entry row in order with bare SELECTs, the floor verification
   cannot go below. Postings are measured last, on the largest ledger, as they append to it.

The ledger is filled fast and consistently: transactions and entries are generated in
Python with their running balances and chain hashes (`journal.canonical_bytes` /
`journal.chain_hash`), inserted in large batches (COPY on PostgreSQL, Core executemany on
SQLite), and the head and account rows are updated to match, so the filled ledger verifies.

Method (BENCHMARKS.md, "Measuring on this machine"): each variant gets an unmeasured
warm-up, then variants are interleaved round by round (A B C, C B A, ...) and each figure
is the median of the runs with min–max. Before every write run PostgreSQL gets
`VACUUM ANALYZE` of the tables postings update (the ledger's, the bare references' and
pgledger's accounts) and a `CHECKPOINT` (autovacuum is off on this machine), SQLite a WAL
checkpoint. The clients are threads of this process; the load generator and the database
share the same cores. `--postings-only` measures only the postings, on the largest size.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import quote

import psycopg
from sqlalchemy import bindparam, event, func, insert, select, update

from ledger import db as ledger_db, effective_balances, journal, schema, tree
from ledger import money as m
from ledger.db import Database, make_engine
from ledger.shared_writer import unit_of_work
from ledger.models import Account, EffectiveBalanceBucket, Entry, LedgerHead, Party, Transaction

PG_ADMIN = os.environ.get("UTFALL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# pgledger's SQL, the posting benchmark's outside reference (its README says how it was measured)
PGLEDGER_DIR = os.environ.get("UTFALL_PGLEDGER", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared",
                                                                "reference", "pgledger"))
BACKENDS = ("sqlite", "postgresql")
CURRENCY = "SEK"


@dataclass(frozen=True)
class Config:
    """How much to measure; `QUICK` fits in a few minutes for both backends."""

    sizes: tuple[int, ...]  # ledger sizes in entries (two per transaction)
    runs: int  # measured runs per variant for postings and reads
    seconds: float  # length of one measured posting run (BENCHMARKS.md: at least 10 s)
    reads: int  # balance reads per run
    verify_runs: int  # verification of the largest ledger is the longest step
    accounts: int = 1000
    clients: tuple[int, ...] = (1, 8, 32)  # concurrent posting clients on PostgreSQL
    read_accounts: int = 50


MIN_SIZE = 1000  # below this too few accounts move after the middle to exercise as-of reads
FULL = Config(sizes=(10_000, 100_000, 1_000_000), runs=5, seconds=10.0, reads=500, verify_runs=3)
QUICK = Config(sizes=(10_000, 100_000), runs=3, seconds=1.0, reads=200, verify_runs=3)

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- backends -------------------------------------------------------------------------------

class Ledger:
    """One freshly migrated ledger: the service's own engine on it, and raw-driver connections.

    Each size gets its own ledger, so reads on all sizes can be interleaved in the same
    rounds: measured one after the other, load from elsewhere on this shared machine
    would pass for growth (or hide it).
    """

    name: str
    for_update = ""
    begin_write = "BEGIN"

    def __init__(self, url: str, **engine_options):
        self.url = url
        schema.upgrade(url)
        # the service's own engine configuration (pool, pre-ping, SQLite pragmas); a pool as
        # large as the most clients, so no client waits for a connection
        self.engine = make_engine(url, **engine_options)
        self.db = Database(self.engine)

    def q(self, sql: str) -> str:
        """`sql` written with %s placeholders, in this driver's paramstyle."""
        return sql

    def connect(self):
        """A raw DB-API connection in autocommit mode: BEGIN/COMMIT are sent explicitly."""
        raise NotImplementedError

    def before_write(self) -> None:
        """Bring the database to the same state before every measured write run."""

    def after_fill(self) -> None:
        """What production housekeeping would have done after the ledger grew."""

    def read_all(self, conn) -> int:
        """Read every transaction and entry row in chain order; the number of transactions."""
        raise NotImplementedError

    def close(self) -> None:
        self.engine.dispose()


class SqliteLedger(Ledger):
    name = "sqlite"
    begin_write = "BEGIN IMMEDIATE"  # what the service's units of work use

    def __init__(self, path: str):
        self.path = path
        super().__init__(f"sqlite:///{path}")

    def q(self, sql: str) -> str:
        return sql.replace("%s", "?")

    def connect(self):
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        # the same pragmas as ledger.db.make_engine, or the reference would not be comparable
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _checkpoint(self) -> None:
        conn = self.connect()
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    # A long WAL slows every later transaction; truncating it is SQLite's CHECKPOINT.
    before_write = _checkpoint

    def vacuum(self) -> None:
        """Nothing: SQLite rewrites rows in place, no dead versions pile up."""
    # No ANALYZE here: the service never runs it on SQLite, so neither does the benchmark.
    after_fill = _checkpoint

    def read_all(self, conn) -> int:
        conn.execute("BEGIN")  # one snapshot, as verification's read session has
        try:
            n = sum(1 for _ in conn.execute("SELECT * FROM ledger_transactions ORDER BY sequence"))
            for _ in conn.execute("SELECT * FROM ledger_entries ORDER BY sequence, line"):
                pass
        finally:
            conn.execute("COMMIT")
        return n


class PostgresLedger(Ledger):
    """A ledger in its own schema of the run's database, reached through `search_path`."""

    name = "postgresql"
    for_update = " FOR UPDATE"
    # tables whose rows postings UPDATE (dead row versions pile up there with autovacuum off), and
    # the business-date totals they append to and look the latest total up in: without fresh
    # statistics a prepared posting keeps a plan made when that table was small (a sequential scan
    # per lookup), and a run slows down as it grows
    UPDATED_TABLES = "ledger_head, ledger_accounts, effective_balance_buckets"

    def __init__(self, conninfo: str, schema_name: str):
        self.conninfo = conninfo
        self.options = f"-c search_path={schema_name}"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema_name}"')
        url = conninfo.replace("postgresql://", "postgresql+psycopg://", 1)
        super().__init__(f"{url}?options={quote(self.options)}", pool_size=max(FULL.clients) + 2, max_overflow=0)
        self.maintenance = self.connect()

    def connect(self):
        return psycopg.connect(self.conninfo, autocommit=True, options=self.options)

    def before_write(self) -> None:
        self.vacuum()
        self.maintenance.execute("CHECKPOINT")

    def vacuum(self) -> None:
        self.maintenance.execute(f"VACUUM ANALYZE {self.UPDATED_TABLES}")

    def after_fill(self) -> None:
        # Autovacuum is off here; in production it would have analysed the grown tables (the
        # planner needs their statistics) and set the visibility map (index-only scans).
        self.maintenance.execute("VACUUM ANALYZE ledger_transactions, ledger_entries, ledger_accounts, ledger_head, "
                                 "effective_balance_buckets")
        self.maintenance.execute("CHECKPOINT")

    def read_all(self, conn) -> int:
        # server-side cursors fetching 5000 rows a round trip, as verification's batches do
        with conn.transaction():
            with conn.cursor(name="bench_transactions") as cur:
                cur.itersize = 5000
                cur.execute("SELECT * FROM ledger_transactions ORDER BY sequence")
                n = sum(1 for _ in cur)
            with conn.cursor(name="bench_entries") as cur:
                cur.itersize = 5000
                cur.execute("SELECT * FROM ledger_entries ORDER BY sequence, line")
                for _ in cur:
                    pass
        return n

    def close(self) -> None:
        self.maintenance.close()
        super().close()


@contextmanager
def ledgers_on(backend: str) -> Iterator[Callable[[str], Ledger]]:
    """A factory of fresh ledgers on `backend`, and everything it made removed afterwards.

    SQLite: one file per ledger in a temporary directory. PostgreSQL: one schema per ledger
    in a database `utfall_bench_<pid>` created here and dropped at the end.
    """
    opened: list[Ledger] = []
    if backend == "sqlite":
        where = tempfile.mkdtemp(prefix="utfall_bench_")

        def make(label: str) -> Ledger:
            opened.append(SqliteLedger(os.path.join(where, f"ledger_{label}.db")))
            return opened[-1]

        def remove() -> None:
            shutil.rmtree(where, ignore_errors=True)
    elif backend == "postgresql":
        dbname = f"utfall_bench_{os.getpid()}"
        conninfo = f"{PG_ADMIN.rsplit('/', 1)[0]}/{dbname}"
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')

        def make(label: str) -> Ledger:
            opened.append(PostgresLedger(conninfo, f"ledger_{label}"))
            return opened[-1]

        def remove() -> None:
            assert dbname.startswith("utfall_bench_"), dbname  # never test, postgres or root
            with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    else:
        raise ValueError(f"unknown backend {backend!r}")
    try:
        yield make
    finally:
        try:
            for ledger in opened:
                ledger.close()
        finally:
            remove()


# --- measuring ------------------------------------------------------------------------------

def interleaved(variants: dict[str, Callable[[], float]], runs: int,
                before: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Each variant `runs` times, round by round; odd rounds in reverse order, so no variant
    always follows the same neighbour (a checkpoint or a cache warmed by the previous one)."""
    out: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(runs):
        for name in names if r % 2 == 0 else reversed(names):
            if before is not None:
                before()
            out[name].append(variants[name]())
    return out


def rate(open_client: Callable[[], tuple[Callable[[int, int], None], Callable[[], None]]],
         pairs: Sequence[tuple[int, int]], clients: int) -> float:
    """Operations per second with `clients` threads sharing `pairs` of (debit, credit) accounts.

    `open_client()` returns (operation, close); clients are opened before the clock starts,
    so connecting is not measured.
    """
    handles = [open_client() for _ in range(clients)]
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)

    def work(op, share):
        start.wait()
        try:
            for a, b in share:
                op(a, b)
        except BaseException as exc:  # re-raised in the calling thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(op, pairs[i::clients])) for i, (op, _) in enumerate(handles)]
    try:
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    finally:
        for _, close in handles:
            close()
    if errors:
        raise errors[0]
    return len(pairs) / elapsed


def mean_ms(op: Callable[[int], object], args: Sequence[int], n: int) -> float:
    """Mean latency in ms of `n` calls of `op`, cycling through `args`."""
    t0 = time.perf_counter()
    for i in range(n):
        op(args[i % len(args)])
    return (time.perf_counter() - t0) * 1000 / n


def summary(values: Sequence[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": list(values)}


def result(operation: str, backend: str, size: int, unit: str, figures: Sequence[float],
           reference: str, ref_figures: Sequence[float], **extra) -> dict:
    """One row: the ledger's figure, the bare reference's, and ratio = figure ÷ reference."""
    fig, ref = summary(figures), summary(ref_figures)
    return {
        "benchmark": "ledger", "operation": operation, "backend": backend, "size": size, "unit": unit,
        "higher_is_better": unit.endswith("/s"), **fig,
        "reference": {"operation": reference, **ref}, "ratio": fig["median"] / ref["median"], **extra,
    }


# --- filling the ledger ---------------------------------------------------------------------

TX_COLUMNS = ("sequence", "posted_at", "effective_date", "kind", "description", "actor", "reverses",
              "contract_id", "previous_hash", "hash")
ENTRY_COLUMNS = ("sequence", "line", "account_id", "currency", "amount_minor", "balance_after_minor")


def setup_accounts(lg: Ledger, n: int) -> list[int]:
    """A fund party with `n` open SEK accounts, opened the way the service opens them."""
    with lg.db.uow() as uow:
        party = Party(name="Benchmark fund", role="FUND")
        uow.session.add(party)
        uow.session.flush()
        ids = [journal.open_account(uow, code=f"BENCH_{i}", name=f"Benchmark account {i}", party_id=party.id,
                                    currency=CURRENCY).id for i in range(n)]
        uow.commit()
    return ids


def _insert_batch(lg: Ledger, conn, txs: list[dict], entries: list[dict]) -> None:
    if lg.name == "postgresql":
        # COPY is ~8× faster than executemany here (BENCHMARKS.md); the raw psycopg
        # connection stays inside the SQLAlchemy transaction
        with conn.connection.driver_connection.cursor() as cur:
            with cur.copy(f"COPY ledger_transactions ({', '.join(TX_COLUMNS)}) FROM STDIN") as cp:
                for t in txs:
                    cp.write_row(tuple(t[c] for c in TX_COLUMNS))
            with cur.copy(f"COPY ledger_entries ({', '.join(ENTRY_COLUMNS)}) FROM STDIN") as cp:
                for e in entries:
                    cp.write_row(tuple(e[c] for c in ENTRY_COLUMNS))
    else:
        # Core executemany binds through the models' column types, so timestamps are stored
        # in exactly the text form the ORM writes and reads back
        conn.execute(insert(Transaction.__table__), txs)
        conn.execute(insert(Entry.__table__), entries)


def _insert_totals(lg: Ledger, conn, after: int, upto: int) -> None:
    columns = ("account_id", "level", "bucket", "sequence", "cumulative_minor")
    for rows in effective_balances.rows_for(conn, after, upto, batch=20_000):
        if lg.name == "postgresql":
            with conn.connection.driver_connection.cursor() as cur:
                with cur.copy(f"COPY effective_balance_buckets ({', '.join(columns)}) FROM STDIN") as cp:
                    for r in rows:
                        cp.write_row(tuple(r[c] for c in columns))
        else:
            conn.execute(insert(EffectiveBalanceBucket.__table__), rows)


def fill(lg: Ledger, entries_wanted: int, rng: random.Random, batch: int = 20_000, *,
         backdated_days: int = 0, effective_totals: bool = False) -> tuple[int, float]:
    """Append transactions until the ledger holds `entries_wanted` entries; (added, seconds).

    Each transaction moves a random amount between two random accounts. Timestamps start
    30 days back and step 1 ms per transaction, so `posted_at` rises with the sequence and
    stays before the real postings made later. With `backdated_days`, each transaction's
    effective date is its posting date less up to that many days, at random; with
    `effective_totals`, the accounts' totals by business date are written as postings would
    have written them (ledger/effective_balances.py).
    """
    t0 = time.perf_counter()
    acc_t, head_t = Account.__table__, LedgerHead.__table__
    with lg.engine.begin() as conn:
        head = conn.execute(select(head_t).where(head_t.c.id == 1).with_for_update()).one()
        have = conn.execute(select(func.count()).select_from(Entry.__table__)).scalar_one()
        todo = max(0, (entries_wanted - have + 1) // 2)
        if todo == 0:
            return 0, 0.0
        balances = dict(conn.execute(select(acc_t.c.id, acc_t.c.balance_minor)).all())
        ids = sorted(balances)
        last_seq: dict[int, int] = {}
        seq, prev = head.sequence, head.hash
        posted = head.posted_at or datetime.now(timezone.utc) - timedelta(days=30)
        step = timedelta(milliseconds=1)
        while todo:
            txs, entries = [], []
            for _ in range(min(batch, todo)):
                seq += 1
                posted += step
                a, b = rng.sample(ids, 2)
                amount = rng.randint(1, 1_000_000)
                balances[a] += amount
                balances[b] -= amount
                last_seq[a] = last_seq[b] = seq
                rows = [
                    {"sequence": seq, "line": 1, "account_id": a, "currency": CURRENCY,
                     "amount_minor": amount, "balance_after_minor": balances[a]},
                    {"sequence": seq, "line": 2, "account_id": b, "currency": CURRENCY,
                     "amount_minor": -amount, "balance_after_minor": balances[b]},
                ]
                effective = posted.date() - timedelta(days=rng.randint(0, backdated_days)) if backdated_days \
                    else posted.date()
                tx = {"sequence": seq, "posted_at": posted, "effective_date": effective, "kind": "BENCH",
                      "description": "benchmark fill", "actor": "bench", "reverses": None, "contract_id": None,
                      "previous_hash": prev}
                tx["hash"] = prev = journal.chain_hash(prev, journal.canonical_bytes(tx, rows))
                txs.append(tx)
                entries.extend(rows)
            _insert_batch(lg, conn, txs, entries)
            todo -= len(txs)
        # the Merkle tree's nodes over the new transactions, as postings would have stored them
        tree.extend(conn, head.sequence, seq)
        if effective_totals:
            _insert_totals(lg, conn, head.sequence, seq)
        conn.execute(update(head_t).where(head_t.c.id == 1).values(sequence=seq, hash=prev, posted_at=posted))
        conn.execute(
            update(acc_t).where(acc_t.c.id == bindparam("acc"))
            .values(balance_minor=bindparam("bal"), last_sequence=bindparam("last")),
            [{"acc": acc, "bal": balances[acc], "last": last} for acc, last in last_seq.items()],
        )
        added = seq - head.sequence
    lg.after_fill()
    return added, time.perf_counter() - t0


# --- 1. postings ----------------------------------------------------------------------------

AMOUNT = 100  # öre, for the bare variants
DEBIT, CREDIT = m.money("1.00", CURRENCY), m.money("-1.00", CURRENCY)
ZERO_HASH = "0" * 64

BARE_VARIANTS = {
    "bare insert": dict(chained=False, balances=False),
    "bare chained": dict(chained=True, balances=False),
    "bare posting-shaped": dict(chained=True, balances=True),
}
PGLEDGER = "pgledger transfer"
# at the most clients only the references that say most: the rest repeat the 8-client story
MOST_CLIENTS_REFERENCES = ("bare posting-shaped", PGLEDGER)


class BareJournal:
    """The bare references' ledger: a second freshly migrated ledger, so they write to tables with
    exactly the journal's DDL (keys, indexes, check constraints, append-only triggers) — tables
    without them would flatter the reference. Their rows are not canonical (the hash covers a
    short string), so this ledger is never verified."""

    def __init__(self, lg: Ledger, account_ids: Sequence[int]):
        self.lg = lg
        self.account_ids = list(account_ids)
        # `bare insert` has no head to take a sequence from: its own range, far above the chain's
        self._unchained = itertools.count(10 ** 12)

    def posting(self, conn, a: int, b: int, *, chained: bool, balances: bool) -> None:
        """One raw-driver write transaction of a transaction row and its two entries.

        The chain hash is computed in Python, as `journal.post` does; sha256 of a short string
        costs about a microsecond, nothing beside a round trip.
        """
        lg, q = self.lg, self.lg.q
        conn.execute(lg.begin_write)
        now = datetime.now(timezone.utc)
        if chained:
            seq, prev = conn.execute("SELECT sequence, hash FROM ledger_head WHERE id = 1" + lg.for_update).fetchone()
            seq += 1
        else:
            seq, prev = next(self._unchained), ZERO_HASH
        new = hashlib.sha256(f"{prev}{seq}:{a}:{b}:{AMOUNT}".encode()).hexdigest()
        after = {a: AMOUNT, b: -AMOUNT}
        if balances:
            current = dict(conn.execute(q("SELECT id, balance_minor FROM ledger_accounts WHERE id IN (%s, %s)"),
                                        (a, b)).fetchall())
            after = {a: current[a] + AMOUNT, b: current[b] - AMOUNT}
        conn.execute(q("INSERT INTO ledger_transactions (sequence, posted_at, effective_date, kind, description, "
                       "actor, previous_hash, hash) VALUES (%s, %s, %s, 'BENCH', 'benchmark posting', 'bench', %s, %s)"),
                     (seq, now.isoformat(), now.date().isoformat(), prev, new))
        conn.execute(q("INSERT INTO ledger_entries (sequence, line, account_id, currency, amount_minor, "
                       "balance_after_minor) VALUES (%s, 1, %s, 'SEK', %s, %s), (%s, 2, %s, 'SEK', %s, %s)"),
                     (seq, a, AMOUNT, after[a], seq, b, -AMOUNT, after[b]))
        if balances:
            for acc, bal in after.items():
                conn.execute(q("UPDATE ledger_accounts SET balance_minor = %s, last_sequence = %s WHERE id = %s"),
                             (bal, seq, acc))
        if chained:
            conn.execute(q("UPDATE ledger_head SET sequence = %s, hash = %s, posted_at = %s WHERE id = 1"),
                         (seq, new, now.isoformat()))
        conn.execute("COMMIT")


class PgLedgerReference:
    """pgledger (../shared/reference/pgledger, MIT), loaded into a database of its own.

    As its README says it was measured on this machine kind: 10 "hot" and 1 000 "wide"
    accounts, transfers between two random wide accounts of a random amount 0.01–100.00, one
    autocommit statement per transfer, `VACUUM pgledger_accounts` before each run.
    """

    FILES = ("ulid-to-uuid.sql", "uuid-to-ulid.sql", "pgledger.sql")

    def __init__(self, source: str = PGLEDGER_DIR, wide: int = 1000, hot: int = 10):
        self.dbname = f"utfall_bench_pgledger_{os.getpid()}"
        self.conninfo = f"{PG_ADMIN.rsplit('/', 1)[0]}/{self.dbname}"
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.dbname}"')
            admin.execute(f'CREATE DATABASE "{self.dbname}"')
        with psycopg.connect(self.conninfo) as conn:  # one transaction, in the README's order
            for name in self.FILES:
                with open(os.path.join(source, name), encoding="utf-8") as f:
                    conn.execute(f.read())
            for i in range(hot):
                conn.execute("SELECT id FROM pgledger_create_account(%s, 'USD')", (f"hot-{i}",))
            self.account_ids = [conn.execute("SELECT id FROM pgledger_create_account(%s, 'USD')",
                                             (f"wide-{i}",)).fetchone()[0] for i in range(wide)]
        self.maintenance = psycopg.connect(self.conninfo, autocommit=True)

    def connect(self):
        return psycopg.connect(self.conninfo, autocommit=True)

    @staticmethod
    def transfer(conn, a: str, b: str, amount: Decimal) -> None:
        conn.execute("SELECT id FROM pgledger_create_transfer(%s, %s, %s)", (a, b, amount))

    def vacuum(self) -> None:
        self.maintenance.execute("VACUUM ANALYZE pgledger_accounts")

    def close(self) -> None:
        self.maintenance.close()
        assert self.dbname.startswith("utfall_bench_"), self.dbname  # never test, postgres or root
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')


def rate(open_client: Callable[[random.Random], tuple[Callable[[], None], Callable[[], None]]],
         clients: int, seconds: float, seed: str) -> float:
    """Operations per second of `clients` threads, each repeating its operation for `seconds`.

    `open_client(rng)` returns (operation, close); clients are opened before the clock starts,
    so connecting is not measured. Each client draws its accounts from its own seeded `rng`.
    """
    handles = [open_client(random.Random(f"{seed}-{i}")) for i in range(clients)]
    errors: list[BaseException] = []
    done = [0] * clients
    start = threading.Barrier(clients + 1)
    stop = [0.0]

    def work(i, op):
        start.wait()
        n = 0
        try:
            while time.perf_counter() < stop[0]:
                op()
                n += 1
        except BaseException as exc:  # re-raised in the calling thread below
            errors.append(exc)
        done[i] = n

    threads = [threading.Thread(target=work, args=(i, op)) for i, (op, _) in enumerate(handles)]
    try:
        for t in threads:
            t.start()
        t0 = time.perf_counter()
        stop[0] = t0 + seconds
        start.wait()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0  # until the last client's last operation ended
    finally:
        for _, close in handles:
            close()
    if errors:
        raise errors[0]
    return sum(done) / elapsed


def ledger_posting(db: Database, a: int, b: int) -> None:
    """What a posting use case does: one unit of work, one `journal.post`, one commit, through
    `Database.write` as every mutation of the service."""
    db.write(posting_work(a, b))


def statements_per_posting(lg: Ledger, a: int, b: int) -> list[str]:
    """The SQL statements one posting sends, as "VERB table" (BEGIN, COMMIT and the pool's
    pre-ping are left out). On PostgreSQL postings pipeline their statements through psycopg
    itself, so they are recorded at the driver there, through SQLAlchemy's event on SQLite."""
    seen: list[str] = []

    def record(statement) -> None:
        statement = statement if isinstance(statement, str) else str(statement)
        words = statement.split()
        verb = words[0].upper()
        if verb in ("BEGIN", "COMMIT", "ROLLBACK"):
            return
        if verb in ("SAVEPOINT", "RELEASE"):  # the posting's own savepoint, in its round trip
            seen.append(verb)
            return
        if verb == "WITH":  # writes in one statement: `WITH t AS (INSERT INTO table ...), ... SELECT ...`
            upper = [w.upper() for w in words]
            for i, w in enumerate(upper[:-2]):
                if w in ("(INSERT", "INSERT") and upper[i + 1] == "INTO":
                    seen.append(f"INSERT {words[i + 2].split('.')[-1]}")
                elif w == "(UPDATE":
                    seen.append(f"UPDATE {words[i + 1].split('.')[-1]}")
            return
        after = {"SELECT": "FROM", "INSERT": "INTO", "UPDATE": "UPDATE"}.get(verb)
        upper = [w.upper() for w in words]
        table = words[upper.index(after) + 1] if after in upper else "?"
        seen.append(f"{verb} {table.split('.')[-1]}")

    if lg.name == "postgresql":
        execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany
        send_held = ledger_db._Held.send  # a posting sent with its COMMIT straight through libpq
        psycopg.Cursor.execute = lambda cur, query, *a, **k: (record(query), execute(cur, query, *a, **k))[1]
        psycopg.Cursor.executemany = lambda cur, query, *a, **k: (record(query), executemany(cur, query, *a, **k))[1]
        ledger_db._Held.send = lambda held, **k: (record(held.sql), send_held(held, **k))[1]
        try:
            ledger_posting(lg.db, a, b)
        finally:
            psycopg.Cursor.execute, psycopg.Cursor.executemany = execute, executemany
            ledger_db._Held.send = send_held
        return seen

    def on_execute(_conn, _cursor, statement, *_args):
        record(statement)
    event.listen(lg.engine, "before_cursor_execute", on_execute)
    try:
        ledger_posting(lg.db, a, b)
    finally:
        event.remove(lg.engine, "before_cursor_execute", on_execute)
    return seen


GROUP = "ledger, group commit"
GROUP_PROCESSES = 2
GROUP_MULTI = f"ledger, group commit, {GROUP_PROCESSES} processes"
LEDGER_VARIANTS = ("ledger", GROUP, GROUP_MULTI)


def posting_work(a: int, b: int):
    """The unit of work of one benchmark posting, for `Database.write`."""
    return lambda uow: journal.post(uow, actor="bench", kind="BENCH", description="benchmark posting",
                                    effective_date=datetime.now(timezone.utc).date(),
                                    postings=[journal.Posting(a, DEBIT), journal.Posting(b, CREDIT)])


@unit_of_work("bench.posting")
def _named_posting(a: int, b: int):
    """The benchmark posting as a named unit of work, which a process can send to the machine's shared writer."""
    work = posting_work(a, b)
    return lambda uow: (work(uow), None)[1]


def posting_worker(spec: dict) -> None:
    """A posting process of the multi-process variant: `clients` threads posting through this
    machine's shared writer (`ledger.shared_writer`, as `uvicorn --workers N` does): the process
    holding the seat runs every process's postings in its group commit's batches, or, with
    `"shared": false`, through this process's own group commit writer. Started together on "go" from
    stdin (connecting and a warm-up posting are off the clock); prints how many it posted and in how long."""
    shared = spec.get("shared", True)
    db = Database(make_engine(spec["url"], pool_size=spec["clients"] + 2, max_overflow=0), group_commit=True,
                  shared_writer=shared)
    ids = spec["ids"]
    # warm-up: the writer seat taken or found, the writer, its connection, prepared statements
    db.write_named("bench.posting", a=ids[0], b=ids[1])
    print("ready", flush=True)
    sys.stdin.readline()
    stop = time.perf_counter() + spec["seconds"]
    done = [0] * spec["clients"]

    def work(i: int) -> None:
        rng = random.Random(f"{spec['seed']}-{i}")
        while time.perf_counter() < stop:
            a, b = rng.sample(ids, 2)
            db.write_named("bench.posting", a=a, b=b)
            done[i] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(spec["clients"])]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    sent = db.shared_writer.forwarded if db.shared_writer is not None else 0
    print(json.dumps({"postings": sum(done), "seconds": elapsed, "sent": sent}), flush=True)
    sys.stdin.readline()  # the seat's holder serves the others until every process is done
    db.close()


def rate_in_processes(lg: Ledger, ids: Sequence[int], clients: int, processes: int, seconds: float,
                      seed: str, *, shared: bool = True) -> float:
    """Postings/s of `clients` split over `processes` worker processes sharing one writer (or, not
    `shared`, each with its own, taking turns through the writer lease)."""
    figures = posting_workers(lg, ids, clients, processes, seconds, seed, shared=shared)
    return sum(f["postings"] for f in figures) / max(f["seconds"] for f in figures)


def posting_workers(lg: Ledger, ids: Sequence[int], clients: int, processes: int, seconds: float,
                    seed: str, *, shared: bool = True) -> list[dict]:
    """Each worker process's figures: postings, seconds, and how many it sent to the shared writer."""
    log_dir = tempfile.mkdtemp(prefix="utfall_bench_workers_")
    procs = []
    try:
        for n in range(processes):
            spec = {"url": lg.url, "ids": list(ids), "clients": max(1, clients // processes), "seconds": seconds,
                    "seed": f"{seed}-{n}", "shared": shared}
            # each worker's stderr goes to a file: a pipe nobody reads would block it
            err = open(os.path.join(log_dir, f"worker-{n}.log"), "wb")
            procs.append((subprocess.Popen([sys.executable, "-m", "ops.bench.ledger", "--posting-worker",
                                            json.dumps(spec)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                           stderr=err, text=True), err))
        for proc, _ in procs:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a posting worker failed; see {log_dir}")
        for proc, _ in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        figures = [json.loads(proc.stdout.readline()) for proc, _ in procs]
        for proc, _ in procs:
            proc.stdin.write("done\n")
            proc.stdin.flush()
        for proc, _ in procs:
            proc.wait(60)
        shutil.rmtree(log_dir, ignore_errors=True)
        return figures
    finally:
        for proc, err in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            err.close()


def measure_postings(lg: Ledger, bare: BareJournal, cfg: Config, size: int, ids: Sequence[int], log: Log,
                     pgledger: PgLedgerReference | None = None) -> list[dict]:
    """The ledger's postings/s beside the bare references and pgledger, at 1, 8 and 32 clients
    (SQLite: 1; it has one writer), every variant interleaved round by round. On PostgreSQL the
    ledger is measured three ways: one commit per posting; through the group commit of this
    process; and with the clients split over 2 processes sharing one writer."""
    grouped = Database(lg.engine, group_commit=True) if lg.name == "postgresql" else None

    def ledger_client(rng):
        return (lambda: ledger_posting(lg.db, *rng.sample(ids, 2))), (lambda: None)

    def group_client(rng):
        return (lambda: grouped.write(posting_work(*rng.sample(ids, 2)))), (lambda: None)

    def bare_client(kw):
        def open_(rng):
            conn = bare.lg.connect()
            return (lambda: bare.posting(conn, *rng.sample(bare.account_ids, 2), **kw)), conn.close
        return open_

    def pgledger_client(rng):
        conn = pgledger.connect()

        def op():
            a, b = rng.sample(pgledger.account_ids, 2)
            pgledger.transfer(conn, a, b, Decimal(rng.randint(1, 10_000)) / 100)
        return op, conn.close

    openers = {"ledger": ledger_client}
    if grouped is not None:
        openers[GROUP] = group_client
    openers.update({name: bare_client(kw) for name, kw in BARE_VARIANTS.items()})
    if pgledger is not None:
        openers[PGLEDGER] = pgledger_client
    client_counts = cfg.clients if lg.name == "postgresql" else (1,)
    variants: dict[tuple[str, int], Callable[[], float]] = {}
    for clients in client_counts:
        for name, open_ in openers.items():
            if clients == max(client_counts) > 8 and name not in (*LEDGER_VARIANTS, *MOST_CLIENTS_REFERENCES):
                continue
            # default arguments pin this iteration's values into the closure
            variants[(name, clients)] = (lambda open_=open_, clients=clients, name=name:
                                         rate(open_, clients, cfg.seconds, f"{name}-{clients}"))
        if grouped is not None and clients >= GROUP_PROCESSES:
            variants[(GROUP_MULTI, clients)] = (lambda clients=clients: rate_in_processes(
                lg, ids, clients, GROUP_PROCESSES, cfg.seconds, f"multi-{clients}"))
    for name, clients in variants:  # warm-up: pools, prepared statements, caches
        if name in openers:
            rate(openers[name], clients, min(1.0, cfg.seconds), f"warm-{name}")
    statements = statements_per_posting(lg, *ids[:2])

    def before() -> None:
        # BENCHMARKS.md: autovacuum is off here, so every updated table is vacuumed before each
        # write run, then one CHECKPOINT (it is server-wide), so no run pays for another's pages
        bare.lg.vacuum()
        if pgledger is not None:
            pgledger.vacuum()
        lg.before_write()

    pre_ping = bool(getattr(lg.engine.pool, "_pre_ping", False))  # one more round trip per checkout
    log(f"  {lg.name}: postings, {len(variants)} variants × {cfg.runs} runs of {cfg.seconds:g} s")
    try:
        runs = interleaved(variants, cfg.runs, before=before)
    finally:
        if grouped is not None:
            grouped.group_commit.close()
    out = []
    references = [name for name in openers if name not in LEDGER_VARIANTS]
    for clients in client_counts:
        plural = "s" if clients > 1 else ""
        for variant in LEDGER_VARIANTS:
            if (variant, clients) not in variants:
                continue
            op = f"post, {clients} client{plural}" + variant.removeprefix("ledger")
            for ref in references:
                if (ref, clients) in variants and (variant == "ledger" or ref in MOST_CLIENTS_REFERENCES):
                    out.append(result(op, lg.name, size, "/s", runs[(variant, clients)], ref, runs[(ref, clients)],
                                      clients=clients, variant=variant, statements_per_posting=statements,
                                      pool_pre_ping=pre_ping, seconds=cfg.seconds))
    return out


# --- 2. balance reads -----------------------------------------------------------------------

BARE_READ = "bare PK SELECT"


def read_variants(lg: Ledger, cfg: Config) -> dict[str, Callable[[int], float]]:
    """Balance reads on one ledger, each `n -> mean latency in ms`, and their bare reference."""
    with lg.db.reading() as s:
        middle = journal.digest(s).sequence // 2
        middle_at = s.execute(select(Transaction.posted_at).where(Transaction.sequence == middle)).scalar_one()
        # accounts posted to after the middle: for the others an as-of read short-cuts to
        # the current balance and would not exercise the lookup being measured
        ids = s.execute(select(Account.id).where(Account.last_sequence > middle).order_by(Account.id)
                        .limit(cfg.read_accounts)).scalars().all()

    def ledger_read(**as_of) -> Callable[[int], float]:
        def op(acc: int) -> None:
            with lg.db.reading() as s:  # a fresh session per read, as each request has
                journal.balance(s, acc, **as_of)
        return lambda n: mean_ms(op, ids, n)

    def bare_read(n: int) -> float:
        conn = lg.connect()  # off the clock
        try:
            sql = lg.q("SELECT balance_minor FROM ledger_accounts WHERE id = %s")
            return mean_ms(lambda acc: conn.execute(sql, (acc,)).fetchone(), ids, n)
        finally:
            conn.close()

    return {
        "balance now": ledger_read(),
        "balance as of sequence": ledger_read(as_of_sequence=middle),
        "balance as of time": ledger_read(as_of=middle_at),
        BARE_READ: bare_read,
    }


def measure_reads(ledgers: dict[int, Ledger], cfg: Config, log: Log) -> list[dict]:
    """Every read on every size, interleaved in the same rounds, so sizes compare fairly."""
    variants: dict[tuple[str, int], Callable[[int], float]] = {}
    for size, lg in ledgers.items():
        for op, fn in read_variants(lg, cfg).items():
            variants[(op, size)] = fn
    for fn in variants.values():
        fn(min(cfg.reads, 50))  # warm-up: pool connections, compiled-statement cache, page cache
    backend = next(iter(ledgers.values())).name
    log(f"  {backend}: balance reads, {len(variants)} variants × {cfg.runs} runs of {cfg.reads}")
    runs = interleaved({k: (lambda fn=fn: fn(cfg.reads)) for k, fn in variants.items()}, cfg.runs)
    return [result(op, backend, size, "ms", runs[(op, size)], BARE_READ, runs[(BARE_READ, size)])
            for size in ledgers for op in ("balance now", "balance as of sequence", "balance as of time")]


# --- 3. verification ------------------------------------------------------------------------

def bare_read_rate(lg) -> float:
    """Transactions per second reading the ledger's rows with bare SELECTs on a connection of
    its own: the reference beside every verification figure."""
    conn = lg.connect()
    try:
        t0 = time.perf_counter()
        n = lg.read_all(conn)
        return n / (time.perf_counter() - t0)
    finally:
        conn.close()


def measure_verify(lg: Ledger, cfg: Config, size: int, log: Log) -> list[dict]:
    """`journal.verify` in transactions/s beside reading the same rows with bare SELECTs."""
    def verify() -> float:
        with lg.db.reading() as s:
            t0 = time.perf_counter()
            v = journal.verify(s)
            elapsed = time.perf_counter() - t0
        if not v.ok:  # the fill (or a posting) broke the chain: no figure is worth printing
            raise RuntimeError(f"{lg.name}: the benchmark ledger does not verify: {v}")
        return v.checked_transactions / elapsed

    def bare_walk() -> float:
        return bare_read_rate(lg)

    log(f"  {lg.name}: verification at {size:,} entries, {cfg.verify_runs} runs")
    verify()  # warm-up, and proof that the filled ledger verifies
    runs = interleaved({"verify": verify, "bare": bare_walk}, cfg.verify_runs)
    return [result("verify chain", lg.name, size, "tx/s", runs["verify"], "bare SELECT all rows", runs["bare"])]


# --- driver ---------------------------------------------------------------------------------

def run_backend(name: str, cfg: Config, log: Log = _stderr, *, postings_only: bool = False) -> list[dict]:
    """Fill one ledger per size, then reads on all sizes, verification and postings on the largest."""
    out: list[dict] = []
    with ledgers_on(name) as new_ledger:
        ledgers: dict[int, Ledger] = {}
        accounts: dict[int, list[int]] = {}
        sizes = sorted(cfg.sizes)[-1:] if postings_only else sorted(cfg.sizes)
        for size in sizes:
            lg = ledgers[size] = new_ledger(str(size))
            accounts[size] = setup_accounts(lg, cfg.accounts)
            # seeded: the same ledgers every run. The one postings run on holds its accounts' totals by
            # business date, as every posted ledger does: a posting looks each one up
            added, seconds = fill(lg, size, random.Random(f"utfall-bench-{size}"), effective_totals=size == max(sizes))
            log(f"  {name}: filled a ledger of {size:,} entries ({added:,} transactions; "
                f"{2 * added / max(seconds, 1e-9):,.0f} entries/s including hashing)")
        largest = max(ledgers)
        lg = ledgers[largest]
        if not postings_only:
            out += measure_reads(ledgers, cfg, log)
            out += measure_verify(lg, cfg, largest, log)
        # last, as real postings append to the ledger (it stays verifiable)
        bare_ledger = new_ledger("bare")
        bare = BareJournal(bare_ledger, setup_accounts(bare_ledger, cfg.accounts))
        pgledger = PgLedgerReference() if name == "postgresql" and os.path.isdir(PGLEDGER_DIR) else None
        if name == "postgresql" and pgledger is None:
            log(f"  pgledger not found at {PGLEDGER_DIR} (set UTFALL_PGLEDGER): measured without it")
        try:
            out += measure_postings(lg, bare, cfg, largest, accounts[largest], log, pgledger)
        finally:
            if pgledger is not None:
                pgledger.close()
        with lg.db.reading() as s:
            if not journal.verify(s).ok:
                raise RuntimeError(f"{name}: the ledger no longer verifies after the posting runs")
    return out


def run(quick: bool = False, backends: Iterable[str] = BACKENDS, *, sizes: Sequence[int] | None = None,
        runs: int | None = None, seconds: float | None = None, clients: Sequence[int] | None = None,
        postings_only: bool = False, log: Log = _stderr) -> list[dict]:
    """Measure on each backend; a list of result dicts (see `result`) for a combined report."""
    cfg = QUICK if quick else FULL
    if sizes:
        if min(sizes) < MIN_SIZE:
            raise ValueError(f"ledger sizes start at {MIN_SIZE} entries")
        cfg = replace(cfg, sizes=tuple(sorted({s + s % 2 for s in sizes})))  # two entries a transaction
    if runs:
        cfg = replace(cfg, runs=max(3, runs))  # BENCHMARKS.md: the median of at least 3
    if seconds:
        cfg = replace(cfg, seconds=seconds)
    if clients:
        cfg = replace(cfg, clients=tuple(sorted(set(clients))))
    out: list[dict] = []
    for name in backends:
        log(f"ledger benchmark on {name}: sizes {', '.join(f'{s:,}' for s in cfg.sizes)}")
        out += run_backend(name, cfg, log, postings_only=postings_only)
    return out


# --- output ---------------------------------------------------------------------------------

def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.3f}"
    return f"{value:,.0f}".replace(",", " ")


def table(results: Sequence[dict]) -> str:
    """A plain-text table, and under it the flatness of balance reads across sizes."""
    header = ("operation", "backend", "size", "median", "min–max", "reference", "ratio")
    rows = [header]
    for r in results:
        unit, ref = r["unit"], r["reference"]
        rows.append((
            r["operation"], r["backend"], f"{r['size']:,}".replace(",", " "),
            f"{_fmt(r['median'], unit)} {unit}",
            f"{_fmt(r['min'], unit)}–{_fmt(r['max'], unit)}",
            f"{_fmt(ref['median'], unit)} {unit} {ref['operation']}",
            f"{r['ratio']:.2f}×",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {2, 3, 4, 6}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("ratio = figure ÷ reference: below 1 is slower for a rate (/s), above 1 for a latency (ms).")
    flat = flatness(results)
    if flat:
        lines.append("Balance-read latency, largest ÷ smallest ledger (flat is ≈1×): " + "; ".join(flat))
    for r in results:
        if r["operation"] == "post, 1 client" and r["reference"]["operation"] == "bare posting-shaped":
            sent = r["statements_per_posting"]
            extra = ", pool pre-ping" if r.get("pool_pre_ping") else ""
            lines.append(f"{r['backend']}: one journal.post sends {len(sent)} statements (+ BEGIN, COMMIT{extra}), "
                         f"bare posting-shaped 7 (+ BEGIN, COMMIT): {', '.join(sent)}"
                         + ("; from the chain memory, through Database.write: BEGIN, the writes and COMMIT "
                            "in 1 round trip (a posting that finds the memory out of date is rerun, reading "
                            "the head and accounts in one more)."
                            if r["backend"] == "postgresql" else "."))
    scaling = posting_scaling(results)
    if scaling:
        lines.append("Postings/s by clients (more clients must never be slower than fewer):")
        lines.extend("  " + line for line in scaling)
        if any(r["backend"] == "postgresql" for r in results):
            lines.append("  (the service posts through the group commit on PostgreSQL unless UTFALL_GROUP_COMMIT=0; "
                         "`ledger` is each posting committed on its own)")
    lines.append("Load generator and database share this machine's cores "
                 f"({os.cpu_count()}); figures move 10–50 % between runs, ratios much less.")
    return "\n".join(lines)


def posting_scaling(results: Sequence[dict]) -> list[str]:
    """Per backend and way of posting: median postings/s at each client count, and its ratio to
    pgledger's in the same rounds."""
    out = []
    for backend in dict.fromkeys(r["backend"] for r in results):
        rows = [r for r in results if r["backend"] == backend and r.get("clients")]
        pgledger = {r["clients"]: r["reference"]["median"] for r in rows if r["reference"]["operation"] == PGLEDGER}
        if pgledger:
            out.append(f"{backend} pgledger " + ", ".join(f"{c}: {_fmt(v, '/s')}" for c, v in sorted(pgledger.items())))
        for variant in dict.fromkeys(r.get("variant", "ledger") for r in rows):
            figures = {r["clients"]: r for r in rows if r.get("variant", "ledger") == variant}
            parts = []
            for clients, r in sorted(figures.items()):
                ratio = f" ({r['median'] / pgledger[clients]:.2f}× pgledger)" if clients in pgledger else ""
                parts.append(f"{clients}: {_fmt(r['median'], '/s')}{ratio}")
            out.append(f"{backend} {variant} " + ", ".join(parts))
    return out


def flatness(results: Sequence[dict]) -> list[str]:
    """Per backend and read: median latency on the largest ledger ÷ on the smallest."""
    out = []
    reads = [r for r in results if r["unit"] == "ms"]
    for backend in dict.fromkeys(r["backend"] for r in reads):
        for op in dict.fromkeys(r["operation"] for r in reads):
            rows = sorted((r for r in reads if r["backend"] == backend and r["operation"] == op), key=lambda r: r["size"])
            if len(rows) > 1:
                out.append(f"{backend} {op} {rows[-1]['median'] / rows[0]['median']:.2f}×")
    return out


def parse_sizes(text: str) -> list[int]:
    """'10000,1e5,1_000_000' → [10000, 100000, 1000000]."""
    return [int(float(part)) for part in text.replace("_", "").split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.bench.ledger", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--sizes", type=parse_sizes, help="ledger sizes in entries (default 10000,100000,1000000)")
    p.add_argument("--quick", action="store_true", help="sizes 10000,100000, fewer postings and reads, 3 runs")
    p.add_argument("--runs", type=int, help="measured runs per posting and read variant (at least 3)")
    p.add_argument("--seconds", type=float, help="length of one measured posting run (default 10; 1 with --quick)")
    p.add_argument("--clients", type=lambda t: [int(x) for x in t.split(",")],
                   help="posting clients on PostgreSQL (default 1,8,32)")
    p.add_argument("--postings-only", action="store_true", help="only the posting runs, on the largest size")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--posting-worker", help=argparse.SUPPRESS)  # a process of the multi-process variant
    args = p.parse_args(argv)
    if args.posting_worker:
        posting_worker(json.loads(args.posting_worker))
        return 0
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    results = run(args.quick, backends, sizes=args.sizes, runs=args.runs, seconds=args.seconds,
                  clients=args.clients, postings_only=args.postings_only)
    print(table(results))
    print(f"({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"benchmark": "ledger", "started_at": started.isoformat(), "quick": args.quick,
                       "argv": list(argv if argv is not None else sys.argv[1:]), "cpu_count": os.cpu_count(),
                       "results": results}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
