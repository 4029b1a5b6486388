"""A contract over its life (PAYOUTS.md §6): the schedule, supplementary payouts, claim windows,
late claims, run-off, termination at a date and closing."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from ledger import calculations, commitments, contracts, schedule
from ledger import evidence as ev
from ledger.access import Actor
from ledger.errors import DomainError
from tests.conftest import table_counts
from tests.factories import funded, rate_card, sek

FM = Actor("frida", "FUND_MANAGER")
FM2 = Actor("gustav", "FUND_MANAGER")
SECRET = b"test-secret-for-hmac-0123456789"


def scheduled(db, *, frequency="QUARTERLY", start=date(2025, 1, 1), end=date(2026, 12, 31), service_end=None,
              outcomes_end=None, window=90, metrics=None, activate=True):
    fund, manager, muni, prov, ver = funded(db, FM)
    with db.uow() as uow:
        c = contracts.create_contract(
            uow, actor=FM, title="Schemalagt", fund_id=fund.id, municipality_id=muni.id, provider_id=prov.id,
            verifier_id=ver.id, investor_id=None, policy_area="school", start_date=start, end_date=end,
            terms=contracts.TermsSpec(max_value=sek("10000000.00"), participant_cap=None,
                                      payer_shares=(contracts.ShareSpec(manager.id, Decimal(50)),
                                                    contracts.ShareSpec(muni.id, Decimal(50))),
                                      metrics=tuple(metrics or (rate_card(),))),
            payment_frequency=frequency, service_end_date=service_end, outcomes_end_date=outcomes_end,
            claim_window_days=window)
        if activate:
            contracts.activate_contract(uow, actor=FM, contract_id=c.id)
        uow.commit()
    return dict(fund=fund, manager=manager, muni=muni, prov=prov, ver=ver, contract=c,
                provider=Actor("pia", "PROVIDER", prov.id), verifier=Actor("vera", "VERIFIER", ver.id))


def enrol(db, w, ref, on=date(2025, 1, 10), today=date(2025, 2, 1)):
    with db.uow() as uow:
        p = ev.enroll_participant(uow, actor=w["provider"], secret=SECRET, contract_id=w["contract"].id,
                                  personal_identity_number=None, external_ref=ref, area=None, enrolled_on=on, today=today)
        uow.commit()
    return p


def claim(db, w, participant, achieved, today, code="SCHOOL_PASS", verify=True):
    with db.uow() as uow:
        e = ev.submit_evidence(uow, actor=w["provider"], contract_id=w["contract"].id, today=today,
                               claim=ev.Claim(participant.id, code, achieved_on=achieved))
        if verify:
            ev.verify_evidence(uow, actor=w["verifier"], evidence_id=e.id, note=None)
        uow.commit()
    return e


def pay(db, w, start, end):
    with db.uow() as uow:
        p = calculations.calculate_payout(uow, actor=FM, contract_id=w["contract"].id, period_start=start, period_end=end)
        uow.commit()
    with db.uow() as uow:
        p = calculations.approve_payout(uow, actor=FM2, payout_id=p.id)
        uow.commit()
    return p


def test_the_schedule_tiles_the_contract_from_start_to_outcomes_end():
    ps = schedule.periods(date(2026, 1, 31), date(2026, 8, 15), "QUARTERLY", 90)
    assert [(p.start, p.end) for p in ps] == [
        (date(2026, 1, 31), date(2026, 4, 29)), (date(2026, 4, 30), date(2026, 7, 30)), (date(2026, 7, 31), date(2026, 8, 15))]
    assert ps[-1].claim_deadline == date(2026, 11, 13)


@given(start=st.dates(date(2020, 1, 1), date(2030, 12, 31)), days=st.integers(0, 2000),
       frequency=st.sampled_from(sorted(schedule.MONTHS)), window=st.integers(0, 365))
@hsettings(max_examples=200, deadline=None)
def test_property_scheduled_periods_tile_the_term_without_gap_or_overlap(start, days, frequency, window):
    from datetime import timedelta
    last = start + timedelta(days=days)
    ps = schedule.periods(start, last, frequency, window)
    assert ps[0].start == start and ps[-1].end == last
    for a, b in zip(ps, ps[1:]):
        assert b.start == a.end + timedelta(days=1)
    assert all(p.start <= p.end and p.claim_deadline == p.end + timedelta(days=window) for p in ps)


def test_payouts_take_exactly_a_scheduled_period_and_supplementary_ones_respect_the_period_cap(db):
    # given a quarterly contract whose metric is capped at 100 000 a quarter
    w = scheduled(db, metrics=(rate_card(cap_per_period=sek("100000.00")),))
    people = [enrol(db, w, f"P{i}") for i in range(4)]
    for p in people[:2]:
        claim(db, w, p, date(2025, 2, 1), today=date(2025, 3, 1))
    # a period that is not in the schedule is refused
    with pytest.raises(DomainError) as err, db.uow() as uow:
        calculations.calculate_payout(uow, actor=FM, contract_id=w["contract"].id, period_start=date(2025, 2, 1),
                                      period_end=date(2025, 2, 28))
    assert err.value.code == "PERIOD_NOT_IN_SCHEDULE"
    first = pay(db, w, date(2025, 1, 1), date(2025, 3, 31))
    assert first.total_minor == 8_000_000
    # when two more Q1 outcomes are verified late, a supplementary payout of Q1 pays them up to the cap
    for p in people[2:]:
        claim(db, w, p, date(2025, 3, 15), today=date(2025, 4, 20))
    supplementary = pay(db, w, date(2025, 1, 1), date(2025, 3, 31))
    assert supplementary.total_minor == 2_000_000  # 100 000 − 80 000 already paid in Q1
    assert [x.caps for x in supplementary.lines] == ["METRIC_CAP_PER_PERIOD=60000.00"]
    assert {x["period"] for x in [{"period": (s.period_start, s.period_end)} for s in (first, supplementary)]} == \
        {(date(2025, 1, 1), date(2025, 3, 31))}


def test_an_unscheduled_contract_refuses_overlapping_periods(db):
    # the reproduced case: cap 10 000 a quarter, Q1 paid, then 1–28 February again
    from tests.factories import contract
    fund, manager, muni, prov, ver = funded(db, FM)
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True,
                 metrics=(rate_card(price="10000.00", cap_per_period=sek("10000.00")),))
    w = dict(contract=c, provider=Actor("pia", "PROVIDER", prov.id), verifier=Actor("vera", "VERIFIER", ver.id))
    a, b = enrol(db, w, "A", on=date(2026, 1, 10), today=date(2026, 2, 1)), enrol(db, w, "B", on=date(2026, 1, 10), today=date(2026, 2, 1))
    claim(db, w, a, date(2026, 2, 1), today=date(2026, 4, 1))
    pay(db, w, date(2026, 1, 1), date(2026, 3, 31))
    claim(db, w, b, date(2026, 2, 2), today=date(2026, 4, 1))
    before = table_counts(db)
    with pytest.raises(DomainError) as err, db.uow() as uow:
        calculations.calculate_payout(uow, actor=FM, contract_id=c.id, period_start=date(2026, 2, 1),
                                      period_end=date(2026, 2, 28))
    assert err.value.code == "PERIOD_OVERLAPS"
    assert table_counts(db) == before
    # the same period again is a supplementary payout, and the quarter's cap is already used
    assert pay(db, w, date(2026, 1, 1), date(2026, 3, 31)).total_minor == 0


@pytest.mark.parametrize("kw,code,field", [
    (dict(outcomes_end=date(2026, 6, 30), service_end=date(2026, 9, 30)), "INVALID_SCHEDULE", ["outcomesEndDate"]),
    (dict(window=-1), "INVALID_SCHEDULE", ["claimWindowDays"]),
    (dict(service_end=date(2024, 12, 31)), "INVALID_SCHEDULE", ["serviceEndDate"]),
    (dict(outcomes_end=date(2027, 3, 31)), "INVALID_SCHEDULE", ["outcomesEndDate"]),
    (dict(frequency="WEEKLY"), "INVALID_SCHEDULE", ["paymentFrequency"]),
])
def test_a_schedule_that_does_not_fit_is_refused_and_nothing_written(db, kw, code, field):
    funded(db, FM)
    before = table_counts(db)
    with pytest.raises(DomainError) as err:
        scheduled(db, **kw)
    assert (err.value.code, err.value.field) == (code, field)


def test_claim_windows_and_a_late_claim_granted_by_a_fund_manager(db):
    w = scheduled(db, window=30)
    p = enrol(db, w, "P1")
    # within Q1's window (Q1 ends 31 March, the window closes 30 April)
    claim(db, w, p, date(2025, 2, 1), today=date(2025, 4, 30), verify=False)
    before = table_counts(db)
    with pytest.raises(DomainError) as err:
        claim(db, w, p, date(2025, 3, 1), today=date(2025, 5, 1), verify=False)
    assert err.value.code == "CLAIM_WINDOW_CLOSED"
    assert table_counts(db) == before
    # a fund manager opens it for this participant until 15 May, with a reason
    with db.uow() as uow:
        grant = ev.grant_late_claim(uow, actor=FM, contract_id=w["contract"].id, reason="Skolverket sent the grades late",
                                    until=date(2025, 5, 15), participant_id=p.id, metric_code=None, today=date(2025, 5, 2))
        uow.commit()
    assert grant.granted_by and grant.until == date(2025, 5, 15)
    claim(db, w, p, date(2025, 3, 1), today=date(2025, 5, 15), verify=False)
    with pytest.raises(DomainError) as err:
        claim(db, w, p, date(2025, 3, 2), today=date(2025, 5, 16), verify=False)
    assert err.value.code == "CLAIM_WINDOW_CLOSED"
    # only a fund manager grants, and the deadline is not in the past
    for actor, until, code in [(w["provider"], date(2025, 6, 1), "PERMISSION_DENIED"), (FM, date(2025, 5, 1), "INVALID_DATE")]:
        with pytest.raises(DomainError) as err, db.uow() as uow:
            ev.grant_late_claim(uow, actor=actor, contract_id=w["contract"].id, reason="r", until=until, today=date(2025, 5, 2))
        assert err.value.code == code


def test_a_measurement_must_lie_in_one_scheduled_period(db):
    metric = contracts.MetricSpec(code="CARE_DAYS", name="Care days", kind="BASELINE_IMPROVEMENT",
                                  direction="LOWER_IS_BETTER", unit_price=sek("1850.00"), baseline=Decimal(3650))
    w = scheduled(db, metrics=(metric,))
    with pytest.raises(DomainError) as err, db.uow() as uow:
        ev.record_measurement(uow, actor=w["verifier"], contract_id=w["contract"].id, metric_code="CARE_DAYS",
                              period_start=date(2025, 2, 1), period_end=date(2025, 4, 30), observed_value=Decimal(3000),
                              comparison_value=None, cohort_size=None, today=date(2025, 5, 1))
    assert err.value.code == "MEASUREMENT_OUTSIDE_PERIOD"
    with pytest.raises(DomainError) as err, db.uow() as uow:
        ev.record_measurement(uow, actor=w["verifier"], contract_id=w["contract"].id, metric_code="CARE_DAYS",
                              period_start=date(2025, 1, 1), period_end=date(2025, 3, 31), observed_value=Decimal(3000),
                              comparison_value=None, cohort_size=None, today=date(2025, 7, 1))
    assert err.value.code == "CLAIM_WINDOW_CLOSED"


def test_run_off_no_enrolment_after_service_end_but_outcomes_are_claimed_and_paid(db):
    # given service until June 2026 and outcomes counted until December 2026
    w = scheduled(db, service_end=date(2026, 6, 30), outcomes_end=date(2026, 12, 31))
    p = enrol(db, w, "P1")
    with pytest.raises(DomainError) as err:
        enrol(db, w, "P2", on=date(2026, 7, 1), today=date(2026, 7, 2))
    assert err.value.code == "ENROLMENT_CLOSED"
    # an outcome in the run-off is claimed and paid in its period
    claim(db, w, p, date(2026, 10, 5), today=date(2026, 11, 1))
    assert pay(db, w, date(2026, 10, 1), date(2026, 12, 31)).total_minor == 4_000_000


def test_termination_at_a_date_keeps_earlier_outcomes_payable_and_the_contract_closes_after_its_window(db):
    w = scheduled(db, window=30)
    c, manager, muni = w["contract"], w["manager"], w["muni"]
    p = enrol(db, w, "P1")
    q = enrol(db, w, "P2")
    claim(db, w, p, date(2025, 5, 10), today=date(2025, 5, 20))
    # when the contract is terminated with effect from 31 May 2025
    with db.uow() as uow:
        contracts.terminate_contract(uow, actor=FM, contract_id=c.id, reason="Avtalsbrott",
                                     effective_date=date(2025, 5, 31), today=date(2025, 5, 20))
        uow.commit()
    with db.reading() as s:
        row = contracts.get_contract(s, c.id)
        assert (row.status, row.terminated_on, row.closed_at) == ("TERMINATED", date(2025, 5, 31), None)
        assert schedule.of(row)[-1] == schedule.Period(date(2025, 4, 1), date(2025, 5, 31), date(2025, 6, 30))
    # an outcome of 20 May is still claimed in the run-off; one of 2 June counts no more
    claim(db, w, q, date(2025, 5, 20), today=date(2025, 6, 10))
    with pytest.raises(DomainError) as err:
        claim(db, w, q, date(2025, 6, 2), today=date(2025, 6, 10), code="SCHOOL_PASS")
    assert err.value.code in ("OUTSIDE_TERM", "DUPLICATE_CLAIM")
    # the shortened last period is paid; the commitments are still held until the window closes
    assert pay(db, w, date(2025, 4, 1), date(2025, 5, 31)).total_minor == 8_000_000
    with db.reading() as s:
        assert commitments.current(s, c.id)[manager.id] == 500_000_000 - 4_000_000
    with db.uow() as uow:
        assert contracts.close_due_contracts(uow, actor=FM, today=date(2025, 6, 30)) == []
        closed = contracts.close_due_contracts(uow, actor=FM, today=date(2025, 7, 1))
        uow.commit()
    assert [x.id for x in closed] == [c.id]
    with db.reading() as s:
        assert commitments.current(s, c.id) == {manager.id: 0, muni.id: 0}
    # a closed contract accepts no late claim
    with pytest.raises(DomainError) as err, db.uow() as uow:
        ev.grant_late_claim(uow, actor=FM, contract_id=c.id, reason="r", until=date(2025, 8, 1), today=date(2025, 7, 2))
    assert err.value.code == "LATE_CLAIM_NOT_ALLOWED"


def test_a_contract_completes_only_when_its_last_window_closed_and_nothing_awaits_approval(db):
    w = scheduled(db, start=date(2025, 1, 1), end=date(2025, 6, 30), window=10)
    c = w["contract"]
    p = enrol(db, w, "P1")
    claim(db, w, p, date(2025, 5, 1), today=date(2025, 5, 2))
    # the last window (Q2 ends 30 June) is open until 10 July
    with pytest.raises(DomainError) as err, db.uow() as uow:
        contracts.complete_contract(uow, actor=FM, contract_id=c.id, reason="klart", today=date(2025, 7, 10))
    assert err.value.code == "CLAIM_WINDOW_OPEN"
    with db.uow() as uow:
        payout = calculations.calculate_payout(uow, actor=FM, contract_id=c.id, period_start=date(2025, 4, 1),
                                               period_end=date(2025, 6, 30))
        uow.commit()
    # a payout waiting for approval keeps it open
    with pytest.raises(DomainError) as err, db.uow() as uow:
        contracts.complete_contract(uow, actor=FM, contract_id=c.id, reason="klart", today=date(2025, 7, 11))
    assert err.value.code == "PAYOUT_AWAITING_APPROVAL"
    with db.uow() as uow:
        assert contracts.close_due_contracts(uow, actor=FM, today=date(2025, 7, 11)) == []
        uow.commit()
    with db.uow() as uow:
        calculations.approve_payout(uow, actor=FM2, payout_id=payout.id)
        uow.commit()
    # then the close-due run completes it and releases what is left of the commitments
    with db.uow() as uow:
        assert [x.id for x in contracts.close_due_contracts(uow, actor=FM, today=date(2025, 7, 11))] == [c.id]
        uow.commit()
    with db.reading() as s:
        assert contracts.get_contract(s, c.id).status == "COMPLETED"
        assert set(commitments.current(s, c.id).values()) == {0}


def test_amendments_price_each_item_under_the_terms_on_its_day_and_clawbacks_at_the_price_paid(db):
    # given a quarterly contract paying 10 000 per outcome, amended to 11 500 from 15 February
    w = scheduled(db, metrics=(rate_card(price="10000.00"),))
    c = w["contract"]
    early, late = enrol(db, w, "E"), enrol(db, w, "L")
    first = claim(db, w, early, date(2025, 2, 1), today=date(2025, 3, 1))
    with db.uow() as uow:
        contracts.amend_contract(uow, actor=FM, contract_id=c.id, effective_date=date(2025, 2, 15), reason="Ny prislista",
                                 metrics=[rate_card(price="11500.00")])
        uow.commit()
    claim(db, w, late, date(2025, 3, 1), today=date(2025, 3, 2))
    # when Q1 is paid: the item of 1 February at v1's price, the one of 1 March at v2's
    p = pay(db, w, date(2025, 1, 1), date(2025, 3, 31))
    assert p.total_minor == 1_000_000 + 1_150_000
    # when the first item is invalidated, its clawback line shows the 10 000 it was paid at
    with db.uow() as uow:
        ev.invalidate_evidence(uow, actor=FM, evidence_id=first.id, reason="Fel elev")
        uow.commit()
    back = pay(db, w, date(2025, 4, 1), date(2025, 6, 30))
    assert [(x.kind, x.unit_price_minor, x.net_minor) for x in back.lines] == [("CLAWBACK", 1_000_000, -1_000_000)]
    with db.reading() as s:
        assert calculations.recompute(s, back).matches and calculations.recompute(s, p).matches


def test_forecast_per_contract_payer_and_period(db):
    from ledger import forecast
    # given a quarterly 2025–2026 contract (10 MSEK, 50/50), 40 000 per outcome, capped at 100 000 a quarter
    w = scheduled(db, metrics=(rate_card(cap_per_period=sek("100000.00")),))
    c, manager, muni = w["contract"], w["manager"], w["muni"]
    people = [enrol(db, w, f"P{i}") for i in range(4)]
    claim(db, w, people[0], date(2025, 2, 1), today=date(2025, 3, 1))                 # Q1 verified
    claim(db, w, people[1], date(2025, 2, 2), today=date(2025, 3, 1))                 # Q1 verified
    claim(db, w, people[2], date(2025, 3, 3), today=date(2025, 3, 4), verify=False)   # Q1 submitted
    claim(db, w, people[3], date(2025, 5, 3), today=date(2025, 5, 4), verify=False)   # Q2 submitted
    with db.reading() as s:
        lines = forecast.forecast(s, contract_id=c.id, today=date(2025, 5, 5))
    by = {(x.party_id, x.period_start): x for x in lines}
    q1, q2, q3 = by[(manager.id, date(2025, 1, 1))], by[(manager.id, date(2025, 4, 1))], by[(manager.id, date(2025, 7, 1))]
    # then Q1: 80 000 certain, 20 000 probable (the quarter's cap leaves no more), at most 100 000; the fund pays half
    assert (q1.certain_minor, q1.probable_minor, q1.maximum_minor) == (4_000_000, 1_000_000, 5_000_000)
    assert (q2.certain_minor, q2.probable_minor, q2.maximum_minor) == (0, 2_000_000, 5_000_000)
    assert (q3.certain_minor, q3.probable_minor) == (0, 0)
    assert len(lines) == 2 * 8  # two payers × eight quarters
    # once Q1's window has closed, Q1 can bring only what is already claimed
    with db.reading() as s:
        later = {(x.party_id, x.period_start): x for x in forecast.forecast(s, contract_id=c.id, today=date(2025, 7, 1))}
    assert later[(muni.id, date(2025, 1, 1))].maximum_minor == 5_000_000
    totals = forecast.fiscal_year_totals(lines)
    assert totals[(2025, "SEK")][:2] == (8_000_000, 6_000_000)
    assert totals[(2025, "SEK")][2] == 2 * 4 * 5_000_000  # four quarters of at most 100 000
