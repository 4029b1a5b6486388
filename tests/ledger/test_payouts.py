"""The payout engine: PAYOUTS.md's worked cases to the öre, clawbacks, validation, and
properties (exact splits, caps never exceeded, row order never matters)."""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import replace
from datetime import date, timedelta
from decimal import ROUND_FLOOR, Decimal, localcontext

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import ValidationError
from ledger.payouts import (
    BASELINE_IMPROVEMENT, CLAWBACK, COMPARISON_THRESHOLD, HIGHER_IS_BETTER, LOWER_IS_BETTER,
    MAX_VALUE, METRIC_CAP_PER_PARTICIPANT, METRIC_CAP_PER_PERIOD, METRIC_CAP_TOTAL, ONCE_ONLY,
    OUTCOME, PARTICIPANT_CAP, RATE_CARD, Clawback, EvidenceItem, Measurement, MetricTerms,
    MeasurementAdjustment, PaidBefore, PayerAmount, PayerShare, PayoutInputs, Terms, calculate, calculate_decimal, calculate_with_canonical, EvidenceColumns,
    canonical_inputs, inputs_hash, split_total,
)

D = Decimal
ZERO = D("0.00")
Q1 = (date(2024, 1, 1), date(2024, 3, 31))
FIFTY_FIFTY = (PayerShare("fund", D("50")), PayerShare("municipality", D("50")))
PROPS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def inputs(terms: Terms, *, evidence=(), measurements=(), paid_before=PaidBefore(), clawbacks=(), period=Q1,
           contract_id="contract-1") -> PayoutInputs:
    return PayoutInputs(contract_id, period[0], period[1], terms, tuple(evidence), tuple(measurements),
                        paid_before, tuple(clawbacks))


def terms(*metrics: MetricTerms, shares=FIFTY_FIFTY, max_value=D("10000000.00"), participant_cap=None,
          currency="SEK") -> Terms:
    return Terms(1, currency, max_value, participant_cap, tuple(shares), tuple(metrics))


def rate_card(code: str, price: str, **kw) -> MetricTerms:
    return MetricTerms(code, RATE_CARD, HIGHER_IS_BETTER, D(price), **kw)


def line(result, metric_code, kind=OUTCOME):
    [found] = [ln for ln in result.lines if ln.metric_code == metric_code and ln.kind == kind]
    return found


def nets(result) -> dict[int, Decimal]:
    return {i.evidence_id: i.net for i in result.items}


def shares(result) -> dict[str, Decimal]:
    return {s.party_id: s.amount for s in result.shares}


# ---------------------------------------------------------------------------------------
# Case A — a rate card with caps, supplements and a 50/50 split

RURAL = (("RURAL", D("15")),)
CASE_A_TERMS = terms(
    rate_card("SCHOOL_PASS", "40000.00", once_only=True, area_supplements=RURAL),
    rate_card("ATTENDANCE", "12500.00", cap_per_participant=D("25000.00"), area_supplements=RURAL),
    participant_cap=D("50000.00"),
)
_DAY = date(2024, 2, 15)
CASE_A_EVIDENCE = (
    EvidenceItem(101, 1, "SCHOOL_PASS", _DAY, "URBAN"),
    EvidenceItem(102, 1, "ATTENDANCE", _DAY, "URBAN"),
    EvidenceItem(103, 1, "ATTENDANCE", _DAY, "URBAN"),
    EvidenceItem(104, 1, "ATTENDANCE", _DAY, "URBAN"),
    EvidenceItem(201, 2, "SCHOOL_PASS", _DAY, "RURAL"),
    EvidenceItem(202, 2, "ATTENDANCE", _DAY, "RURAL"),
    EvidenceItem(301, 3, "ATTENDANCE", _DAY, "URBAN"),
)
CASE_A = inputs(CASE_A_TERMS, evidence=CASE_A_EVIDENCE)


def test_case_a_totals_per_participant_and_split():
    # when
    result = calculate(CASE_A)

    # then
    per_participant = defaultdict(Decimal)
    for item in result.items:
        per_participant[item.participant_id] += item.net
    assert dict(per_participant) == {1: D("50000.00"), 2: D("50000.00"), 3: D("12500.00")}
    assert result.total == D("112500.00")
    assert shares(result) == {"fund": D("56250.00"), "municipality": D("56250.00")}
    assert str(result.total) == "112500.00"


def test_case_a_items_to_the_ore():
    # when
    result = calculate(CASE_A)

    # then: gross with the rural supplement, and where each cap bit, item by item
    by_id = {i.evidence_id: i for i in result.items}
    assert {k: (v.gross, v.net) for k, v in by_id.items()} == {
        101: (D("40000.00"), D("40000.00")),
        102: (D("12500.00"), D("10000.00")),   # the participant cap leaves 10 000.00 after the pass
        103: (D("12500.00"), D("0.00")),
        104: (D("12500.00"), D("0.00")),       # third attendance: over 25 000.00 for the metric
        201: (D("46000.00"), D("46000.00")),   # 40 000.00 + 15 % rural
        202: (D("14375.00"), D("4000.00")),    # 12 500.00 + 15 %, capped at 50 000.00 in all
        301: (D("12500.00"), D("12500.00")),
    }
    assert by_id[104].caps == ((METRIC_CAP_PER_PARTICIPANT, D("12500.00")),)
    assert by_id[102].caps == ((PARTICIPANT_CAP, D("2500.00")),)
    assert by_id[103].caps == ((PARTICIPANT_CAP, D("12500.00")),)
    # P1: 65 000.00 after the metric cap, 15 000.00 removed by the participant cap
    p1_removed = sum(a for i in result.items if i.participant_id == 1 for name, a in i.caps if name == PARTICIPANT_CAP)
    assert p1_removed == D("15000.00")
    assert sum(i.gross - i.capped for i in result.items) == result.total


def test_case_a_lines():
    # when
    result = calculate(CASE_A)

    # then: quantity is the number of items, unit price the base price
    school = line(result, "SCHOOL_PASS")
    assert (school.quantity, school.unit_price, school.gross, school.capped, school.net) == (
        D(2), D("40000.00"), D("86000.00"), ZERO, D("86000.00"))
    attendance = line(result, "ATTENDANCE")
    assert (attendance.quantity, attendance.unit_price, attendance.gross, attendance.capped, attendance.net) == (
        D(5), D("12500.00"), D("64375.00"), D("37875.00"), D("26500.00"))
    assert attendance.caps == ((METRIC_CAP_PER_PARTICIPANT, D("12500.00")), (PARTICIPANT_CAP, D("25375.00")))
    assert [ln.metric_code for ln in result.lines] == ["ATTENDANCE", "SCHOOL_PASS"]


def test_case_a_row_order_does_not_matter():
    # given
    shuffled = replace(CASE_A, evidence=tuple(reversed(CASE_A_EVIDENCE)))

    # then
    assert calculate(shuffled) == calculate(CASE_A)


def test_case_a_pinned_inputs_hash():
    # A recorded inputsHash must stay recomputable: changing the canonical form breaks audits.
    assert inputs_hash(CASE_A) == "9119c20d4ef8c193b8a977db0e9317cc59dfd3c3ceb74ceae0f5ac649e595199"
    assert calculate(CASE_A).inputs_hash == inputs_hash(CASE_A)


# ---------------------------------------------------------------------------------------
# Case B — baseline improvement (care days avoided), three periods

CARE_DAYS = MetricTerms("CARE_DAYS", BASELINE_IMPROVEMENT, LOWER_IS_BETTER, D("1850.00"), baseline=D("3650"),
                        cap_per_period=D("2000000.00"))
CASE_B_TERMS = terms(CARE_DAYS, shares=(PayerShare("fund", D("40")), PayerShare("municipality", D("60"))))
CASE_B_PERIODS = [
    (date(2022, 1, 1), date(2022, 12, 31), D("3100")),
    (date(2023, 1, 1), date(2023, 12, 31), D("2400")),
    (date(2024, 1, 1), date(2024, 12, 31), D("3900")),
]


def case_b_results():
    results = []
    for n, (start, end, observed) in enumerate(CASE_B_PERIODS, start=1):
        measurement = Measurement(n, "CARE_DAYS", start, end, observed)
        results.append(calculate(inputs(CASE_B_TERMS, measurements=[measurement], period=(start, end),
                                        paid_before=PaidBefore.from_results(results))))
    return results


def test_case_b_period_1_improvement():
    # when
    result = case_b_results()[0]

    # then
    care = line(result, "CARE_DAYS")
    assert (care.quantity, care.unit_price, care.gross, care.capped, care.net) == (
        D(550), D("1850.00"), D("1017500.00"), ZERO, D("1017500.00"))
    assert result.total == D("1017500.00")
    assert shares(result) == {"fund": D("407000.00"), "municipality": D("610500.00")}
    assert result.measurement_items[0].quantity == D(550)


def test_case_b_period_2_capped_per_period():
    # when
    result = case_b_results()[1]

    # then
    care = line(result, "CARE_DAYS")
    assert (care.quantity, care.gross, care.capped, care.net) == (
        D(1250), D("2312500.00"), D("312500.00"), D("2000000.00"))
    assert care.caps == ((METRIC_CAP_PER_PERIOD, D("312500.00")),)
    assert shares(result) == {"fund": D("800000.00"), "municipality": D("1200000.00")}


def test_case_b_period_3_worse_than_baseline_earns_zero():
    # when
    result = case_b_results()[2]

    # then: never negative
    care = line(result, "CARE_DAYS")
    assert (care.quantity, care.gross, care.capped, care.net) == (D(0), ZERO, ZERO, ZERO)
    assert result.total == ZERO
    assert shares(result) == {"fund": ZERO, "municipality": ZERO}


def test_higher_is_better_baseline_improvement():
    # given
    metric = MetricTerms("JOBS", BASELINE_IMPROVEMENT, HIGHER_IS_BETTER, D("100.00"), baseline=D("40"))
    measurement = Measurement(1, "JOBS", *Q1, observed=D("52.5"))

    # when
    result = calculate(inputs(terms(metric), measurements=[measurement]))

    # then
    assert (line(result, "JOBS").quantity, result.total) == (D("12.5"), D("1250.00"))


# ---------------------------------------------------------------------------------------
# Case C — threshold against a comparison group

RECONVICTIONS = MetricTerms("RECONVICTIONS", COMPARISON_THRESHOLD, LOWER_IS_BETTER, D("3000.00"), threshold=D("0.10"))


@pytest.mark.parametrize(
    "observed, relative, quantity, total",
    [(D("1.46"), D("0.0875"), D(0), ZERO), (D("1.40"), D("0.125"), D(200), D("600000.00"))],
    ids=["below threshold", "above threshold"],
)
def test_case_c_threshold_against_comparison_group(observed, relative, quantity, total):
    # given
    measurement = Measurement(1, "RECONVICTIONS", *Q1, observed=observed, comparison=D("1.60"), cohort_size=1000)

    # when
    result = calculate(inputs(terms(RECONVICTIONS), measurements=[measurement]))

    # then
    [item] = result.measurement_items
    assert item.relative == relative
    recon = line(result, "RECONVICTIONS")
    assert (recon.quantity, recon.unit_price, recon.gross, recon.net) == (quantity, D("3000.00"), total, total)
    assert result.total == total
    assert sum(s.amount for s in result.shares) == total


def test_comparison_falls_back_to_the_metrics_baseline():
    # given
    metric = replace(RECONVICTIONS, baseline=D("1.60"))
    measurement = Measurement(1, "RECONVICTIONS", *Q1, observed=D("1.40"), comparison=None, cohort_size=1000)

    # when
    result = calculate(inputs(terms(metric), measurements=[measurement]))

    # then
    assert result.total == D("600000.00")


def test_threshold_reached_exactly_pays():
    # given: relative exactly 0.10
    measurement = Measurement(1, "RECONVICTIONS", *Q1, observed=D("1.44"), comparison=D("1.60"), cohort_size=1000)

    # when
    result = calculate(inputs(terms(RECONVICTIONS), measurements=[measurement]))

    # then: 0.16 × 1 000 = 160 events × 3 000.00
    assert result.total == D("480000.00")


# ---------------------------------------------------------------------------------------
# Case D — the split keeps every öre

THIRDS = (PayerShare("a", D("33.33")), PayerShare("b", D("33.33")), PayerShare("c", D("33.34")))


def test_case_d_split_keeps_every_ore():
    # when
    parts = split_total(D("100.01"), THIRDS, "SEK")

    # then
    assert parts == (PayerAmount("a", D("33.33")), PayerAmount("b", D("33.33")), PayerAmount("c", D("33.35")))


def test_case_d_through_a_payout():
    # given: one item worth 100.01
    payout = inputs(terms(rate_card("X", "100.01"), shares=THIRDS), evidence=[EvidenceItem(1, 1, "X", _DAY)])

    # when
    result = calculate(payout)

    # then
    assert result.total == D("100.01")
    assert [s.amount for s in result.shares] == [D("33.33"), D("33.33"), D("33.35")]


def test_split_ties_go_to_the_share_listed_first():
    # when
    parts = split_total(D("0.01"), (PayerShare("first", D("50")), PayerShare("second", D("50"))), "SEK")

    # then
    assert [p.amount for p in parts] == [D("0.01"), D("0.00")]


# ---------------------------------------------------------------------------------------
# Rounding and currencies


def test_each_item_is_rounded_half_up_not_to_even():
    # given: 0.30 × 1.15 = 0.345, which banker's rounding would make 0.34
    payout = inputs(terms(rate_card("X", "0.30", area_supplements=RURAL)),
                    evidence=[EvidenceItem(1, 1, "X", _DAY, "RURAL"), EvidenceItem(2, 2, "X", _DAY, "RURAL")])

    # when
    result = calculate(payout)

    # then: rounded per item, not on the sum (0.69)
    assert [i.gross for i in result.items] == [D("0.35"), D("0.35")]
    assert result.total == D("0.70")


def test_currency_without_minor_unit():
    # given: JPY has no decimals; 1 001 × 1.15 = 1 151.15
    payout = inputs(terms(rate_card("X", "1001", area_supplements=RURAL), currency="JPY", max_value=D("1000000")),
                    evidence=[EvidenceItem(1, 1, "X", _DAY, "RURAL")])

    # when
    result = calculate(payout)

    # then
    assert result.total == D("1151")
    assert [s.amount for s in result.shares] == [D("576"), D("575")]


def test_result_does_not_depend_on_the_callers_decimal_context():
    # given
    expected = calculate(CASE_A)

    # when: a hostile ambient context
    with localcontext() as ctx:
        ctx.prec = 4
        ctx.rounding = ROUND_FLOOR
        result = calculate(CASE_A)

    # then
    assert result == expected


# ---------------------------------------------------------------------------------------
# Cap order and fixed pay order


def test_caps_pay_items_by_date_then_evidence_id():
    # given: a cap per period for two items; the later id was achieved first
    metric = rate_card("X", "100.00", cap_per_period=D("150.00"))
    evidence = [EvidenceItem(7, 1, "X", date(2024, 2, 1)), EvidenceItem(9, 2, "X", date(2024, 1, 5)),
                EvidenceItem(8, 3, "X", date(2024, 2, 1))]

    # when
    result = calculate(inputs(terms(metric), evidence=evidence))

    # then
    assert nets(result) == {9: D("100.00"), 7: D("50.00"), 8: ZERO}


def test_total_cap_and_max_value_count_what_was_paid_before():
    # given
    metric = rate_card("X", "100.00", cap_total=D("1000.00"))
    evidence = [EvidenceItem(i, i, "X", _DAY) for i in range(1, 4)]
    paid = PaidBefore(total=D("950.00"), per_metric={"X": D("850.00")})

    # when
    result = calculate(inputs(terms(metric, max_value=D("1020.00")), evidence=evidence, paid_before=paid))

    # then: cap_total leaves 150.00, then max_value leaves 70.00
    assert nets(result) == {1: D("70.00"), 2: ZERO, 3: ZERO}
    assert line(result, "X").caps == ((METRIC_CAP_TOTAL, D("150.00")), (MAX_VALUE, D("80.00")))


def test_cap_already_exceeded_pays_nothing_and_takes_nothing_back():
    # given: an amendment lowered the participant cap below what was paid
    metric = rate_card("X", "100.00")
    paid = PaidBefore(total=D("500.00"), per_metric={"X": D("500.00")}, per_participant={1: D("500.00")},
                      per_participant_metric=[(1, "X", D("500.00"))])

    # when
    result = calculate(inputs(terms(metric, participant_cap=D("300.00")),
                              evidence=[EvidenceItem(1, 1, "X", _DAY)], paid_before=paid))

    # then
    assert result.total == ZERO


def test_once_only_pays_the_first_item_only():
    # given: two claims got through for one participant
    metric = rate_card("X", "100.00", once_only=True)
    evidence = [EvidenceItem(2, 1, "X", date(2024, 1, 2)), EvidenceItem(1, 1, "X", date(2024, 1, 3)),
                EvidenceItem(3, 2, "X", date(2024, 1, 3))]
    paid = PaidBefore(total=D("100.00"), per_metric={"X": D("100.00")}, per_participant={2: D("100.00")},
                      per_participant_metric={(2, "X"): D("100.00")})

    # when
    result = calculate(inputs(terms(metric), evidence=evidence, paid_before=paid))

    # then: participant 2 was paid for it before
    assert nets(result) == {2: D("100.00"), 1: ZERO, 3: ZERO}
    assert {i.evidence_id: i.caps for i in result.items}[3] == ((ONCE_ONLY, D("100.00")),)


def test_several_measurements_in_a_period_each_contribute():
    # given: monthly measurements in a quarterly payout
    metric = MetricTerms("CARE", BASELINE_IMPROVEMENT, LOWER_IS_BETTER, D("10.00"), baseline=D("100"),
                         cap_per_period=D("500.00"))
    months = [Measurement(3, "CARE", date(2024, 3, 1), date(2024, 3, 31), D("90")),
              Measurement(1, "CARE", date(2024, 1, 1), date(2024, 1, 31), D("70")),
              Measurement(2, "CARE", date(2024, 2, 1), date(2024, 2, 29), D("120"))]

    # when
    result = calculate(inputs(terms(metric), measurements=months))

    # then: 30 + 0 + 10 days; the period cap takes from the latest measurement
    care = line(result, "CARE")
    assert (care.quantity, care.gross, care.net) == (D(40), D("400.00"), D("400.00"))
    assert [(m.measurement_id, m.net) for m in result.measurement_items] == [
        (1, D("300.00")), (2, ZERO), (3, D("100.00"))]


# ---------------------------------------------------------------------------------------
# Clawback


def test_clawback_line_is_minus_what_was_paid():
    # given: Case A was posted; P3's attendance is later invalidated
    first = calculate(CASE_A)
    paid = PaidBefore.from_results([first])
    [p3] = [i for i in first.items if i.participant_id == 3]
    claw = Clawback(p3.evidence_id, 3, "ATTENDANCE", p3.net)

    # when
    result = calculate(inputs(CASE_A_TERMS, paid_before=paid, clawbacks=[claw], period=(date(2024, 4, 1), date(2024, 6, 30))))

    # then
    back = line(result, "ATTENDANCE", CLAWBACK)
    assert (back.quantity, back.gross, back.capped, back.net) == (D(-1), D("-12500.00"), ZERO, D("-12500.00"))
    assert [(i.evidence_id, i.kind, i.net) for i in result.items] == [(301, CLAWBACK, D("-12500.00"))]
    assert result.total == D("-12500.00")
    assert shares(result) == {"fund": D("-6250.00"), "municipality": D("-6250.00")}
    # and the next payout sees P3 as paid nothing
    assert dict(PaidBefore.from_results([first, result]).per_participant)[3] == ZERO


def test_negative_total_splits_into_negative_shares_that_sum_exactly():
    # given: 100.01 paid earlier, clawed back now
    metric = rate_card("X", "100.01")
    paid = PaidBefore(total=D("100.01"), per_metric={"X": D("100.01")}, per_participant={1: D("100.01")},
                      per_participant_metric={(1, "X"): D("100.01")})
    payout = inputs(terms(metric, shares=THIRDS), paid_before=paid, clawbacks=[Clawback(1, 1, "X", D("100.01"))])

    # when
    result = calculate(payout)

    # then
    assert result.total == D("-100.01")
    assert [s.amount for s in result.shares] == [D("-33.33"), D("-33.33"), D("-33.35")]
    assert sum(s.amount for s in result.shares) == result.total


def test_clawback_frees_room_under_the_caps():
    # given: Case A posted; P1's school pass (40 000.00) is invalidated and P1 attends again
    first = calculate(CASE_A)
    later = (date(2024, 4, 1), date(2024, 6, 30))
    payout = inputs(CASE_A_TERMS, period=later, paid_before=PaidBefore.from_results([first]),
                    clawbacks=[Clawback(101, 1, "SCHOOL_PASS", D("40000.00"))],
                    evidence=[EvidenceItem(105, 1, "ATTENDANCE", date(2024, 5, 1), "URBAN")])

    # when
    result = calculate(payout)

    # then: attendance room 25 000.00 − 10 000.00 paid; participant room 50 000.00 − 10 000.00
    assert nets(result) == {101: D("-40000.00"), 105: D("12500.00")}
    assert result.total == D("-27500.00")


def test_clawback_of_a_metric_no_longer_in_the_terms():
    # given
    paid = PaidBefore(total=D("10.00"), per_metric={"OLD": D("10.00")}, per_participant={1: D("10.00")},
                      per_participant_metric={(1, "OLD"): D("10.00")})

    # when
    result = calculate(inputs(terms(rate_card("X", "1.00")), paid_before=paid, clawbacks=[Clawback(5, 1, "OLD", D("10.00"))]))

    # then
    assert (line(result, "OLD", CLAWBACK).net, line(result, "OLD", CLAWBACK).unit_price) == (D("-10.00"), ZERO)


# ---------------------------------------------------------------------------------------
# Validation


def _bad(**changes):
    base = dict(evidence=[EvidenceItem(1, 1, "ATTENDANCE", _DAY)], measurements=[], clawbacks=[],
                paid_before=PaidBefore(), period=Q1, terms_=CASE_A_TERMS)
    base.update(changes)
    t = base.pop("terms_")
    return inputs(t, **base)


CARE_TERMS = terms(CARE_DAYS, RECONVICTIONS, rate_card("ATTENDANCE", "10.00"))


@pytest.mark.parametrize("payout, code", [
    (_bad(period=(date(2024, 3, 31), date(2024, 1, 1)), evidence=[]), "INVALID_PERIOD"),
    (_bad(terms_=terms(rate_card("ATTENDANCE", "1.00"), shares=(PayerShare("a", D("50")), PayerShare("b", D("49.99"))))),
     "SHARES_NOT_100"),
    (_bad(evidence=[EvidenceItem(1, 1, "NOPE", _DAY)]), "UNKNOWN_METRIC"),
    (_bad(measurements=[Measurement(1, "ATTENDANCE", *Q1, D("1"))]), "MEASUREMENT_NOT_ALLOWED"),
    (_bad(measurements=[Measurement(1, "NOPE", *Q1, D("1"))]), "UNKNOWN_METRIC"),
    (_bad(terms_=CARE_TERMS, evidence=[EvidenceItem(1, 1, "CARE_DAYS", _DAY)]), "EVIDENCE_NOT_ALLOWED"),
    (_bad(evidence=[EvidenceItem(1, 1, "ATTENDANCE", date(2024, 4, 1))]), "EVIDENCE_OUTSIDE_PERIOD"),
    (_bad(evidence=[EvidenceItem(1, 1, "ATTENDANCE", _DAY), EvidenceItem(1, 2, "ATTENDANCE", _DAY)]), "DUPLICATE_EVIDENCE"),
    (_bad(terms_=CARE_TERMS, evidence=[], measurements=[Measurement(1, "CARE_DAYS", date(2024, 1, 1), date(2024, 2, 1), D("1")),
                                                         Measurement(2, "CARE_DAYS", date(2024, 2, 1), date(2024, 3, 1), D("1"))]),
     "OVERLAPPING_MEASUREMENTS"),
    (_bad(terms_=CARE_TERMS, evidence=[], measurements=[Measurement(1, "CARE_DAYS", date(2023, 12, 1), date(2024, 1, 31), D("1"))]),
     "MEASUREMENT_OUTSIDE_PERIOD"),
    (_bad(terms_=CARE_TERMS, evidence=[], measurements=[Measurement(1, "RECONVICTIONS", *Q1, D("1"), D("2"))]),
     "MISSING_COHORT_SIZE"),
    (_bad(terms_=CARE_TERMS, evidence=[], measurements=[Measurement(1, "RECONVICTIONS", *Q1, D("1"), None, 10)]),
     "MISSING_COMPARISON"),
    (_bad(terms_=CARE_TERMS, evidence=[], measurements=[Measurement(1, "RECONVICTIONS", *Q1, D("1"), D("0"), 10)]),
     "INVALID_COMPARISON"),
    (_bad(terms_=terms(rate_card("ATTENDANCE", "12.505"))), "TOO_MANY_DECIMALS"),
    (_bad(terms_=terms(MetricTerms("ATTENDANCE", RATE_CARD, HIGHER_IS_BETTER, 12.5))), "INVALID_AMOUNT"),
    (_bad(terms_=terms(rate_card("ATTENDANCE", "NaN"))), "INVALID_AMOUNT"),
    (_bad(terms_=terms(rate_card("ATTENDANCE", "1.00"), currency="XAU")), "INVALID_CURRENCY"),
    (_bad(terms_=terms(rate_card("ATTENDANCE", "1.00"), rate_card("ATTENDANCE", "2.00"))), "DUPLICATE_METRIC"),
    (_bad(terms_=terms(MetricTerms("ATTENDANCE", "PER_HOUR", HIGHER_IS_BETTER, D("1.00")))), "INVALID_METRIC_KIND"),
    (_bad(terms_=terms(MetricTerms("C", BASELINE_IMPROVEMENT, LOWER_IS_BETTER, D("1.00")))), "MISSING_BASELINE"),
    (_bad(clawbacks=[Clawback(9, 1, "ATTENDANCE", D("1.00"))]), "CLAWBACK_EXCEEDS_PAID"),
    (_bad(clawbacks=[Clawback(1, 1, "ATTENDANCE", D("0.00"))]), "CLAWBACK_CONFLICT"),
    (_bad(clawbacks=[Clawback(9, 1, "ATTENDANCE", D("-1.00"))]), "INVALID_AMOUNT"),
    (_bad(paid_before=PaidBefore(per_metric=[("X", D("1.00")), ("X", D("2.00"))])), "DUPLICATE_PAID_BEFORE"),
])
def test_invalid_inputs_are_refused_with_a_stable_code(payout, code):
    with pytest.raises(ValidationError) as caught:
        calculate(payout)
    assert caught.value.code == code
    with pytest.raises(ValidationError):
        inputs_hash(payout)


# ---------------------------------------------------------------------------------------
# Canonical form

TINY = inputs(
    terms(rate_card("X", "100", area_supplements=(("RURAL", D("15.0")),)), shares=(PayerShare("f", D("100.00")),),
          max_value=D("1000")),
    evidence=[EvidenceItem(2, 7, "X", date(2024, 2, 1), "RURAL"), EvidenceItem(1, 7, "X", date(2024, 1, 1), None)],
    paid_before=PaidBefore(total=D("5"), per_metric={"X": D("5"), "Y": D(0)}),
)


def test_canonical_bytes_are_pinned():
    # The bytes an auditor hashes: sorted keys, no whitespace, plain decimals, rows by id.
    assert canonical_inputs(TINY) == (
        b'{"clawbacks":[],"contract_id":"contract-1",'
        b'"evidence":[{"achieved_on":"2024-01-01","area":null,"evidence_id":1,"metric_code":"X","participant_id":7},'
        b'{"achieved_on":"2024-02-01","area":"RURAL","evidence_id":2,"metric_code":"X","participant_id":7}],'
        b'"measurements":[],'
        b'"paid_before":{"per_metric":[["X","5.00"]],"per_participant":[],"per_participant_metric":[],"total":"5.00"},'
        b'"period_end":"2024-03-31","period_start":"2024-01-01","schema":"utfall/payout-inputs/1",'
        b'"terms":{"currency":"SEK","max_value":"1000.00","metrics":[{"area_supplements":[["RURAL","15"]],'
        b'"baseline":null,"cap_per_participant":null,"cap_per_period":null,"cap_total":null,"code":"X",'
        b'"direction":"HIGHER_IS_BETTER","kind":"RATE_CARD","once_only":false,"threshold":null,"unit_price":"100.00"}],'
        b'"participant_cap":null,"payer_shares":[{"party_id":"f","percent":"100"}],"version":1}}'
    )
    assert inputs_hash(TINY) == "5b02744a80d5897991ccb64573a08a97393788dd69fd3363db4ebd10d8d0171b"


def test_equal_values_written_differently_hash_the_same():
    # given
    same = replace(TINY, terms=terms(rate_card("X", "100.00", area_supplements=(("RURAL", D("15")),)),
                                     shares=(PayerShare("f", D("100")),), max_value=D("1000.00")),
                   paid_before=PaidBefore(total=D("5.00"), per_metric=[("X", D("5.00"))]))

    # then
    assert inputs_hash(same) == inputs_hash(TINY)


def test_any_changed_figure_changes_the_hash():
    changed = replace(TINY, paid_before=PaidBefore(total=D("5.01"), per_metric={"X": D("5")}))
    assert inputs_hash(changed) != inputs_hash(TINY)


def test_payer_order_is_part_of_the_inputs():
    # It decides ties in the split, so it must be hashed as given.
    a = inputs(terms(rate_card("X", "1.00"), shares=(PayerShare("a", D(50)), PayerShare("b", D(50)))))
    b = inputs(terms(rate_card("X", "1.00"), shares=(PayerShare("b", D(50)), PayerShare("a", D(50)))))
    assert inputs_hash(a) != inputs_hash(b)


# ---------------------------------------------------------------------------------------
# Properties

START, END = Q1
MONTHS = [(date(2024, 1, 1), date(2024, 1, 31)), (date(2024, 2, 1), date(2024, 2, 29)), (date(2024, 3, 1), date(2024, 3, 31))]


def money(max_ore: int = 5_000_000, min_ore: int = 0):
    return st.integers(min_ore, max_ore).map(lambda n: D(n).scaleb(-2))


def optional_money(max_ore: int):
    return st.none() | money(max_ore)


@st.composite
def payer_shares(draw):
    # percentages with two decimals summing to exactly 100: cut 10 000 hundredths
    n = draw(st.integers(1, 5))
    cuts = sorted(draw(st.lists(st.integers(0, 10_000), min_size=n - 1, max_size=n - 1)))
    bounds = [0, *cuts, 10_000]
    return tuple(PayerShare(f"payer-{i}", D(hi - lo).scaleb(-2)) for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])))


@st.composite
def payout_inputs(draw):
    rate_cards = [
        MetricTerms(code, RATE_CARD, HIGHER_IS_BETTER, draw(money(2_000_000)),
                    cap_per_participant=draw(optional_money(4_000_000)), cap_per_period=draw(optional_money(10_000_000)),
                    cap_total=draw(optional_money(20_000_000)), once_only=draw(st.booleans()),
                    area_supplements=draw(st.sampled_from([(), (("RURAL", D("15")),), (("RURAL", D("12.5")), ("NORTH", D("33.33")))])))
        for code in ("RC1", "RC2")
    ]
    improvement = MetricTerms("BI", BASELINE_IMPROVEMENT, draw(st.sampled_from([LOWER_IS_BETTER, HIGHER_IS_BETTER])),
                              draw(money(500_000)), baseline=D(draw(st.integers(0, 5000))),
                              cap_per_period=draw(optional_money(200_000_000)), cap_total=draw(optional_money(400_000_000)))
    threshold = MetricTerms("CT", COMPARISON_THRESHOLD, draw(st.sampled_from([LOWER_IS_BETTER, HIGHER_IS_BETTER])),
                            draw(money(500_000)), baseline=draw(st.none() | st.integers(1, 300).map(lambda n: D(n).scaleb(-2))),
                            threshold=draw(st.sampled_from([None, D("0"), D("0.05"), D("0.10"), D("0.25")])),
                            cap_per_period=draw(optional_money(200_000_000)), cap_total=draw(optional_money(400_000_000)))
    the_terms = Terms(draw(st.integers(1, 5)), "SEK", draw(money(50_000_000) | money(5_000_000_000)), draw(optional_money(6_000_000)),
                      draw(payer_shares()), (*rate_cards, improvement, threshold))

    participants = list(range(1, draw(st.integers(1, 5)) + 1))
    n = draw(st.integers(0, 14))
    ids = draw(st.lists(st.integers(1, 10**6), min_size=n, max_size=n, unique=True))
    evidence = [
        EvidenceItem(i, draw(st.sampled_from(participants)), draw(st.sampled_from(["RC1", "RC2"])),
                     START + timedelta(days=draw(st.integers(0, (END - START).days))),
                     draw(st.sampled_from([None, "URBAN", "RURAL", "NORTH"])))
        for i in ids
    ]

    measurements = []
    for code in ("BI", "CT"):
        for start, end in draw(st.lists(st.sampled_from(MONTHS), unique=True, max_size=3)):
            if code == "BI":
                measurements.append(Measurement(len(measurements) + 1, code, start, end, D(draw(st.integers(0, 6000)))))
            else:
                comparison = draw(st.none() | st.integers(1, 300).map(lambda v: D(v).scaleb(-2)))
                if comparison is None and threshold.baseline is None:
                    comparison = D("1.60")
                measurements.append(Measurement(len(measurements) + 1, code, start, end,
                                                D(draw(st.integers(0, 300))).scaleb(-2), comparison, draw(st.integers(0, 2000))))

    # Paid before, consistent as SQL sums over earlier items would be.
    pairs = {(p, m): draw(money(3_000_000)) for p in participants for m in ("RC1", "RC2") if draw(st.booleans())}
    per_participant = defaultdict(Decimal)
    per_metric = defaultdict(Decimal)
    for (p, m), amount in pairs.items():
        per_participant[p] += amount
        per_metric[m] += amount
    for m in ("BI", "CT"):
        per_metric[m] += draw(money(30_000_000))
    total = sum(per_metric.values(), Decimal(0)) + draw(money(1_000_000))
    paid = PaidBefore(total=total, per_metric=dict(per_metric), per_participant=dict(per_participant),
                      per_participant_metric=dict(pairs))

    clawbacks = []
    for k, ((p, m), amount) in enumerate(sorted(pairs.items())):
        if draw(st.booleans()):
            back = D(draw(st.integers(0, int(amount.scaleb(2))))).scaleb(-2)
            clawbacks.append(Clawback(2_000_000 + k, p, m, back))

    return PayoutInputs("contract-p", START, END, the_terms, tuple(evidence), tuple(measurements), paid, tuple(clawbacks))


def _effective_priors(payout: PayoutInputs):
    paid = payout.paid_before
    pair = defaultdict(Decimal, {(p, m): v for p, m, v in paid.per_participant_metric})
    participant = defaultdict(Decimal, dict(paid.per_participant))
    metric = defaultdict(Decimal, dict(paid.per_metric))
    total = paid.total
    for c in payout.clawbacks:
        pair[(c.participant_id, c.metric_code)] -= c.amount
        participant[c.participant_id] -= c.amount
        metric[c.metric_code] -= c.amount
        total -= c.amount
    return pair, participant, metric, total


def room(cap, prior):
    return max(Decimal(0), cap - prior)


@PROPS
@given(payout_inputs())
def test_no_cap_is_ever_exceeded(payout):
    # when
    result = calculate(payout)

    # then
    pair_prior, participant_prior, metric_prior, total_prior = _effective_priors(payout)
    metrics = {m.code: m for m in payout.terms.metrics}
    outcome = [i for i in result.items if i.kind == OUTCOME]
    pair_new, participant_new, pair_paid_items = defaultdict(Decimal), defaultdict(Decimal), defaultdict(int)
    for item in outcome:
        pair_new[(item.participant_id, item.metric_code)] += item.net
        participant_new[item.participant_id] += item.net
        pair_paid_items[(item.participant_id, item.metric_code)] += item.net > 0
    for (p, m), new in pair_new.items():
        metric = metrics[m]
        if metric.cap_per_participant is not None:
            assert new <= room(metric.cap_per_participant, pair_prior[(p, m)])
        if metric.once_only:
            assert pair_paid_items[(p, m)] <= (0 if pair_prior[(p, m)] > 0 else 1)
    if payout.terms.participant_cap is not None:
        for p, new in participant_new.items():
            assert new <= room(payout.terms.participant_cap, participant_prior[p])
    outcome_lines = [ln for ln in result.lines if ln.kind == OUTCOME]
    for ln in outcome_lines:
        metric = metrics[ln.metric_code]
        if metric.cap_per_period is not None:
            assert ln.net <= metric.cap_per_period
        if metric.cap_total is not None:
            assert ln.net <= room(metric.cap_total, metric_prior[ln.metric_code])
    assert sum((ln.net for ln in outcome_lines), Decimal(0)) <= room(payout.terms.max_value, total_prior)


@st.composite
def payout_inputs_with_everything(draw):
    """`payout_inputs` plus what it leaves out: items priced under another terms version,
    measurements adjusted (corrected or voided) and priced under another version, payers with
    a maxAmount and what they paid, and what earlier payouts of the period paid."""
    p = draw(payout_inputs())
    evidence = tuple(replace(e, price=draw(money(2_000_000))) if draw(st.integers(0, 4)) == 0 else e
                     for e in p.evidence)
    shares = tuple(replace(s, max_amount=draw(money(50_000_000))) if draw(st.booleans()) else s
                   for s in p.terms.payer_shares)
    per_payer = {s.party_id: draw(money(20_000_000)) for s in shares if s.max_amount is not None and draw(st.booleans())}
    in_period = {x.code: draw(money(5_000_000)) for x in p.terms.metrics if draw(st.booleans())}
    measurements, adjustments = [], []
    for x in p.measurements:
        how = draw(st.integers(0, 3))
        if how == 0:  # paid, then corrected: the current version is this measurement
            adjustments.append(MeasurementAdjustment(900_000 + x.measurement_id, x.metric_code,
                                                     draw(money(3_000_000)), x))
        elif how == 1:  # a voided one beside a measurement priced under another version
            adjustments.append(MeasurementAdjustment(900_000 + x.measurement_id, x.metric_code,
                                                     draw(money(3_000_000)), None))
            measurements.append(replace(x, unit_price=draw(money(100_000))))
        else:
            measurements.append(x)
    paid = p.paid_before
    return replace(p, evidence=evidence, terms=replace(p.terms, payer_shares=shares), measurements=tuple(measurements),
                   adjustments=tuple(adjustments),
                   paid_before=PaidBefore(total=paid.total, per_metric=paid.per_metric,
                                          per_participant=paid.per_participant,
                                          per_participant_metric=paid.per_participant_metric, per_payer=per_payer,
                                          per_metric_in_period=in_period))


@PROPS
@given(payout_inputs_with_everything(), st.randoms(use_true_random=False))
def test_row_order_changes_nothing_with_prices_adjustments_and_payer_caps(payout, rnd):
    # given the rows of every kind in another order
    def shuffled(rows):
        rows = list(rows)
        rnd.shuffle(rows)
        return tuple(rows)

    paid = payout.paid_before
    reordered = replace(
        payout, evidence=shuffled(payout.evidence), measurements=shuffled(payout.measurements),
        clawbacks=shuffled(payout.clawbacks), adjustments=shuffled(payout.adjustments),
        paid_before=replace(paid, per_payer=shuffled(paid.per_payer),
                            per_metric_in_period=shuffled(paid.per_metric_in_period)),
    )

    # when
    a, b = calculate(payout), calculate(reordered)

    # then the same payout, to the öre, and every cap respected by what it pays
    assert a == b
    assert all(x.net <= x.gross for x in a.items) and all(x.net >= 0 for x in a.items if x.kind == OUTCOME)
    assert sum((x.amount for x in a.shares), Decimal(0)) == a.total

@PROPS
@given(payout_inputs(), st.randoms(use_true_random=False))
def test_row_order_changes_nothing(payout, rnd):
    # given
    def shuffled(rows):
        rows = list(rows)
        rnd.shuffle(rows)
        return tuple(rows)

    paid = payout.paid_before
    reordered = replace(
        payout, evidence=shuffled(payout.evidence), measurements=shuffled(payout.measurements),
        clawbacks=shuffled(payout.clawbacks),
        paid_before=PaidBefore(total=paid.total, per_metric=shuffled(paid.per_metric),
                               per_participant=shuffled(paid.per_participant),
                               per_participant_metric=shuffled(paid.per_participant_metric)),
        terms=replace(payout.terms, metrics=shuffled(payout.terms.metrics)),
    )

    # when
    a, b = calculate(payout), calculate(reordered)

    # then
    assert (a.lines, a.items, a.measurement_items, a.shares, a.total) == (b.lines, b.items, b.measurement_items, b.shares, b.total)
    assert a.inputs_hash == b.inputs_hash == inputs_hash(reordered)


@PROPS
@given(payout_inputs())
def test_lines_and_items_add_up(payout):
    # when
    result = calculate(payout)

    # then
    for row in (*result.lines, *result.items, *result.measurement_items):
        assert row.gross - row.capped == row.net
        assert sum((a for _, a in row.caps), Decimal(0)) == row.capped
        assert row.net == row.net.quantize(D("0.01"))
        if getattr(row, "kind", OUTCOME) == OUTCOME:
            assert Decimal(0) <= row.net <= row.gross
            assert row.capped >= 0
        else:
            assert row.net < 0 or row.net == 0
            assert row.capped == 0
    for ln in result.lines:
        parts = [i.net for i in result.items if (i.metric_code, i.kind) == (ln.metric_code, ln.kind)]
        parts += [m.net for m in result.measurement_items if ln.kind == OUTCOME and m.metric_code == ln.metric_code]
        assert sum(parts, Decimal(0)) == ln.net
    assert result.total == sum((ln.net for ln in result.lines), Decimal(0))
    assert sum((s.amount for s in result.shares), Decimal(0)) == result.total


@PROPS
@given(st.integers(-10**15, 10**15), payer_shares())
def test_split_parts_always_sum_exactly_to_the_total(total_ore, payers):
    # given
    total = D(total_ore).scaleb(-2)

    # when
    parts = split_total(total, payers, "SEK")

    # then: exact, and no part more than one öre from its exact proportion
    assert sum((p.amount for p in parts), Decimal(0)) == total
    assert [p.party_id for p in parts] == [s.party_id for s in payers]
    for part, share in zip(parts, payers):
        assert abs(part.amount - total * share.percent / 100) < D("0.01")
        assert part.amount == 0 or (part.amount > 0) == (total > 0)


@PROPS
@given(payout_inputs())
def test_paying_in_two_payouts_never_exceeds_the_contract_caps(payout):
    # given: this payout is posted, then the same evidence is offered again (as if re-claimed)
    first = calculate(payout)
    again = replace(payout, evidence=tuple(replace(e, evidence_id=e.evidence_id + 10**7) for e in payout.evidence),
                    measurements=(), clawbacks=(),
                    paid_before=_add(payout.paid_before, first))

    # when
    second = calculate(again)

    # then
    paid_total = payout.paid_before.total + first.total + second.total
    assert second.total <= room(payout.terms.max_value, payout.paid_before.total + first.total)
    if payout.paid_before.total - sum((c.amount for c in payout.clawbacks), Decimal(0)) <= payout.terms.max_value:
        assert paid_total <= payout.terms.max_value


def _add(paid: PaidBefore, result) -> PaidBefore:
    later = PaidBefore.from_results([result])

    def merged(a, b):
        out = defaultdict(Decimal)
        for row in (*a, *b):
            out[row[:-1]] += row[-1]
        return [(*k, v) for k, v in out.items()]

    return PaidBefore(total=paid.total + later.total, per_metric=merged(paid.per_metric, later.per_metric),
                      per_participant=merged(paid.per_participant, later.per_participant),
                      per_participant_metric=merged(paid.per_participant_metric, later.per_participant_metric))



@PROPS
@given(payout_inputs())
def test_what_a_payout_records_is_its_calculation_and_its_canonical_inputs(payout):
    # when: calculate_payout validates the inputs once for both
    result, canonical = calculate_with_canonical(payout)

    # then: exactly what the two separate calls give, so recorded payouts recompute to the same hash
    assert result == calculate(payout)
    assert canonical == canonical_inputs(payout)
    assert result.inputs_hash == hashlib.sha256(canonical).hexdigest()


@PROPS
@given(payout_inputs(), st.sampled_from([None, "URBAN", 'norr "ö"\\\n\x01', "evidence\":[]"]))
def test_canonical_inputs_are_exactly_the_documented_json(payout, area):
    # given: any evidence, with areas that need escaping
    payout = replace(payout, evidence=tuple(replace(e, area=area) for e in payout.evidence))

    # when
    canonical = canonical_inputs(payout)

    # then: the bytes are json.dumps with sorted keys and no whitespace of what they hold
    assert canonical == json.dumps(json.loads(canonical), sort_keys=True, separators=(",", ":"),
                                   ensure_ascii=False).encode("utf-8")
    assert [e["evidence_id"] for e in json.loads(canonical)["evidence"]] == sorted(e.evidence_id for e in payout.evidence)
    assert all(e["area"] == area for e in json.loads(canonical)["evidence"])


def _amounts(result):
    """Every money amount of a result."""
    for line in result.lines:
        yield from (line.unit_price, line.gross, line.capped, line.net, *(a for _, a in line.caps))
    for row in (*result.items, *result.measurement_items, *result.adjustment_items):
        yield from (row.gross, row.capped, row.net, *(a for _, a in row.caps))
    yield from (s.amount for s in result.shares)
    yield result.total


@st.composite
def crowded_payout_inputs(draw):
    """`payout_inputs_with_everything` with many items over few participants, so that every
    per-participant cap, the metric caps and the maximum value bind again and again."""
    p = draw(payout_inputs_with_everything())
    n = draw(st.integers(0, 120))
    people = draw(st.integers(1, 6))
    ids = draw(st.lists(st.integers(1, 10**6), min_size=n, max_size=n, unique=True).filter(
        lambda xs: not set(xs) & {c.evidence_id for c in p.clawbacks}))
    evidence = tuple(EvidenceItem(i, draw(st.integers(1, people)), draw(st.sampled_from(["RC1", "RC2"])),
                                  p.period_start + timedelta(days=draw(st.integers(0, 20))),
                                  draw(st.sampled_from([None, "URBAN", "RURAL", "NORTH"])),
                                  draw(st.none() | money(2_000_000))) for i in ids)
    return replace(p, evidence=evidence)


@PROPS
@given(payout_inputs_with_everything() | crowded_payout_inputs())
def test_the_minor_unit_engine_gives_the_decimal_engines_figures_to_the_ore(payout):
    # when the payout is calculated in integer minor units over flat columns (what pays)
    # and by the Decimal engine with an object per item (the reference)
    flat, reference = calculate(payout), calculate_decimal(payout)

    # then every line, item, measurement item, adjustment, share and the total are the same to
    # the öre, and so is the inputs hash
    assert flat == reference
    assert tuple(flat.items) == tuple(reference.items) and flat.inputs_hash == reference.inputs_hash
    # the caps a line records read the same ("MAX_VALUE=12.50"), and every amount carries exactly
    # the currency's decimals (where a cap leaves nothing the Decimal engine can give "0", not "0.00")
    assert [line.caps for line in flat.lines] == [line.caps for line in reference.lines]
    assert [";".join(f"{n}={a}" for n, a in line.caps) for line in flat.lines] == \
        [";".join(f"{n}={a}" for n, a in line.caps) for line in reference.lines]
    assert {a.as_tuple().exponent for a in _amounts(flat)} <= {-2}


def _as_columns(evidence) -> EvidenceColumns:
    return EvidenceColumns(*(list(column) for column in zip(*((e.evidence_id, e.participant_id, e.metric_code,
                                                               e.achieved_on, e.area) for e in evidence)))
                           ) if evidence else EvidenceColumns([], [], [], [], [])


@PROPS
@given(payout_inputs(), st.randoms(use_true_random=False))
def test_evidence_given_as_columns_is_the_same_payout_and_the_same_inputs_hash(payout, rnd):
    # given the evidence rows as columns, in any order (what gather_inputs streams from the database)
    rows = list(payout.evidence)
    rnd.shuffle(rows)
    columns = replace(payout, evidence=_as_columns(rows))

    # when
    a, b = calculate(payout), calculate(columns)

    # then
    assert a == b and tuple(a.items) == tuple(b.items)
    assert canonical_inputs(columns) == canonical_inputs(payout)


@PROPS
@given(crowded_payout_inputs(), st.randoms(use_true_random=False))
def test_crowded_evidence_as_columns_is_the_decimal_engines_payout_and_inputs_hash(payout, rnd):
    # given many items over few participants, every cap binding again and again, and the
    # evidence (without prices of its own: columns carry none) as columns in any order, as
    # gather_inputs streams them from the database
    payout = replace(payout, evidence=tuple(replace(e, price=None) for e in payout.evidence))
    rows = list(payout.evidence)
    rnd.shuffle(rows)
    columns = replace(payout, evidence=_as_columns(rows))

    # when the columns are calculated (what pays) and the rows by the Decimal engine (the reference)
    flat, canonical = calculate_with_canonical(columns)
    reference = calculate_decimal(payout)

    # then the figures are the same to the öre, and so are the recorded inputs and their hash
    assert flat == reference and tuple(flat.items) == tuple(reference.items)
    assert canonical == canonical_inputs(payout)
    assert flat.inputs_hash == reference.inputs_hash == hashlib.sha256(canonical).hexdigest()


@pytest.mark.parametrize("bad, code", [
    (lambda e: replace(e, metric_code="NOPE"), "UNKNOWN_METRIC"),
    (lambda e: replace(e, achieved_on=date(2023, 12, 31)), "EVIDENCE_OUTSIDE_PERIOD"),
    (lambda e: replace(e, evidence_id=2), "DUPLICATE_EVIDENCE"),
    (lambda e: replace(e, participant_id="7"), "INVALID_INPUT"),
])
def test_a_bad_row_among_evidence_columns_is_refused_as_it_is_among_rows(bad, code):
    metric = MetricTerms("RC", RATE_CARD, HIGHER_IS_BETTER, D("100.00"))
    rows = [EvidenceItem(i, 1, "RC", date(2024, 1, 5)) for i in (1, 2, 3)]
    rows[2] = bad(rows[2])
    for evidence in (rows, _as_columns(rows)):
        with pytest.raises(ValidationError) as err:
            calculate(inputs(terms(metric), evidence=evidence))
        assert err.value.code == code


@PROPS
@given(crowded_payout_inputs())
def test_evidence_streamed_in_pay_order_as_columns_is_the_decimal_engines_payout(payout):
    # given the evidence as gather_inputs usually streams it: ids increasing with the days they
    # were achieved on (the engine then reads it in place instead of through a pay-order
    # permutation), with measurements, adjustments, clawbacks and every cap beside it
    payout = replace(payout, evidence=tuple(replace(e, price=None) for e in payout.evidence))
    rows = sorted(payout.evidence, key=lambda e: (e.achieved_on, e.evidence_id))
    rows = [replace(e, evidence_id=i) for i, e in enumerate(rows, 1)]
    payout = replace(payout, evidence=tuple(rows), clawbacks=tuple(
        replace(c, evidence_id=c.evidence_id + 10**7) for c in payout.clawbacks))

    # when
    flat, canonical = calculate_with_canonical(replace(payout, evidence=_as_columns(rows)))
    reference = calculate_decimal(payout)

    # then
    assert flat == reference and tuple(flat.items) == tuple(reference.items)
    assert canonical == canonical_inputs(payout) and flat.inputs_hash == reference.inputs_hash


ODD_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=12)


@PROPS
@given(payout_inputs(), st.lists(st.none() | ODD_TEXT | st.sampled_from(["100 %", "%s%d%b", 'evidence":[]', "ö\\\"\n"]),
                                 min_size=1, max_size=4), st.randoms(use_true_random=False))
def test_evidence_columns_write_any_area_as_the_documented_json(payout, areas, rnd):
    # given evidence columns whose areas need escaping in JSON, or look like format directives
    rows = [replace(e, area=rnd.choice(areas)) for e in payout.evidence]
    rnd.shuffle(rows)
    columns = replace(payout, evidence=_as_columns(rows))

    # when
    canonical = canonical_inputs(columns)

    # then: the bytes the rows give, which are json.dumps with sorted keys and no whitespace
    assert canonical == canonical_inputs(replace(payout, evidence=tuple(rows)))
    assert canonical == json.dumps(json.loads(canonical), sort_keys=True, separators=(",", ":"),
                                   ensure_ascii=False).encode("utf-8")
    assert sorted((e["evidence_id"], e["area"]) for e in json.loads(canonical)["evidence"]) == \
        sorted((e.evidence_id, e.area) for e in rows)
