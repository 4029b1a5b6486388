"""Participants, evidence, verification and measurements."""
from __future__ import annotations

import subprocess
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import text

from ledger import evidence as uc
from ledger.access import Actor
from ledger.contracts import MetricSpec
from ledger.db import Database
from ledger.errors import DomainError, MultipleErrors
from tests.conftest import table_counts
from tests.factories import contract, funded, rate_card, sek

FM = Actor("frida", "FUND_MANAGER")
SECRET = b"test-secret-for-hmac-0123456789"
TODAY = date(2026, 11, 23)
PNR = "19811218-9876"  # a valid test personnummer (Luhn)
DOC = uc.Document("a" * 64, "betyg.pdf", "application/pdf")


@pytest.fixture
def world(db):
    fund, manager, muni, prov, ver = funded(db, FM)
    care = MetricSpec(code="CARE_DAYS", name="Vårddygn", kind="BASELINE_IMPROVEMENT", direction="LOWER_IS_BETTER",
                      unit_price=sek("1850.00"), baseline=Decimal(3650))
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True,
                 metrics=(rate_card(once_only=True), rate_card("ATTENDANCE", "12500.00"), care))
    provider = Actor("pia", "PROVIDER", prov.id)
    verifier = Actor("vera", "VERIFIER", ver.id)
    return c, provider, verifier, prov, ver


def enroll(db, c, provider, pnr=PNR, **kw):
    with db.uow() as uow:
        p = uc.enroll_participant(uow, actor=provider, secret=SECRET, contract_id=c.id, personal_identity_number=pnr,
                                  external_ref=kw.get("ref"), area=kw.get("area", "URBAN"),
                                  enrolled_on=kw.get("on", date(2026, 2, 1)), today=TODAY)
        uow.commit()
    return p


def submit(db, c, provider, claim):
    with db.uow() as uow:
        e = uc.submit_evidence(uow, actor=provider, contract_id=c.id, claim=claim, today=TODAY)
        uow.commit()
    return e


def test_identity_numbers_are_validated_in_every_common_form():
    from ledger.identity import normalise
    for form in ("198112189876", "811218-9876", "8112189876", "19811218-9876"):
        assert normalise(form, TODAY) == "198112189876"
    assert normalise("811278-9873", TODAY).startswith("1981")  # samordningsnummer: day + 60
    for bad in ("811218-9875", "12345", "811318-9876x", "20991218-9876"):
        with pytest.raises(DomainError) as err:
            normalise(bad, TODAY)
        assert err.value.code == "INVALID_PERSONAL_IDENTITY_NUMBER"
        assert bad not in err.value.message


def test_enrolment_keeps_only_a_keyed_hash_and_refuses_the_same_person_twice(db, world):
    c, provider, *_ = world
    p = enroll(db, c, provider)
    assert p.identity_hash and len(p.identity_hash) == 64 and "9876" not in p.identity_hash
    before = table_counts(db)
    with pytest.raises(DomainError) as err:
        enroll(db, c, provider, pnr="8112189876")  # the same person written another way
    assert err.value.code == "DUPLICATE_PARTICIPANT"
    assert table_counts(db) == before


def test_evidence_rules(db, world):
    c, provider, verifier, *_ = world
    p = enroll(db, c, provider)
    ok = submit(db, c, provider, uc.Claim(p.id, "SCHOOL_PASS", achieved_on=date(2026, 6, 10), documents=(DOC,)))
    assert ok.status == "SUBMITTED" and ok.documents[0].sha256 == "a" * 64
    before = table_counts(db)
    cases = [
        (uc.Claim(p.id, "SCHOOL_PASS", achieved_on=date(2026, 6, 11)), "DUPLICATE_CLAIM"),
        (uc.Claim(p.id, "NO_SUCH", achieved_on=date(2026, 6, 11)), "UNKNOWN_METRIC"),
        (uc.Claim(p.id, "ATTENDANCE", achieved_on=date(2026, 12, 1)), "DATE_IN_FUTURE"),
        (uc.Claim(p.id, "ATTENDANCE", achieved_on=date(2026, 1, 15)), "BEFORE_ENROLMENT"),
        (uc.Claim(99999, "ATTENDANCE", achieved_on=date(2026, 6, 1)), "UNKNOWN_PARTICIPANT"),
        (uc.Claim(p.id, "ATTENDANCE", achieved_on=date(2026, 6, 1), documents=(uc.Document("xyz", "a", "b"),)), "INVALID_SHA256"),
        (uc.Claim(p.id, "CARE_DAYS", period_start=date(2026, 1, 1), period_end=date(2026, 6, 30)), "VALUE_REQUIRED"),
    ]
    for claim, code in cases:
        with pytest.raises(DomainError) as err:
            submit(db, c, provider, claim)
        assert err.value.code == code, claim
    assert table_counts(db) == before


def test_verification_by_the_contracts_verifier_only_and_once(db, world):
    c, provider, verifier, prov, ver = world
    p = enroll(db, c, provider)
    e = submit(db, c, provider, uc.Claim(p.id, "ATTENDANCE", achieved_on=date(2026, 6, 1)))
    for who, code in [(Actor("pia", "VERIFIER", prov.id), "UNKNOWN_EVIDENCE"), (provider, "PERMISSION_DENIED")]:
        with pytest.raises(DomainError) as err, db.uow() as uow:
            uc.verify_evidence(uow, actor=who, evidence_id=e.id, note=None)
        assert err.value.code == code
    with db.uow() as uow:
        assert uc.verify_evidence(uow, actor=verifier, evidence_id=e.id, note="Närvarolista kontrollerad").status == "VERIFIED"
        uow.commit()
    for fn, code in [(lambda uow: uc.verify_evidence(uow, actor=verifier, evidence_id=e.id, note=None), "ALREADY_DECIDED"),
                     (lambda uow: uc.reject_evidence(uow, actor=verifier, evidence_id=e.id, reason="x"), "ALREADY_DECIDED")]:
        with pytest.raises(DomainError) as err, db.uow() as uow:
            fn(uow)
        assert err.value.code == code
    with db.uow() as uow:
        assert uc.invalidate_evidence(uow, actor=FM, evidence_id=e.id, reason="Förfalskad").status == "INVALIDATED"
        uow.commit()
    # a rejected once-only claim does not block a new, corrected claim
    first = submit(db, c, provider, uc.Claim(p.id, "SCHOOL_PASS", achieved_on=date(2026, 6, 1)))
    with db.uow() as uow:
        uc.reject_evidence(uow, actor=verifier, evidence_id=first.id, reason="Fel datum")
        uow.commit()
    assert submit(db, c, provider, uc.Claim(p.id, "SCHOOL_PASS", achieved_on=date(2026, 6, 2))).status == "SUBMITTED"


def test_a_batch_is_all_or_nothing_with_each_bad_item_named(db, world):
    c, provider, *_ = world
    p = enroll(db, c, provider)
    before = table_counts(db)
    claims = [uc.Claim(p.id, "ATTENDANCE", achieved_on=date(2026, 6, d)) for d in range(1, 6)]
    claims[2] = uc.Claim(p.id, "NOPE", achieved_on=date(2026, 6, 3))
    claims[4] = uc.Claim(p.id, "ATTENDANCE", achieved_on=date(2027, 6, 3))
    with pytest.raises(MultipleErrors) as err, db.uow() as uow:
        uc.submit_evidence_batch(uow, actor=provider, contract_id=c.id, claims=claims, today=TODAY)
        uow.commit()
    assert [(e.field[:2], e.code) for e in err.value.errors] == [(["items", "2"], "UNKNOWN_METRIC"),
                                                                  (["items", "4"], "DATE_IN_FUTURE")]
    assert table_counts(db) == before


def test_measurements_for_cohort_metrics_only(db, world):
    c, provider, verifier, *_ = world
    with db.uow() as uow:
        m = uc.record_measurement(uow, actor=verifier, contract_id=c.id, metric_code="CARE_DAYS",
                                  period_start=date(2026, 1, 1), period_end=date(2026, 6, 30),
                                  observed_value=Decimal(3100), comparison_value=None, cohort_size=None, today=TODAY)
        uow.commit()
    assert m.observed_value == Decimal(3100)
    for code_, metric, start in [("MEASUREMENT_NOT_ALLOWED", "ATTENDANCE", date(2026, 7, 1)),
                                 ("OVERLAPPING_MEASUREMENT", "CARE_DAYS", date(2026, 6, 1))]:
        with pytest.raises(DomainError) as err, db.uow() as uow:
            uc.record_measurement(uow, actor=verifier, contract_id=c.id, metric_code=metric, period_start=start,
                                  period_end=date(2026, 9, 30), observed_value=Decimal(1), comparison_value=None,
                                  cohort_size=None, today=TODAY)
        assert err.value.code == code_
    with pytest.raises(DomainError) as err, db.uow() as uow:
        uc.record_measurement(uow, actor=provider, contract_id=c.id, metric_code="CARE_DAYS", period_start=date(2026, 7, 1),
                              period_end=date(2026, 9, 30), observed_value=Decimal(1), comparison_value=None,
                              cohort_size=None, today=TODAY)
    assert err.value.code == "PERMISSION_DENIED"


def test_suspended_contract_takes_no_new_evidence(db, world):
    from ledger import sanctions
    c, provider, *_ = world
    p = enroll(db, c, provider)
    with db.uow() as uow:
        sanctions.issue_sanction(uow, actor=FM, contract_id=c.id, level="SUSPENSION", reason="Brister")
        uow.commit()
    with pytest.raises(DomainError) as err:
        submit(db, c, provider, uc.Claim(p.id, "ATTENDANCE", achieved_on=date(2026, 6, 1)))
    assert err.value.code == "CONTRACT_SUSPENDED"


def test_no_identity_number_in_a_dump_of_the_whole_database(fresh_engine, tmp_path):
    # given enrolments committed to a real database, through the audited mutation path
    from ledger.audit import run_mutation
    from ledger.identity import redactor
    db = Database(fresh_engine)
    c, provider, *_ = _world_committed(db)
    numbers = ["19811218-9876", "811278-9873", "199001012385"]
    for i, pnr in enumerate(numbers):
        with db.uow() as uow:
            run_mutation(uow, actor=provider, operation="enrollParticipant",
                         params={"contractId": c.id, "personalIdentityNumber": pnr}, idempotency_key=f"k{i}",
                         action=lambda: uc.enroll_participant(
                             uow, actor=provider, secret=SECRET, contract_id=c.id, personal_identity_number=pnr,
                             external_ref=None, area=None, enrolled_on=date(2026, 2, 1), today=TODAY),
                         redact=redactor(SECRET))
            uow.commit()
    # when the whole database is dumped
    if fresh_engine.dialect.name == "sqlite":
        dump = "\n".join(fresh_engine.raw_connection().driver_connection.iterdump())
        dump += open(fresh_engine.url.database, "rb").read().decode("latin-1")
    else:
        url = fresh_engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        dump = subprocess.run(["pg_dump", url], capture_output=True, text=True, check=True).stdout
    # then no identity number appears, in any form
    for pnr in numbers:
        digits = pnr.replace("-", "")
        for form in {pnr, digits, digits[-10:], f"{digits[-10:-4]}-{digits[-4:]}"}:
            assert form not in dump, form


def _world_committed(db):
    fund, manager, muni, prov, ver = funded(db, FM)
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True)
    return c, Actor("pia", "PROVIDER", prov.id), Actor("vera", "VERIFIER", ver.id)


def test_a_batch_over_the_limit_is_refused_whole(db, world):
    c, provider, *_ = world
    p = enroll(db, c, provider)
    claims = [uc.Claim(p.id, "ATTENDANCE", achieved_on=date(2026, 6, 1))] * 1001
    before = table_counts(db)
    with pytest.raises(DomainError) as err, db.uow() as uow:
        uc.submit_evidence_batch(uow, actor=provider, contract_id=c.id, claims=claims, today=TODAY)
    assert err.value.code == "BATCH_TOO_LARGE"
    assert table_counts(db) == before
