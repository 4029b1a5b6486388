"""Merkle tree benchmark: proof generation as the journal grows, and what the tree costs a posting.

    python -m ops.bench.merkle [--quick] [--backend sqlite|postgresql|both] [--runs N] [--json PATH]

A measurement, not a timed test: it prints figures and ratios and asserts nothing about speed
(it does insist that the stored tree of every journal it built gives the root recomputed
from the chain hashes, so the figures are for a correct tree).

1. Proof generation, each call in its own read session as the service makes them:
   `proofs.inclusion_proof` of a random transaction against the whole tree, and
   `proofs.consistency_proof` from a random earlier size, on journals of 10^4 and 10^6
   transactions (`--quick`: 10^4 and 10^5), all sizes interleaved in the same rounds.
   Reference: a bare primary-key SELECT of one row in its own session. The target (issue 17):
   flat as the journal grows (largest ÷ smallest within 1.5×) and under 5 ms at 10^6 on
   PostgreSQL, because a proof reads O(log n) stored nodes and never the journal.
2. Postings per second, one client, with the tree maintained (`journal.post` as it is) and
   without (`tree.completed_nodes` switched off for the run; the nodes it skipped are filled in
   afterwards, unmeasured, so the next run starts from a whole tree). Target: within 10 %.

Journals are built fast with bulk SQL: transactions with distinct hashes (generated, not a
valid chain: proofs do not read the chain, `utfall ledger verify` would refuse it) inserted
by generate_series on PostgreSQL and executemany on SQLite; the tree's nodes then level by
level in SQL on PostgreSQL (its sha256()), by `tree.extend` on SQLite.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import insert, text

from ledger import journal, proofs, tree
from ledger import money as m
from ledger.access import SYSTEM
from ledger.models import Transaction
from ops.bench.ledger import Ledger, interleaved, ledgers_on, result, setup_accounts

BACKENDS = ("sqlite", "postgresql")
FULL_SIZES = (10_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- building a journal and its tree quickly --------------------------------------------------

def build(lg: Ledger, size: int) -> float:
    """Fill an empty ledger with `size` transactions and their tree; seconds taken."""
    t0 = time.perf_counter()
    start = datetime.now(timezone.utc) - timedelta(days=30)
    with lg.engine.begin() as conn:
        if lg.name == "postgresql":
            conn.execute(text(
                "INSERT INTO ledger_transactions (sequence, posted_at, effective_date, kind, description, actor, "
                "previous_hash, hash) SELECT g, :start + g * interval '1 millisecond', CAST(:day AS date), "
                "'BENCH', 'merkle benchmark', 'bench', "
                "CASE WHEN g = 1 THEN repeat('0', 64) ELSE encode(sha256(int8send(g - 1)), 'hex') END, "
                "encode(sha256(int8send(g)), 'hex') FROM generate_series(1, :n) AS g"),
                {"start": start, "day": date(2026, 1, 1), "n": size})
            # level 1 from the leaves, then each level from the one below, all in the database
            conn.execute(text(
                "INSERT INTO merkle_nodes (level, position, hash) SELECT 1, p, encode(sha256('\\x01'::bytea "
                "|| sha256('\\x00'::bytea || decode(a.hash, 'hex')) || sha256('\\x00'::bytea || decode(b.hash, 'hex'))"
                "), 'hex') FROM generate_series(0, :n / 2 - 1) AS p "
                "JOIN ledger_transactions a ON a.sequence = 2 * p + 1 "
                "JOIN ledger_transactions b ON b.sequence = 2 * p + 2"), {"n": size})
            level = 2
            while (1 << level) <= size:
                conn.execute(text(
                    "INSERT INTO merkle_nodes (level, position, hash) SELECT :l, a.position / 2, "
                    "encode(sha256('\\x01'::bytea || decode(a.hash, 'hex') || decode(b.hash, 'hex')), 'hex') "
                    "FROM merkle_nodes a JOIN merkle_nodes b ON b.level = a.level AND b.position = a.position + 1 "
                    "WHERE a.level = :l - 1 AND a.position % 2 = 0"), {"l": level})
                level += 1
            last = conn.execute(text("SELECT hash FROM ledger_transactions WHERE sequence = :n"), {"n": size}).scalar()
        else:
            import hashlib
            prev = "0" * 64
            for lo in range(1, size + 1, 50_000):
                rows = []
                for seq in range(lo, min(size, lo + 49_999) + 1):
                    h = hashlib.sha256(seq.to_bytes(8, "big", signed=True)).hexdigest()
                    rows.append({"sequence": seq, "posted_at": start + timedelta(milliseconds=seq),
                                 "effective_date": date(2026, 1, 1), "kind": "BENCH", "description": "merkle benchmark",
                                 "actor": "bench", "reverses": None, "contract_id": None, "previous_hash": prev,
                                 "hash": h})
                    prev = h
                conn.execute(insert(Transaction.__table__), rows)
            tree.extend(conn, 0, size, batch=50_000)
            last = prev
        conn.execute(text("UPDATE ledger_head SET sequence = :n, hash = :h, posted_at = :t"),
                     {"n": size, "h": last, "t": start + timedelta(milliseconds=size)})
        # the stored tree must make the root the chain hashes make
        if tree.root(conn, size) != tree.rebuilt_root(conn, size, batch=50_000):
            raise RuntimeError(f"{lg.name}: the bulk-built tree of {size} does not match its journal")
    lg.after_fill()
    return time.perf_counter() - t0


# --- 1. proofs --------------------------------------------------------------------------------

BARE = "bare PK SELECT"


def proof_variants(lg: Ledger, size: int, rng: random.Random) -> dict[str, Callable[[int], float]]:
    """Each `n -> mean milliseconds per call`, every call in its own read session."""
    def inclusion(n: int) -> float:
        picks = [rng.randint(1, size) for _ in range(n)]
        t0 = time.perf_counter()
        for seq in picks:
            with lg.db.reading() as s:
                proofs.inclusion_proof(s, actor=SYSTEM, sequence=seq)
        return (time.perf_counter() - t0) * 1000 / n

    def consistency(n: int) -> float:
        picks = [rng.randint(1, size - 1) for _ in range(n)]
        t0 = time.perf_counter()
        for old in picks:
            with lg.db.reading() as s:
                proofs.consistency_proof(s, actor=SYSTEM, from_size=old)
        return (time.perf_counter() - t0) * 1000 / n

    def bare(n: int) -> float:
        picks = [rng.randint(1, size) for _ in range(n)]
        sql = text("SELECT hash FROM ledger_transactions WHERE sequence = :s")
        t0 = time.perf_counter()
        for seq in picks:
            with lg.db.reading() as s:
                s.execute(sql, {"s": seq}).scalar()
        return (time.perf_counter() - t0) * 1000 / n

    return {"inclusion proof": inclusion, "consistency proof": consistency, BARE: bare}


def measure_proofs(ledgers: dict[int, Ledger], runs: int, calls: int, log: Log) -> list[dict]:
    rng = random.Random("utfall-merkle-bench")
    variants = {}
    for size, lg in ledgers.items():
        for op, fn in proof_variants(lg, size, rng).items():
            variants[(op, size)] = fn
    for fn in variants.values():
        fn(20)  # warm-up: pool, compiled statements, page cache
    backend = next(iter(ledgers.values())).name
    log(f"  {backend}: proofs, {len(variants)} variants × {runs} runs of {calls}")
    measured = interleaved({k: (lambda fn=fn: fn(calls)) for k, fn in variants.items()}, runs)
    out = []
    for size in ledgers:
        for op in ("inclusion proof", "consistency proof"):
            out.append(result(op, backend, size, "ms", measured[(op, size)], BARE, measured[(BARE, size)]))
    smallest, largest = min(ledgers), max(ledgers)
    for op in ("inclusion proof", "consistency proof"):
        lo = next(r for r in out if r["operation"] == op and r["size"] == smallest)
        hi = next(r for r in out if r["operation"] == op and r["size"] == largest)
        out.append({"operation": f"{op}: {largest:,} ÷ {smallest:,} (flat ≤ 1.5×)", "backend": backend,
                    "size": largest, "unit": "×", "median": hi["median"] / lo["median"], "ratio": None,
                    "reference": {}})
    return out


# --- 2. postings with and without the tree ------------------------------------------------------

def measure_postings(lg: Ledger, size: int, runs: int, postings: int, log: Log) -> list[dict]:
    ids = setup_accounts(lg, 20)
    rng = random.Random("utfall-merkle-postings")
    debit, credit = m.money("1.00", "SEK"), m.money("-1.00", "SEK")
    original = tree.completed_nodes

    def post_some(n: int) -> float:
        pairs = [rng.sample(ids, 2) for _ in range(n)]
        t0 = time.perf_counter()
        for a, b in pairs:
            with lg.db.uow() as uow:
                journal.post(uow, actor="bench", kind="BENCH", description="merkle benchmark posting",
                             effective_date=date(2026, 1, 1),
                             postings=[journal.Posting(a, debit), journal.Posting(b, credit)])
                uow.commit()
        return n / (time.perf_counter() - t0)

    def with_tree() -> float:
        return post_some(postings)

    def without_tree() -> float:
        with lg.db.reading() as s:
            before = journal.digest(s).sequence
        tree.completed_nodes = lambda *a, **k: []
        try:
            figure = post_some(postings)
        finally:
            tree.completed_nodes = original
        with lg.engine.begin() as conn:  # unmeasured: the nodes those postings skipped
            tree.extend(conn, before, before + postings)
        return figure

    post_some(20)  # warm-up
    log(f"  {lg.name}: postings with and without the tree, {runs} runs of {postings} at {size:,}")
    measured = interleaved({"with": with_tree, "without": without_tree}, runs, before=lg.before_write)
    return [result("post, 1 client, with the Merkle tree", lg.name, size, "/s", measured["with"],
                   "the same without the tree", measured["without"])]


# --- running ----------------------------------------------------------------------------------

def run(quick: bool = False, backends: Iterable[str] = BACKENDS, *, runs: int | None = None,
        log: Log = _stderr) -> list[dict]:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    # postings in many short interleaved runs: on a shared machine load drifts within seconds
    runs = max(3, runs or (5 if quick else 9))
    calls, postings = (100, 100) if quick else (200, 200)
    out: list[dict] = []
    for name in backends:
        log(f"merkle benchmark on {name}: journals of {', '.join(f'{s:,}' for s in sizes)} transactions")
        with ledgers_on(name) as new_ledger:
            ledgers = {}
            for size in sizes:
                lg = ledgers[size] = new_ledger(f"merkle_{size}")
                log(f"  {name}: built a journal of {size:,} transactions and its tree in {build(lg, size):.1f} s")
            out += measure_proofs(ledgers, runs, calls, log)
            out += measure_postings(ledgers[min(sizes)], min(sizes), runs, postings, log)
    for r in out:
        r["benchmark"] = "merkle"
    return out


def table(results: Sequence[dict]) -> str:
    lines = [f"{'operation':<58} {'backend':<10} {'size':>9} {'median':>12} {'reference':>12} {'ratio':>7}"]
    for r in results:
        ref = (r.get("reference") or {}).get("median")
        unit = r["unit"]
        fmt = (lambda v: f"{v:.3f} {unit}") if unit in ("ms", "×") else (lambda v: f"{v:,.0f} {unit}")
        ratio = "" if r.get("ratio") is None else f"{r['ratio']:.2f}×"
        lines.append(f"{r['operation'][:58]:<58} {r['backend']:<10} {r['size']:>9,} {fmt(r['median']):>12} "
                     f"{fmt(ref) if ref is not None else '':>12} "
                     f"{ratio:>7}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.bench.merkle", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    p.add_argument("--quick", action="store_true", help="journals of 10^4 and 10^5, fewer runs")
    p.add_argument("--runs", type=int)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    t0 = time.perf_counter()
    results = run(args.quick, backends, runs=args.runs)
    print(table(results))
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"benchmark": "merkle", "quick": args.quick, "results": results}, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
