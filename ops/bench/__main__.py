"""Every benchmark in one command, and one table.

    python -m ops.bench [--quick] [--backend sqlite|postgresql|both]
                        [--only ledger,import,upload,payout,http,waterfall,merkle,verify,load] [--json PATH]

Runs the ledger, bulk-import, evidence-upload (HTTP vs CLI), payout, HTTP, waterfall, Merkle tree, chain verification and load benchmarks one after
another and prints each one's table as soon as that benchmark finishes (stdout flushed, and the
--json file rewritten): operation, backend, size, median (min–max), and the ratio to the
reference each benchmark measured in the same run; the load scenarios (bursts, slow bodies)
print their own table too, and any 5xx, timeout or unlogged request there fails the run. `--quick` takes a few minutes; the full run (10^6-entry ledgers, 100 000
evidence rows, 100 000-item payouts) takes much longer.
Figures move 10–50 % between runs on this shared 2-core machine; the ratios much less.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ops.bench import evidence_import, evidence_upload, http, ledger, load, merkle, payout, verify, waterfall

SUITES = {"ledger": ledger, "import": evidence_import, "upload": evidence_upload, "payout": payout, "http": http,
          "waterfall": waterfall, "merkle": merkle, "verify": verify, "load": load}


def _fmt(value: float, unit: str) -> str:
    if unit in ("ms", "s", "×"):
        return f"{value:,.3f} {unit}".replace(",", " ")
    return f"{value:,.0f} {unit}".replace(",", " ")


def table(results: list[dict]) -> str:
    """One line per figure: what, where, how big, the median with min–max, and the ratio to its reference."""
    head = f"{'operation':<52} {'backend':<10} {'size':>9} {'median':>16} {'min–max':>22} {'reference':<44} {'ratio':>8}"
    lines = [head, "-" * len(head)]
    for r in results:
        unit = r.get("unit", "")
        ref = r.get("reference") or {}
        spread = f"{_fmt(r['min'], unit)}–{_fmt(r['max'], unit).rsplit(' ', 1)[0]}" if "min" in r else ""
        # the reference's figure and what it is (strawberry from memory, pgledger, bare SQL …)
        reference = f"{_fmt(ref['median'], unit)} {ref.get('operation', '')}"[:44] if ref.get("median") is not None else ""
        ratio = f"{r['ratio']:.2f}×" if r.get("ratio") is not None else ""
        lines.append(f"{str(r['operation'])[:52]:<52} {r['backend']:<10} {r.get('size', ''):>9} "
                     f"{_fmt(r['median'], unit):>16} {spread:>22} {reference:<44} {ratio:>8}")
    lines.append("ratio = figure ÷ its bare reference measured in the same run (for a rate, below 1 is slower; "
                 "for a time, above 1 is slower).")
    if any(r.get("benchmark") == "http" for r in results):
        lines.append("HTTP: the load generator (wrk, or a Python client) is a second process on loopback, sharing "
                     "the 2 cores with the server.")
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
        print(f"== {name} ==", file=sys.stderr, flush=True)
        suite = SUITES[name].run(args.quick, backends)
        results += suite
        # each suite's figures as soon as it has them: a later suite that fails or hangs
        # must not take them with it
        print(f"== {name} ({time.perf_counter() - started:.0f} s) ==")
        print(table(suite))
        if name == "load":
            print()
            print(load.table(suite))
        print(flush=True)
        if args.json:  # rewritten after every suite, for the same reason
            Path(args.json).write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    under_load = [r for r in results if r.get("benchmark") == "load"]
    return 1 if any(r.get("failed") for r in under_load) else 0


if __name__ == "__main__":
    sys.exit(main())
