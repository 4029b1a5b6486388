"""The waterfall engine: WATERFALL.md cases W1–W3 to the öre, and its invariants as properties."""
from __future__ import annotations

import random
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger import waterfall as wf
from ledger.errors import ValidationError

D = Decimal
UP_TO = date(2027, 6, 30)


def inputs(positions, *receipts, currency="SEK"):
    return wf.WaterfallInputs(contract_id=1, currency=currency, up_to=UP_TO, investments=tuple(positions),
                              receipts=tuple(wf.Receipt(i + 1, D(r)) for i, r in enumerate(receipts)))


def lines(result):
    return [(x.investment_id, x.kind, str(x.amount)) for x in result.lines]


def advance(positions, result):
    """The positions after a distribution, as the database would read them for the next one."""
    paid = {}
    for x in result.lines:
        paid.setdefault((x.investment_id, x.kind), D(0))
        paid[(x.investment_id, x.kind)] += x.amount
    return [wf.Position(p.investment_id, p.tranche, p.drawn, p.repaid + paid.get((p.investment_id, wf.PRINCIPAL), 0),
                        p.return_paid + paid.get((p.investment_id, wf.RETURN), 0), p.return_cap) for p in positions]


A, B, C_, D_ = 1, 2, 3, 4
W1 = [wf.Position(A, wf.SENIOR, D("1000000.00"), D(0), D(0), D("0.20")),
      wf.Position(B, wf.SUBORDINATE, D("500000.00"), D(0), D(0), D("0.50"))]


def test_w1_success_both_tranches_repaid_return_capped():
    # given A senior 1 000 000 at 20 %, B subordinate 500 000 at 50 %, both drawn
    pos = W1
    # when three distributions of 600 000, 900 000 and 700 000
    first = wf.distribute(inputs(pos, "600000.00"))
    pos = advance(pos, first)
    second = wf.distribute(inputs(pos, "900000.00"))
    pos = advance(pos, second)
    third = wf.distribute(inputs(pos, "700000.00"))
    pos = advance(pos, third)
    # then
    assert lines(first) == [(A, "PRINCIPAL", "600000.00")]
    assert lines(second) == [(A, "PRINCIPAL", "400000.00"), (A, "RETURN", "200000.00"), (B, "PRINCIPAL", "300000.00")]
    assert lines(third) == [(B, "PRINCIPAL", "200000.00"), (B, "RETURN", "250000.00"), (None, "RESIDUAL", "250000.00")]
    a, b = pos
    assert (a.repaid + a.return_paid, b.repaid + b.return_paid) == (D("1200000.00"), D("750000.00"))
    assert sum(r.total for r in (first, second, third)) == D("2200000.00")


def test_w2_failure_one_distribution_pays_senior_principal_only():
    result = wf.distribute(inputs(W1, "300000.00"))
    assert lines(result) == [(A, "PRINCIPAL", "300000.00")]


def test_w3_two_senior_investors_share_to_the_ore_leftover_to_the_larger_remainder():
    pos = [wf.Position(C_, wf.SENIOR, D("333333.33"), D(0), D(0), D("0.10")),
           wf.Position(D_, wf.SENIOR, D("666666.67"), D(0), D(0), D("0.10"))]
    result = wf.distribute(inputs(pos, "100000.01"))
    assert lines(result) == [(C_, "PRINCIPAL", "33333.34"), (D_, "PRINCIPAL", "66666.67")]


def test_a_share_above_what_an_investment_can_take_goes_to_the_others():
    # C has only 10.00 principal left; pro rata it would get 25.00 of 50.00
    pos = [wf.Position(1, wf.SENIOR, D("100.00"), D("90.00"), D(0), D(0)),
           wf.Position(2, wf.SENIOR, D("100.00"), D(0), D(0), D(0))]
    assert lines(wf.distribute(inputs(pos, "50.00"))) == [(1, "PRINCIPAL", "10.00"), (2, "PRINCIPAL", "40.00")]


def test_a_clawback_repaid_reduces_the_receipts_and_nothing_is_paid_when_they_are_not_positive():
    assert lines(wf.distribute(inputs(W1, "500.00", "-200.00"))) == [(A, "PRINCIPAL", "300.00")]
    nothing = wf.distribute(inputs(W1, "100.00", "-300.00"))
    assert nothing.lines == () and nothing.total == 0 and nothing.received == D("-200.00")


def test_the_return_cap_rounds_down_to_the_minor_unit():
    pos = [wf.Position(1, wf.SENIOR, D("100.01"), D(0), D(0), D("0.333"))]
    assert lines(wf.distribute(inputs(pos, "1000.00"))) == [
        (1, "PRINCIPAL", "100.01"), (1, "RETURN", "33.30"), (None, "RESIDUAL", "866.69")]


def test_a_currency_without_minor_units_is_shared_in_whole_units():
    pos = [wf.Position(1, wf.SENIOR, D(1), D(0), D(0), D(0)), wf.Position(2, wf.SENIOR, D(1), D(0), D(0), D(0))]
    assert lines(wf.distribute(inputs(pos, "1", currency="JPY"))) == [(1, "PRINCIPAL", "1")]


@pytest.mark.parametrize("bad, code", [
    (dict(return_cap=D("10.01")), "INVALID_RETURN_CAP"), (dict(return_cap=D("-0.01")), "INVALID_RETURN_CAP"),
    (dict(tranche="MEZZANINE"), "INVALID_TRANCHE"), (dict(drawn=0.5), "INVALID_AMOUNT"),
    (dict(drawn=D("1.001")), "TOO_MANY_DECIMALS"), (dict(repaid=D("2.00")), "INVALID_INPUT"),
])
def test_bad_inputs_are_refused_with_a_stable_code(bad, code):
    base = dict(investment_id=1, tranche=wf.SENIOR, drawn=D("1.00"), repaid=D(0), return_paid=D(0), return_cap=D("0.2"))
    with pytest.raises(ValidationError) as err:
        wf.distribute(inputs([wf.Position(**{**base, **bad})], "1.00"))
    assert err.value.code == code


def test_the_canonical_inputs_round_trip_and_ignore_how_a_decimal_is_written():
    a = inputs(W1, "600000.00", "-1.00")
    b = inputs([wf.Position(A, wf.SENIOR, D("1000000"), D(0), D(0), D("0.2000")), W1[1]], "600000", "-1")
    assert wf.canonical_inputs(a) == wf.canonical_inputs(b)
    assert wf.canonical_inputs(wf.inputs_from_canonical(wf.canonical_inputs(a))) == wf.canonical_inputs(a)
    assert wf.inputs_hash(a) != wf.inputs_hash(inputs(W1, "600000.01", "-1.00"))


# --- properties -------------------------------------------------------------------------------

cents = st.integers(min_value=0, max_value=10**11)


@st.composite
def positions(draw):
    n = draw(st.integers(min_value=0, max_value=6))
    out = []
    for i in range(1, n + 1):
        drawn = draw(cents)
        repaid = draw(st.integers(min_value=0, max_value=drawn))
        cap = D(draw(st.integers(min_value=0, max_value=1000))) / 100
        limit = wf.return_limit(drawn, cap)
        paid = draw(st.integers(min_value=0, max_value=limit))
        out.append(wf.Position(i * 7, draw(st.sampled_from(wf.TRANCHES)), D(drawn) / 100, D(repaid) / 100,
                               D(paid) / 100, cap))
    return out


receipts = st.lists(st.integers(min_value=-10**10, max_value=10**11), min_size=0, max_size=5)


def units(d: Decimal) -> int:
    return int(d * 100)


@settings(max_examples=300, deadline=None)
@given(positions(), receipts)
def test_property_parts_sum_to_the_receipts_and_nothing_is_paid_that_was_not_received(pos, recs):
    result = wf.distribute(inputs(pos, *[D(r) / 100 for r in recs]))
    assert sum((x.amount for x in result.lines), D(0)) == result.total == max(D(sum(recs)) / 100, 0)
    assert all(x.amount > 0 for x in result.lines)


@settings(max_examples=300, deadline=None)
@given(positions(), receipts)
def test_property_no_return_above_its_cap_and_no_principal_above_what_is_outstanding(pos, recs):
    after = advance(pos, wf.distribute(inputs(pos, *[D(r) / 100 for r in recs])))
    for p in after:
        assert p.repaid <= p.drawn
        assert units(p.return_paid) <= wf.return_limit(units(p.drawn), p.return_cap)


@settings(max_examples=300, deadline=None)
@given(positions(), receipts)
def test_property_senior_before_subordinate_and_principal_before_return(pos, recs):
    result = wf.distribute(inputs(pos, *[D(r) / 100 for r in recs]))
    after = {p.investment_id: p for p in advance(pos, result)}

    def room(p, kind):
        if kind == wf.PRINCIPAL:
            return p.drawn - p.repaid
        return D(wf.return_limit(units(p.drawn), p.return_cap)) / 100 - p.return_paid

    steps = [(t, k) for t in wf.TRANCHES for k in (wf.PRINCIPAL, wf.RETURN)]
    tranche_of = {p.investment_id: p.tranche for p in pos}
    for x in result.lines:
        step = len(steps) if x.kind == wf.RESIDUAL else steps.index((tranche_of[x.investment_id], x.kind))
        # every earlier step is full before anything is paid to a later one
        for t, k in steps[:step]:
            assert all(room(p, k) == 0 for p in after.values() if p.tranche == t), (x, t, k)


@settings(max_examples=200, deadline=None)
@given(positions(), receipts, st.randoms(use_true_random=False))
def test_property_shuffling_the_inputs_changes_nothing(pos, recs, rnd: random.Random):
    a = inputs(pos, *[D(r) / 100 for r in recs])
    shuffled_pos, shuffled_recs = list(a.investments), list(a.receipts)
    rnd.shuffle(shuffled_pos)
    rnd.shuffle(shuffled_recs)
    b = wf.WaterfallInputs(a.contract_id, a.currency, a.up_to, tuple(shuffled_pos), tuple(shuffled_recs))
    assert wf.distribute(a) == wf.distribute(b)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=6), st.integers(0, 10**9))
@example([5, 5, 5, 10694, 199679], 199698)  # shares exactly at their room once re-rounded the others
@example([5478, 5478, 1, 8095, 410, 188704300], 188704300)
def test_property_pro_rata_within_a_step_is_within_one_ore_of_exact(drawn, available):
    pos = [wf.Position(i + 1, wf.SENIOR, D(d) / 100, D(0), D(0), D(0)) for i, d in enumerate(drawn)]
    result = wf.distribute(inputs(pos, D(available) / 100))
    total_drawn = sum(drawn)
    paid = {x.investment_id: units(x.amount) for x in result.lines if x.kind == wf.PRINCIPAL}
    if available <= total_drawn:
        for i, d in enumerate(drawn):
            exact = D(available) * d / total_drawn
            assert abs(paid.get(i + 1, 0) - exact) < 1
