"""Measurements corrected or voided (PAYOUTS.md §9): versions kept, ADJUSTMENT lines for what was
paid, and never two current measurements of one metric overlapping, however many requests race."""
from __future__ import annotations

import threading
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from ledger import calculations, payouts
from ledger import evidence as ev
from ledger.access import Actor
from ledger.contracts import MetricSpec, ShareSpec
from ledger.corrections import measurements as mc
from ledger.db import Database
from ledger.errors import DomainError
from ledger.models import Measurement
from tests.conftest import table_counts
from tests.factories import contract, funded, party, sek

FM = Actor("frida", "FUND_MANAGER")
FM2 = Actor("gustav", "FUND_MANAGER")
TODAY = date(2026, 11, 23)
H1 = (date(2026, 1, 1), date(2026, 6, 30))
D = Decimal


def care_days(db):
    """PAYOUTS.md Case B: CARE_DAYS, baseline 3 650, 1 850.00 per day avoided, 40/60."""
    fund, manager, muni, prov, ver = funded(db, FM)
    metric = MetricSpec(code="CARE_DAYS", name="Care days", kind="BASELINE_IMPROVEMENT", direction="LOWER_IS_BETTER",
                        unit_price=sek("1850.00"), baseline=D(3650), cap_per_period=sek("2000000.00"))
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True, metrics=(metric,),
                 shares=(ShareSpec(manager.id, D(40)), ShareSpec(muni.id, D(60))))
    return dict(contract=c, verifier=Actor("vera", "VERIFIER", ver.id), ver=ver)


@pytest.fixture
def case_b(db):
    return care_days(db)


def record(db, w, observed, period=H1):
    with db.uow() as uow:
        x = ev.record_measurement(uow, actor=w["verifier"], contract_id=w["contract"].id, metric_code="CARE_DAYS",
                                  period_start=period[0], period_end=period[1], observed_value=D(observed),
                                  comparison_value=None, cohort_size=None, today=TODAY)
        uow.commit()
    return x


def correct(db, w, measurement, observed, reason="Feltolkad rapport"):
    with db.uow() as uow:
        x = mc.correct_measurement(uow, actor=w["verifier"], measurement_id=measurement.id, observed_value=D(observed),
                                   comparison_value=None, cohort_size=None, reason=reason)
        uow.commit()
    return x


def void(db, w, measurement, reason="Fel kohort"):
    with db.uow() as uow:
        x = mc.void_measurement(uow, actor=w["verifier"], measurement_id=measurement.id, reason=reason)
        uow.commit()
    return x


def pay(db, w, period=H1):
    with db.uow() as uow:
        p = calculations.calculate_payout(uow, actor=FM, contract_id=w["contract"].id, period_start=period[0],
                                          period_end=period[1])
        uow.commit()
    lines = [(x.kind, x.quantity, x.gross_minor, x.capped_minor, x.net_minor) for x in p.lines]
    with db.uow() as uow:
        calculations.approve_payout(uow, actor=FM2, payout_id=p.id)
        uow.commit()
    with db.reading() as s:
        assert calculations.recompute(s, calculations.get_payout(s, p.id)).matches
    return p, lines


def test_a_paid_measurement_corrected_up_then_down_then_voided_gives_adjustment_lines(db, case_b):
    w = case_b
    first = record(db, w, "3100")
    p, lines = pay(db, w)
    assert lines == [("OUTCOME", D(550), 101_750_000, 0, 101_750_000)]
    # corrected up: 650 days avoided → 1 202 500.00, less the 1 017 500.00 paid
    second = correct(db, w, first, "3000")
    p, lines = pay(db, w)
    assert lines == [("ADJUSTMENT", D(650), 18_500_000, 0, 18_500_000)]
    assert [s.amount_minor for s in p.shares] == [7_400_000, 11_100_000]
    # corrected down: 250 days → 462 500.00, less 1 202 500.00 paid: a clawback of 740 000.00
    third = correct(db, w, second, "3400")
    p, lines = pay(db, w)
    assert lines == [("ADJUSTMENT", D(250), -74_000_000, 0, -74_000_000)]
    assert p.total_minor == -74_000_000
    # voided: everything paid comes back
    void(db, w, third)
    p, lines = pay(db, w)
    assert lines == [("ADJUSTMENT", D(0), -46_250_000, 0, -46_250_000)]
    # and nothing is adjusted twice
    with db.uow() as uow:
        again = calculations.calculate_payout(uow, actor=FM, contract_id=w["contract"].id, period_start=H1[0],
                                              period_end=H1[1])
    assert again.lines == []
    # every version is kept, chained, with its reason
    with db.reading() as s:
        rows = s.execute(select(Measurement).where(Measurement.contract_id == w["contract"].id)
                         .order_by(Measurement.id)).scalars().all()
        assert [(r.status, r.observed_value, r.superseded_by_id) for r in rows] == [
            ("SUPERSEDED", D(3100), second.id), ("SUPERSEDED", D(3000), third.id), ("VOIDED", D(3400), None)]
        assert (rows[1].correction_reason, rows[2].void_reason) == ("Feltolkad rapport", "Fel kohort")


def test_the_period_cap_applies_to_the_corrected_amount(db, case_b):
    w = case_b
    first = record(db, w, "3100")
    pay(db, w)
    correct(db, w, first, "2400")  # 1 250 days: 2 312 500.00 gross, capped at 2 000 000.00
    _, lines = pay(db, w)
    assert lines == [("ADJUSTMENT", D(1250), 231_250_000 - 101_750_000, 31_250_000, 200_000_000 - 101_750_000)]


def test_an_unpaid_measurement_corrected_is_paid_at_its_new_value(db, case_b):
    w = case_b
    first = record(db, w, "3100")
    correct(db, w, first, "3000")
    _, lines = pay(db, w)
    assert lines == [("OUTCOME", D(650), 120_250_000, 0, 120_250_000)]


def test_after_voiding_a_period_can_be_measured_again(db, case_b):
    w = case_b
    void(db, w, record(db, w, "3100"))
    assert record(db, w, "3200").status == "CURRENT"


def test_bad_corrections_are_refused_with_a_code_and_write_nothing(db, case_b):
    w = case_b
    first = record(db, w, "3100")
    second = correct(db, w, first, "3000")
    void(db, w, second)
    third = record(db, w, "3300")
    other = Actor("otto", "VERIFIER", party(db, role="VERIFIER").id)

    def fix(actor=w["verifier"], target=third, observed=D(1), reason="r"):
        return lambda uow: mc.correct_measurement(uow, actor=actor, measurement_id=target.id, observed_value=observed,
                                                  comparison_value=None, cohort_size=None, reason=reason)

    cases = [
        (fix(target=first), "MEASUREMENT_NOT_CURRENT"),   # superseded
        (fix(target=second), "MEASUREMENT_NOT_CURRENT"),  # voided
        (lambda uow: mc.void_measurement(uow, actor=w["verifier"], measurement_id=first.id, reason="r"),
         "MEASUREMENT_NOT_CURRENT"),
        (fix(actor=other), "UNKNOWN_MEASUREMENT"),        # another verifier's: as if missing
        (lambda uow: mc.void_measurement(uow, actor=w["verifier"], measurement_id=999_999, reason="r"),
         "UNKNOWN_MEASUREMENT"),
        (fix(observed=D(-1)), "INVALID_VALUE"),
        (fix(reason=" "), "REQUIRED"),
        (lambda uow: mc.void_measurement(uow, actor=FM, measurement_id=third.id, reason="r"), "PERMISSION_DENIED"),
    ]
    for fn, code in cases:
        before = table_counts(db)
        with pytest.raises(DomainError) as err, db.uow() as uow:
            fn(uow)
        assert err.value.code == code, (code, err.value.message)
        assert table_counts(db) == before


def test_the_database_itself_refuses_overlapping_current_measurements(db, case_b):
    # given a current measurement of H1
    w = case_b
    record(db, w, "3100")
    row = dict(contract_id=w["contract"].id, metric_code="CARE_DAYS", period_start=date(2026, 3, 1),
               period_end=date(2026, 9, 30), observed_value=D(3000), recorded_by="bypass",
               recorded_at=datetime(2026, 11, 23, tzinfo=timezone.utc))
    # then a row written past the use case that overlaps it is refused by the database
    with pytest.raises(IntegrityError), db.uow() as uow:
        uow.session.execute(insert(Measurement.__table__), [row])
    # while a superseded or voided one may overlap
    with db.uow() as uow:
        uow.session.execute(insert(Measurement.__table__), [{**row, "status": "VOIDED"}])
        uow.commit()


def test_eight_identical_measurements_at_once_one_succeeds(fresh_engine):
    # given a contract on a database whose commits are real
    db = Database(fresh_engine)
    w = care_days(db)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def attempt():
        barrier.wait()
        try:
            with db.uow() as uow:
                ev.record_measurement(uow, actor=w["verifier"], contract_id=w["contract"].id, metric_code="CARE_DAYS",
                                      period_start=H1[0], period_end=H1[1], observed_value=D(3100),
                                      comparison_value=None, cohort_size=None, today=TODAY)
                uow.commit()
            outcomes.append("OK")
        except DomainError as err:
            outcomes.append(err.code)
        except Exception as err:  # noqa: BLE001 - the test reports any unexpected failure
            outcomes.append(f"unexpected {type(err).__name__}: {err}")

    # when eight verifiers' requests arrive at the same moment
    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then exactly one is recorded and the rest get OVERLAPPING_MEASUREMENT
    assert sorted(outcomes) == ["OK"] + ["OVERLAPPING_MEASUREMENT"] * 7, outcomes
    with db.reading() as s:
        assert len(s.execute(select(Measurement.id).where(Measurement.contract_id == w["contract"].id)).all()) == 1


# --- the engine -----------------------------------------------------------------------------------

CARE = payouts.MetricTerms("CARE_DAYS", payouts.BASELINE_IMPROVEMENT, payouts.LOWER_IS_BETTER, D("1850.00"),
                           baseline=D(3650))
SHARES = (payouts.PayerShare("fund", D(40)), payouts.PayerShare("municipality", D(60)))


def engine_inputs(paid: Decimal, new_observed: int | None, *, cap_per_period=None, max_value=D("100000000.00")):
    metric = payouts.MetricTerms(**{**CARE.__dict__, "cap_per_period": cap_per_period})
    terms = payouts.Terms(1, "SEK", max_value, None, SHARES, (metric,))
    current = None if new_observed is None else payouts.Measurement(2, "CARE_DAYS", H1[0], H1[1], D(new_observed))
    return payouts.PayoutInputs("c", H1[0], H1[1], terms,
                                paid_before=payouts.PaidBefore(total=paid, per_metric={"CARE_DAYS": paid}),
                                adjustments=(payouts.MeasurementAdjustment(1, "CARE_DAYS", paid, current),))


PROPS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def first_payout(observed: int, cap) -> payouts.PayoutResult:
    terms = payouts.Terms(1, "SEK", D("100000000.00"), None, SHARES,
                          (payouts.MetricTerms(**{**CARE.__dict__, "cap_per_period": cap}),))
    return payouts.calculate(payouts.PayoutInputs(
        "c", H1[0], H1[1], terms, measurements=(payouts.Measurement(1, "CARE_DAYS", H1[0], H1[1], D(observed)),)))


@PROPS
@given(old=st.integers(0, 4000), new=st.none() | st.integers(0, 4000),
       cap=st.none() | st.integers(1, 10_000_000).map(lambda u: D(u) / 100))
def test_an_adjustment_pays_exactly_the_difference_and_never_beats_a_cap(old, new, cap):
    # given what was paid for the old value
    paid = first_payout(old, cap).total
    # when it is corrected (or voided)
    inputs = engine_inputs(paid, new, cap_per_period=cap)
    result = payouts.calculate(inputs)
    # then what is paid in all equals a first payout of the corrected value (zero if voided)
    assert paid + result.total == (D("0.00") if new is None else first_payout(new, cap).total)
    [line] = result.lines
    assert line.kind == payouts.ADJUSTMENT and line.gross - line.capped == line.net == result.total
    assert sum(s.amount for s in result.shares) == result.total
    # the replaced measurement gives back exactly what it was paid; the record reads back exactly
    assert [(i.measurement_id, i.net) for i in result.adjustment_items] == [(1, -paid)]
    canonical = payouts.canonical_inputs(inputs)
    assert payouts.canonical_inputs(payouts.inputs_from_canonical(canonical)) == canonical


def test_inputs_without_adjustments_hash_as_before():
    inputs = payouts.PayoutInputs("c", H1[0], H1[1], payouts.Terms(1, "SEK", D("1.00"), None, SHARES, (CARE,)))
    assert b"adjustments" not in payouts.canonical_inputs(inputs)
