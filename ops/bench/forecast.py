"""Forecast benchmark: `forecast` for a whole fund beside the bare SQL aggregate of the same rows.

    python -m ops.bench.forecast [--contracts 50] [--items 200000] [--backend sqlite|postgresql|both] [--runs 5]

A measurement, not a timed test: it prints figures and asserts nothing about speed.

The world: one fund with `--contracts` active quarterly contracts (two years, two rate-card
metrics, a RURAL supplement, three payers, per-period caps on one metric), made through the use
cases; 100 participants per contract and `--items` evidence items spread over the contracts'
periods, a third SUBMITTED and the rest VERIFIED, bulk-loaded with Core executemany.

Measured, interleaved round by round, median (min–max) of `--runs`:
* `forecast(fund)`: `ledger.forecast.forecast` in a read session, everything included (the
  scheduled periods, the aggregate over evidence, pricing, caps, splits per payer);
* the reference, `bare SQL aggregate`: the raw driver counting the same evidence rows per
  (contract, metric, area, status), with the not-paid filter: the limit a forecast cannot beat.
Ratio = forecast ÷ reference; the target is under 3×.
"""
from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import insert, text

from ledger import contracts, funds, schema
from ledger import money as m
from ledger.access import Actor
from ledger.db import Database, make_engine
from ledger.models import Evidence, Participant, Party

FM = Actor("bench", "FUND_MANAGER")
BARE = """SELECT e.contract_id, e.metric_code, p.area, e.status, COUNT(*) FROM evidence e
JOIN participants p ON p.id = e.participant_id
WHERE e.status IN ('VERIFIED', 'SUBMITTED') AND NOT EXISTS (
  SELECT 1 FROM payout_items i JOIN payouts o ON o.id = i.payout_id
  WHERE i.evidence_id = e.id AND i.kind = 'OUTCOME' AND o.status = 'POSTED')
GROUP BY e.contract_id, e.metric_code, p.area, e.status"""


def build(url: str, n_contracts: int, n_items: int) -> tuple[Database, int]:
    schema.upgrade(url)
    db = Database(make_engine(url))
    sek = lambda x: m.money(x, "SEK")  # noqa: E731
    with db.uow() as uow:
        s = uow.session
        fund_party = Party(name="Fonden", role="FUND")
        muni = Party(name="Kommunen", role="MUNICIPALITY")
        region = Party(name="Regionen", role="MUNICIPALITY")
        prov = Party(name="Utföraren", role="PROVIDER", ownership="PRIVATE")
        s.add_all([fund_party, muni, region, prov])
        s.flush()
        fund = funds.create_fund(uow, actor=FM, name="F", manager_id=fund_party.id, currency="SEK")
        funds.deposit_capital(uow, actor=FM, fund_id=fund.id, amount=sek("100000000000.00"),
                              effective_date=date(2025, 1, 1), reference="bench")
        metrics = (contracts.MetricSpec("SCHOOL_PASS", "Pass", "RATE_CARD", "HIGHER_IS_BETTER", sek("40000.00"),
                                        area_supplements=(("RURAL", Decimal(15)),)),
                   contracts.MetricSpec("ATTENDANCE", "Att", "RATE_CARD", "HIGHER_IS_BETTER", sek("12500.00"),
                                        cap_per_period=sek("5000000.00")))
        ids = []
        for i in range(n_contracts):
            c = contracts.create_contract(
                uow, actor=FM, title=f"C{i}", fund_id=fund.id, municipality_id=muni.id, provider_id=prov.id,
                verifier_id=None, investor_id=None, policy_area="school", start_date=date(2025, 1, 1),
                end_date=date(2026, 12, 31), payment_frequency="QUARTERLY",
                terms=contracts.TermsSpec(sek("500000000.00"), None, (
                    contracts.ShareSpec(fund_party.id, Decimal(20)), contracts.ShareSpec(muni.id, Decimal(50)),
                    contracts.ShareSpec(region.id, Decimal(30), sek("100000000.00"))), metrics))
            contracts.activate_contract(uow, actor=FM, contract_id=c.id)
            ids.append(c.id)
        uow.commit()
    rnd = random.Random(12)
    with db.uow() as uow:
        s = uow.session
        people = {}
        rows = [dict(contract_id=cid, external_ref=f"p{cid}-{k}", area=rnd.choice(["RURAL", "URBAN"]),
                     enrolled_on=date(2025, 1, 1), enrolled_by="bench") for cid in ids for k in range(100)]
        s.execute(insert(Participant.__table__), rows)
        for pid, cid in s.execute(text("SELECT id, contract_id FROM participants")):
            people.setdefault(cid, []).append(pid)
        items = []
        for _ in range(n_items):
            cid = rnd.choice(ids)
            items.append(dict(contract_id=cid, participant_id=rnd.choice(people[cid]),
                              metric_code=rnd.choice(["SCHOOL_PASS", "ATTENDANCE"]),
                              achieved_on=date(2025, 1, 1) + timedelta(days=rnd.randrange(730)),
                              status="SUBMITTED" if rnd.random() < 0.33 else "VERIFIED", submitted_by="bench"))
            if len(items) == 20_000:
                s.execute(insert(Evidence.__table__), items)
                items = []
        if items:
            s.execute(insert(Evidence.__table__), items)
        uow.commit()
    with db.engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    return db, fund.id


def measure(db: Database, fund_id: int, runs: int) -> dict:
    from ledger import forecast
    figures = {"forecast": [], "bare": []}
    lines = 0
    for _ in range(runs):
        t = time.perf_counter()
        with db.reading() as s:
            lines = len(forecast.forecast(s, fund_id=fund_id, today=date(2026, 1, 15)))
        figures["forecast"].append(time.perf_counter() - t)
        t = time.perf_counter()
        raw = db.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(BARE)
            cur.fetchall()
        finally:
            raw.close()
        figures["bare"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in figures.items()}
    return {"lines": lines, "median": med, "min": {k: min(v) for k, v in figures.items()},
            "max": {k: max(v) for k, v in figures.items()}, "ratio": med["forecast"] / med["bare"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ops.bench.forecast")
    ap.add_argument("--contracts", type=int, default=50)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    args = ap.parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(f"forecast of a fund: {args.contracts} contracts, {args.items} evidence items, median of {args.runs}")
    print(f"{'backend':<11} {'lines':>6} {'forecast':>22} {'bare SQL aggregate':>24} {'ratio':>7}")
    for backend in backends:
        name = None
        if backend == "sqlite":
            url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'forecast.db'}"
        else:
            from tests.conftest import create_pg_database, pg_url
            name = create_pg_database("utfall_bench_fc")
            url = pg_url(name)
        try:
            started = time.perf_counter()
            db, fund_id = build(url, args.contracts, args.items)
            built = time.perf_counter() - started
            r = measure(db, fund_id, args.runs)
            f = lambda k: f"{r['median'][k] * 1000:,.1f} ms ({r['min'][k] * 1000:,.0f}–{r['max'][k] * 1000:,.0f})"  # noqa: E731
            print(f"{backend:<11} {r['lines']:>6} {f('forecast'):>22} {f('bare'):>24} {r['ratio']:>6.2f}×"
                  f"   (world built in {built:.0f} s)")
            db.engine.dispose()
        finally:
            if name:
                from tests.conftest import drop_pg_database
                drop_pg_database(name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
