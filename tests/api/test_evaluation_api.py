"""evaluationReport over GraphQL: full figures for fund managers and auditors, suppressed for the public."""
from __future__ import annotations

from tests.factories import party
from tests.ledger.test_evaluation_report import passes_and_care_days

Q = """{ evaluationReport { full
  byOwnership { ownership outcomes outcomeContracts leftOut costPerOutcome { amount } penalties { amount } }
  byPolicyArea { label contracts outcomes }
  byMetric { code unit quantity amountPaid { amount } costPerUnit { amount } } } }"""


def test_full_figures_for_auditors_and_suppressed_ones_for_the_public(api, db):
    # given
    passes_and_care_days(db, 10, policy_area="Skola")
    own = party(db, role="PROVIDER", name="Egen regi", ownership="PUBLIC_IN_HOUSE")
    passes_and_care_days(db, 2, provider=own, policy_area="Skola")
    # when
    full = api.ok(Q, token=api.token("AUDITOR"))["evaluationReport"]
    public = api.ok(Q)["evaluationReport"]
    # then
    assert full["full"] is True and public["full"] is False
    in_house = next(r for r in full["byOwnership"] if r["ownership"] == "PUBLIC_IN_HOUSE")
    assert in_house["outcomes"] == 2 and in_house["costPerOutcome"] == {"amount": "40000.00"}
    hidden = next(r for r in public["byOwnership"] if r["ownership"] == "PUBLIC_IN_HOUSE")
    assert hidden["outcomes"] is None and hidden["costPerOutcome"] is None and hidden["leftOut"] == 1
    assert {"code": "CARE_DAYS", "unit": "UNIT_IMPROVED", "quantity": "100", "amountPaid": {"amount": "125000.00"},
            "costPerUnit": {"amount": "1250.00"}} in full["byMetric"]
    assert full["byPolicyArea"] == [{"label": "Skola", "contracts": 2, "outcomes": 12}]


PUBLIC = """query($c: ID!) { publicResults(contractId: $c) { participants
  metrics { code participants achieved rate latestObserved } } }"""


def test_public_results_hide_small_cohorts_small_complements_and_show_zero(api, db):
    from datetime import date
    from decimal import Decimal

    from api.graphql.base import to_global_id
    from ledger import evidence as ev
    from ledger.access import Actor
    from ledger.contracts import MetricSpec
    from tests.factories import contract, funded, rate_card, sek
    fm = Actor("frida", "FUND_MANAGER")
    fund, manager, muni, prov, ver = funded(db, fm)
    recon = MetricSpec("RECONVICTIONS", "Undvikna återfall", "COMPARISON_THRESHOLD", "LOWER_IS_BETTER",
                       sek("3000.00"), threshold=Decimal("0.10"), baseline=Decimal("1.60"))
    c = contract(db, fm, fund, manager, muni, prov, ver, activate=True,
                 metrics=(rate_card("SCHOOL_PASS"), rate_card("ATTENDANCE", "12500.00"), recon))
    provider, verifier = Actor("pia", "PROVIDER", prov.id), Actor("vera", "VERIFIER", ver.id)
    today = date(2026, 11, 23)
    # given: 7 participants, 6 of whom passed; nobody with attendance; a cohort of 3 measured 0.6667
    with db.uow() as uow:
        for n in range(7):
            p = ev.enroll_participant(uow, actor=provider, secret=b"s" * 16, contract_id=c.id,
                                      personal_identity_number=None, external_ref=f"P{n}", area=None,
                                      enrolled_on=date(2026, 1, 10), today=today)
            if n < 6:
                e = ev.submit_evidence(uow, actor=provider, contract_id=c.id, today=today,
                                       claim=ev.Claim(p.id, "SCHOOL_PASS", achieved_on=date(2026, 3, 1)))
                ev.verify_evidence(uow, actor=verifier, evidence_id=e.id, note=None)
        ev.record_measurement(uow, actor=verifier, contract_id=c.id, metric_code="RECONVICTIONS",
                              period_start=date(2026, 1, 1), period_end=date(2026, 6, 30),
                              observed_value=Decimal("0.6667"), comparison_value=Decimal("1.60"), cohort_size=3,
                              today=today)
        uow.commit()
    # when
    res = api.ok(PUBLIC, {"c": to_global_id("OutcomeContract", c.id)})["publicResults"]
    # then
    metrics = {m["code"]: m for m in res["metrics"]}
    assert res["participants"] == 7
    assert metrics["SCHOOL_PASS"]["achieved"] is None and metrics["SCHOOL_PASS"]["rate"] is None  # 6 of 7
    assert metrics["ATTENDANCE"]["achieved"] == 0 and metrics["ATTENDANCE"]["rate"] == "0.0000"  # zero is zero
    assert metrics["RECONVICTIONS"]["latestObserved"] is None  # a cohort of 3
