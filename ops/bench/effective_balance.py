"""Balance on a business date (`effectiveOn`): how it scales with the ledger and with the account.

    python -m ops.bench.effective_balance [--sizes 10000,1000000] [--backend sqlite|postgresql|both]

For each size a ledger is filled (as ops/bench/ledger.py does: random transfers between
`--accounts` accounts, effective dates rising with the sequence), then two reads are timed
side by side, each with the bare one-row balance read as its reference:
- a small account (10 entries posted after the fill) on a business date: the read walks the
  account's index, so it should stay flat as the ledger grows;
- a busy account (its share of the fill: about size × 2 / accounts entries) on a business date:
  the read sums the account's entries up to the date, so it grows with the account's own
  history. The ratio between sizes is printed for both.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
from datetime import date, timedelta

from ops.bench.ledger import (
    BACKENDS, CURRENCY, interleaved, ledgers_on, mean_ms, fill, setup_accounts,
)
from ledger import journal
from ledger import money as m
from ledger.models import Account


def run(sizes: list[int], backends: list[str], accounts: int, runs: int, reads: int) -> list[dict]:
    out = []
    for backend in backends:
        with ledgers_on(backend) as make:
            cases = {}
            for size in sizes:
                lg = make(str(size))
                busy = setup_accounts(lg, accounts)[0]
                fill(lg, size, random.Random(size))
                with lg.db.uow() as uow:  # opened after the fill, so only these entries are theirs
                    owner = uow.session.get(Account, busy).party_id
                    small, other = (journal.open_account(uow, code=f"SMALL_{i}", name=f"Small account {i}",
                                                         party_id=owner, currency=CURRENCY).id for i in range(2))
                    uow.commit()
                with lg.db.uow() as uow:
                    for i in range(5):  # ten entries on the small account, one backdated
                        amount = m.money("1.00", CURRENCY)
                        journal.post(uow, actor="bench", kind="BENCH", description="small account",
                                     effective_date=date.today() - timedelta(days=40 * (i == 4)),
                                     postings=[journal.Posting(small, amount), journal.Posting(other, -amount)])
                    uow.commit()
                on = date.today() - timedelta(days=10)

                def read(acc, lg=lg, **kw):  # bound now: each size reads its own ledger
                    def op(_):
                        with lg.db.reading() as s:
                            journal.balance(s, acc, **kw)
                    return lambda: mean_ms(op, [0], reads)
                cases[size] = {"small account": read(small, effective_on=on),
                               "busy account": read(busy, effective_on=on),
                               "bare": read(small)}
            variants = {(op, size): fn for size, fns in cases.items() for op, fn in fns.items()}
            for fn in variants.values():
                fn()
            figures = interleaved(variants, runs)
            for size in sizes:
                bare = statistics.median(figures[("bare", size)])
                for op in ("small account", "busy account"):
                    med = statistics.median(figures[(op, size)])
                    out.append({"backend": backend, "size": size, "operation": f"balance on a date, {op}",
                                "median_ms": med, "ratio_to_bare": med / bare})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.bench.effective_balance")
    p.add_argument("--sizes", default="10000,1000000")
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--accounts", type=int, default=100)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--reads", type=int, default=200)
    args = p.parse_args(argv)
    sizes = [int(float(x)) for x in args.sizes.split(",")]
    backends = list(BACKENDS) if args.backend == "both" else [args.backend]
    rows = run(sizes, backends, args.accounts, args.runs, args.reads)
    for r in rows:
        print(f"{r['operation']:<40} {r['backend']:<10} {r['size']:>9} {r['median_ms']:>9.3f} ms "
              f"{r['ratio_to_bare']:>7.2f}× bare")
    for backend in backends:
        for op in ("small account", "busy account"):
            got = {r["size"]: r["median_ms"] for r in rows if r["backend"] == backend and op in r["operation"]}
            lo, hi = min(got), max(got)
            print(f"{backend}: {op}: {hi:,} entries ÷ {lo:,} entries = {got[hi] / got[lo]:.2f}×".replace(",", " "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
