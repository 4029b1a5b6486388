"""Ledger benchmark: postings per second, balance-read latency as the ledger grows, verification.

    python -m ops.bench.ledger [--quick] [--backend sqlite|postgresql|both]
                               [--sizes 10000,100000,1000000] [--runs N] [--json PATH]

This is a measurement, not a timed test: it prints figures and asserts nothing about speed
(it does insist that the ledger it filled still verifies). Every figure is printed beside a
bare-database reference measured in the same run on the same database, with the ratio
figure ÷ reference: absolute figures on the shared 2-core machine move by 10–50 % from run
to run, a ratio taken in one sitting much less (BENCHMARKS.md).

Per backend, one freshly migrated ledger per size (SQLite: files in a temporary directory;
PostgreSQL: schemas in a fresh database `utfall_bench_<pid>`, dropped at the end), so that
reads on all sizes are interleaved in the same rounds:

1. Postings per second: one `journal.post` of two entries per unit of work, committed; one
   client, and on PostgreSQL also 8 threads. References, all through the raw driver:
   - `bare insert`: a transaction inserting two entry-like rows, nothing else;
   - `bare chained`: the same serialised on a head row locked FOR UPDATE (on SQLite the
     writer lock of BEGIN IMMEDIATE) whose sha256 hash is advanced;
   - `bare posting-shaped`: chained, plus a transaction row and reading and rewriting the
     two account rows' running balances: the 7 statements a posting cannot do without,
     minus the ORM.
   The gaps between the three references and the ledger say where postings/s goes: the
   commit, the chain lock, the balances, or the client (ORM and driver in Python).
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
`VACUUM ANALYZE` of the tables postings update and a `CHECKPOINT` (autovacuum is off on this
machine), SQLite a WAL checkpoint. The load generator and the database share the same cores.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import psycopg
from sqlalchemy import bindparam, event, func, insert, select, update

from ledger import effective_balances, journal, schema, tree
from ledger import money as m
from ledger.db import Database, make_engine
from ledger.models import Account, EffectiveBalanceBucket, Entry, LedgerHead, Party, Transaction

PG_ADMIN = os.environ.get("UTFALL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")
CURRENCY = "SEK"


@dataclass(frozen=True)
class Config:
    """How much to measure; `QUICK` fits in about two minutes for both backends."""

    sizes: tuple[int, ...]  # ledger sizes in entries (two per transaction)
    runs: int  # measured runs per variant for postings and reads
    postings: int  # postings per run, split over the clients
    reads: int  # balance reads per run
    verify_runs: int  # verification of the largest ledger is the longest step
    accounts: int = 1000
    clients: int = 8
    read_accounts: int = 50


MIN_SIZE = 1000  # below this too few accounts move after the middle to exercise as-of reads
FULL = Config(sizes=(10_000, 100_000, 1_000_000), runs=5, postings=1000, reads=500, verify_runs=3)
QUICK = Config(sizes=(10_000, 100_000), runs=3, postings=200, reads=200, verify_runs=3)

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- backends -------------------------------------------------------------------------------

BENCH_TABLES_PG = """
CREATE TABLE bench_entries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, account_id integer NOT NULL,
    currency varchar(3) NOT NULL, amount_minor bigint NOT NULL, balance_after_minor bigint NOT NULL);
CREATE TABLE bench_chain_entries (
    sequence bigint NOT NULL, line integer NOT NULL, account_id integer NOT NULL,
    currency varchar(3) NOT NULL, amount_minor bigint NOT NULL, balance_after_minor bigint NOT NULL,
    PRIMARY KEY (sequence, line));
CREATE TABLE bench_head (id integer PRIMARY KEY, sequence bigint NOT NULL, hash varchar(64) NOT NULL);
CREATE TABLE bench_transactions (
    sequence bigint PRIMARY KEY, posted_at timestamp with time zone NOT NULL, description text NOT NULL,
    previous_hash varchar(64) NOT NULL, hash varchar(64) NOT NULL);
CREATE TABLE bench_accounts (id integer PRIMARY KEY, balance_minor bigint NOT NULL, last_sequence bigint NOT NULL);
"""
# SQLite: INTEGER PRIMARY KEY is the rowid, its cheapest equivalent of an identity column.
BENCH_TABLES_SQLITE = BENCH_TABLES_PG.replace("bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "INTEGER PRIMARY KEY")


class Ledger:
    """One freshly migrated ledger: the service's own engine on it, and raw-driver connections.

    Each size gets its own ledger, so reads on all sizes can be interleaved in the same
    rounds: measured one after the other, load from elsewhere on this shared machine
    would pass for growth (or hide it).
    """

    name: str
    bench_ddl: str
    for_update = ""
    begin_write = "BEGIN"

    def __init__(self, url: str):
        self.url = url
        schema.upgrade(url)
        # the service's own engine configuration (pool, pre-ping, SQLite pragmas)
        self.engine = make_engine(url)
        self.db = Database(self.engine)

    def q(self, sql: str) -> str:
        """`sql` written with %s placeholders, in this driver's paramstyle."""
        return sql

    def connect(self):
        """A raw DB-API connection in autocommit mode: BEGIN/COMMIT are sent explicitly."""
        raise NotImplementedError

    def create_bench_tables(self, account_ids: Sequence[int]) -> None:
        """The bare references' own tables, beside the ledger's."""
        conn = self.connect()
        try:
            for stmt in filter(str.strip, self.bench_ddl.split(";")):
                conn.execute(stmt)
            conn.execute("INSERT INTO bench_head (id, sequence, hash) VALUES (1, 0, '" + "0" * 64 + "')")
            for acc in account_ids:
                conn.execute(self.q("INSERT INTO bench_accounts VALUES (%s, 0, 0)"), (acc,))
        finally:
            conn.close()

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
    bench_ddl = BENCH_TABLES_SQLITE
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
    bench_ddl = BENCH_TABLES_PG
    for_update = " FOR UPDATE"
    # tables whose rows postings UPDATE: dead row versions pile up there with autovacuum off
    UPDATED_TABLES = "ledger_head, ledger_accounts, bench_head, bench_accounts"

    def __init__(self, conninfo: str, schema_name: str):
        self.conninfo = conninfo
        self.options = f"-c search_path={schema_name}"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema_name}"')
        url = conninfo.replace("postgresql://", "postgresql+psycopg://", 1)
        super().__init__(f"{url}?options={quote(self.options)}")
        self.maintenance = self.connect()

    def connect(self):
        return psycopg.connect(self.conninfo, autocommit=True, options=self.options)

    def before_write(self) -> None:
        self.maintenance.execute(f"VACUUM ANALYZE {self.UPDATED_TABLES}")
        self.maintenance.execute("CHECKPOINT")

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

BARE_VARIANTS = {
    "bare insert": dict(chained=False, balances=False),
    "bare chained": dict(chained=True, balances=False),
    "bare posting-shaped": dict(chained=True, balances=True),
}


def bare_posting(lg: Ledger, conn, a: int, b: int, *, chained: bool, balances: bool) -> None:
    """One raw-driver write transaction of two entry-like rows (see the module docstring).

    The chain hash is computed in Python, as `journal.post` does; sha256 of a short string
    costs about a microsecond, nothing beside a round trip.
    """
    q = lg.q
    conn.execute(lg.begin_write)
    if not chained:
        conn.execute(q("INSERT INTO bench_entries (account_id, currency, amount_minor, balance_after_minor) "
                       "VALUES (%s, 'SEK', %s, 0), (%s, 'SEK', %s, 0)"), (a, AMOUNT, b, -AMOUNT))
        conn.execute("COMMIT")
        return
    seq, prev = conn.execute("SELECT sequence, hash FROM bench_head WHERE id = 1" + lg.for_update).fetchone()
    seq += 1
    new = hashlib.sha256(f"{prev}{seq}:{a}:{b}:{AMOUNT}".encode()).hexdigest()
    after = {a: AMOUNT, b: -AMOUNT}
    if balances:
        current = dict(conn.execute(q("SELECT id, balance_minor FROM bench_accounts WHERE id IN (%s, %s)"),
                                    (a, b)).fetchall())
        after = {a: current[a] + AMOUNT, b: current[b] - AMOUNT}
        conn.execute(q("INSERT INTO bench_transactions VALUES (%s, %s, 'benchmark posting', %s, %s)"),
                     (seq, datetime.now(timezone.utc).isoformat(), prev, new))
    conn.execute(q("INSERT INTO bench_chain_entries VALUES (%s, 1, %s, 'SEK', %s, %s), (%s, 2, %s, 'SEK', %s, %s)"),
                 (seq, a, AMOUNT, after[a], seq, b, -AMOUNT, after[b]))
    if balances:
        for acc, bal in after.items():
            conn.execute(q("UPDATE bench_accounts SET balance_minor = %s, last_sequence = %s WHERE id = %s"),
                         (bal, seq, acc))
    conn.execute(q("UPDATE bench_head SET sequence = %s, hash = %s WHERE id = 1"), (seq, new))
    conn.execute("COMMIT")


def ledger_posting(db: Database, a: int, b: int) -> None:
    """What a posting use case does: one unit of work, one `journal.post`, one commit."""
    with db.uow() as uow:
        journal.post(uow, actor="bench", kind="BENCH", description="benchmark posting",
                     effective_date=datetime.now(timezone.utc).date(),
                     postings=[journal.Posting(a, DEBIT), journal.Posting(b, CREDIT)])
        uow.commit()


def statements_per_posting(lg: Ledger, a: int, b: int) -> list[str]:
    """The SQL statements one posting sends, as "VERB table" (BEGIN, COMMIT and the pool's
    pre-ping are left out: the last two do not pass through this event)."""
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        words = statement.split()
        verb = words[0].upper()
        if verb == "BEGIN":
            return
        after = {"SELECT": "FROM", "INSERT": "INTO", "UPDATE": "UPDATE"}.get(verb)
        upper = [w.upper() for w in words]
        table = words[upper.index(after) + 1] if after in upper else "?"
        seen.append(f"{verb} {table}")

    event.listen(lg.engine, "before_cursor_execute", record)
    try:
        ledger_posting(lg.db, a, b)
    finally:
        event.remove(lg.engine, "before_cursor_execute", record)
    return seen


def measure_postings(lg: Ledger, cfg: Config, size: int, ids: Sequence[int], rng: random.Random,
                     log: Log) -> list[dict]:
    """The ledger's postings/s beside the three bare references, 1 client and (PostgreSQL) 8."""
    def pairs(n: int) -> list[tuple[int, int]]:
        return [tuple(rng.sample(ids, 2)) for _ in range(n)]

    def ledger_client():
        return (lambda a, b: ledger_posting(lg.db, a, b)), (lambda: None)

    def bare_client(kw):
        def open_():
            conn = lg.connect()
            return (lambda a, b: bare_posting(lg, conn, a, b, **kw)), conn.close
        return open_

    openers = {"ledger": ledger_client, **{name: bare_client(kw) for name, kw in BARE_VARIANTS.items()}}
    client_counts = (1, cfg.clients) if lg.name == "postgresql" else (1,)  # SQLite has one writer
    variants: dict[tuple[str, int], Callable[[], float]] = {}
    for clients in client_counts:
        for name, open_ in openers.items():
            # default arguments pin this iteration's values into the closure
            variants[(name, clients)] = (lambda open_=open_, clients=clients:
                                         rate(open_, pairs(cfg.postings), clients))
    for name, clients in variants:
        rate(openers[name], pairs(4 * clients), clients)  # warm-up: pools, prepared statements, caches
    statements = statements_per_posting(lg, *pairs(1)[0])
    pre_ping = bool(getattr(lg.engine.pool, "_pre_ping", False))  # one more round trip per checkout
    log(f"  {lg.name}: postings, {len(variants)} variants × {cfg.runs} runs of {cfg.postings}")
    runs = interleaved(variants, cfg.runs, before=lg.before_write)
    out = []
    for clients in client_counts:
        op = f"post, {clients} client{'s' if clients > 1 else ''}"
        for ref in BARE_VARIANTS:
            out.append(result(op, lg.name, size, "/s", runs[("ledger", clients)], ref, runs[(ref, clients)],
                              statements_per_posting=statements, pool_pre_ping=pre_ping))
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
        conn = lg.connect()
        try:
            t0 = time.perf_counter()
            n = lg.read_all(conn)
            return n / (time.perf_counter() - t0)
        finally:
            conn.close()

    log(f"  {lg.name}: verification at {size:,} entries, {cfg.verify_runs} runs")
    verify()  # warm-up, and proof that the filled ledger verifies
    runs = interleaved({"verify": verify, "bare": bare_walk}, cfg.verify_runs)
    return [result("verify chain", lg.name, size, "tx/s", runs["verify"], "bare SELECT all rows", runs["bare"])]


# --- driver ---------------------------------------------------------------------------------

def run_backend(name: str, cfg: Config, log: Log = _stderr) -> list[dict]:
    """Fill one ledger per size, then reads on all sizes, verification and postings on the largest."""
    out: list[dict] = []
    with ledgers_on(name) as new_ledger:
        ledgers: dict[int, Ledger] = {}
        accounts: dict[int, list[int]] = {}
        for size in sorted(cfg.sizes):
            lg = ledgers[size] = new_ledger(str(size))
            accounts[size] = setup_accounts(lg, cfg.accounts)
            # seeded: the same ledgers every run
            added, seconds = fill(lg, size, random.Random(f"utfall-bench-{size}"))
            log(f"  {name}: filled a ledger of {size:,} entries ({added:,} transactions; "
                f"{2 * added / max(seconds, 1e-9):,.0f} entries/s including hashing)")
        out += measure_reads(ledgers, cfg, log)
        largest = max(ledgers)
        lg = ledgers[largest]
        out += measure_verify(lg, cfg, largest, log)
        # last, as real postings append to the ledger (it stays verifiable)
        lg.create_bench_tables(accounts[largest])
        out += measure_postings(lg, cfg, largest, accounts[largest], random.Random("utfall-bench-postings"), log)
    return out


def run(quick: bool = False, backends: Iterable[str] = BACKENDS, *, sizes: Sequence[int] | None = None,
        runs: int | None = None, log: Log = _stderr) -> list[dict]:
    """Measure on each backend; a list of result dicts (see `result`) for a combined report."""
    cfg = QUICK if quick else FULL
    if sizes:
        if min(sizes) < MIN_SIZE:
            raise ValueError(f"ledger sizes start at {MIN_SIZE} entries")
        cfg = replace(cfg, sizes=tuple(sorted({s + s % 2 for s in sizes})))  # two entries a transaction
    if runs:
        cfg = replace(cfg, runs=max(3, runs))  # BENCHMARKS.md: the median of at least 3
    out: list[dict] = []
    for name in backends:
        log(f"ledger benchmark on {name}: sizes {', '.join(f'{s:,}' for s in cfg.sizes)}")
        out += run_backend(name, cfg, log)
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
                         f"bare posting-shaped 7 (+ BEGIN, COMMIT): {', '.join(sent)}.")
    lines.append("Load generator and database share this machine's cores "
                 f"({os.cpu_count()}); figures move 10–50 % between runs, ratios much less.")
    return "\n".join(lines)


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
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    results = run(args.quick, backends, sizes=args.sizes, runs=args.runs)
    print(table(results))
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"benchmark": "ledger", "started_at": started.isoformat(), "quick": args.quick,
                       "argv": list(argv if argv is not None else sys.argv[1:]), "cpu_count": os.cpu_count(),
                       "results": results}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
