"""Balance on a business date (`effectiveOn`): flat in the ledger's size, and what postings pay for it.

    python -m ops.bench.effective_balance [--sizes 10000,1000000] [--backend sqlite|postgresql|both]

For each size a ledger is filled (as ops/bench/ledger.py does: random transfers between
`--accounts` accounts, each effective up to `--backdated` days before it was posted, with the
accounts' totals by business date written as postings write them), then reads are timed
side by side, each beside the bare one-row balance read (`journal.balance` with no date) as
its reference:
- a small account (10 entries posted after the fill) on a business date;
- a busy account (its share of the fill: about size × 2 / accounts entries) on a business date:
  read from the totals by day, month and year (ledger/effective_balances.py), so it should
  stay flat however many entries the account holds;
- the same busy account summing its entries up to the date, as the read did before the
  totals existed: the reference for what the totals save, which grows with the account.
The ratio between the largest and the smallest size is printed for each (target for the
two reads from the totals: about 1×).

Then, on the largest ledger, postings per second (one `journal.post` of two entries per
unit of work, one client) with and without the totals' extra rows (`effective_balances.record`
switched off for the second), interleaved, and the ratio: what the totals cost a posting.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
from datetime import date, timedelta

from sqlalchemy import func, select

from ops.bench.ledger import (
    BACKENDS, CURRENCY, interleaved, ledger_posting, ledgers_on, mean_ms, fill, rate, setup_accounts,
)
from ledger import effective_balances, journal
from ledger import money as m
from ledger.models import Account, Entry, Transaction

READS = ("small account", "busy account", "busy account, summing entries")


def summed(s, account_id: int, on: date) -> int:
    """The balance on a date by summing the account's entries (the read before the totals)."""
    return s.execute(
        select(func.coalesce(func.sum(Entry.amount_minor), 0))
        .join(Transaction, Transaction.sequence == Entry.sequence)
        .where(Entry.account_id == account_id, Transaction.effective_date <= on)
    ).scalar_one()


def posting_cost(lg, ids: list[int], runs: int, postings: int, rng: random.Random) -> dict[str, list[float]]:
    """Postings/s with and without the totals' rows, interleaved on the same ledger."""
    record = effective_balances.record

    def variant(with_totals: bool):
        def client():
            return (lambda a, b: ledger_posting(lg.db, a, b)), (lambda: None)

        def run() -> float:
            effective_balances.record = record if with_totals else (lambda *a, **k: None)
            try:
                return rate(client, [tuple(rng.sample(ids, 2)) for _ in range(postings)], 1)
            finally:
                effective_balances.record = record
        return run

    lg.create_bench_tables(ids)  # before_write vacuums them with the ledger's own updated tables
    variants = {"post, with totals": variant(True), "post, without totals": variant(False)}
    for fn in variants.values():
        fn()  # warm-up
    return interleaved(variants, runs, before=lg.before_write)


def run(sizes: list[int], backends: list[str], accounts: int, runs: int, reads: int, backdated: int,
        postings: int) -> list[dict]:
    out = []
    for backend in backends:
        with ledgers_on(backend) as make:
            cases = {}
            largest = None
            for size in sizes:
                lg = make(str(size))
                ids = setup_accounts(lg, accounts)
                busy = ids[0]
                added, seconds = fill(lg, size, random.Random(size), backdated_days=backdated, effective_totals=True)
                print(f"{backend}: filled {size:_} entries in {seconds:.0f} s".replace("_", " "), file=sys.stderr)
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
                with lg.db.reading() as s:  # the totals and the entries agree before anything is timed
                    acc = s.get(Account, busy)
                    assert journal.balance_minor(s, acc, effective_on=on) == summed(s, busy, on)

                def read(fn, lg=lg):  # bound now: each size reads its own ledger
                    def op(_):
                        with lg.db.reading() as s:
                            fn(s)
                    return lambda: mean_ms(op, [0], reads)
                cases[size] = {
                    "small account": read(lambda s: journal.balance(s, small, effective_on=on)),
                    "busy account": read(lambda s: journal.balance(s, busy, effective_on=on)),
                    "busy account, summing entries": read(lambda s: summed(s, busy, on)),
                    "bare": read(lambda s: journal.balance(s, small)),
                }
                largest = (size, lg, ids)
            variants = {(op, size): fn for size, fns in cases.items() for op, fn in fns.items()}
            for fn in variants.values():
                fn()
            figures = interleaved(variants, runs)
            for size in sizes:
                bare = statistics.median(figures[("bare", size)])
                out.append({"backend": backend, "size": size, "operation": "bare one-row balance read",
                            "median_ms": bare, "ratio_to_bare": 1.0})
                for op in READS:
                    med = statistics.median(figures[(op, size)])
                    out.append({"backend": backend, "size": size, "operation": f"balance on a date, {op}",
                                "median_ms": med, "ratio_to_bare": med / bare})
            size, lg, ids = largest
            posts = posting_cost(lg, ids, runs, postings, random.Random(7))
            without = statistics.median(posts["post, without totals"])
            for op, figs in posts.items():
                out.append({"backend": backend, "size": size, "operation": op, "per_s": statistics.median(figs),
                            "ratio_to_without": statistics.median(figs) / without})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.bench.effective_balance")
    p.add_argument("--sizes", default="10000,1000000")
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--accounts", type=int, default=100)
    p.add_argument("--backdated", type=int, default=1000, help="days an entry's business date may precede its posting")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--reads", type=int, default=200)
    p.add_argument("--postings", type=int, default=300)
    args = p.parse_args(argv)
    sizes = [int(float(x)) for x in args.sizes.split(",")]
    backends = list(BACKENDS) if args.backend == "both" else [args.backend]
    rows = run(sizes, backends, args.accounts, args.runs, args.reads, args.backdated, args.postings)
    for r in rows:
        if "per_s" in r:
            print(f"{r['operation']:<50} {r['backend']:<10} {r['size']:>9} {r['per_s']:>9.0f} /s "
                  f"{r['ratio_to_without']:>7.2f}× without totals")
        else:
            print(f"{r['operation']:<50} {r['backend']:<10} {r['size']:>9} {r['median_ms']:>9.3f} ms "
                  f"{r['ratio_to_bare']:>7.2f}× bare")
    for backend in backends:
        for op in ("bare one-row balance read", *(f"balance on a date, {op}" for op in READS)):
            got = {r["size"]: r["median_ms"] for r in rows if r["backend"] == backend and r["operation"] == op}
            lo, hi = min(got), max(got)
            print(f"{backend}: {op}: {hi:_} entries ÷ {lo:_} entries = {got[hi] / got[lo]:.2f}×".replace("_", " "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
