"""INDIGO 4.1.0 export: valid against the official schemas, codelists and references; private data left out."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select

from ledger import demo
from ledger.access import Actor
from ledger.errors import DomainError
from ledger.models import OutcomeContract
from ledger.publishing import indigo, indigo_export
from tests.indigo_schema import assert_valid_export
from tests.ledger.test_calculations import case_a  # noqa: F401  (a fixture)

FM = Actor("frida", "FUND_MANAGER")
SECRET = b"test-secret-for-hmac-0123456789"
TODAY = date(2026, 11, 23)


@dataclass(frozen=True)
class C:
    id: int
    title: str
    municipality_id: int
    provider_id: int


def contracts_by_title(db) -> dict[str, C]:
    with db.reading() as s:
        return {c.title: C(c.id, c.title, c.municipality_id, c.provider_id) for c in s.scalars(select(OutcomeContract))}


def export(db, contract_id: int, *, public: bool, actor=FM) -> dict:
    with db.reading() as s:
        return indigo_export.export_project(s, actor=actor, contract_id=contract_id, public=public)


def test_the_demo_contracts_export_as_valid_indigo_projects(db):
    # given
    demo.load(db, today=TODAY, secret=SECRET)
    school = contracts_by_title(db)["Fullständiga betyg i Umeå"]
    # when
    docs = {(c.title, public): export(db, c.id, public=public) for c in contracts_by_title(db).values()
            for public in (True, False)}
    # then: every export validates, with codelists and cross-references
    for doc in docs.values():
        assert_valid_export(doc)
    full = docs[(school.title, False)]
    project = full["project"]["data"]
    assert full["project"]["id"] == f"INDIGOPROJECT-SE-UTF-{school.id}"
    assert full["fund"]["id"].startswith("INDIGOFUND-SE-UTF-") and full["indigo_version"] == "4.1.0"
    assert project["purpose_and_classifications"]["policy_sector"] == {"value": "Education"}
    assert project["service_provisions"][0]["organisation_role_category"] == {"value": "For-profit"}
    pricing = {p["outcome_metric_id"]["value"]: p for p in project["outcome_pricings"]}
    assert pricing["SCHOOL_PASS"]["price_per_unit"]["amount"] == {"value": 40000}
    assert "+15 % for participants in area RURAL" in pricing["SCHOOL_PASS"]["price_description"]["value"]
    assert {c["organisation_id"]["value"] for c in project["outcome_payment_commitments"]} <= \
        {o["id"] for o in full["organisations"]}
    # two paid half-years: results per period and metric, outcome payments per payer, and the payments made
    periods = {(r["period"]["start_date"]["value"], r["outcome_metric_id"]["value"]) for r in project["results"]}
    assert ("2025-01-01", "SCHOOL_PASS") in periods and ("2025-07-01", "ATTENDANCE") in periods
    assert sum(Decimal(str(p["money"]["amount"]["value"])) for p in project["outcome_payments"]) == \
        Decimal(str(project["overall_project_finance"]["total_outcome_payments_made"]["amount"]["value"]))
    assert project["transactions"] and all(t["transaction_type"] == {"value": "Outcome Payment"}
                                           for t in project["transactions"])
    sectors = {docs[(t, True)]["project"]["data"]["purpose_and_classifications"].get("policy_sector", {}).get("value")
               for t, _ in docs}
    assert sectors == {"Education", "Health", "Criminal justice"}
    in_house = docs[("Minskat återfall i brott i Gävle", True)]["project"]["data"]
    assert in_house["service_provisions"][0]["organisation_role_category"] == \
        {"value": "Government/Public Sector/Public Bank"}
    # ids never change: the same export twice is the same document
    assert export(db, school.id, public=False) == full


def test_a_private_field_is_left_out_of_the_public_export_only(db):
    # given
    demo.load(db, today=TODAY, secret=SECRET)
    school = contracts_by_title(db)["Fullständiga betyg i Umeå"]
    # when
    with db.uow() as uow:
        indigo_export.set_field_status(uow, actor=FM, contract_id=school.id, path="outcome_payments", status="PRIVATE")
        indigo_export.set_field_status(uow, actor=FM, contract_id=school.id, path="outcome_metrics", status="PRIVATE")
        indigo_export.set_field_status(uow, actor=FM, contract_id=school.id,
                                       path="overall_project_finance.total_outcome_payments_made.amount",
                                       status="PRIVATE")
        uow.commit()
    public, private = export(db, school.id, public=True, actor=None), export(db, school.id, public=False)
    # then
    assert_valid_export(public)
    assert_valid_export(private)
    data = public["project"]["data"]
    assert "outcome_payments" not in data and "outcome_metrics" not in data
    # nothing public points at what was left out
    assert "outcome_pricings" not in data and "results" not in data
    assert "amount" not in data["overall_project_finance"]["total_outcome_payments_made"]
    assert {p["status"] for p in private["project"]["data"]["outcome_payments"]} == {"PRIVATE"}
    # and PUBLIC again brings it back
    with db.uow() as uow:
        indigo_export.set_field_status(uow, actor=FM, contract_id=school.id, path="outcome_payments", status="PUBLIC")
        uow.commit()
    assert export(db, school.id, public=True, actor=None)["project"]["data"]["outcome_payments"]


def test_only_fund_managers_mark_fields_and_only_known_ones(db):
    demo.load(db, today=TODAY, secret=SECRET)
    school = contracts_by_title(db)["Fullständiga betyg i Umeå"]
    with db.uow() as uow, pytest.raises(DomainError) as err:
        indigo_export.set_field_status(uow, actor=FM, contract_id=school.id, path="project.secret", status="PRIVATE")
    assert err.value.code == "UNKNOWN_INDIGO_FIELD"
    with db.uow() as uow, pytest.raises(DomainError) as err:
        indigo_export.set_field_status(uow, actor=Actor("anders", "AUDITOR"), contract_id=school.id,
                                       path="outcome_payments", status="PRIVATE")
    assert err.value.code == "READ_ONLY_ROLE"


def test_private_export_is_for_the_contracts_parties_and_the_all_seeing(db):
    demo.load(db, today=TODAY, secret=SECRET)
    by_title = contracts_by_title(db)
    school, care = by_title["Fullständiga betyg i Umeå"], by_title["Färre vårddygn i Malmö"]
    own = Actor("maja", "MUNICIPALITY", school.municipality_id)
    assert export(db, school.id, public=False, actor=own)["project"]["id"].endswith(str(school.id))
    for caller in (own, None, Actor("pia", "PROVIDER", school.provider_id)):
        with pytest.raises(DomainError) as err:
            export(db, care.id, public=False, actor=caller)
        assert err.value.code == "UNKNOWN_CONTRACT"
    assert export(db, care.id, public=True, actor=own)["project"]["data"]["name"] == {"value": care.title}


def test_payment_plans_investments_and_disputes_map_when_other_parts_supply_them(db):
    # given: a demo contract's facts, plus hand-made plans, an investment and a dispute (the pure mapping)
    demo.load(db, today=TODAY, secret=SECRET)
    school = contracts_by_title(db)["Fullständiga betyg i Umeå"]
    with db.reading() as s:
        facts = indigo_export.read_facts(s, s.get(OutcomeContract, school.id))
    plans = (indigo.PaymentPlanFacts(date(2025, 1, 1), date(2025, 6, 30)),
             indigo.PaymentPlanFacts(date(2025, 7, 1), date(2025, 12, 31)))
    investor = indigo.Organisation(10_000, "Sociala Investeringar AB", "INVESTOR", None, "556677-8899")
    payout = facts.outcome_payments[0].payout_id
    from dataclasses import replace
    facts = replace(
        facts, payment_plans=plans, organisations=facts.organisations + (investor,),
        outcome_payments=tuple(replace(p, plan_id=indigo.plan_id(plans[0] if p.period_start.month == 1 else plans[1]))
                               for p in facts.outcome_payments),
        investments=(indigo.InvestmentFacts(1, investor.id, Decimal("2000000.00"), Decimal("500000.00"), Decimal("8"),
                                            ((date(2025, 1, 15), Decimal("500000.00")),)),),
        disputed=frozenset({("outcome_payments", f"payout:{payout}")}))
    # when
    doc = indigo.project_export(facts, public=True)
    # then
    assert_valid_export(doc)
    data = doc["project"]["data"]
    assert [p["id"]["value"] for p in data["outcome_payment_plans"]] == ["PLAN-2025-01-01", "PLAN-2025-07-01"]
    assert data["investments"][0]["organisation_id"] == {"value": "INDIGOORG-SE-UTF-10000"}
    assert any(t.get("investment_id") == {"value": "INVESTMENT-1"} for t in data["transactions"])
    assert "DISPUTED" in {p["status"] for p in data["outcome_payments"]}
    json.dumps(doc)  # plain JSON: no Decimal or date left


def test_small_cohorts_are_left_out_of_the_public_export():
    f = indigo.ProjectFacts(
        contract_id=1, title="Liten kohort", status="ACTIVE", policy_area="Arbete", currency="SEK",
        start_date=date(2026, 1, 1), end_date=date(2026, 12, 31), signed_on=date(2026, 1, 1), ended_on=None,
        max_value=Decimal("100000.00"), paid=Decimal("80000.00"), participants=3,
        fund=indigo.FundFacts(1, "Fonden", 1, "SEK", Decimal("1000000.00"), 1),
        municipality_id=2, provider_id=3, verifier_id=None,
        organisations=(indigo.Organisation(1, "Fonden", "FUND"), indigo.Organisation(2, "Kommunen", "MUNICIPALITY"),
                       indigo.Organisation(3, "Bolaget", "PROVIDER", "PRIVATE")),
        payers=(indigo.PayerCommitment(1, Decimal(100), Decimal("80000.00")),),
        metrics=(indigo.MetricFacts("JOB", "Jobb", "RATE_CARD", "HIGHER_IS_BETTER", Decimal("40000.00")),),
        results=(indigo.ResultFacts("JOB", date(2026, 1, 1), date(2026, 6, 30), 3, 2, Decimal(2)),))
    public, full = indigo.project_export(f, public=True), indigo.project_export(f, public=False)
    assert_valid_export(public)
    assert "actual_number_service_users_or_beneficiaries_total" not in public["project"]["data"]["service_and_beneficiaries"]
    result = public["project"]["data"]["results"][0]
    assert "number_with_positive_social_outcomes" not in result and "number_engaged_in_impact_bond" not in result
    assert full["project"]["data"]["results"][0]["number_with_positive_social_outcomes"] == {"value": 2}
    assert public["project"]["data"]["purpose_and_classifications"]["policy_sector"] == \
        {"value": "Employment and training"}


# --- the facts from the schedule, the commitments, disputes and investments, on a real database ---

def test_a_scheduled_contracts_payment_plans_are_its_schedule_and_its_payouts_refer_to_them(db):
    from tests.ledger.test_contract_schedule import claim, enrol, pay, scheduled
    # given: a half-yearly contract over 2025–2026 with H1 2025 paid
    w = scheduled(db, frequency="HALF_YEARLY", start=date(2025, 1, 1), end=date(2026, 12, 31), window=60)
    claim(db, w, enrol(db, w, "P1"), date(2025, 3, 1), today=date(2025, 4, 1))
    pay(db, w, date(2025, 1, 1), date(2025, 6, 30))
    # when
    private, public = export(db, w["contract"].id, public=False), export(db, w["contract"].id, public=True)
    # then: one plan per scheduled period, with its claim deadline, and each payment names its plan
    assert_valid_export(private)
    assert_valid_export(public)
    plans = private["project"]["data"]["outcome_payment_plans"]
    assert [(p["id"]["value"], p["period"]["end_date"]["value"]) for p in plans] == [
        ("PLAN-2025-01-01", "2025-06-30"), ("PLAN-2025-07-01", "2025-12-31"),
        ("PLAN-2026-01-01", "2026-06-30"), ("PLAN-2026-07-01", "2026-12-31")]
    assert plans[0]["notes"] == "Claims for the period are accepted until 2025-08-29"
    payments = public["project"]["data"]["outcome_payments"]
    assert payments and {p["outcome_payment_plan_id"]["value"] for p in payments} == {"PLAN-2025-01-01"}
    # a plan marked private goes, and no public payment points at it
    with db.uow() as uow:
        indigo_export.set_field_status(uow, actor=FM, contract_id=w["contract"].id, path="outcome_payment_plans",
                                       status="PRIVATE")
        uow.commit()
    public = export(db, w["contract"].id, public=True)
    assert_valid_export(public)
    assert "outcome_payment_plans" not in public["project"]["data"]
    assert all("outcome_payment_plan_id" not in p for p in public["project"]["data"]["outcome_payments"])


def test_a_payer_with_a_max_amount_commits_at_most_that(db):
    from ledger.contracts import ShareSpec
    from tests.factories import contract, funded, party, sek
    # given: the fund pays 20 %, the municipality 50 % and a region 30 % of 10 MSEK, but at most 2 MSEK
    fund, manager, muni, prov, ver = funded(db, FM)
    region = party(db, role="MUNICIPALITY", name="Region Västerbotten")
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True, max_value="10000000.00", shares=(
        ShareSpec(manager.id, Decimal(20)), ShareSpec(muni.id, Decimal(50)),
        ShareSpec(region.id, Decimal(30), sek("2000000.00"))))
    # when
    for public in (True, False):
        doc = export(db, c.id, public=public, actor=None if public else FM)
        # then: the region's commitment is its maxAmount, not its 3 MSEK share; the others their shares
        assert_valid_export(doc)
        committed = {x["organisation_id"]["value"]: x["maximum_potential_outcome_payment"]["amount"]["value"]
                     for x in doc["project"]["data"]["outcome_payment_commitments"]}
        assert committed == {indigo.organisation_id(manager.id): 2_000_000, indigo.organisation_id(muni.id): 5_000_000,
                             indigo.organisation_id(region.id): 2_000_000}


def test_an_open_dispute_marks_what_it_questions_disputed_until_it_is_resolved(db):
    from tests.ledger.test_corrections import approve, calc, dispute, reject_new_claim, resolve, two_passes_world
    # given: H1 2026 paid, then a rejected claim of April 2026
    w = two_passes_world(db)
    posted = approve(db, calc(db, w))
    rejected = reject_new_claim(db, w)
    cid = w["contract"].id
    # when the provider disputes the payout and the rejection
    on_payout, on_claim = dispute(db, w, "PAYOUT", posted.id), dispute(db, w, "EVIDENCE", rejected.id)
    # then: the payout's outcome payments are DISPUTED, in the public export too, and so is the
    # H1 result the rejected claim would change if upheld
    for public in (True, False):
        doc = export(db, cid, public=public)
        assert_valid_export(doc)
        data = doc["project"]["data"]
        assert {(p["notes"], p["status"]) for p in data["outcome_payments"]} == {(f"payout:{posted.id}", "DISPUTED")}
        assert [(r["period"]["start_date"]["value"], r["status"]) for r in data["results"]] == \
            [("2026-01-01", "DISPUTED")]
    # a fund manager marking the list PUBLIC does not hide an open dispute; PRIVATE still leaves it out
    with db.uow() as uow:
        indigo_export.set_field_status(uow, actor=FM, contract_id=cid, path="outcome_payments", status="PUBLIC")
        uow.commit()
    assert {p["status"] for p in export(db, cid, public=True)["project"]["data"]["outcome_payments"]} == {"DISPUTED"}
    # when both disputes are resolved: nothing is disputed any more
    resolve(db, on_payout, "DISMISSED", actor=Actor("hanna", "FUND_MANAGER"))
    resolve(db, on_claim, "DISMISSED")
    data = export(db, cid, public=False)["project"]["data"]
    assert {p["status"] for p in data["outcome_payments"]} == {"PUBLIC"}
    assert {r["status"] for r in data["results"]} == {"PUBLIC"}


def test_a_contracts_investments_and_drawdowns_export_with_their_investor(db, case_a):
    from tests.ledger.test_calculations import approve, calc
    from tests.ledger.test_investments import make_bond
    # given: Case A with a senior 50 000 (20 % cap) and a subordinate 25 000 (50 % cap), drawn in three drawdowns
    w = make_bond(db, dict(case_a))
    approve(db, calc(db, w))
    cid, investor = w["contract"].id, indigo.organisation_id(w["investor"].id)
    # when
    private, public = export(db, cid, public=False), export(db, cid, public=True)
    # then
    for doc in (private, public):
        assert_valid_export(doc)
        data = doc["project"]["data"]
        assert [(i["id"], i["organisation_id"]["value"], i["investment_commitment"]["amount"]["exact"]["value"],
                 i["maximum_potential_return"]["value"]) for i in data["investments"]] == [
            (f"INVESTMENT-{w['a'].id}", investor, 50000, 20), (f"INVESTMENT-{w['b'].id}", investor, 25000, 50)]
        drawdowns = [(t["investment_id"]["value"], t["date"]["value"], t["money"]["amount"]["value"])
                     for t in data["transactions"] if "investment_id" in t]
        assert drawdowns == [(f"INVESTMENT-{w['a'].id}", "2026-01-15", 50000),
                             (f"INVESTMENT-{w['b'].id}", "2026-01-15", 10000),
                             (f"INVESTMENT-{w['b'].id}", "2026-02-15", 15000)]
        assert investor in {o["id"] for o in doc["organisations"]}
    # when the fund manager marks the investments private: the public export has neither them,
    # their drawdowns nor the investor; the private export keeps them
    with db.uow() as uow:
        indigo_export.set_field_status(uow, actor=FM, contract_id=cid, path="investments", status="PRIVATE")
        uow.commit()
    public = export(db, cid, public=True, actor=None)
    assert_valid_export(public)
    assert "investments" not in public["project"]["data"]
    assert all("investment_id" not in t for t in public["project"]["data"].get("transactions", []))
    assert investor not in {o["id"] for o in public["organisations"]}
    assert len(export(db, cid, public=False)["project"]["data"]["investments"]) == 2
