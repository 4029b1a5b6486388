"""Chain verification benchmark: transactions verified per second, beside a bare read of the same rows.

    python -m ops.bench.verify [--quick] [--backend sqlite|postgresql|both] [--transactions N]
                               [--runs N] [--workers N] [--json PATH]

This is a measurement, not a timed test: it prints figures and asserts nothing about speed
(it does insist that the ledger it filled verifies, on every path).

One ledger per backend of `--transactions` transactions (default 10^6; `--quick` 10^5), two
entries each over 1 000 accounts, filled as ops.bench.ledger fills its ledgers (COPY on
PostgreSQL, hashes computed in Python as postings compute them). Measured, interleaved round
by round, median of `--runs` (at least 3) with min–max, in transactions per second:

* `journal.verify`: what `verifyLedger` and `utfall verify` run. On PostgreSQL that is the
  check inside the database (ledger/chain_ranges.py: each transaction's canonical bytes built
  and hashed in SQL, links, sums and running balances compared there), in sequence ranges on
  one connection per CPU (`--workers`), falling back to the sequential walk only if a range
  finds something wrong.
* `journal.verify, sequential walk`: the same call forced to walk the chain in one process
  (what every ledger got before the ranges; SQLite always takes it).
* `ops/verify_chain.py`: the standalone, stdlib-only verifier an auditor runs.
* the reference, `bare SELECT all rows`: the raw driver reading every transaction and entry
  row in chain order into Python (server-side cursors of 5 000 rows on PostgreSQL), one
  process: what a single reader cannot go below. ratio = figure ÷ this reference (for a
  rate, above 1 is faster than one bare reader).

Before every measured run PostgreSQL gets `VACUUM ANALYZE` of the ledger's tables and a
`CHECKPOINT` (autovacuum is off on this machine), SQLite a WAL checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone

from ledger import journal
from ops import verify_chain
from ops.bench.ledger import bare_read_rate, interleaved, ledgers_on, result, setup_accounts
from ops.bench.ledger import fill as fill_ledger

BACKENDS = ("sqlite", "postgresql")
FULL_TRANSACTIONS, QUICK_TRANSACTIONS = 1_000_000, 100_000
ACCOUNTS = 1000
BARE = "bare SELECT all rows"

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_backend(name: str, transactions: int, runs: int, workers: int, log: Log = _stderr) -> list[dict]:
    with ledgers_on(name) as new_ledger:
        lg = new_ledger("verify")
        setup_accounts(lg, ACCOUNTS)
        added, seconds = fill_ledger(lg, 2 * transactions, random.Random(f"utfall-bench-verify-{transactions}"))
        log(f"  {name}: filled a ledger of {added:,} transactions in {seconds:.0f} s")
        target = lg.path if name == "sqlite" else lg.url.replace("postgresql+psycopg://", "postgresql://", 1)

        def journal_verify(**kw) -> Callable[[], float]:
            def once() -> float:
                with lg.db.reading() as s:
                    t0 = time.perf_counter()
                    v = journal.verify(s, **kw)
                    elapsed = time.perf_counter() - t0
                if not v.ok or v.checked_transactions != added:
                    raise RuntimeError(f"{name}: the benchmark ledger does not verify: {v}")
                return added / elapsed
            return once

        def standalone() -> float:
            src = verify_chain.Source(target)
            try:
                t0 = time.perf_counter()
                checked = verify_chain.verify(src)[0]
                elapsed = time.perf_counter() - t0
            finally:
                src.close()
            if checked != added:
                raise RuntimeError(f"{name}: ops/verify_chain.py checked {checked} of {added}")
            return added / elapsed

        variants = {BARE: lambda: bare_read_rate(lg), "journal.verify, sequential walk": journal_verify(ranges_from=10**15),
                    "ops/verify_chain.py (stdlib)": standalone}
        if name == "postgresql":
            variants["journal.verify"] = journal_verify(workers=workers)
        else:
            variants["journal.verify"] = journal_verify()
        for fn in variants.values():  # warm-up, and proof that every path verifies the filled ledger
            fn()
        log(f"  {name}: {len(variants)} variants × {runs} runs, interleaved")
        figures = interleaved(variants, runs, before=lg.after_fill)
        out = []
        for op in ("journal.verify", "journal.verify, sequential walk", "ops/verify_chain.py (stdlib)"):
            label = f"{op} (in SQL, {workers} connections)" if op == "journal.verify" and name == "postgresql" else op
            r = result(label, name, added, "tx/s", figures[op], BARE, figures[BARE])
            r["benchmark"] = "verify"
            out.append(r)
        return out


def run(quick: bool = False, backends: Iterable[str] = BACKENDS, *, transactions: int | None = None,
        runs: int | None = None, workers: int | None = None, log: Log = _stderr) -> list[dict]:
    """Measure on each backend; a list of result dicts (as ops.bench.ledger's) for a combined report."""
    n = transactions or (QUICK_TRANSACTIONS if quick else FULL_TRANSACTIONS)
    runs = max(3, runs or 3)  # BENCHMARKS.md: the median of at least 3
    workers = workers or os.cpu_count() or 1
    out: list[dict] = []
    for name in backends:
        log(f"verification benchmark on {name}: {n:,} transactions")
        out += run_backend(name, n, runs, workers, log)
    return out


def table(results: Sequence[dict]) -> str:
    header = ("operation", "backend", "transactions", "median", "min–max", "reference", "ratio")
    rows = [header]
    for r in results:
        ref = r["reference"]
        rows.append((r["operation"], r["backend"], f"{r['size']:,}", f"{r['median']:,.0f} tx/s",
                     f"{r['min']:,.0f}–{r['max']:,.0f}", f"{ref['median']:,.0f} tx/s {ref['operation']}",
                     f"{r['ratio']:.2f}×"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += ["", "ratio = figure ÷ the bare read's median in the same run (above 1 is faster than one bare reader).",
              f"Measured on this machine's {os.cpu_count()} cores, shared with the database; absolute figures "
              "move 10–50 % between runs, ratios much less."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.bench.verify", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_TRANSACTIONS:,} transactions "
                                                        f"(default {FULL_TRANSACTIONS:,})")
    p.add_argument("--transactions", type=int)
    p.add_argument("--runs", type=int, help="measured runs per variant (at least 3)")
    p.add_argument("--workers", type=int, help="connections of the ranged check in SQL (default: one per CPU)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    results = run(args.quick, backends, transactions=args.transactions, runs=args.runs, workers=args.workers)
    print(table(results))
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"benchmark": "verify", "started_at": started.isoformat(), "cpu_count": os.cpu_count(),
                       "results": results}, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
