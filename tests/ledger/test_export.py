"""Exporting the journal: beancount files that bean-check accepts with the service's balances, and CSV."""
from __future__ import annotations

import argparse
import csv
import io
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from api import cli_export
from ledger import chart, export, journal, sanctions, settlement
from ledger import money as m
from ledger.access import Actor
from ledger.corrections import reversals
from ledger.config import Settings
from ledger.db import Database
from ledger.models import Account, Entry, Transaction
from tests.conftest import IN_CI
from tests.factories import accounts, party, post
from tests.ledger.test_calculations import FM, approve, calc, case_a  # noqa: F401  (case_a is a fixture)

QUOTED = 'Faktura "17" \\ juli'
TRICKY = 'Rättelse: "C:\\new\\dir" – 100 %\tåäö € \\n is not a newline\nbut this is'
PAYOUT_DAY = date(2026, 7, 1)


class Clock:
    """The journal's clock: postings made after `at(day)` carry that day as posted_at."""

    def __init__(self):
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)

    def at(self, day: date) -> None:
        self.now = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc).replace(hour=9)


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(journal, "utcnow", lambda: c.now)
    return c


@pytest.fixture
def beancount():
    """beancount (a test dependency): skipped where it is not installed, except under CI."""
    if IN_CI:
        import beancount as bc
        return bc
    return pytest.importorskip("beancount")


def bean_check(path: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("bean-check")
    return subprocess.run([str(exe), str(path)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def world(db, case_a, clock):  # noqa: F811
    """Case A with a posted payout, a payment, a penalty, a reversal, a JPY pair, effective dates going
    back in time, tricky descriptions and a closed account."""
    w = case_a
    clock.at(PAYOUT_DAY)
    w["payout"] = approve(db, calc(db, w))
    clock.at(date(2026, 7, 10))
    with db.uow() as uow:
        w["payment"] = settlement.record_payment(
            uow, actor=Actor("mona", "MUNICIPALITY", w["muni"].id), debtor_id=w["muni"].id, creditor_id=w["prov"].id,
            contract_id=w["contract"].id, amount=m.from_minor(5_000_000, "SEK"), paid_on=date(2026, 7, 10),
            reference=QUOTED)
        uow.commit()
    clock.at(date(2026, 7, 20))
    with db.uow() as uow:
        sanctions.issue_sanction(uow, actor=FM, contract_id=w["contract"].id, level="PENALTY", reason="Sen rapport",
                                 penalty=m.money("1000.00", "SEK"))
        uow.commit()
    clock.at(date(2026, 8, 3))
    with db.uow() as uow:
        reversals.reverse_transaction(uow, actor=FM, transaction_id=w["payment"].transaction_sequence,
                                      reason='Dubbelbokad: "Faktura 17" \\ fel konto\nse bilaga')
        uow.commit()
    clock.at(date(2026, 8, 4))
    owner = party(db, name="Testägare")
    yen = accounts(db, 2, currency="JPY", owner=owner)
    post(db, [(yen[0], "1500"), (yen[1], "-1500")], effective=date(2026, 2, 1), description="円 transfer")
    a, b, c = accounts(db, 3, owner=owner)
    post(db, [(a, "10.05"), (b, "-10.05")], effective=date(2026, 2, 1))
    # effective dates go back in time: before anything else in the ledger
    post(db, [(a, "-0.05"), (c, "0.05")], effective=date(2025, 12, 31), description=TRICKY)
    closing = accounts(db, 2, owner=party(db, name="Stängd"))
    post(db, [(closing[0], "7.00"), (closing[1], "-7.00")], effective=date(2026, 8, 4))
    post(db, [(closing[0], "-7.00"), (closing[1], "7.00")], effective=date(2026, 8, 4))
    with db.uow() as uow:
        journal.close_account(uow, closing[0].id)
        uow.commit()
    w["closed"] = closing[0]
    return w


def export_text(db, fmt: str, as_of=None) -> tuple[str, export.ExportSummary]:
    out = io.StringIO(newline="")
    with db.reading() as s:
        summary = export.export_ledger(s, out, fmt=fmt, as_of=as_of, batch=4)  # small batches: many pages
    return out.getvalue(), summary


@dataclass(frozen=True)
class Loaded:
    """A beancount file as beancount reads it, keyed by our account ids (from the open directives)."""

    transactions: list
    balances: dict[int, Decimal]  # summed from the postings
    currencies: dict[int, str]
    asserted: dict[int, tuple[Decimal, str]]  # the balance directives
    closed: set[int]


def load(beancount, path: Path) -> Loaded:
    from beancount import loader
    from beancount.core import data
    entries, errors, _ = loader.load_file(str(path))
    assert errors == []
    ids = {e.account: int(e.meta["account_id"]) for e in entries if isinstance(e, data.Open)}
    txs = [e for e in entries if isinstance(e, data.Transaction)]
    balances: dict[int, Decimal] = defaultdict(Decimal)
    currencies: dict[int, str] = {}
    for tx in txs:
        for p in tx.postings:
            balances[ids[p.account]] += p.units.number
            currencies[ids[p.account]] = p.units.currency
    asserted = {ids[e.account]: (e.amount.number, e.amount.currency) for e in entries if isinstance(e, data.Balance)}
    closed = {ids[e.account] for e in entries if isinstance(e, data.Close)}
    return Loaded(txs, dict(balances), currencies, asserted, closed)


def all_transactions(s) -> dict:
    """Every transaction's columns by sequence (plain rows: they outlive the session)."""
    return {t.sequence: t for t in s.execute(select(*Transaction.__table__.c)).all()}


def test_beancount_export_passes_bean_check_and_holds_the_services_balances(db, world, beancount, tmp_path):
    # given a ledger with payouts, a payment, a penalty, a reversal and tricky text
    path = tmp_path / "ledger.beancount"
    # when
    text, summary = export_text(db, "beancount")
    path.write_text(text, encoding="utf-8")
    # then bean-check accepts it, balance assertions (the service's balances) included
    checked = bean_check(path)
    assert (checked.returncode, checked.stderr) == (0, ""), checked.stdout + checked.stderr
    loaded = load(beancount, path)
    txs, balances, currencies, asserted = loaded.transactions, loaded.balances, loaded.currencies, loaded.asserted
    assert loaded.closed == {world["closed"].id}
    with db.reading() as s:
        ledger = all_transactions(s)
        assert summary.last == journal.digest(s) and summary.transactions == len(ledger) == len(txs)
        assert summary.entries == s.execute(select(func.count()).select_from(Entry)).scalar_one()
        for acc in s.execute(select(Account)).scalars():
            service = journal.balance(s, acc.id)
            assert balances.get(acc.id, Decimal(0)) == service.amount, acc.key
            if acc.id in balances:
                assert currencies[acc.id] == acc.currency
                assert asserted[acc.id] == (service.amount, acc.currency)
    # every transaction with its sequence, hash and exact description
    for tx in txs:
        original = ledger[int(tx.meta["sequence"])]
        assert (tx.date, tx.narration, tx.meta["hash"], tx.meta["kind"]) == (
            original.effective_date, original.description, original.hash, original.kind)
    narrations = {tx.narration for tx in txs}
    assert TRICKY in narrations and any(QUOTED in n for n in narrations)
    assert any('"Faktura 17" \\ fel konto\nse bilaga' in n for n in narrations)
    assert {str(tx.meta["kind"]) for tx in txs} >= {"PAYMENT", "REVERSAL", "PENALTY"}
    # the assertions have teeth: one öre off in one balance and bean-check fails
    off = re.sub(r"(balance Expenses:OutcomeCost:\S+  \d+)\.(\d\d) ~ 0 SEK",
                 lambda g: f"{g[1]}.{int(g[2]) + 1:02d} ~ 0 SEK", text, count=1)
    assert off != text
    path.write_text(off, encoding="utf-8")
    assert bean_check(path).returncode != 0


def test_an_as_of_export_holds_what_was_posted_by_that_date_and_its_balances(db, world, beancount, tmp_path):
    # given
    path = tmp_path / "as_of.beancount"
    payout_sequence = world["payout"].transaction_sequence
    # when
    text, summary = export_text(db, "beancount", as_of=PAYOUT_DAY)
    path.write_text(text, encoding="utf-8")
    # then
    checked = bean_check(path)
    assert (checked.returncode, checked.stderr) == (0, ""), checked.stdout + checked.stderr
    loaded = load(beancount, path)
    txs, balances, asserted = loaded.transactions, loaded.balances, loaded.asserted
    assert loaded.closed == set()
    assert sorted(int(tx.meta["sequence"]) for tx in txs) == list(range(1, payout_sequence + 1))
    assert summary.last.sequence == payout_sequence
    end = settlement.end_of(PAYOUT_DAY)
    with db.reading() as s:
        assert journal.sequence_at(s, end) == payout_sequence < journal.digest(s).sequence
        for acc in s.execute(select(Account)).scalars():
            then = journal.balance(s, acc.id, as_of=end)
            assert balances.get(acc.id, Decimal(0)) == then.amount, acc.key
            if acc.id in asserted:
                assert asserted[acc.id] == (then.amount, acc.currency)
            else:
                assert then.amount == 0
    # nothing posted by a date: an empty ledger bean-check still accepts
    empty, summary = export_text(db, "beancount", as_of=date(2026, 3, 1))
    assert summary.transactions == 0
    path.write_text(empty, encoding="utf-8")
    assert bean_check(path).returncode == 0


def test_csv_export_has_one_row_per_entry_and_sums_to_zero_per_currency(db, world):
    # when
    text, summary = export_text(db, "csv")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    # then
    assert tuple(rows[0].keys()) == export.CSV_COLUMNS
    with db.reading() as s:
        entries = s.execute(select(*Entry.__table__.c).order_by(Entry.sequence, Entry.line)).all()
        ledger = all_transactions(s)
        names = dict(s.execute(select(Account.id, Account.code)).all())
    assert len(rows) == len(entries) == summary.entries
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for row, e in zip(rows, entries):
        totals[row["currency"]] += Decimal(row["amount"])
        assert (int(row["sequence"]), int(row["line"]), int(row["account_id"])) == (e.sequence, e.line, e.account_id)
        assert Decimal(row["amount"]) == m.from_minor(e.amount_minor, e.currency).amount
        assert Decimal(row["balance_after"]) == m.from_minor(e.balance_after_minor, e.currency).amount
        assert row["account_code"] == names[e.account_id]
        tx = ledger[e.sequence]
        assert (row["description"], row["hash"], row["previous_hash"], row["effective_date"]) == (
            tx.description, tx.hash, tx.previous_hash, tx.effective_date.isoformat())
        assert row["posted_at"] == journal.format_posted_at(tx.posted_at)
        assert row["reverses"] == ("" if tx.reverses is None else str(tx.reverses))
    assert set(totals) == {"SEK", "JPY"} and all(v == 0 for v in totals.values())
    # the currency's decimals, always: "-0.05", "1500" yen
    assert {r["amount"] for r in rows if r["currency"] == "JPY"} == {"1500", "-1500"}
    assert "-0.05" in {r["amount"] for r in rows}
    # as of a date: only what was posted by then
    early, summary = export_text(db, "csv", as_of=PAYOUT_DAY)
    sequences = {int(r["sequence"]) for r in csv.DictReader(io.StringIO(early, newline=""))}
    assert max(sequences) == summary.last.sequence == world["payout"].transaction_sequence


def test_account_names_are_valid_beancount_names_under_the_right_roots():
    roots = {chart.FUND_CASH: "Assets", chart.CASH: "Assets", chart.RECEIVABLE: "Assets",
             chart.FUND_COMMITTED: "Assets", chart.PAYABLE: "Liabilities", chart.FUND_CAPITAL: "Equity",
             chart.FUND_COMMITMENT_RESERVE: "Equity", chart.OUTCOME_REVENUE: "Income",
             chart.PAYER_COMMITTED: "Assets", chart.PAYER_COMMITMENT_RESERVE: "Equity",
             chart.PENALTY_INCOME: "Income", chart.OUTCOME_COST: "Expenses", chart.PENALTY_EXPENSE: "Expenses"}
    assert set(roots) == set(chart.NAMES)
    valid = re.compile(r"^(Assets|Liabilities|Equity|Income|Expenses)(:[A-Z0-9][A-Za-z0-9-]*)+$")
    for code, root in roots.items():
        name = export.beancount_account(account_id=57, code=code, party_id=12, contract_id=3, counterparty_id=14)
        assert valid.match(name) and name.startswith(root + ":"), name
    assert export.beancount_account(account_id=57, code=chart.PAYABLE, party_id=12, contract_id=3,
                                    counterparty_id=14) == "Liabilities:Payable:P12:C3:Cp14:A57"
    for odd in ("TEST_0", "x", "_", "weird code-ä"):
        assert valid.match(export.beancount_account(account_id=1, code=odd, party_id=2)), odd


def test_the_cli_writes_an_export_to_a_file_or_stdout(fresh_engine, beancount, tmp_path, capsys):
    # given a committed ledger and the `export` command group
    db = Database(fresh_engine)
    a, b = accounts(db, 2)
    post(db, [(a, "100.00"), (b, "-100.00")], description='Kapital "2026"')
    post(db, [(a, "-0.50"), (b, "0.50")])
    parser = argparse.ArgumentParser(prog="utfall")
    cli_export.register(parser.add_subparsers(dest="command", required=True))
    settings = Settings(database_url=fresh_engine.url.render_as_string(hide_password=False), env="development",
                        secret=b"test-secret-for-hmac-0123456789")

    def run(*argv: str) -> int:
        args = parser.parse_args(argv)
        return args.func(args, settings)

    # when: to a file
    path = tmp_path / "out.beancount"
    assert run("export", "ledger", "--format", "beancount", "--output", str(path)) == 0
    # then
    assert "exported 2 transactions (4 entries)" in capsys.readouterr().out
    assert not Path(f"{path}.tmp").exists()
    checked = bean_check(path)
    assert (checked.returncode, checked.stderr) == (0, ""), checked.stdout + checked.stderr
    loaded = load(beancount, path)
    assert loaded.balances[a.id] == Decimal("99.50") and loaded.asserted[b.id] == (Decimal("-99.50"), "SEK")
    # when: CSV to stdout
    assert run("export", "ledger", "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["sequence"], r["amount"]) for r in rows] == [("1", "100.00"), ("1", "-100.00"), ("2", "-0.50"),
                                                            ("2", "0.50")]
    # a date in the future of every posting holds everything; a bad date is a usage error
    assert run("export", "ledger", "--format", "csv", "--as-of", "2999-12-31") == 0
    assert len(list(csv.DictReader(io.StringIO(capsys.readouterr().out)))) == 4
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "ledger", "--format", "csv", "--as-of", "31/12/2026"])
