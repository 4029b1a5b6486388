"""Payout benchmark: one payout calculated over a large cohort, beside the SQL that reads its rows.

    python -m ops.bench.payout [--quick] [--backend sqlite|postgresql|both] [--runs N]
                               [--json PATH] [--profile]

This is a measurement, not a timed test: it prints figures and asserts nothing about speed.

The world: one active rate-card contract with three metrics, per-participant caps, a contract
participant cap and area supplements, so that caps bind for many participants
(see `contract_terms`); `Config.participants` participants and `Config.items` VERIFIED
evidence items achieved in the period, each for a random participant and metric. Parties,
fund and contract are made through the use cases; participants and evidence are bulk-loaded
(COPY on PostgreSQL, Core executemany in batches on SQLite), not through `submit_evidence`.
Fresh databases: an SQLite file in a temporary directory; on PostgreSQL a database
`utfall_bench_pay_<pid>`, migrated with `ledger.schema.upgrade` and dropped at the end.

Measured, per backend, variants interleaved round by round (median of `runs` with min–max):

* `calculate_payout`: the use case through a real `Database(engine).uow()` with commit,
  wall clock from opening the unit of work to closing it. Every run starts from the same
  state: a CALCULATED payout of the same period (it supersedes it; nothing is consumed
  until a payout is approved). Inside these runs `gather_inputs`,
  `payouts.calculate_with_canonical` and `_record_result` are wrapped with a clock (three
  function calls; nothing else changes), which splits the time into phases printed under the table.
  The superseded calculations keep their payout items, so `payout_item_blocks` grows by one
  payout's items per run: the runs' figures are kept in order in the JSON.
* the reference, `bare SQL join`: the raw driver (sqlite3 / psycopg) reading the evidence
  rows joined to their participants for the period into Python: the limit a calculation
  cannot go below. Every figure's ratio is figure ÷ this reference.
* `bare SQL join + not-paid filter`: the same with a NOT EXISTS over earlier payout item rows
  (evidence paid by a POSTED payout is not paid again), as `gather_inputs` filtered before
  migration 0020p; it now reads the POSTED payouts' item blocks and leaves their evidence out
  as the rows stream past (ledger/payout_items.py). This contract has no POSTED payout.
* `gather_inputs` in a read session, and the pure engine `payouts.calculate` on the inputs
  it gathered, separately, so a reader sees where the time goes.

Peak memory (separate, unmeasured runs): `tracemalloc` peak of the Python heap around one
`calculate_payout`, one `gather_inputs` and one `payouts.calculate`; and the peak resident set
of a fresh process doing one `calculate_payout` (VmHWM, reset after start-up), with its growth
over the RSS before the calculation.

Method (BENCHMARKS.md): before every measured run PostgreSQL gets `VACUUM ANALYZE` of the
tables involved (autovacuum is off on this machine) and a `CHECKPOINT`, SQLite a WAL
checkpoint. `--profile` also prints the hottest functions of one `calculate_payout` (cProfile).
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
from sqlalchemy import event, func, insert, select

from ledger import calculations, contracts, funds, payouts, schema
from ledger import money as m
from ledger.access import Actor
from ledger.contracts import get_contract
from ledger.db import Database, make_engine
from ledger.models import Evidence, Participant, Party, PayoutItem, PayoutItemBlock
from ops.bench.ledger import interleaved, summary

PG_ADMIN = os.environ.get("UTFALL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgresql")
CURRENCY = "SEK"
PERIOD_START, PERIOD_END = date(2026, 1, 1), date(2026, 6, 30)
FM = Actor("bench-frida", "FUND_MANAGER")
BATCH = 20_000
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Config:
    items: int  # VERIFIED evidence items in the period
    participants: int
    runs: int  # measured runs per variant (BENCHMARKS.md: at least 3)


FULL = Config(items=100_000, participants=20_000, runs=3)
QUICK = Config(items=20_000, participants=4_000, runs=3)

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sek(amount: str) -> m.Money:
    return m.money(amount, CURRENCY)


# --- the contract ---------------------------------------------------------------------------

AREAS = (("URBAN", 0.55), ("RURAL", 0.30), ("REMOTE", 0.10), (None, 0.05))
# (code, weight): with 5 items per participant on average, a participant has 3.5 ATTENDANCE
# items (the cap of 4 binds for about a third), 1 QUALIFICATION (a second one is capped) and
# 0.5 EMPLOYMENT; the participant cap of 15 000 binds for most with an EMPLOYMENT.
METRICS = (("ATTENDANCE", 0.70), ("QUALIFICATION", 0.20), ("EMPLOYMENT", 0.10))


def contract_terms(manager_id: int, muni_id: int) -> contracts.TermsSpec:
    supplements = (("REMOTE", Decimal(25)), ("RURAL", Decimal(15)))

    def rate_card(code: str, price: str, **kw) -> contracts.MetricSpec:
        return contracts.MetricSpec(code=code, name=code.title(), kind="RATE_CARD", direction="HIGHER_IS_BETTER",
                                    unit_price=sek(price), area_supplements=supplements, **kw)

    return contracts.TermsSpec(
        max_value=sek("400000000.00"), participant_cap=sek("15000.00"),
        payer_shares=(contracts.ShareSpec(manager_id, Decimal("40")), contracts.ShareSpec(muni_id, Decimal("60"))),
        metrics=(rate_card("ATTENDANCE", "1250.00", cap_per_participant=sek("5000.00")),
                 rate_card("QUALIFICATION", "6000.00", cap_per_participant=sek("7000.00")),
                 rate_card("EMPLOYMENT", "9000.00")),
    )


@dataclass(frozen=True)
class World:
    contract_id: int
    provider_id: int
    provider_label: str
    verifier_label: str


def make_world(db: Database) -> World:
    """Parties, a funded fund and an ACTIVE contract, through the use cases (as tests/factories.py)."""
    with db.uow() as uow:
        s = uow.session
        manager = Party(name="Statens utfallsfond", role="FUND")
        muni = Party(name="Umeå kommun", role="MUNICIPALITY")
        prov = Party(name="Skolframgång AB", role="PROVIDER", ownership="PRIVATE")
        ver = Party(name="Oberoende utvärdering AB", role="VERIFIER")
        s.add_all([manager, muni, prov, ver])
        uow.commit()
    with db.uow() as uow:
        fund = funds.create_fund(uow, actor=FM, name="Utfallsfonden", manager_id=manager.id, currency=CURRENCY)
        funds.deposit_capital(uow, actor=FM, fund_id=fund.id, amount=sek("500000000.00"),
                              effective_date=date(2026, 1, 1), reference="Anslag 2026")
        uow.commit()
    with db.uow() as uow:
        c = contracts.create_contract(
            uow, actor=FM, title="Vägen till arbete", fund_id=fund.id, municipality_id=muni.id,
            provider_id=prov.id, verifier_id=ver.id, investor_id=None, policy_area="employment",
            start_date=date(2026, 1, 1), end_date=date(2028, 12, 31), terms=contract_terms(manager.id, muni.id))
        contracts.activate_contract(uow, actor=FM, contract_id=c.id)
        uow.commit()
    return World(c.id, prov.id, Actor("pia", "PROVIDER", prov.id).label, Actor("vera", "VERIFIER", ver.id).label)


# --- backends -------------------------------------------------------------------------------

class Backend:
    """A fresh, migrated database: the service's engine on it, and raw-driver connections."""

    name: str
    q_marks: bool = False

    def __init__(self, url: str):
        self.url = url
        schema.upgrade(url)
        self.engine = make_engine(url)  # the service's own configuration (pool, pragmas)
        self.db = Database(self.engine)

    def q(self, sql: str) -> str:
        return sql.replace("%s", "?") if self.q_marks else sql

    def connect(self):
        raise NotImplementedError

    def load(self, conn, table, columns: Sequence[str], rows: list[tuple]) -> None:
        """Bulk-insert `rows` inside the SQLAlchemy connection's transaction."""
        raise NotImplementedError

    def before_run(self) -> None:
        """Bring the database to the same housekeeping state before every measured run."""

    def close(self) -> None:
        self.engine.dispose()


class SqliteBackend(Backend):
    name = "sqlite"
    q_marks = True

    def __init__(self, path: str):
        self.path = path
        super().__init__(f"sqlite:///{path}")

    def connect(self):
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        # the same pragmas as ledger.db.make_engine, or the reference would not be comparable
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def load(self, conn, table, columns, rows) -> None:
        # Core executemany binds through the models' column types (dates, UTC timestamps)
        conn.execute(insert(table), [dict(zip(columns, r)) for r in rows])

    def before_run(self) -> None:
        # No ANALYZE: the service never runs it on SQLite, so neither does the benchmark.
        conn = self.connect()
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()


class PostgresBackend(Backend):
    name = "postgresql"
    TABLES = ("evidence, participants, payouts, payout_items, payout_item_blocks, payout_lines, payout_shares, "
              "outcome_contracts, "
              "ledger_head, contract_terms, metrics, area_supplements, payer_shares")

    def __init__(self, conninfo: str):
        self.conninfo = conninfo
        super().__init__(conninfo.replace("postgresql://", "postgresql+psycopg://", 1))
        self.maintenance = self.connect()

    def connect(self):
        return psycopg.connect(self.conninfo, autocommit=True)

    def load(self, conn, table, columns, rows) -> None:
        # COPY: ~8× faster than executemany (BENCHMARKS.md); the raw psycopg connection stays
        # inside the SQLAlchemy transaction
        with conn.connection.driver_connection.cursor() as cur:
            with cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)

    def before_run(self) -> None:
        # autovacuum is off here: calculations insert payout items and supersede payouts
        self.maintenance.execute(f"VACUUM ANALYZE {self.TABLES}")
        self.maintenance.execute("CHECKPOINT")

    def close(self) -> None:
        self.maintenance.close()
        super().close()


@contextmanager
def backend_on(name: str) -> Iterator[Backend]:
    """A fresh migrated database on `name`, removed afterwards."""
    if name == "sqlite":
        where = tempfile.mkdtemp(prefix="utfall_bench_pay_")
        be: Backend | None = None
        try:
            be = SqliteBackend(os.path.join(where, "payout.db"))
            yield be
        finally:
            if be is not None:
                be.close()
            shutil.rmtree(where, ignore_errors=True)
    elif name == "postgresql":
        # UTFALL_BENCH_DB_PREFIX: a name of one's own on a shared server (still utfall_…)
        dbname = f"{os.environ.get('UTFALL_BENCH_DB_PREFIX', 'utfall_bench_pay')}_{os.getpid()}"
        assert dbname.startswith("utfall_"), dbname  # never test, postgres or root
        conninfo = f"{PG_ADMIN.rsplit('/', 1)[0]}/{dbname}"
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')
        be = None
        try:
            be = PostgresBackend(conninfo)
            yield be
        finally:
            try:
                if be is not None:
                    be.close()
            finally:
                with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    else:
        raise ValueError(f"unknown backend {name!r}")


# --- filling --------------------------------------------------------------------------------

P_COLUMNS = ("contract_id", "external_ref", "area", "enrolled_on", "enrolled_by", "created_at")
E_COLUMNS = ("contract_id", "participant_id", "metric_code", "achieved_on", "status", "submitted_by",
             "submitted_party_id", "submitted_at", "decided_by", "decided_at")


def _pick(rng: random.Random, weighted: Sequence[tuple[object, float]], n: int) -> list:
    return rng.choices([v for v, _ in weighted], weights=[w for _, w in weighted], k=n)


def fill(be: Backend, world: World, cfg: Config, rng: random.Random) -> float:
    """Participants enrolled on the first day and VERIFIED evidence in the period; seconds taken."""
    t0 = time.perf_counter()
    base = datetime(2026, 7, 1, 8, tzinfo=timezone.utc)
    areas = _pick(rng, AREAS, cfg.participants)
    enrolled_by = world.provider_label
    p_rows = [(world.contract_id, f"P{i:07d}", areas[i], PERIOD_START, enrolled_by, base)
              for i in range(cfg.participants)]
    days = (PERIOD_END - PERIOD_START).days
    with be.engine.begin() as conn:
        for i in range(0, len(p_rows), BATCH):
            be.load(conn, Participant.__table__, P_COLUMNS, p_rows[i:i + BATCH])
        pids = conn.execute(select(Participant.id).where(Participant.contract_id == world.contract_id)
                            .order_by(Participant.id)).scalars().all()
        codes = _pick(rng, METRICS, cfg.items)
        # submitted in the order achieved, as a provider reports them
        achieved = sorted(PERIOD_START + timedelta(days=rng.randint(0, days)) for _ in range(cfg.items))
        e_rows = []
        for i in range(cfg.items):
            at = base + timedelta(seconds=i)
            e_rows.append((world.contract_id, rng.choice(pids), codes[i], achieved[i], "VERIFIED", world.provider_label,
                           world.provider_id, at, world.verifier_label, at + timedelta(hours=1)))
        for i in range(0, len(e_rows), BATCH):
            be.load(conn, Evidence.__table__, E_COLUMNS, e_rows[i:i + BATCH])
    be.before_run()
    return time.perf_counter() - t0


# --- the variants ---------------------------------------------------------------------------

BARE_JOIN = ("SELECT e.id, e.participant_id, e.metric_code, e.achieved_on, p.area "
             "FROM evidence e JOIN participants p ON p.id = e.participant_id "
             "WHERE e.contract_id = %s AND e.status = 'VERIFIED' AND e.metric_code IN (%s, %s, %s) "
             "AND e.achieved_on BETWEEN %s AND %s")
# what gather_inputs adds: not paid by a POSTED payout of the contract already
NOT_PAID = (" AND NOT EXISTS (SELECT 1 FROM payout_items i WHERE i.evidence_id = e.id AND i.kind = 'OUTCOME' "
            "AND i.payout_id IN (SELECT id FROM payouts WHERE contract_id = %s AND status = 'POSTED'))")
BARE_REF = "bare SQL join"


def bare_query(be: Backend, contract_id: int, *, not_paid: bool) -> Callable[[], float]:
    """Seconds to read the period's evidence joined to participants with the raw driver."""
    sql = be.q(BARE_JOIN + (NOT_PAID if not_paid else ""))
    args: tuple = (contract_id, *(c for c, _ in METRICS), PERIOD_START.isoformat(), PERIOD_END.isoformat())
    if not_paid:
        args += (contract_id,)

    def run_once() -> float:
        conn = be.connect()  # off the clock
        try:
            if be.name == "sqlite":
                conn.execute("BEGIN")  # a read snapshot, as a read session has
                t0 = time.perf_counter()
                rows = conn.execute(sql, args).fetchall()
                elapsed = time.perf_counter() - t0
                conn.execute("COMMIT")
            else:
                with conn.transaction():
                    t0 = time.perf_counter()
                    rows = conn.execute(sql, args).fetchall()
                    elapsed = time.perf_counter() - t0
        finally:
            conn.close()
        assert rows, "the bare query found no evidence"
        return elapsed

    return run_once


# (the payout's row is written and its recorded inputs sent inside the engine's phase, as soon
# as the canonical inputs are known; the next phase packs the items and waits for the inputs)
PHASES = ("lock, contract, checks", "gather_inputs", "engine + canonical inputs, payout row, inputs sent",
          "items packed, inputs stored, supersede", "_record_result (lines, bulk items)", "flush", "commit")


@contextmanager
def clocked(marks: dict[str, tuple[float, float]]) -> Iterator[None]:
    """Wrap the steps `calculate_payout` calls with a clock (module attributes, restored after)."""
    originals = {(calculations, "gather_inputs"): calculations.gather_inputs,
                 (calculations, "_record_result"): calculations._record_result,
                 (payouts, "calculate_with_canonical"): payouts.calculate_with_canonical}

    def wrap(name: str, fn):
        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                marks[name] = (t0, time.perf_counter())
        return timed

    try:
        for (mod, attr), fn in originals.items():
            setattr(mod, attr, wrap(f"{mod.__name__.rsplit('.', 1)[-1]}.{attr}", fn))
        yield
    finally:
        for (mod, attr), fn in originals.items():
            setattr(mod, attr, fn)


def calculate(db: Database, contract_id: int):
    """One `calculate_payout` in its own unit of work, committed: what the API does."""
    with db.uow() as uow:
        payout = calculations.calculate_payout(uow, actor=FM, contract_id=contract_id, period_start=PERIOD_START,
                                               period_end=PERIOD_END)
        uow.commit()
    return payout


def _server_cpu(pid: int | None) -> float:
    """Seconds the PostgreSQL backend `pid` has run on a CPU (/proc/<pid>/schedstat, in ns; the
    server is on this machine), or 0 for SQLite, which runs in this process."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except OSError:
        return float("nan")


def calculate_measured(be: Backend, contract_id: int, phases: list[dict], statements: list[int],
                       cpu: list[dict] | None = None) -> float:
    marks: dict[str, tuple[float, float]] = {}
    count = [0]

    def on_execute(*_args):
        count[0] += 1

    event.listen(be.engine, "before_cursor_execute", on_execute)
    try:
        with clocked(marks):
            t0 = time.perf_counter()
            c0 = time.process_time()
            with be.db.uow() as uow:
                driver = uow.session.connection().connection.driver_connection
                pid = driver.info.backend_pid if be.name == "postgresql" else None
                s0 = _server_cpu(pid)
                calculations.calculate_payout(uow, actor=FM, contract_id=contract_id, period_start=PERIOD_START,
                                              period_end=PERIOD_END)
                t_calc = time.perf_counter()
                uow.commit()
                t_commit = time.perf_counter()
            elapsed = time.perf_counter() - t0
            if cpu is not None:  # CPU time moves little when other processes share the cores
                cpu.append({"client": time.process_time() - c0, "server": _server_cpu(pid) - s0})
    finally:
        event.remove(be.engine, "before_cursor_execute", on_execute)
    g, e, r = (marks["calculations.gather_inputs"], marks["payouts.calculate_with_canonical"],
               marks["calculations._record_result"])
    phases.append(dict(zip(PHASES, (g[0] - t0, g[1] - g[0], e[1] - e[0], r[0] - e[1], r[1] - r[0],
                                    t_calc - r[1], t_commit - t_calc))))
    statements.append(count[0])
    return elapsed


def gather(db: Database, contract_id: int) -> payouts.PayoutInputs:
    with db.reading() as s:
        contract = get_contract(s, contract_id)
        return calculations.gather_inputs(s, contract, PERIOD_START, PERIOD_END)


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def heap_peak(fn: Callable[[], object]) -> tuple[int, object]:
    """tracemalloc's peak of the Python heap during `fn` in bytes (above what was traced
    before), and what `fn` returned."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        value = fn()
        return tracemalloc.get_traced_memory()[1] - base, value
    finally:
        tracemalloc.stop()


def rss_child(url: str, contract_id: int) -> dict:
    """Run in a fresh process: peak RSS of one `calculate_payout` (see `_child_main`)."""
    out = subprocess.run([sys.executable, "-m", "ops.bench.payout", "--rss-child", url, str(contract_id)],
                         cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _child_main(url: str, contract_id: int) -> None:
    engine = make_engine(url)
    db = Database(engine)
    with db.reading() as s:  # mappers configured, a pooled connection open, before the baseline
        get_contract(s, contract_id)
    gc.collect()
    before = _status_kib("VmRSS")
    try:  # Linux: writing 5 resets the peak RSS (VmHWM) to the current RSS
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    t0 = time.perf_counter()
    calculate(db, contract_id)
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM") if reset else None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    engine.dispose()
    print(json.dumps({"rss_before_kib": before, "peak_rss_kib": peak if peak is not None else maxrss,
                      "peak_is_reset_hwm": reset, "ru_maxrss_kib": maxrss, "seconds": seconds}))


def profile(be: Backend, contract_id: int, top: int = 25) -> str:
    """The hottest functions of one calculate_payout, by own time and by cumulative time."""
    prof = cProfile.Profile()
    prof.enable()
    calculate(be.db, contract_id)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


# --- results --------------------------------------------------------------------------------

def result(operation: str, backend: str, size: int, unit: str, figures: Sequence[float],
           reference: str, ref_figures: Sequence[float], **extra) -> dict:
    """One row, shaped like ops.bench.ledger's: figure, bare reference, ratio = figure ÷ reference."""
    fig, ref = summary(figures), summary(ref_figures)
    return {
        "benchmark": "payout", "operation": operation, "backend": backend, "size": size, "unit": unit,
        "higher_is_better": unit.endswith("/s"), **fig,
        "reference": {"operation": reference, **ref}, "ratio": fig["median"] / ref["median"], **extra,
    }


def describe(payout) -> list[dict]:
    return [{"metric": x.metric_code, "kind": x.kind, "quantity": str(x.quantity), "gross_minor": x.gross_minor,
             "capped_minor": x.capped_minor, "net_minor": x.net_minor, "caps": x.caps} for x in payout.lines]


def run_backend(name: str, cfg: Config, log: Log = _stderr, *, with_profile: bool = False) -> list[dict]:
    with backend_on(name) as be:
        world = make_world(be.db)
        seconds = fill(be, world, cfg, random.Random(f"utfall-bench-payout-{cfg.items}"))
        log(f"  {name}: loaded {cfg.participants:,} participants and {cfg.items:,} verified evidence items "
            f"in {seconds:.1f} s")
        cid = world.contract_id
        bare, bare_filtered = bare_query(be, cid, not_paid=False), bare_query(be, cid, not_paid=True)
        # warm-up, unmeasured: pool, compiled statements, page cache; and the CALCULATED payout
        # every measured run then supersedes, so all runs start from the same kind of state
        first = calculate(be.db, cid)
        inputs = gather(be.db, cid)
        if len(inputs.evidence) != cfg.items:
            raise RuntimeError(f"gather_inputs found {len(inputs.evidence)} items, not {cfg.items}")
        bare(), bare_filtered()
        phases: list[dict] = []
        statements: list[int] = []
        cpu: list[dict] = []
        variants = {
            "calculate_payout": lambda: calculate_measured(be, cid, phases, statements, cpu),
            BARE_REF: bare,
            "bare SQL join + not-paid filter": bare_filtered,
            "gather_inputs": lambda: timed(lambda: gather(be.db, cid)),
            "payouts.calculate": lambda: timed(lambda: payouts.calculate(inputs)),
        }
        log(f"  {name}: {len(variants)} variants × {cfg.runs} runs, interleaved")
        runs = interleaved(variants, cfg.runs, before=be.before_run)
        log(f"  {name}: peak memory (tracemalloc runs, then a fresh process)")
        be.before_run()
        peaks, values = {}, {}
        for what, fn in (("calculate_payout", lambda: calculate(be.db, cid)),
                         ("gather_inputs", lambda: gather(be.db, cid)),
                         ("payouts.calculate", lambda: payouts.calculate(inputs))):
            peaks[what], values[what] = heap_peak(fn)
        be.before_run()
        rss = rss_child(be.url, cid)
        prof = None
        if with_profile:
            be.before_run()
            prof = profile(be, cid)
        with be.db.reading() as s:
            items_rows = (s.execute(select(func.count()).select_from(PayoutItem)).scalar_one()
                          + s.execute(select(func.coalesce(func.sum(PayoutItemBlock.item_count), 0))).scalar_one())
        last = values["calculate_payout"]  # every calculation of the same state gives the same payout
        assert (last.inputs_hash, last.total_minor) == (first.inputs_hash, first.total_minor)
        assert values["payouts.calculate"].inputs_hash == first.inputs_hash
        size = cfg.items
        median_phases = {k: summary([p[k] for p in phases])["median"] for k in PHASES}
        out = [
            result("calculate_payout (uow + commit)", name, size, "s", runs["calculate_payout"], BARE_REF,
                   runs[BARE_REF], participants=cfg.participants, phases_median_s=median_phases,
                   phases_runs=phases, statements=statements, cpu_runs=cpu,
                   cpu_median_s={k: summary([c[k] for c in cpu])["median"] for k in ("client", "server")},
                   peak_heap_bytes=peaks["calculate_payout"],
                   fresh_process=rss, total_minor=first.total_minor, lines=describe(first),
                   payout_items_rows_at_end=items_rows, profile=prof),
            result("bare SQL join + not-paid filter", name, size, "s", runs["bare SQL join + not-paid filter"],
                   BARE_REF, runs[BARE_REF], participants=cfg.participants),
            result("gather_inputs (read session)", name, size, "s", runs["gather_inputs"], BARE_REF, runs[BARE_REF],
                   participants=cfg.participants, peak_heap_bytes=peaks["gather_inputs"]),
            result("payouts.calculate (pure engine)", name, size, "s", runs["payouts.calculate"], BARE_REF,
                   runs[BARE_REF], participants=cfg.participants, peak_heap_bytes=peaks["payouts.calculate"]),
        ]
    return out


def run(quick: bool = False, backends: Iterable[str] = BACKENDS, *, runs: int | None = None,
        with_profile: bool = False, log: Log = _stderr) -> list[dict]:
    """Measure on each backend; a list of result dicts (see `result`) for a combined report."""
    cfg = QUICK if quick else FULL
    if runs:
        cfg = replace(cfg, runs=max(3, runs))  # BENCHMARKS.md: the median of at least 3
    out: list[dict] = []
    for name in backends:
        log(f"payout benchmark on {name}: {cfg.items:,} evidence items, {cfg.participants:,} participants")
        out += run_backend(name, cfg, log, with_profile=with_profile)
    return out


# --- output ---------------------------------------------------------------------------------

def _n(x: float) -> str:
    return f"{x:,.0f}".replace(",", " ")


def _mib(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


def table(results: Sequence[dict]) -> str:
    header = ("operation", "backend", "items", "median", "min–max", "reference", "ratio")
    rows = [header]
    for r in results:
        ref = r["reference"]
        rows.append((r["operation"], r["backend"], _n(r["size"]), f"{r['median']:.3f} s",
                     f"{r['min']:.3f}–{r['max']:.3f}", f"{ref['median']:.3f} s {ref['operation']}",
                     f"{r['ratio']:.1f}×"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {2, 3, 4, 6}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += ["", "ratio = figure ÷ the bare SQL join's median in the same run (above 1 is slower)."]
    for r in results:
        if not r["operation"].startswith("calculate_payout"):
            continue
        b = r["backend"]
        ph = r["phases_median_s"]
        total = sum(ph.values())
        lines.append(f"{b}: where calculate_payout's time goes (median of {len(r['phases_runs'])} runs, "
                     f"{statistics_fmt(r['statements'])} SQL statements each):")
        parts = [f"{k} {v:.2f} s ({100 * v / total:.0f} %)" for k, v in ph.items()]
        lines += ["    " + "; ".join(parts[:4]), "    " + "; ".join(parts[4:])]
        if r.get("cpu_median_s"):
            c = r["cpu_median_s"]
            lines.append(f"    CPU time (median): this process {c['client']:.3f} s"
                         + (f", the PostgreSQL backend {c['server']:.3f} s" if b == "postgresql" else ""))
        g = [p["gather_inputs"] for p in r["phases_runs"]]
        lines.append(f"    gather_inputs inside the runs, in order: {', '.join(f'{x:.2f}' for x in g)} s "
                     f"(one more superseded payout's items are kept each run; "
                     f"{_n(r['payout_items_rows_at_end'])} items at the end)")
        fp = r["fresh_process"]
        heap = {x["operation"].split(" ")[0]: x.get("peak_heap_bytes") for x in results if x["backend"] == b}
        lines.append(
            f"{b}: peak memory of one calculation: Python heap (tracemalloc) {_mib(r['peak_heap_bytes'])}; "
            f"of which gather_inputs alone {_mib(heap['gather_inputs'])}, payouts.calculate alone "
            f"{_mib(heap['payouts.calculate'])}. Fresh process: peak RSS {fp['peak_rss_kib'] / 1024:,.0f} MiB, "
            f"{(fp['peak_rss_kib'] - fp['rss_before_kib']) / 1024:,.0f} MiB above its "
            f"{fp['rss_before_kib'] / 1024:,.0f} MiB before the calculation ({fp['seconds']:.1f} s).")
        total_minor = r["total_minor"]
        parts = []
        for x in r["lines"]:
            caps = f" [{x['caps']}]" if x["caps"] else ""
            parts.append(f"{x['metric']} {x['quantity']} items gross {x['gross_minor'] / 100:,.2f} "
                         f"capped {x['capped_minor'] / 100:,.2f}{caps}")
        lines.append(f"{b}: payout {total_minor / 100:,.2f} SEK: " + "; ".join(parts))
        if r.get("profile"):
            lines += [f"{b}: cProfile of one calculate_payout:", r["profile"]]
    lines.append(f"Measured on this machine's {os.cpu_count()} cores, shared with the database; "
                 "absolute figures move 10–50 % between runs, ratios much less.")
    return "\n".join(lines)


def statistics_fmt(values: Sequence[int]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.bench.payout", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK.items:,} items and {QUICK.participants:,} participants "
                        f"(default {FULL.items:,} and {FULL.participants:,})")
    p.add_argument("--runs", type=int, help="measured runs per variant (at least 3)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--profile", action="store_true", help="print the hottest functions of one calculation")
    p.add_argument("--rss-child", nargs=2, metavar=("URL", "CONTRACT_ID"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rss_child:
        _child_main(args.rss_child[0], int(args.rss_child[1]))
        return 0
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    results = run(args.quick, backends, runs=args.runs, with_profile=args.profile)
    print(table(results))
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"benchmark": "payout", "started_at": started.isoformat(), "quick": args.quick,
                       "argv": list(argv if argv is not None else sys.argv[1:]), "cpu_count": os.cpu_count(),
                       "results": results}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
