"""Every bad input of issue 14 answers cleanly: a userError with a stable code or a GraphQL
validation error that names the field, never "Unexpected error", never an ERROR log line."""
from __future__ import annotations

import base64
import json
import logging

import pytest

from api.graphql.base import to_global_id
from ledger import journal
from tests.ledger.test_calculations import case_a  # noqa: F401

DEPOSIT = """mutation($input: DepositCapitalInput!) { depositCapital(input: $input) {
  fund { id } userErrors { code field message } } }"""


@pytest.fixture
def clean_log(caplog):
    caplog.set_level(logging.INFO)
    yield caplog
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors


def no_unexpected(body: dict) -> dict:
    assert "Unexpected error" not in json.dumps(body), body
    return body


def fund_id(case) -> str:
    return to_global_id("Fund", case["fund"].id)


def deposit(api, token, case, amount, *, literal: str | None = None) -> dict:
    if literal is not None:
        doc = ('mutation { depositCapital(input: {fundId: "%s", amount: {amount: %s, currency: "SEK"}, '
               'effectiveDate: "2026-02-01", reference: "x"}) { userErrors { code field message } } }'
               % (fund_id(case), literal))
        return no_unexpected(api.post(doc, token=token))
    return no_unexpected(api.post(DEPOSIT, {"input": {"fundId": fund_id(case), "amount": {"amount": amount, "currency": "SEK"},
                                                      "effectiveDate": "2026-02-01", "reference": "x"}}, token=token))


@pytest.mark.parametrize("amount", ["92233720368547758.08", "999999999999999999.99", "-92233720368547758.08"])
def test_an_amount_beyond_64_bit_minor_units_is_amount_too_large(api, case_a, amount, clean_log):
    fm = api.token("FUND_MANAGER")
    body = deposit(api, fm, case_a, amount)
    errors = body["data"]["depositCapital"]["userErrors"]
    assert errors and errors[0]["code"] in ("AMOUNT_TOO_LARGE", "NON_POSITIVE_AMOUNT"), errors
    if not amount.startswith("-"):
        assert errors[0]["code"] == "AMOUNT_TOO_LARGE"


def test_two_deposits_whose_sum_overflows_the_ledger(api, db, case_a, clean_log):
    fm = api.token("FUND_MANAGER")
    first = deposit(api, fm, case_a, "90000000000000000.00")["data"]["depositCapital"]
    assert first["userErrors"] == []
    second = deposit(api, fm, case_a, "90000000000000000.00")["data"]["depositCapital"]
    assert [e["code"] for e in second["userErrors"]] == ["AMOUNT_TOO_LARGE"]
    with db.reading() as s:
        assert journal.verify(s).ok


@pytest.mark.parametrize("value", ["18750", '"NaN"', '"Infinity"', '"-Infinity"', '"1,5"', '"1e3"', '"١٢٣"',
                                   '"１２３"', '" 12"', '"12 "', '"0x10"', '""', "true", "1.5", "null", '"+1"'])
def test_inline_decimal_literals_are_validation_errors_naming_the_field(api, case_a, value, clean_log):
    body = deposit(api, api.token("FUND_MANAGER"), case_a, None, literal=value)
    assert "data" not in body or body["data"] is None
    messages = [e["message"] for e in body["errors"]]
    assert any("amount" in m for m in messages), messages


@pytest.mark.parametrize("value", [18750, 1.5, "NaN", "Infinity", "1,5", "1e3", "١٢٣", "１２３", "²", " 12", None])
def test_decimal_variables_accept_only_plain_ascii_decimal_strings(api, case_a, value, clean_log):
    body = deposit(api, api.token("FUND_MANAGER"), case_a, value)
    assert body.get("data") is None and body["errors"], body
    assert "amount" in body["errors"][0]["message"]


def test_non_ascii_digits_are_not_123(api, case_a, clean_log):
    fm = api.token("FUND_MANAGER")
    for value in ("١٢٣", "１２３", "١٢٣.٠٠"):
        assert deposit(api, fm, case_a, value).get("data") is None


@pytest.mark.parametrize("literal", ['"2025-13-01"', '"2025-02-30"', '"0000-01-01"', '"20250101"', '"２０２５-01-01"',
                                     "20250101", '"2025-1-1"', '"x"'])
def test_inline_bad_dates_are_validation_errors_naming_the_field(api, case_a, literal, clean_log):
    doc = ('mutation { depositCapital(input: {fundId: "%s", amount: {amount: "1.00", currency: "SEK"}, '
           'effectiveDate: %s, reference: "x"}) { userErrors { code } } }' % (fund_id(case_a), literal))
    body = no_unexpected(api.post(doc, token=api.token("FUND_MANAGER")))
    assert any("effectiveDate" in e["message"] for e in body["errors"]), body


@pytest.mark.parametrize("as_of", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59",
                                   "10000-01-01T00:00:00Z", "2026-01-01T25:00:00Z", "2026-01-01T12:00:00+25:00",
                                   "２０２６-01-01T00:00:00Z", "2026-01-01"])
def test_out_of_range_datetimes(api, case_a, as_of, clean_log):
    token = api.token("AUDITOR")
    for doc in ['query($t: DateTime) { ledgerTransactions(asOf: $t) { nodes { sequence } } }',
                'query($t: DateTime) { ledgerAccounts(asOf: $t) { code } }']:
        body = no_unexpected(api.post(doc, {"t": as_of}, token=token))
        assert body.get("errors") or body["data"], body
    literal = no_unexpected(api.post('{ ledgerTransactions(asOf: "%s") { nodes { sequence } } }' % as_of, token=token))
    assert literal.get("errors") or literal["data"]


@pytest.mark.parametrize("as_of", ["9999-12-31", "0001-01-01"])
def test_obligations_at_the_ends_of_the_calendar(api, case_a, as_of, clean_log):
    no_unexpected(api.post('query($d: Date) { obligations(asOf: $d) { outstanding { amount } } }', {"d": as_of},
                           token=api.token("AUDITOR")))


def _cursor(raw: str) -> str:
    return base64.b64encode(raw.encode()).decode()


CURSORS = [_cursor("k:" + "9" * 30), _cursor("k:9223372036854775808"), _cursor("k:-1"), _cursor("k:١٢"),
           _cursor("k:"), _cursor("x:1"), "!!!", "", "a" * 5000, _cursor("k:1e5"), _cursor("k: 1")]
LISTS = ["parties(after: $a) { nodes { id } }", "funds(after: $a) { nodes { id } }",
         "contracts(after: $a) { nodes { id } }", "evidence(after: $a) { nodes { id } }",
         "payouts(after: $a) { nodes { id } }", "ledgerTransactions(after: $a) { nodes { sequence } }",
         "auditEvents(after: $a) { nodes { id } }",
         "contracts(first: 3) { nodes { participants(after: $a) { nodes { id } } evidence(after: $a) { nodes { id } } "
         "payouts(after: $a) { nodes { id } } } }",
         "funds { nodes { contracts(after: $a) { nodes { id } } } }",
         "evidence(last: 2, before: $a) { nodes { id } }", "parties(before: $a) { totalCount }",
         "contracts(first: 3) { nodes { participants(last: 1, before: $a) { totalCount nodes { id } } } }"]


@pytest.mark.parametrize("selection", LISTS)
def test_cursors_with_huge_or_garbage_keys_on_every_list(api, case_a, selection, clean_log):
    token = api.token("AUDITOR")
    for cursor in CURSORS:
        body = no_unexpected(api.post("query($a: String) { %s }" % selection, {"a": cursor}, token=token))
        codes = {e.get("extensions", {}).get("code") for e in body.get("errors", [])}
        assert codes <= {"INVALID_CURSOR"}, (cursor, body)


@pytest.mark.parametrize("gid", [base64.b64encode(b"Party:" + b"9" * 30).decode(), base64.b64encode("Party:١٢".encode()).decode(),
                                 "!!!", "", base64.b64encode(b"Party:9223372036854775808").decode()])
def test_ids_with_huge_or_garbage_keys(api, case_a, gid, clean_log):
    token = api.token("AUDITOR")
    no_unexpected(api.post("query($i: ID!) { node(id: $i) { id } fund(id: $i) { id } contract(id: $i) { id } }",
                           {"i": gid}, token=token))


def test_deeply_nested_json_in_variables_is_a_400(api, clean_log):
    depth = 100_000
    body = '{"query": "{ viewer { role } }", "variables": {"x": ' + "[" * depth + "]" * depth + "}}"
    r = api.client.post("/graphql", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text[:300]
    assert "nested" in r.json()["errors"][0]["message"]


@pytest.mark.parametrize("body", ["{", "[1,", '{"query": 5}', '{"query": "{ viewer { role } }", "variables": [1]}',
                                  "\xff\xfe", "null", '"x"', "[]"])
def test_malformed_bodies_are_4xx_json(api, body, clean_log):
    r = api.client.post("/graphql", content=body.encode("latin-1"), headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (body, r.status_code, r.text[:200])


# one argument of each custom scalar, and a bad value for it; a new scalar must be added here
SCALAR_CASES = {
    "Decimal": ("depositCapital(input: {fundId: \"%s\", amount: {amount: %s, currency: \"SEK\"}, "
                "effectiveDate: \"2026-02-01\", reference: \"x\"}) { userErrors { code } }", ["18750", '"1,5"'], "amount"),
    "Date": ("obligations(asOf: %s) { cursor }", ['"2026-02-30"', "20260101"], "asOf"),
    "DateTime": ("ledgerTransactions(asOf: %s) { totalCount }", ['"yesterday"', "5"], "asOf"),
}


def test_every_custom_scalar_refuses_a_bad_literal_and_variable_by_name(api, case_a, clean_log):
    from api.graphql.schema import schema
    custom = {name for name, t in schema._schema.type_map.items()
              if t.__class__.__name__ == "GraphQLScalarType"
              and name not in ("String", "Int", "Float", "Boolean", "ID", "JSON")}  # JSON is output only
    assert custom == set(SCALAR_CASES), "a new custom scalar: add a bad literal for it to SCALAR_CASES"
    token = api.token("FUND_MANAGER")
    for scalar, (selection, bad_values, argument) in SCALAR_CASES.items():
        mutation = selection.startswith("deposit")
        for bad in bad_values:
            inline = selection % ((fund_id(case_a), bad) if mutation else bad)
            body = no_unexpected(api.post(("mutation { %s }" if mutation else "{ %s }") % inline, token=token))
            assert body.get("data") is None and body["errors"], (scalar, bad, body)
            assert all(argument in e["message"] and e["extensions"]["code"] == "INVALID_VALUE" for e in body["errors"]), body
            value = json.loads(bad) if bad.startswith('"') else int(bad)
            if mutation:
                answer = deposit(api, token, case_a, value)
            else:
                doc = "query($v: %s) { %s }" % (scalar, selection % "$v")
                answer = no_unexpected(api.post(doc, {"v": value}, token=token))
            assert answer.get("data") is None and "$v" in answer["errors"][0]["message"] or \
                argument in answer["errors"][0]["message"], (scalar, bad, answer)


def test_a_currency_outside_the_enum_is_invalid_currency(api, case_a, clean_log):
    body = no_unexpected(api.post(DEPOSIT, {"input": {"fundId": fund_id(case_a), "amount": {"amount": "1.00", "currency": "SEQ"},
                                                      "effectiveDate": "2026-02-01", "reference": "x"}},
                                  token=api.token("FUND_MANAGER")))
    assert [e["code"] for e in body["data"]["depositCapital"]["userErrors"]] == ["INVALID_CURRENCY"]
