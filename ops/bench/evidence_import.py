"""Evidence import benchmark: rows per second and peak memory of `utfall evidence import`.

    python -m ops.bench.evidence_import [--quick] [--backend sqlite|postgresql|both]
                                        [--rows N] [--runs N] [--json PATH]

A measurement, not a timed test: it prints figures and asserts only that every row was
imported. Per backend, a freshly migrated database (SQLite: a file in a temporary directory;
PostgreSQL: a database `utfall_bench_imp_<pid>`, dropped at the end) gets an active contract
with 20 000 participants and three metrics (SCHOOL_PASS paid once, ATTENDANCE, and the
measured CARE_DAYS). The file holds 100 000 rows (`--quick`: 20 000) over those
participants, a fifth of them once-only claims, two fifths measured values, and one row in
four with a document; it is written as CSV and as JSON Lines.

Variants, interleaved round by round (A B C, C B A, ...), each the median of `--runs` (at
least 3) with min–max:
- `import CSV`, `import JSONL`: `ledger.evidence_import.import_evidence` from opening the
  file to the commit, as `utfall evidence import` runs it (reading the lookups, validating
  every row against the JSON Schema and the contract's rules, writing, the audit event).
- the bare reference, the same evidence and document rows built in Python beforehand and
  written in one transaction through the raw driver: PostgreSQL `COPY` of both tables,
  SQLite `executemany` (with the service's pragmas). ratio = import ÷ bare.
Before each run the previous run's rows are deleted and, on PostgreSQL, the tables get
`VACUUM ANALYZE` and a `CHECKPOINT` (autovacuum is off on this machine, BENCHMARKS.md); on
SQLite the WAL is checkpointed. The tables are the service's own, with their indexes and
foreign keys, on both sides of the ratio.

Peak memory: the import of the whole CSV file and of its first tenth, each in a child
process of its own, reporting its resident set size when the import starts and its peak
during the import (Linux VmHWM, reset first through /proc/self/clear_refs; elsewhere
`resource.getrusage`): when the import streams, the two peaks are nearly equal. (tests/ledger/test_evidence_import.py checks the
same with tracemalloc, which would slow a 100 000-row import about six times.)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
from sqlalchemy import insert, text

from ledger import contracts, evidence_import, funds, parties, schema
from ledger import money as m
from ledger.access import Actor
from ledger.db import Database, make_engine
from ledger.models import Evidence, Participant
from ops.bench.ledger import interleaved, summary

PG_ADMIN = os.environ.get("UTFALL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")
FULL_ROWS, QUICK_ROWS = 100_000, 20_000
PARTICIPANTS = 20_000
FM = Actor("bench fund manager", "FUND_MANAGER")
HEADER = ("participantId", "metricCode", "achievedOn", "periodStart", "periodEnd", "value",
          "document_sha256", "document_filename", "document_media_type")

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- the data -------------------------------------------------------------------------------

@dataclass(frozen=True)
class World:
    contract_id: int
    provider: Actor
    participants: list[int]
    start: date
    today: date


def make_world(db: Database, today: date) -> World:
    """An active contract with PARTICIPANTS participants, set up through the use cases."""
    start, end = today - timedelta(days=730), today + timedelta(days=365)
    with db.uow() as uow:
        manager = parties.create_party(uow, actor=FM, name="Statens utfallsfond", role="FUND")
        muni = parties.create_party(uow, actor=FM, name="Umeå kommun", role="MUNICIPALITY")
        prov = parties.create_party(uow, actor=FM, name="Skolframgång AB", role="PROVIDER", ownership="PRIVATE")
        fund = funds.create_fund(uow, actor=FM, name="Utfallsfonden", manager_id=manager.id, currency="SEK")
        funds.deposit_capital(uow, actor=FM, fund_id=fund.id, amount=m.money("50000000.00", "SEK"),
                              effective_date=start, reference="Anslag")

        def metric(code, kind, price, **kw):
            return contracts.MetricSpec(code=code, name=code.title(), kind=kind, direction="HIGHER_IS_BETTER",
                                        unit_price=m.money(price, "SEK"), **kw)
        terms = contracts.TermsSpec(
            max_value=m.money("10000000.00", "SEK"), participant_cap=None,
            payer_shares=(contracts.ShareSpec(manager.id, Decimal(50)), contracts.ShareSpec(muni.id, Decimal(50))),
            metrics=(metric("SCHOOL_PASS", "RATE_CARD", "40000.00", once_only=True),
                     metric("ATTENDANCE", "RATE_CARD", "12500.00"),
                     metric("CARE_DAYS", "BASELINE_IMPROVEMENT", "1850.00", baseline=Decimal(3650))))
        c = contracts.create_contract(uow, actor=FM, title="Benchmark", fund_id=fund.id, municipality_id=muni.id,
                                      provider_id=prov.id, verifier_id=None, investor_id=None, policy_area="school",
                                      start_date=start, end_date=end, terms=terms)
        contracts.activate_contract(uow, actor=FM, contract_id=c.id)
        uow.session.execute(insert(Participant.__table__), [
            {"contract_id": c.id, "external_ref": f"BENCH-{i}", "enrolled_on": start, "enrolled_by": "bench"}
            for i in range(PARTICIPANTS)])
        ids = list(uow.session.execute(text("SELECT id FROM participants WHERE contract_id = :c ORDER BY id"),
                                       {"c": c.id}).scalars())
        uow.commit()
    return World(c.id, Actor("bench import", "PROVIDER", prov.id), ids, start, today)


def items(world: World, n: int) -> Iterator[dict]:
    """The file's rows as schema items: a fifth SCHOOL_PASS (each participant at most once),
    two fifths ATTENDANCE, two fifths CARE_DAYS over a 30-day period; a document on every fourth."""
    ps, start = world.participants, world.start
    for i in range(n):
        kind = i % 5
        if kind == 0:
            item = {"participantId": ps[(i // 5) % len(ps)], "metricCode": "SCHOOL_PASS",
                    "achievedOn": (start + timedelta(days=30 + i % 500)).isoformat()}
        elif kind <= 2:
            item = {"participantId": ps[i % len(ps)], "metricCode": "ATTENDANCE",
                    "achievedOn": (start + timedelta(days=i % 600)).isoformat()}
        else:
            first = start + timedelta(days=30 * (i % 20))
            item = {"participantId": ps[i % len(ps)], "metricCode": "CARE_DAYS", "periodStart": first.isoformat(),
                    "periodEnd": (first + timedelta(days=29)).isoformat(), "value": f"{i % 1000}.{i % 100:02d}"}
        if i % 4 == 0:
            item["documents"] = [{"sha256": f"{i:064x}", "filename": f"intyg-{i}.pdf", "mediaType": "application/pdf"}]
        yield item


def write_files(world: World, n: int, where: str) -> dict[str, str]:
    """CSV and JSON Lines files of `n` rows, and a CSV of the first tenth; their paths."""
    paths = {"csv": os.path.join(where, "evidence.csv"), "jsonl": os.path.join(where, "evidence.jsonl"),
             "csv_tenth": os.path.join(where, "evidence_tenth.csv")}
    import csv
    with open(paths["csv"], "w", newline="", encoding="utf-8") as fc, \
            open(paths["csv_tenth"], "w", newline="", encoding="utf-8") as ft, \
            open(paths["jsonl"], "w", encoding="utf-8") as fj:
        wc, wt = csv.writer(fc), csv.writer(ft)
        wc.writerow(HEADER)
        wt.writerow(HEADER)
        for i, item in enumerate(items(world, n)):
            doc = (item.get("documents") or [{}])[0]
            row = [item["participantId"], item["metricCode"], item.get("achievedOn", ""), item.get("periodStart", ""),
                   item.get("periodEnd", ""), item.get("value", ""), doc.get("sha256", ""), doc.get("filename", ""),
                   doc.get("mediaType", "")]
            wc.writerow(row)
            if i < n // 10:
                wt.writerow(row)
            fj.write(json.dumps(item, separators=(",", ":")) + "\n")
    return paths


# --- backends -------------------------------------------------------------------------------

class Backend:
    name: str
    reference: str

    def __init__(self, url: str):
        self.url = url
        schema.upgrade(url)
        self.engine = make_engine(url)
        self.db = Database(self.engine)

    def clean(self) -> None:
        """Remove every evidence row (the runs' own), and bring the database to the same state."""
        raise NotImplementedError

    def bare(self, evidence: list[tuple], documents: list[tuple]) -> None:
        raise NotImplementedError

    def next_ids(self, n: int) -> list[int]:
        raise NotImplementedError

    def close(self) -> None:
        self.engine.dispose()


EV_COLS = ", ".join(evidence_import.EVIDENCE_COLUMNS)
DOC_COLS = ", ".join(evidence_import.DOCUMENT_TABLE_COLUMNS)


class SqliteBackend(Backend):
    name = "sqlite"
    reference = "bare sqlite3 executemany"

    def __init__(self, path: str):
        self.path = path
        super().__init__(f"sqlite:///{path}")

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        # the same pragmas as ledger.db.make_engine, or the reference would not be comparable
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def clean(self) -> None:
        conn = self.connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM evidence_documents")
            conn.execute("DELETE FROM evidence")
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    def next_ids(self, n: int) -> list[int]:
        conn = self.connect()
        try:
            first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM evidence").fetchone()[0]
        finally:
            conn.close()
        return list(range(first, first + n))

    def bare(self, evidence, documents) -> None:
        conn = self.connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(f"INSERT INTO evidence ({EV_COLS}) VALUES ({', '.join('?' * len(evidence[0]))})", evidence)
            conn.executemany(f"INSERT INTO evidence_documents ({DOC_COLS}) VALUES (?, ?, ?, ?)", documents)
            conn.execute("COMMIT")
        finally:
            conn.close()


class PostgresBackend(Backend):
    name = "postgresql"
    reference = "bare COPY"

    def __init__(self, conninfo: str):
        self.conninfo = conninfo
        super().__init__(conninfo.replace("postgresql://", "postgresql+psycopg://", 1))
        self.maintenance = psycopg.connect(conninfo, autocommit=True)

    def clean(self) -> None:
        with self.maintenance.transaction():
            self.maintenance.execute("DELETE FROM evidence_documents")
            self.maintenance.execute("DELETE FROM evidence")
        self.maintenance.execute("VACUUM ANALYZE evidence, evidence_documents, participants")
        self.maintenance.execute("CHECKPOINT")

    def next_ids(self, n: int) -> list[int]:
        return [r[0] for r in self.maintenance.execute(
            "SELECT nextval(pg_get_serial_sequence('evidence', 'id')) FROM generate_series(1, %s)", (n,))]

    def bare(self, evidence, documents) -> None:
        with psycopg.connect(self.conninfo) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY evidence ({EV_COLS}) FROM STDIN") as cp:
                for row in evidence:
                    cp.write_row(row)
            with cur.copy(f"COPY evidence_documents ({DOC_COLS}) FROM STDIN") as cp:
                for row in documents:
                    cp.write_row(row)
        # leaving the block commits

    def close(self) -> None:
        self.maintenance.close()
        super().close()


@contextmanager
def backend_on(name: str) -> Iterator[Backend]:
    """A freshly migrated database, removed afterwards (never test, postgres or root)."""
    if name == "sqlite":
        where = tempfile.mkdtemp(prefix="utfall_bench_imp_")
        b: Backend = SqliteBackend(os.path.join(where, "utfall.db"))
        try:
            yield b
        finally:
            b.close()
            shutil.rmtree(where, ignore_errors=True)
    elif name == "postgresql":
        dbname = f"utfall_bench_imp_{os.getpid()}"
        assert dbname.startswith("utfall_bench_imp_"), dbname
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{dbname}"')
        b = None
        try:
            b = PostgresBackend(f"{PG_ADMIN.rsplit('/', 1)[0]}/{dbname}")
            yield b
        finally:
            if b is not None:
                b.close()
            with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    else:
        raise ValueError(f"unknown backend {name!r}")


# --- measuring ------------------------------------------------------------------------------

def run_import(db: Database, world: World, path: str, fmt: str, *, commit: bool = True) -> evidence_import.ImportResult:
    with open(path, "rb") as source, db.uow() as uow:
        result = evidence_import.import_evidence(uow, actor=world.provider, contract_id=world.contract_id, source=source,
                                                 file_name=os.path.basename(path), format=fmt, today=world.today)
        if commit:
            uow.commit()
    return result


def bare_rows(b: Backend, world: World, n: int) -> tuple[list[tuple], list[tuple]]:
    """The import's rows, in the form it writes them (dates and times through the models'
    column types on SQLite), with ids taken as the import takes them; built off the clock."""
    dialect = b.engine.dialect
    conv = {c: Evidence.__table__.c[c].type.dialect_impl(dialect).bind_processor(dialect) or (lambda v: v)
            for c in ("achieved_on", "submitted_at", "value")}
    day = conv["achieved_on"]
    now = conv["submitted_at"](datetime.now(timezone.utc))
    ids = b.next_ids(n)
    label, party = world.provider.label, world.provider.party_id
    evidence, documents = [], []
    for eid, item in zip(ids, items(world, n), strict=True):
        a, s, e = (day(date.fromisoformat(item[k])) if k in item else None
                   for k in ("achievedOn", "periodStart", "periodEnd"))
        value = item.get("value")
        evidence.append((eid, world.contract_id, item["participantId"], item["metricCode"], a, s, e,
                         conv["value"](Decimal(value)) if value else None, "SUBMITTED", label, party, now))
        for doc in item.get("documents", ()):
            documents.append((eid, doc["sha256"], doc["filename"], doc["mediaType"]))
    return evidence, documents


def peak_rss(url: str, world: World, path: str) -> dict:
    """A child process importing `path` (rolled back): its resident set size in bytes when
    the import starts (`before_bytes`: interpreter, libraries, connection) and its peak
    during the import (`maxrss_bytes`)."""
    args = json.dumps({"url": url, "contract": world.contract_id, "party": world.provider.party_id,
                       "today": world.today.isoformat(), "path": path})
    done = subprocess.run([sys.executable, "-m", "ops.bench.evidence_import", "--child", args],
                          capture_output=True, text=True, check=True, timeout=600,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(args: str) -> int:
    def rss(field: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

    def reset_peak() -> bool:
        """Linux: start VmHWM again from the current RSS (loading modules peaks higher than
        an import may, and a high-water mark never goes down on its own)."""
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    a = json.loads(args)
    engine = make_engine(a["url"])
    db = Database(engine)
    world = World(a["contract"], Actor("bench import", "PROVIDER", a["party"]), [], date.min,
                  date.fromisoformat(a["today"]))
    with db.reading() as s:  # connected, and every module the import uses loaded
        s.execute(text("SELECT count(*) FROM participants")).scalar_one()
    evidence_import._validators()
    if reset_peak():
        before = rss("VmRSS")
        result = run_import(db, world, a["path"], "csv", commit=False)
        peak = rss("VmHWM")
    else:  # the peak of the whole process, libraries included
        before = 0
        result = run_import(db, world, a["path"], "csv", commit=False)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    engine.dispose()
    print(json.dumps({"rows": result.imported, "before_bytes": before, "maxrss_bytes": peak}))
    return 0


def result(operation: str, backend: str, size: int, figures: Sequence[float], reference: str,
           ref_figures: Sequence[float], **extra) -> dict:
    fig, ref = summary(figures), summary(ref_figures)
    return {"benchmark": "evidence_import", "operation": operation, "backend": backend, "size": size, "unit": "rows/s",
            "higher_is_better": True, **fig, "reference": {"operation": reference, **ref},
            "ratio": fig["median"] / ref["median"], **extra}


def run_backend(name: str, n: int, runs: int, log: Log = _stderr) -> list[dict]:
    today = datetime.now(timezone.utc).date()
    where = tempfile.mkdtemp(prefix="utfall_bench_imp_files_")
    try:
        with backend_on(name) as b:
            world = make_world(b.db, today)
            paths = write_files(world, n, where)
            log(f"  {name}: {n:,} rows over {len(world.participants):,} participants "
                f"(CSV {os.path.getsize(paths['csv']) / 2**20:.1f} MiB); schema validation by "
                f"{evidence_import.validator_name()}")
            expected_docs = sum(1 for i in range(n) if i % 4 == 0)

            def timed_import(fmt: str) -> float:
                t0 = time.perf_counter()
                r = run_import(b.db, world, paths[fmt], fmt)
                elapsed = time.perf_counter() - t0
                if (r.imported, r.rejected, r.documents) != (n, 0, expected_docs):
                    raise RuntimeError(f"{name}: imported {r}")
                return n / elapsed

            def timed_bare() -> float:
                evidence, documents = bare_rows(b, world, n)  # off the clock
                t0 = time.perf_counter()
                b.bare(evidence, documents)
                return n / (time.perf_counter() - t0)

            # warm-up: imports and compiled statements, the page cache with the files and tables
            run_import(b.db, world, paths["csv_tenth"], "csv")
            b.clean()
            variants = {"import CSV": lambda: timed_import("csv"), "import JSONL": lambda: timed_import("jsonl"),
                        "bare": timed_bare}
            log(f"  {name}: {len(variants)} variants × {runs} runs")
            measured = interleaved(variants, runs, before=b.clean)
            b.clean()
            log(f"  {name}: peak memory of the import in a child process, whole file and first tenth")
            rss_full = peak_rss(b.url, world, paths["csv"])
            rss_tenth = peak_rss(b.url, world, paths["csv_tenth"])
            memory = {"peak_rss_bytes": rss_full["maxrss_bytes"], "peak_rss_tenth_bytes": rss_tenth["maxrss_bytes"],
                      "rss_before_import_bytes": rss_full["before_bytes"]}
            return [result(op, name, n, measured[op], b.reference, measured["bare"], documents=expected_docs,
                           validator=evidence_import.validator_name(), **(memory if op == "import CSV" else {}))
                    for op in ("import CSV", "import JSONL")]
    finally:
        shutil.rmtree(where, ignore_errors=True)


def run(quick: bool = False, backends: Iterable[str] = BACKENDS, *, rows: int | None = None, runs: int = 3,
        log: Log = _stderr) -> list[dict]:
    """Measure on each backend; a list of result dicts for a combined report."""
    n = rows or (QUICK_ROWS if quick else FULL_ROWS)
    out: list[dict] = []
    for name in backends:
        log(f"evidence import benchmark on {name}: {n:,} rows")
        out += run_backend(name, n, max(3, runs), log)  # BENCHMARKS.md: the median of at least 3
    return out


# --- output ---------------------------------------------------------------------------------

def _n(value: float) -> str:
    return f"{value:,.0f}".replace(",", " ")


def _mib(value: int) -> str:
    return f"{value / 2**20:.0f} MiB"


def table(results: Sequence[dict]) -> str:
    header = ("operation", "backend", "rows", "median", "min–max", "reference", "ratio",
              "peak RSS: before → all / first tenth")
    rows = [header]
    for r in results:
        ref = r["reference"]
        rows.append((r["operation"], r["backend"], _n(r["size"]), f"{_n(r['median'])} rows/s",
                     f"{_n(r['min'])}–{_n(r['max'])}", f"{_n(ref['median'])} rows/s {ref['operation']}",
                     f"{r['ratio']:.2f}×",
                     f"{_mib(r['rss_before_import_bytes'])} → {_mib(r['peak_rss_bytes'])} / "
                     f"{_mib(r['peak_rss_tenth_bytes'])}" if "peak_rss_bytes" in r else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {2, 3, 4, 6}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    if results:
        lines.append(f"ratio = import ÷ bare bulk insert of the same rows (and their {results[0]['documents']:,} "
                     "documents) into the same tables, measured in the same run; schema validation by "
                     f"{results[0]['validator']}.")
    lines.append("Peak RSS: a child process before the import (libraries loaded, connected), then importing the "
                 "whole CSV file, or its first tenth (rolled back); equal figures: memory does not grow with the file.")
    lines.append(f"The database and the benchmark share this machine's cores ({os.cpu_count()}); "
                 "figures move 10–50 % between runs, ratios much less.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.bench.evidence_import", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows instead of {FULL_ROWS:,}")
    p.add_argument("--rows", type=int, help="rows in the file (default 100000, --quick 20000)")
    p.add_argument("--runs", type=int, default=3, help="measured runs per variant (at least 3)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.child)
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    results = run(args.quick, backends, rows=args.rows, runs=args.runs)
    print(table(results))
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"benchmark": "evidence_import", "started_at": started.isoformat(), "quick": args.quick,
                       "argv": list(argv if argv is not None else sys.argv[1:]), "cpu_count": os.cpu_count(),
                       "results": results}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
