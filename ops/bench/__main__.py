"""Every benchmark in one command, and one table.

    python -m ops.bench [--quick] [--backend sqlite|postgresql|both]
                        [--only ledger,import,payout,http,waterfall,merkle,load] [--json PATH]

Runs the ledger, bulk-import, payout, HTTP, waterfall, Merkle tree and load benchmarks one after
another and prints one table: operation, backend, size, median (min–max), and the ratio to the
bare-database reference each benchmark measured in the same run; the load scenarios (bursts,
slow bodies) print their own table after it, and any 5xx, timeout or unlogged request there
fails the run. `--quick` takes a few minutes; the full run (10^6-entry ledgers, 100 000
evidence rows, 100 000-item payouts) takes much longer.
Figures move 10–50 % between runs on this shared 2-core machine; the ratios much less.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ops.bench import evidence_import, http, ledger, load, merkle, payout, verify, waterfall

SUITES = {"ledger": ledger, "import": evidence_import, "payout": payout, "http": http, "waterfall": waterfall,
          "merkle": merkle, "load": load}
SUITES["verify"] = verify  # chain verification at 10^6 transactions (ops/bench/verify.py)


def _fmt(value: float, unit: str) -> str:
    if unit in ("ms", "s", "×"):
        return f"{value:,.3f} {unit}".replace(",", " ")
    return f"{value:,.0f} {unit}".replace(",", " ")


def table(results: list[dict]) -> str:
    """One line per figure: what, where, how big, the median with min–max, and the ratio to its reference."""
    head = f"{'operation':<52} {'backend':<10} {'size':>9} {'median':>16} {'min–max':>22} {'reference':>16} {'ratio':>8}"
    lines = [head, "-" * len(head)]
    for r in results:
        unit = r.get("unit", "")
        ref = r.get("reference") or {}
        spread = f"{_fmt(r['min'], unit)}–{_fmt(r['max'], unit).split(' ')[0]}" if "min" in r else ""
        reference = _fmt(ref["median"], unit) if ref.get("median") is not None else ""
        ratio = f"{r['ratio']:.2f}×" if r.get("ratio") is not None else ""
        lines.append(f"{str(r['operation'])[:52]:<52} {r['backend']:<10} {r.get('size', ''):>9} "
                     f"{_fmt(r['median'], unit):>16} {spread:>22} {reference:>16} {ratio:>8}")
    lines.append("ratio = figure ÷ its bare reference measured in the same run (for a rate, below 1 is slower; "
                 "for a time, above 1 is slower).")
    lines.append("HTTP: the load generator is a second process on loopback, sharing the 2 cores with the server.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--only", default=",".join(SUITES), help="comma-separated: " + ", ".join(SUITES))
    p.add_argument("--json")
    args = p.parse_args(argv)
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    results: list[dict] = []
    for name in [s.strip() for s in args.only.split(",") if s.strip()]:
        started = time.perf_counter()
        print(f"== {name} ==", file=sys.stderr)
        results += SUITES[name].run(args.quick, backends)
        print(f"   ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    print(table(results))
    under_load = [r for r in results if r.get("benchmark") == "load"]
    if under_load:
        print()
        print(load.table(under_load))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return 1 if any(r.get("failed") for r in under_load) else 0


if __name__ == "__main__":
    sys.exit(main())
