"""Finance exports: obligations, payouts with their lines, and the ledger, as tables for finance
staff, written as CSV that Swedish Excel opens as it is, or as .xlsx.

Swedish Excel reads a CSV with the list separator of the Swedish locale (semicolon) and the
decimal comma, and guesses the encoding unless the file starts with a UTF-8 byte order mark;
rows end with CRLF. Amounts are plain decimals with a comma and no thousands separator
("-1234,50"), so Excel takes them as numbers; dates are ISO (YYYY-MM-DD), which it also reads.
A text that starts with = + - @ (a formula to Excel) gets a leading apostrophe: a description
typed into the service can never run as a formula in a finance officer's spreadsheet.

Who sees what: fund managers, admins and auditors everything; a municipality the obligations it
owes or is owed, the payouts of its own contracts, and the entries on its own accounts.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ledger import money as m
from ledger.access import Actor
from ledger.errors import PermissionDenied
from ledger.models import Account, Entry, OutcomeContract, Party, PayoutCalculation, PayoutLine, Transaction
from ledger.settlement import obligations

EXPORTS = ("obligations", "payouts", "ledger")
READERS = ("ADMIN", "FUND_MANAGER", "AUDITOR", "MUNICIPALITY")


@dataclass(frozen=True)
class Column:
    header: str
    kind: str = "text"  # text | int | decimal | money | date | datetime


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    rows: list[tuple]


def _amount(minor: int, currency: str) -> Decimal:
    return m.from_minor(int(minor), currency).amount


def _scope_party(actor: Actor) -> int | None:
    """None for those who see everything; the municipality's own party otherwise."""
    if actor.role not in READERS:
        raise PermissionDenied(f"a {actor.role} token may not export finance data", code="PERMISSION_DENIED")
    if actor.role == "MUNICIPALITY":
        if actor.party_id is None:
            raise PermissionDenied("a municipality token needs its party", code="PERMISSION_DENIED")
        return actor.party_id
    return None


def _names(s: Session, ids) -> dict[int, str]:
    ids = {i for i in ids if i is not None}
    return dict(s.execute(select(Party.id, Party.name).where(Party.id.in_(ids))).all()) if ids else {}


def _titles(s: Session, ids) -> dict[int, str]:
    ids = {i for i in ids if i is not None}
    return dict(s.execute(select(OutcomeContract.id, OutcomeContract.title)
                          .where(OutcomeContract.id.in_(ids))).all()) if ids else {}


def obligations_table(s: Session, *, actor: Actor) -> Table:
    party = _scope_party(actor)
    scope = None if party is None else or_(Account.party_id == party, Account.counterparty_id == party)
    rows = obligations(s, scope=scope)
    names = _names(s, [o.debtor_id for o in rows] + [o.creditor_id for o in rows])
    titles = _titles(s, [o.contract_id for o in rows])
    return Table("Skulder", (Column("Gäldenär"), Column("Gäldenär id", "int"), Column("Borgenär"),
                             Column("Borgenär id", "int"), Column("Kontrakt"), Column("Kontrakt id", "int"),
                             Column("Valuta"), Column("Utestående", "money")),
                 [(names.get(o.debtor_id, ""), o.debtor_id, names.get(o.creditor_id, ""), o.creditor_id,
                   titles.get(o.contract_id, ""), o.contract_id, o.currency, _amount(o.outstanding_minor, o.currency))
                  for o in rows])


def payouts_table(s: Session, *, actor: Actor) -> Table:
    party = _scope_party(actor)
    P, L = PayoutCalculation, PayoutLine
    stmt = (select(P, L).join(L, L.payout_id == P.id).join(OutcomeContract, OutcomeContract.id == P.contract_id)
            .order_by(P.id, L.position))
    if party is not None:
        stmt = stmt.where(OutcomeContract.municipality_id == party)
    rows = s.execute(stmt).all()
    titles = _titles(s, [p.contract_id for p, _ in rows])
    return Table("Utbetalningar", (
        Column("Utbetalning id", "int"), Column("Kontrakt"), Column("Kontrakt id", "int"), Column("Status"),
        Column("Period från", "date"), Column("Period till", "date"), Column("Beräknad av"),
        Column("Godkänd av"), Column("Transaktion", "int"), Column("Mått"), Column("Radtyp"), Column("Antal", "decimal"),
        Column("Á-pris", "money"), Column("Brutto", "money"), Column("Takavdrag", "money"), Column("Netto", "money"),
        Column("Valuta"), Column("Utbetalning totalt", "money"), Column("Indata (SHA-256)")),
        [(p.id, titles.get(p.contract_id, ""), p.contract_id, p.status, p.period_start, p.period_end, p.calculated_by,
          p.approved_by or "", p.transaction_sequence, line.metric_code, line.kind, line.quantity,
          _amount(line.unit_price_minor, p.currency), _amount(line.gross_minor, p.currency),
          _amount(line.capped_minor, p.currency), _amount(line.net_minor, p.currency), p.currency,
          _amount(p.total_minor, p.currency), p.inputs_hash)
         for p, line in rows])


def ledger_table(s: Session, *, actor: Actor) -> Table:
    party = _scope_party(actor)
    T, E, A = Transaction, Entry, Account
    stmt = (select(T.sequence, T.posted_at, T.effective_date, T.kind, T.description, T.contract_id, T.hash,
                   E.line, A.id, A.code, A.name, A.party_id, A.counterparty_id, E.currency, E.amount_minor,
                   E.balance_after_minor)
            .join(E, E.sequence == T.sequence).join(A, A.id == E.account_id).order_by(T.sequence, E.line))
    if party is not None:
        stmt = stmt.where(A.party_id == party)
    rows = s.execute(stmt).all()
    names = _names(s, [r.party_id for r in rows] + [r.counterparty_id for r in rows])
    return Table("Huvudbok", (
        Column("Löpnummer", "int"), Column("Bokförd", "datetime"), Column("Affärsdatum", "date"), Column("Typ"),
        Column("Beskrivning"), Column("Kontrakt id", "int"), Column("Rad", "int"), Column("Konto id", "int"),
        Column("Kontokod"), Column("Kontonamn"), Column("Ägare"), Column("Motpart"), Column("Valuta"),
        Column("Belopp", "money"), Column("Saldo efter", "money"), Column("Hash")),
        [(r.sequence, r.posted_at, r.effective_date, r.kind, r.description, r.contract_id, r.line, r.id, r.code,
          r.name, names.get(r.party_id, ""), names.get(r.counterparty_id, ""), r.currency,
          _amount(r.amount_minor, r.currency), _amount(r.balance_after_minor, r.currency), r.hash) for r in rows])


TABLES = {"obligations": obligations_table, "payouts": payouts_table, "ledger": ledger_table}


def table(s: Session, name: str, *, actor: Actor) -> Table:
    return TABLES[name](s, actor=actor)


# --- writers (pure) ----------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value, kind: str) -> str:
    if value is None:
        return ""
    if kind == "money" or isinstance(value, Decimal):
        return format(value, "f").replace(".", ",")
    if kind == "datetime" and isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    if kind == "text" and text.startswith(_FORMULA_START):
        return "'" + text
    return text


def swedish_csv(t: Table) -> bytes:
    """UTF-8 with a BOM, semicolons, decimal comma, CRLF: what Swedish Excel opens as columns and numbers."""
    out = io.StringIO(newline="")
    w = csv.writer(out, delimiter=";", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow([c.header for c in t.columns])
    for row in t.rows:
        w.writerow([_csv_cell(v, c.kind) for v, c in zip(row, t.columns)])
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def xlsx(t: Table) -> bytes:
    """An Excel workbook with one sheet: numbers as numbers (exact decimals), dates as dates."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    wb = Workbook()
    ws = wb.active
    ws.title = t.name
    ws.append([c.header for c in t.columns])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    formats = {"money": "#,##0.00", "date": "yyyy-mm-dd", "datetime": "yyyy-mm-dd hh:mm:ss", "int": "0"}
    for row in t.rows:
        values = []
        for v, c in zip(row, t.columns):
            if isinstance(v, datetime):
                v = v.replace(tzinfo=None)  # Excel has no time zones: the service's times are UTC
            elif c.kind == "text" and isinstance(v, str) and v.startswith(_FORMULA_START):
                v = "'" + v
            values.append(v)
        ws.append(values)
    for i, c in enumerate(t.columns, start=1):
        if c.kind in formats:
            for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                cell.number_format = formats[c.kind]
    ws.freeze_panes = "A2"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
