"""Waterfall benchmark: the pure engine `ledger.waterfall.distribute` on growing bonds.

    python -m ops.bench.waterfall [--quick] [--runs N] [--json PATH]

A measurement, not a timed test: it prints figures and asserts nothing about speed. No
database: the engine is pure, so the backend column says `none`.

The bond: `n` investments (half SENIOR, half SUBORDINATE, random drawn amounts, some already
part repaid, caps from 0 to 50 %) and `n` receipts whose sum covers about two thirds of what
the investors could still take, so every step of the waterfall shares pro rata and some
shares hit their room and are shared again.

The reference, `bare canonical JSON + SHA-256`: serialising the same inputs as plain dicts
with `json.dumps(sort_keys=True)` and hashing them: the limit a distribution cannot go below,
since it records and hashes exactly those inputs. Each figure's ratio is figure ÷ reference
(median of `runs`, interleaved).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
import time
from datetime import date
from decimal import Decimal

from ledger import waterfall as wf


def bond(n: int, seed: int = 15) -> wf.WaterfallInputs:
    rng = random.Random(seed)
    positions, room = [], 0
    for i in range(1, n + 1):
        drawn = rng.randrange(100_000, 100_000_000)
        repaid = rng.choice((0, 0, drawn // 3))
        cap = Decimal(rng.randrange(0, 51)) / 100
        positions.append(wf.Position(i, wf.TRANCHES[i % 2], Decimal(drawn) / 100, Decimal(repaid) / 100, Decimal(0), cap))
        room += drawn - repaid + wf.return_limit(drawn, cap)
    total = room * 2 // 3
    cuts = sorted(rng.randrange(0, total) for _ in range(n - 1))
    parts = [b - a for a, b in zip([0, *cuts], [*cuts, total])]
    return wf.WaterfallInputs(contract_id=1, currency="SEK", up_to=date(2026, 12, 31), investments=tuple(positions),
                              receipts=tuple(wf.Receipt(i + 1, Decimal(u) / 100) for i, u in enumerate(parts)))


def bare_reference(x: wf.WaterfallInputs) -> str:
    doc = {"investments": [{"id": p.investment_id, "tranche": p.tranche, "drawn": str(p.drawn), "repaid": str(p.repaid),
                            "paid": str(p.return_paid), "cap": str(p.return_cap)} for p in x.investments],
           "receipts": [{"id": r.payment_id, "amount": str(r.amount)} for r in x.receipts]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _time(fn, arg) -> float:
    started = time.perf_counter()
    fn(arg)
    return (time.perf_counter() - started) * 1000


def run(quick: bool = False, backends=(), *, runs: int | None = None) -> list[dict]:
    runs = runs or (5 if quick else 15)
    out = []
    # a bond has a handful of investments; 1 000 is far beyond any real one
    for n in (10, 100, 1000):
        inputs = bond(n)
        engine, bare = [], []
        for _ in range(runs):  # interleaved, so both see the same machine load
            engine.append(_time(wf.distribute, inputs))
            bare.append(_time(bare_reference, inputs))
        ref = statistics.median(bare)
        out.append({"operation": "waterfall distribute (pure engine)", "backend": "none", "size": n, "unit": "ms",
                    "median": statistics.median(engine), "min": min(engine), "max": max(engine),
                    "reference": {"operation": "bare canonical JSON + SHA-256", "median": ref},
                    "ratio": statistics.median(engine) / ref if ref else None})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.bench.waterfall", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--runs", type=int)
    p.add_argument("--json")
    args = p.parse_args(argv)
    from ops.bench.__main__ import table
    results = run(args.quick, runs=args.runs)
    print(table(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
