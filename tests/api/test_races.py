"""Uniqueness races (issue 14): 8 requests at once with the same key answer their userError.

A real server on a database of each backend whose commits are real; 8 threads send the same
mutation at once. One wins, the other seven get the domain error (on PostgreSQL the losers
wait on the unique index and the unit of work maps the IntegrityError), never "Unexpected error".
"""
from __future__ import annotations

import hashlib
import http.client
import json
import logging
from decimal import Decimal

import pytest

from api.app import create_app
from api.graphql.base import to_global_id
from ledger import tokens
from ledger.access import SYSTEM, Actor
from ledger.config import Settings
from ledger.contracts import MetricSpec
from ledger.db import Database
from ledger.integrity import domain_error
from tests.api.serving import at_once, post, serving
from tests.factories import contract, funded, rate_card, sek

SECRET = b"race-test-secret-0123456789abc"
FM = Actor("frida", "FUND_MANAGER")
ENROLL = """mutation($input: EnrollParticipantInput!) { enrollParticipant(input: $input) {
  participant { id } userErrors { code field message } } }"""
CREATE_PARTY = """mutation($input: CreatePartyInput!) { createParty(input: $input) {
  party { id } userErrors { code field message } } }"""


@pytest.fixture
def world(fresh_engine, caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="utfall")
    db = Database(fresh_engine)
    fund, manager, muni, prov, ver = funded(db, FM)
    care = MetricSpec(code="CARE_DAYS", name="Vårddygn", kind="BASELINE_IMPROVEMENT", direction="LOWER_IS_BETTER",
                      unit_price=sek("1850.00"), baseline=Decimal(3650))
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True, metrics=(rate_card(), care))
    with db.uow() as uow:
        provider = tokens.create_token(uow, actor=SYSTEM, name="pia", role="PROVIDER", party_id=prov.id).token
        admin = tokens.create_token(uow, actor=SYSTEM, name="ada", role="ADMIN").token
        fm = tokens.create_token(uow, actor=SYSTEM, name="frida", role="FUND_MANAGER").token
        verifier = tokens.create_token(uow, actor=SYSTEM, name="vera", role="VERIFIER", party_id=ver.id).token
        uow.commit()
    app = create_app(Settings(database_url=fresh_engine.url.render_as_string(hide_password=False), env="production",
                              secret=SECRET, document_dir=str(tmp_path / "documents")), workers=8)
    try:
        with serving(app) as port:
            yield {"port": port, "provider": provider, "admin": admin, "fm": fm, "verifier": verifier,
                   "contract": to_global_id("OutcomeContract", c.id), "db": app.state.db,
                   "fund": to_global_id("Fund", fund.id)}
    finally:
        app.state.db.engine.dispose()


def race(port: int, token: str, document: str, variables, field: str) -> list[dict]:
    answers = at_once(8, lambda i: post(port, document, token, variables(i), timeout=60))
    assert [a.status for a in answers] == [200] * 8, [a.body[:200] for a in answers]
    return [json.loads(a.body)["data"][field] for a in answers]


def assert_one_wins(payloads: list[dict], code: str, caplog) -> None:
    errors = [p["userErrors"] for p in payloads]
    winners = [p for p in payloads if not p["userErrors"]]
    assert len(winners) == 1, errors
    losers = [e for e in errors if e]
    assert all(len(e) == 1 and e[0]["code"] == code for e in losers), losers
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


def test_eight_enrolments_of_the_same_external_ref(world, caplog):
    payloads = race(world["port"], world["provider"], ENROLL, lambda i: {"input": {
        "contractId": world["contract"], "enrolledOn": "2026-02-01", "externalRef": "ELEV-1"}}, "enrollParticipant")
    assert_one_wins(payloads, "DUPLICATE_PARTICIPANT", caplog)


def test_eight_enrolments_of_the_same_person(world, caplog):
    # the same person written differently (12 digits, 10 digits with a hyphen) is still the same person
    forms = ["198112189876", "811218-9876"]
    payloads = race(world["port"], world["provider"], ENROLL, lambda i: {"input": {
        "contractId": world["contract"], "enrolledOn": "2026-02-01", "personalIdentityNumber": forms[i % 2],
        "externalRef": f"ELEV-{i}"}}, "enrollParticipant")
    assert_one_wins(payloads, "DUPLICATE_PARTICIPANT", caplog)


def test_eight_parties_with_the_same_org_number(world, caplog):
    payloads = race(world["port"], world["admin"], CREATE_PARTY, lambda i: {"input": {
        "name": f"Bolag {i}", "role": "MUNICIPALITY", "orgNumber": "212000-2742"}}, "createParty")
    assert_one_wins(payloads, "DUPLICATE_ORG_NUMBER", caplog)


def test_the_served_mutations_commit_through_the_group_commit_on_postgresql(world, caplog):
    # the service's default (UTFALL_GROUP_COMMIT unset): eight parties created at once by eight
    # requests, each answered with its own party, all eight committed through the group commit
    grouped = world["db"].group_commit
    # (SQLite has one writer and a cheap commit: none there)
    assert (grouped is not None) == (world["db"].dialect == "postgresql")
    before = grouped.committed if grouped is not None else 0
    payloads = race(world["port"], world["admin"], CREATE_PARTY, lambda i: {"input": {
        "name": f"Kommun {i}", "role": "MUNICIPALITY"}}, "createParty")
    assert [p["userErrors"] for p in payloads] == [[]] * 8
    assert len({p["party"]["id"] for p in payloads}) == 8
    if grouped is not None:
        assert grouped.committed - before == 8
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


DEPOSIT = """mutation($input: DepositCapitalInput!) { depositCapital(input: $input) {
  transaction { sequence } userErrors { code field message } } }"""


def test_eight_requests_with_one_idempotency_key_post_once_and_all_answer_its_result(world, caplog):
    # a client retrying at once (a proxy's retry, a double click): the first request claims the key, the
    # others wait on it and answer the same transaction; one posting, one key, whichever commits first
    from sqlalchemy import func, select
    from ledger.models import AuditEvent, IdempotencyKey, Transaction
    with world["db"].reading() as s:
        before = s.execute(select(func.count()).select_from(Transaction)).scalar_one()
    deposit = {"fundId": world["fund"], "amount": {"amount": "125.50", "currency": "SEK"},
               "effectiveDate": "2026-03-01", "reference": "inbetalning mars", "idempotencyKey": "deposit-2026-03"}
    payloads = race(world["port"], world["fm"], DEPOSIT, lambda i: {"input": deposit}, "depositCapital")
    assert [p["userErrors"] for p in payloads] == [[]] * 8
    assert len({p["transaction"]["sequence"] for p in payloads}) == 1
    # the same key with another input, at once: refused, never posted
    other = race(world["port"], world["fm"], DEPOSIT, lambda i: {"input": {**deposit, "reference": f"annan {i}"}},
                 "depositCapital")
    assert all([e["code"] for e in p["userErrors"]] == ["IDEMPOTENCY_KEY_REUSED"] for p in other), other
    with world["db"].reading() as s:
        assert s.execute(select(func.count()).select_from(Transaction)).scalar_one() == before + 1
        keys = s.execute(select(IdempotencyKey).where(IdempotencyKey.key == "deposit-2026-03")).scalars().all()
        assert len(keys) == 1 and keys[0].result_type == "Transaction"
        assert s.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.operation == "depositCapital")).scalar_one() == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


def test_eight_reversals_of_the_same_transaction(world, caplog):
    # the other mutations that check before they write lock a row first (the ledger head, the
    # contract, the participant), so the losers see the winner's row and answer the same way
    doc = """mutation($input: ReverseTransactionInput!) { reverseTransaction(input: $input) {
      transaction { sequence } userErrors { code field message } } }"""
    payloads = race(world["port"], world["fm"], doc, lambda i: {"input": {
        "transactionId": to_global_id("LedgerTransaction", 1), "reason": f"race {i}"}}, "reverseTransaction")
    assert_one_wins(payloads, "ALREADY_REVERSED", caplog)


def test_eight_measurements_of_the_same_period(world, caplog):
    # no unique constraint can say "overlapping": the use case locks the contract row first
    doc = """mutation($input: RecordMeasurementInput!) { recordMeasurement(input: $input) {
      measurement { id } userErrors { code field message } } }"""
    payloads = race(world["port"], world["verifier"], doc, lambda i: {"input": {
        "contractId": world["contract"], "metricCode": "CARE_DAYS", "periodStart": "2026-01-01",
        "periodEnd": "2026-06-30", "observedValue": str(3000 + i)}}, "recordMeasurement")
    assert_one_wins(payloads, "OVERLAPPING_MEASUREMENT", caplog)


def test_eight_uploads_of_the_same_document_by_one_provider(world, caplog):
    # a provider's client retrying on a slow line sends the same bytes eight times at once
    pdf = b"%PDF-1.4 signed attendance list\n"
    sha = hashlib.sha256(pdf).hexdigest()

    def upload(_i):
        conn = http.client.HTTPConnection("127.0.0.1", world["port"], timeout=60)
        try:
            conn.request("PUT", f"/documents/{sha}", body=pdf, headers={
                "Content-Type": "application/pdf", "Authorization": f"Bearer {world['provider']}"})
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        finally:
            conn.close()

    answers = at_once(8, upload)
    # one upload created the document, the seven others were answered with that same upload
    assert sorted(status for status, _ in answers) == [200] * 7 + [201], answers
    assert len({body["uploadedAt"] for _, body in answers}) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


def test_an_overflowing_integer_is_amount_too_large():
    err = domain_error(OverflowError("Python int too large to convert to SQLite INTEGER"))
    assert err is not None and err.code == "AMOUNT_TOO_LARGE"
    assert domain_error(OverflowError("date value out of range")) is None
