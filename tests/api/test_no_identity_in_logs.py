"""No identity number in any log line, whatever the client sends (issue 14).

Every format of a personnummer and a samordningsnummer goes inside every kind of malformed
request (bad JSON, wrong types, unknown and misspelt fields, validation errors, a JSON number,
a request id header); the log, formatted as in production, is scanned for the digits.
"""
from __future__ import annotations

import io
import json
import logging
import re

import pytest

from api.graphql.base import to_global_id
from api.logs import JsonFormatter, redact
from tests.ledger.test_calculations import case_a  # noqa: F401

# a personnummer and a samordningsnummer (day + 60), in every way people write them
NUMBERS = ["198112189876", "19811218-9876", "811218-9876", "8112189876", "811218+9876", "811218 9876",
           "198112789873", "811278-9873", "8112789873", "19811278-9873"]
DIGITS = {re.sub(r"\D", "", n)[-10:] for n in NUMBERS}  # the last 10 digits of each, found with or without a separator
ENROLL = """mutation($input: EnrollParticipantInput!) { enrollParticipant(input: $input) {
  participant { id } userErrors { code field message } } }"""


@pytest.fixture
def log_text():
    """Everything logged while the test runs, formatted by the production JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def requests_carrying(number: str, contract: str) -> list[tuple[bytes, dict]]:
    """(body, headers) of malformed requests that each carry `number` somewhere."""
    as_int = int(re.sub(r"\D", "", number))
    good = {"contractId": contract, "enrolledOn": "2026-02-01"}
    variables = [
        {**good, "personalIdentityNumber": number, "personalIdentityNumbr": number},   # misspelt beside it
        {**good, "personalIdentityNumbr": number},                                      # misspelt alone
        {**good, "personalIdentityNumber": as_int},                                     # a JSON number
        {**good, "personalIdentityNumber": [number]},                                   # wrong type
        {**good, "personalIdentityNumber": {"value": number}},                          # wrong type
        {**good, "personalIdentityNumber": number, "enrolledOn": number},              # a bad date
        {**good, "personalIdentityNumber": number, "contractId": number},              # a bad id
        {**good, "personalIdentityNumber": number[:-1] + "0"},                          # a wrong check digit
        {"personalIdentityNumber": number},                                             # required fields missing
        {**good, "externalRef": number, "area": number},                                # in other fields
    ]
    out = []
    for v in variables:
        out.append(json.dumps({"query": ENROLL, "variables": {"input": v}}).encode())
    literal = json.dumps(number)
    out += [
        # inline literals: a number where a string goes, an unknown field, a bad date
        json.dumps({"query": 'mutation { enrollParticipant(input: {contractId: "%s", enrolledOn: "2026-02-01", '
                             'personalIdentityNumber: %s}) { userErrors { code } } }' % (contract, as_int)}).encode(),
        json.dumps({"query": 'mutation { enrollParticipant(input: {contractId: "%s", enrolledOn: "2026-02-01", '
                             'personalIdentityNumbr: %s}) { userErrors { code } } }' % (contract, literal)}).encode(),
        json.dumps({"query": 'mutation { enrollParticipant(input: {contractId: "%s", enrolledOn: %s, '
                             'personalIdentityNumber: %s}) { userErrors { code } } }' % (contract, literal, literal)}).encode(),
        json.dumps({"query": '{ node(id: %s) { id } contract(id: %s) { id } }' % (literal, literal)}).encode(),
        json.dumps({"query": '{ %s }' % number}).encode(),                                  # a syntax error
        json.dumps({"query": '{ viewer { role } }', "variables": {"x": number}, "operationName": number}).encode(),
        json.dumps({"query": ENROLL, "variables": {"input": {**good, "personalIdentityNumber": number}},
                    "extensions": number}).encode(),
        b'{"query": "' + ENROLL.replace("\n", " ").encode() + b'", "variables": {"input": {"personalIdentityNumber": "'
        + number.encode() + b'"',                                                          # bad JSON
        b'{"query": ' + str(as_int).encode() + b'}',                                        # a query that is a number
        json.dumps([{"query": ENROLL, "variables": {"input": {"personalIdentityNumber": number}}}] * 2).encode(),
    ]
    headers = [{}, {"X-Request-Id": number}, {"Authorization": f"Bearer {number}"}, {"Content-Type": "text/plain"}]
    return [(body, h) for body in out for h in headers]


def test_no_identity_number_reaches_any_log_line(api, case_a, log_text):
    provider = api.token("PROVIDER", party_id=case_a["prov"].id)
    contract = to_global_id("OutcomeContract", case_a["contract"].id)
    sent = 0
    for number in NUMBERS:
        for body, extra in requests_carrying(number, contract):
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {provider}", **extra}
            r = api.client.post("/graphql", content=body, headers=headers)
            assert r.status_code < 500, (body[:200], r.text[:300])
            sent += 1
    text = log_text.getvalue()
    assert text.count("\n") >= sent  # every request was logged, at least its request line
    compact = re.sub(r"[-+ ]", "", text)
    leaked = sorted(d for d in DIGITS if d in compact)
    assert not leaked, [line for line in text.splitlines() if any(d in re.sub(r"[-+ ]", "", line) for d in leaked)][:3]


@pytest.mark.parametrize("text", ["198112189876", "19811218-9876", "811218-9876", "8112189876", "811218+9876",
                                  "811218 9876", "１９８１１２１８９８７６", "pnr=811218-9876;", "[198112189876]"])
def test_redact_catches_every_format(text):
    assert not re.search(r"\d{4}", redact(text).replace("[redacted]", "")), redact(text)
