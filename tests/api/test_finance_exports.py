"""Finance exports over HTTP: CSV that Swedish Excel opens (BOM, semicolons, decimal comma, CRLF)
and .xlsx, read back and compared with the service's own figures; who may get which rows."""
from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from ledger import settlement
from ledger.publishing import finance
from tests.ledger.test_calculations import approve, calc, case_a  # noqa: F401


def get(api, path: str, token: str | None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return api.client.get(path, headers=headers)


def read_csv(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf"), "no UTF-8 byte order mark"
    text = body[3:].decode("utf-8")
    assert "\r\n" in text and "\n" not in text.replace("\r\n", "")
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))


def sv_decimal(text: str) -> Decimal:
    assert "." not in text, text
    return Decimal(text.replace(",", "."))


def test_obligations_as_swedish_csv_and_xlsx_match_the_ledger(api, db, case_a):
    # given: a posted payout leaves the payers owing the provider
    approve(db, calc(db, case_a))
    auditor = api.token("AUDITOR")
    with db.reading() as s:
        owed = {(o.debtor_id, o.creditor_id): Decimal(o.outstanding_minor) / 100 for o in settlement.obligations(s)}
    # when
    r = get(api, "/exports/obligations.csv", auditor)
    x = get(api, "/exports/obligations.xlsx", auditor)
    # then
    assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="utfall-obligations-' in r.headers["content-disposition"]
    rows = read_csv(r.content)
    assert rows[0][:2] == ["Gäldenär", "Gäldenär id"] and len(rows) == len(owed) + 1
    got = {(int(row[1]), int(row[3])): sv_decimal(row[7]) for row in rows[1:]}
    assert got == owed and any("," in row[7] for row in rows[1:])
    sheet = load_workbook(io.BytesIO(x.content)).active
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][:2] == ("Gäldenär", "Gäldenär id")
    assert {(row[1], row[3]): Decimal(str(row[7])) for row in values[1:]} == owed
    assert sheet["H2"].number_format == "#,##0.00" and isinstance(sheet["H2"].value, (int, float, Decimal))


def test_payouts_with_lines_and_the_ledger_read_back(api, db, case_a):
    approve(db, calc(db, case_a))
    fm = api.token("FUND_MANAGER")
    payouts = read_csv(get(api, "/exports/payouts.csv", fm).content)
    header = payouts[0]
    net, total = header.index("Netto"), header.index("Utbetalning totalt")
    lines = payouts[1:]
    assert {row[header.index("Mått")] for row in lines} == {"SCHOOL_PASS", "ATTENDANCE"}
    assert sum(sv_decimal(row[net]) for row in lines) == sv_decimal(lines[0][total]) == Decimal("112500.00")
    ledger = read_csv(get(api, "/exports/ledger.csv", fm).content)
    amount = ledger[0].index("Belopp")
    per_tx: dict[str, Decimal] = {}
    for row in ledger[1:]:
        per_tx[row[0]] = per_tx.get(row[0], Decimal(0)) + sv_decimal(row[amount])
    assert per_tx and set(per_tx.values()) == {Decimal(0)}  # every transaction balances
    sheet = load_workbook(io.BytesIO(get(api, "/exports/ledger.xlsx", fm).content)).active
    assert sheet.max_row == len(ledger) and sheet.title == "Huvudbok"


def test_a_municipality_gets_its_own_rows_and_other_roles_get_none(api, db, case_a):
    approve(db, calc(db, case_a))
    from tests.factories import party
    own = api.token("MUNICIPALITY", party_id=case_a["muni"].id)
    other = api.token("MUNICIPALITY", party_id=party(db, role="MUNICIPALITY").id)
    mine = read_csv(get(api, "/exports/obligations.csv", own).content)
    assert len(mine) == 2 and mine[1][1] == str(case_a["muni"].id)  # it owes the provider its half
    assert len(read_csv(get(api, "/exports/obligations.csv", other).content)) == 1  # the header only
    assert len(read_csv(get(api, "/exports/payouts.csv", other).content)) == 1
    ledger = read_csv(get(api, "/exports/ledger.csv", own).content)
    owner = ledger[0].index("Ägare")
    assert len(ledger) > 1 and {row[owner] for row in ledger[1:]} == {case_a["muni"].name}
    assert get(api, "/exports/ledger.csv", api.token("PROVIDER", party_id=case_a["prov"].id)).status_code == 403
    assert get(api, "/exports/ledger.csv", None).status_code == 401
    assert get(api, "/exports/ledger.csv", "utf_not-a-token").status_code == 401
    assert get(api, "/exports/secrets.csv", own).status_code == 404


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)"])
def test_text_never_becomes_a_formula_in_excel(text):
    t = finance.Table("T", (finance.Column("Beskrivning"), finance.Column("Belopp", "money")),
                      [(text, Decimal("-1234.50"))])
    rows = read_csv(finance.swedish_csv(t))
    assert rows[1] == ["'" + text, "-1234,50"]
    sheet = load_workbook(io.BytesIO(finance.xlsx(t))).active
    assert sheet["A2"].value == "'" + text and sheet["B2"].value == Decimal("-1234.50")
