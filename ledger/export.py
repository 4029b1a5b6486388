"""Exporting the journal for auditors: CSV (one row per entry) and a beancount ledger.

Both formats stream: transactions and their entries are read in sequence order in batches
and written to a text stream as they come, so the journal is never held in memory (what
is held is per account: one row per account, not per entry).

An export covers the journal up to one sequence, fixed when it starts: the chain head, or
with `as_of` the last transaction posted (posted_at, UTC) by then, where a date means the
end of that day. A transaction posted while the export runs is not in it, so the file is
one consistent cut of the ledger; every transaction carries its sequence and hash, and the
digest (sequence, hash) of the last one is returned (and closes a beancount file).

Beancount
---------
Each account becomes `<Root>:<Code>:P<party>[:C<contract>][:Cp<counterparty>]:A<id>`, with
the root from its chart code (`BEANCOUNT_ROOTS`; a code outside the chart goes under
Equity) and the account id making the name unique. Beancount's sign convention is ours
(debits positive), so amounts are written as they are. Every account is opened, with its
one currency, on the earliest effective date of its entries (effective dates can go back
in time; beancount sorts by date itself, so transactions are written in sequence order).
At the end, one `balance` assertion per account, dated the day after the last effective
date, holds the service's own balance of the account (as of the export's sequence) with a
tolerance of zero, so `bean-check` proves that the exported entries add up to exactly what
the service reports (without `~ 0`, beancount would let a balance be 0.01 SEK off).
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import groupby
from operator import attrgetter
from typing import TextIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger import chart, investments, journal
from ledger import money as m
from ledger.errors import ValidationError
from ledger.models import Account, Entry, Transaction
from ledger.settlement import end_of

FORMATS = ("csv", "beancount")

CSV_COLUMNS = (
    "sequence", "posted_at", "effective_date", "kind", "description", "actor", "reverses", "contract_id",
    "previous_hash", "hash", "line", "account_id", "account_code", "account_name", "party_id", "counterparty_id",
    "contract", "currency", "amount", "balance_after",
)

BEANCOUNT_ROOTS = {
    chart.FUND_CASH: "Assets", chart.CASH: "Assets", chart.RECEIVABLE: "Assets", chart.FUND_COMMITTED: "Assets",
    chart.PAYER_COMMITTED: "Assets", chart.PAYER_COMMITMENT_RESERVE: "Equity",
    chart.PAYABLE: "Liabilities",
    chart.FUND_CAPITAL: "Equity", chart.FUND_COMMITMENT_RESERVE: "Equity",
    chart.OUTCOME_REVENUE: "Income", chart.PENALTY_INCOME: "Income",
    chart.OUTCOME_COST: "Expenses", chart.PENALTY_EXPENSE: "Expenses",
    **investments.BEANCOUNT_ROOTS,
}
UNMAPPED_ROOT = "Equity"

BATCH = 1000


@dataclass(frozen=True)
class ExportSummary:
    """What an export holds: its transactions and entries, and the digest of its last transaction."""

    transactions: int
    entries: int
    last: journal.Digest


# --- reading ----------------------------------------------------------------------------------

_T, _E, _A = Transaction.__table__, Entry.__table__, Account.__table__
_TX_COLUMNS = (_T.c.sequence, _T.c.posted_at, _T.c.effective_date, _T.c.kind, _T.c.description, _T.c.actor,
               _T.c.reverses, _T.c.contract_id, _T.c.previous_hash, _T.c.hash)
_ENTRY_COLUMNS = (_E.c.sequence, _E.c.line, _E.c.account_id, _E.c.currency, _E.c.amount_minor,
                  _E.c.balance_after_minor, _A.c.code.label("account_code"), _A.c.name.label("account_name"),
                  _A.c.party_id, _A.c.counterparty_id, _A.c.contract_id.label("account_contract_id"))


def _cutoff_time(as_of: date | datetime | None) -> datetime | None:
    """The instant an `as_of` stands for: a date is the end of that day, UTC."""
    if as_of is None or not isinstance(as_of, datetime):
        return None if as_of is None else end_of(as_of)
    if as_of.tzinfo is None:
        raise ValidationError("asOf must carry a timezone", code="INVALID_DATE", field=["asOf"])
    return as_of


def cutoff_sequence(s: Session, as_of: date | datetime | None = None) -> int:
    """The last sequence an export covers: the head, or the last posted by `as_of` (a date: its end, UTC)."""
    head = journal.digest(s).sequence
    at = _cutoff_time(as_of)
    return head if at is None else min(head, journal.sequence_at(s, at))


def _walk(s: Session, upto: int, batch: int) -> Iterator[tuple[Sequence, list[Sequence]]]:
    """Transactions 1..upto in sequence order, each with its entries (and their accounts) by line."""
    last = 0
    while last < upto:
        txs = s.execute(select(*_TX_COLUMNS).where(_T.c.sequence > last, _T.c.sequence <= upto)
                        .order_by(_T.c.sequence).limit(batch)).all()
        if not txs:
            return
        lo, hi = txs[0].sequence, txs[-1].sequence
        rows = s.execute(select(*_ENTRY_COLUMNS).select_from(_E).join(_A, _A.c.id == _E.c.account_id)
                         .where(_E.c.sequence >= lo, _E.c.sequence <= hi).order_by(_E.c.sequence, _E.c.line)).all()
        by_seq = {seq: list(group) for seq, group in groupby(rows, attrgetter("sequence"))}
        for tx in txs:
            yield tx, by_seq.get(tx.sequence, [])
        last = hi


def _first_dates(s: Session, upto: int) -> tuple[dict[int, date], list[str]]:
    """Each account with entries up to `upto` with the earliest effective date of those entries;
    and the currencies of those accounts."""
    rows = s.execute(select(_E.c.account_id, _A.c.currency, func.min(_T.c.effective_date)).select_from(_E)
                     .join(_T, _T.c.sequence == _E.c.sequence).join(_A, _A.c.id == _E.c.account_id)
                     .where(_E.c.sequence <= upto).group_by(_E.c.account_id, _A.c.currency)).all()
    return {account_id: first for account_id, _, first in rows}, sorted({cur for _, cur, _ in rows})


def _accounts(s: Session, ids: set[int], batch: int) -> Iterator[Account]:
    """The accounts of `ids` in id order, read in batches."""
    ordered = sorted(ids)
    for i in range(0, len(ordered), batch):
        chunk = ordered[i:i + batch]
        yield from s.execute(select(Account).where(Account.id.in_(chunk)).order_by(Account.id)).scalars()


def decimal_text(units: int, currency: str) -> str:
    """Minor units as a plain decimal string with the currency's decimals ("-12.50", "1500" for JPY)."""
    return format(Decimal(units).scaleb(-m.exponent(currency)), "f")


# --- CSV --------------------------------------------------------------------------------------

def write_csv(s: Session, out: TextIO, *, as_of: date | datetime | None = None, batch: int = BATCH) -> ExportSummary:
    """One row per entry, with its transaction and account, in (sequence, line) order, after a header row."""
    upto = cutoff_sequence(s, as_of)
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)
    n_tx = n_entries = 0
    last = journal.Digest(0, journal.GENESIS_HASH)
    for tx, entries in _walk(s, upto, batch):
        head = (tx.sequence, journal.format_posted_at(tx.posted_at), tx.effective_date.isoformat(), tx.kind,
                tx.description, tx.actor, _blank(tx.reverses), _blank(tx.contract_id), tx.previous_hash, tx.hash)
        w.writerows(
            (*head, e.line, e.account_id, e.account_code, e.account_name, e.party_id, _blank(e.counterparty_id),
             _blank(e.account_contract_id), e.currency, decimal_text(e.amount_minor, e.currency),
             decimal_text(e.balance_after_minor, e.currency))
            for e in entries
        )
        n_tx += 1
        n_entries += len(entries)
        last = journal.Digest(tx.sequence, tx.hash)
    return ExportSummary(n_tx, n_entries, last)


def _blank(value) -> object:
    return "" if value is None else value


# --- beancount --------------------------------------------------------------------------------

def _component(code: str) -> str:
    """A chart code as one beancount name component: FUND_CASH -> FundCash, TEST_0 -> Test0."""
    text = "".join(part[:1].upper() + part[1:].lower() for part in re.split(r"[^A-Za-z0-9]+", code) if part)
    return text if text[:1].isupper() or text[:1].isdigit() else "X" + text


def beancount_account(*, account_id: int, code: str, party_id: int, contract_id: int | None = None,
                      counterparty_id: int | None = None) -> str:
    """The account's beancount name, e.g. `Liabilities:Payable:P12:C3:Cp14:A57`."""
    parts = [BEANCOUNT_ROOTS.get(code, UNMAPPED_ROOT), _component(code), f"P{party_id}"]
    if contract_id is not None:
        parts.append(f"C{contract_id}")
    if counterparty_id is not None:
        parts.append(f"Cp{counterparty_id}")
    parts.append(f"A{account_id}")
    return ":".join(parts)


def quote(text: str) -> str:
    """A beancount string literal: backslash and double quote escaped (newlines may stand as they are)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_beancount(s: Session, out: TextIO, *, as_of: date | datetime | None = None,
                    batch: int = BATCH) -> ExportSummary:
    """The journal up to the export's sequence as a beancount file that `bean-check` accepts."""
    upto = cutoff_sequence(s, as_of)
    until = _cutoff_time(as_of)
    first, currencies = _first_dates(s, upto)

    out.write(f"; Utfall ledger export: transactions 1..{upto}{_as_of_note(as_of)}\n")
    out.write('option "title" "Utfall ledger"\n')
    for cur in currencies:
        out.write(f'option "operating_currency" {quote(cur)}\n')
    out.write("\n")

    for acc in _accounts(s, set(first), batch):
        out.write(f"{first[acc.id].isoformat()} open {_name(acc)} {acc.currency}\n")
        out.write(f"  account_id: {acc.id}\n  code: {quote(acc.code)}\n  name: {quote(acc.name)}\n"
                  f"  party: {acc.party_id}\n")
        for key, value in (("contract", acc.contract_id), ("counterparty", acc.counterparty_id), ("fund", acc.fund_id)):
            if value is not None:
                out.write(f"  {key}: {value}\n")
    out.write("\n")

    n_tx = n_entries = 0
    last = journal.Digest(0, journal.GENESIS_HASH)
    last_date: date | None = None
    for tx, entries in _walk(s, upto, batch):
        out.write(f"{tx.effective_date.isoformat()} * {quote(tx.description)}\n")
        out.write(f"  sequence: {tx.sequence}\n  posted_at: {quote(journal.format_posted_at(tx.posted_at))}\n"
                  f"  kind: {quote(tx.kind)}\n  actor: {quote(tx.actor)}\n")
        if tx.contract_id is not None:
            out.write(f"  contract: {tx.contract_id}\n")
        if tx.reverses is not None:
            out.write(f"  reverses: {tx.reverses}\n")
        out.write(f"  previous_hash: {quote(tx.previous_hash)}\n  hash: {quote(tx.hash)}\n")
        for e in entries:
            name = beancount_account(account_id=e.account_id, code=e.account_code, party_id=e.party_id,
                                     contract_id=e.account_contract_id, counterparty_id=e.counterparty_id)
            out.write(f"  {name}  {decimal_text(e.amount_minor, e.currency)} {e.currency}\n")
        out.write("\n")
        n_tx += 1
        n_entries += len(entries)
        last = journal.Digest(tx.sequence, tx.hash)
        last_date = tx.effective_date if last_date is None else max(last_date, tx.effective_date)

    if last_date is not None:
        # a balance assertion holds at the start of its day: the day after the last one checks
        # everything. "~ 0": beancount would otherwise tolerate twice half the last digit (0.01 SEK)
        on = (last_date + timedelta(days=1)).isoformat()
        out.write(f"; the service's balances as of sequence {upto}\n")
        for acc in _accounts(s, set(first), batch):
            units = journal.balance_minor(s, acc, as_of_sequence=upto)
            out.write(f"{on} balance {_name(acc)}  {decimal_text(units, acc.currency)} ~ 0 {acc.currency}\n")
            # closed by then (so with a zero balance): closed in the file too, no earlier than its
            # balance assertion (beancount checks a balance before a close on the same day)
            if acc.closed_at is not None and (until is None or acc.closed_at <= until):
                out.write(f"{max(on, acc.closed_at.date().isoformat())} close {_name(acc)}\n"
                          f"  closed_at: {quote(journal.format_posted_at(acc.closed_at))}\n")
    out.write(f"\n; last transaction: sequence {last.sequence}, hash {last.hash}\n")
    return ExportSummary(n_tx, n_entries, last)


def _as_of_note(as_of: date | datetime | None) -> str:
    if as_of is None:
        return ""
    if isinstance(as_of, datetime):
        return f", posted by {journal.format_posted_at(as_of)}"
    return f", posted by the end of {as_of.isoformat()} (UTC)"


def _name(acc: Account) -> str:
    return beancount_account(account_id=acc.id, code=acc.code, party_id=acc.party_id, contract_id=acc.contract_id,
                             counterparty_id=acc.counterparty_id)


def export_ledger(s: Session, out: TextIO, *, fmt: str, as_of: date | datetime | None = None,
                  batch: int = BATCH) -> ExportSummary:
    """Write the journal (up to `as_of`) to `out` as `fmt`, one of FORMATS."""
    if fmt == "csv":
        return write_csv(s, out, as_of=as_of, batch=batch)
    if fmt == "beancount":
        return write_beancount(s, out, as_of=as_of, batch=batch)
    raise ValidationError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}",
                          code="INVALID_FORMAT", field=["format"])
