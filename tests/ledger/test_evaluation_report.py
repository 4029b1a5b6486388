"""The evaluation report: each metric in its own unit, groups with penalties and the contracts behind them."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ledger import calculations, contracts, reports, sanctions
from ledger import evidence as ev
from ledger.access import Actor
from ledger.contracts import MetricSpec
from tests.factories import contract, funded, party, rate_card, sek

FM = Actor("frida", "FUND_MANAGER")
FM2 = Actor("gustav", "FUND_MANAGER")
SECRET = b"test-secret-for-hmac-0123456789"
TODAY = date(2026, 11, 23)
H1 = (date(2026, 1, 1), date(2026, 6, 30))


def care_days(price: str = "1250.00") -> MetricSpec:
    return MetricSpec("CARE_DAYS", "Undvikna vårddygn", "BASELINE_IMPROVEMENT", "LOWER_IS_BETTER", sek(price),
                      baseline=Decimal(3650))


def pay(db, contract_id: int, period=H1) -> None:
    with db.uow() as uow:
        p = calculations.calculate_payout(uow, actor=FM, contract_id=contract_id, period_start=period[0],
                                          period_end=period[1])
        uow.commit()
    with db.uow() as uow:
        calculations.approve_payout(uow, actor=FM2, payout_id=p.id)
        uow.commit()


def passes_and_care_days(db, passes: int, *, observed: str = "3550", provider=None, **kw):
    """A contract paying 40 000 per school pass and 1 250 per care day avoided: `passes` passes,
    3650 − observed care days avoided, all in posted payouts."""
    fund, manager, muni, prov, ver = funded(db, FM)
    prov = provider or prov
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True,
                 metrics=(rate_card("SCHOOL_PASS", "40000.00", once_only=True), care_days()), **kw)
    provider_actor, verifier = Actor("pia", "PROVIDER", prov.id), Actor("vera", "VERIFIER", ver.id)
    with db.uow() as uow:
        for n in range(max(passes, 6)):
            p = ev.enroll_participant(uow, actor=provider_actor, secret=SECRET, contract_id=c.id,
                                      personal_identity_number=None, external_ref=f"P{n}", area="URBAN",
                                      enrolled_on=date(2026, 1, 10), today=TODAY)
            if n < passes:
                e = ev.submit_evidence(uow, actor=provider_actor, contract_id=c.id, today=TODAY,
                                       claim=ev.Claim(p.id, "SCHOOL_PASS", achieved_on=date(2026, 3, 1)))
                ev.verify_evidence(uow, actor=verifier, evidence_id=e.id, note=None)
        ev.record_measurement(uow, actor=verifier, contract_id=c.id, metric_code="CARE_DAYS", period_start=H1[0],
                              period_end=H1[1], observed_value=Decimal(observed), comparison_value=None,
                              cohort_size=None, today=TODAY)
        uow.commit()
    pay(db, c.id)
    return c


def figures(report, code):
    return next(f for f in report.by_metric if f.code == code)


def test_cost_per_school_pass_is_the_money_of_school_passes_over_school_passes(db):
    # given: 10 passes at 40 000 and 100 care days avoided at 1 250 (125 000) in one contract
    c = passes_and_care_days(db, 10)
    # when
    with db.reading() as s:
        report = reports.evaluation_report(s, full=True)
    # then: 40 000 per pass, not (400 000 + 125 000) / 10 = 52 500
    row = next(r for r in report.by_contract if r.key == f"contract:{c.id}")
    assert row.outcomes == 10 and row.amount_paid_minor == 52_500_000
    assert row.cost_per_outcome_minor == 4_000_000
    school, care = figures(report, "SCHOOL_PASS"), figures(report, "CARE_DAYS")
    assert (school.unit, school.quantity, school.cost_per_unit_minor) == ("OUTCOME", 10, 4_000_000)
    assert (care.unit, care.quantity, care.cost_per_unit_minor) == ("UNIT_IMPROVED", 100, 125_000)
    assert row.outcome_units == 100 and row.cost_per_unit_minor == 125_000  # per care day avoided


def test_a_measured_metric_dropped_by_an_amendment_is_not_counted_as_outcomes(db):
    # given: 2 passes and 100 care days paid, then an amendment drops CARE_DAYS
    c = passes_and_care_days(db, 2)
    with db.uow() as uow:
        contracts.amend_contract(uow, actor=FM, contract_id=c.id, effective_date=date(2026, 7, 1),
                                 reason="Vårddygnen mäts inte längre",
                                 metrics=(rate_card("SCHOOL_PASS", "40000.00", once_only=True),))
        uow.commit()
    # when
    with db.reading() as s:
        report = reports.evaluation_report(s, full=True)
    # then: 2 outcomes (not 102), and the care days stay care days
    row = next(r for r in report.by_contract if r.key == f"contract:{c.id}")
    assert row.outcomes == 2 and row.outcome_units == 100
    assert row.cost_per_outcome_minor == 4_000_000
    assert figures(report, "CARE_DAYS").kind == "BASELINE_IMPROVEMENT"


def test_groups_carry_penalties_and_the_contracts_behind_each_figure(db):
    # given: a private provider (10 passes) and a public in-house one (2 passes) with a penalty
    private = passes_and_care_days(db, 10, policy_area="Skola")
    in_house = party(db, role="PROVIDER", name="Kommunens egen regi", ownership="PUBLIC_IN_HOUSE")
    own = passes_and_care_days(db, 2, provider=in_house, policy_area="Skola")
    with db.uow() as uow:
        sanctions.issue_sanction(uow, actor=FM, contract_id=own.id, level="PENALTY", reason="Sen rapportering",
                                 penalty=sek("5000.00"))
        uow.commit()
    # when
    with db.reading() as s:
        full = reports.evaluation_report(s, full=True)
        public = reports.evaluation_report(s, full=False)
    # then: fund managers and auditors see the in-house row in full, penalty included
    row = {r.ownership: r for r in full.by_ownership}
    assert (row["PUBLIC_IN_HOUSE"].outcomes, row["PUBLIC_IN_HOUSE"].penalties_minor) == (2, 500_000)
    assert row["PUBLIC_IN_HOUSE"].cost_per_outcome_minor == 4_000_000 and row["PUBLIC_IN_HOUSE"].penalty_contracts == 1
    assert (row["PRIVATE"].outcomes, row["PRIVATE"].penalties_minor, row["PRIVATE"].contracts) == (10, 0, 1)
    area = next(r for r in full.by_policy_area if r.label == "Skola")
    assert (area.contracts, area.outcomes, area.outcome_contracts, area.penalties_minor) == (2, 12, 2, 500_000)
    assert area.cost_per_outcome_minor == 4_000_000
    # the public: 2 outcomes are suppressed, and so is the money that would give them away; the
    # policy-area total is the published part only, and says one figure is left out
    prow = {r.ownership: r for r in public.by_ownership}
    assert prow["PUBLIC_IN_HOUSE"].outcomes is None and prow["PUBLIC_IN_HOUSE"].left_out == 1
    assert prow["PUBLIC_IN_HOUSE"].penalties_minor == 500_000
    parea = next(r for r in public.by_policy_area if r.label == "Skola")
    assert (parea.outcomes, parea.outcome_contracts, parea.left_out) == (10, 1, 1)
    assert parea.outcome_paid_minor == 40_000_000
    school = [f for f in public.by_metric if f.code == "SCHOOL_PASS"]
    assert sorted((f.quantity, f.amount_paid_minor) for f in school if f.quantity is not None) == [(10, 40_000_000)]
    assert [(f.quantity, f.amount_paid_minor) for f in school if f.quantity is None] == [(None, None)]


@pytest.mark.parametrize("passes", [0, 5])
def test_zero_is_published_as_zero(db, passes):
    passes_and_care_days(db, passes)
    with db.reading() as s:
        public = reports.evaluation_report(s, full=False)
    assert figures(public, "SCHOOL_PASS").quantity == passes
