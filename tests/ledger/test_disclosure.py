"""Disclosure control: no published figure lets a reader derive a suppressed one.

The reader knows the rule. A suppressed figure is safe when at least two different true values
of it are consistent with everything published; the tests enumerate every world a reader could
imagine and check exactly that.
"""
from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.publishing import disclosure as d
from ledger.publishing.evaluation import MetricFigures, group_row, published_figure


def test_the_rule_on_the_issues_examples():
    assert d.count(0) == 0 and d.count(3) is None and d.count(5) == 5 and d.count(None) is None
    assert d.part(6, 7) is None  # "6 of 7 achieved" identifies the one who did not
    assert d.part(2, 3) is None and d.part(0, 3) is None  # a suppressed cohort has no published part
    assert d.part(0, 6) == 0 and d.part(6, 6) == 6 and d.part(5, 10) == 5 and d.part(4, 10) is None
    assert d.rate(None, 7) is None and d.rate(5, 10) == Decimal("0.5000")
    assert d.cohort_value(Decimal("0.6667"), 3) is None  # 2 of 3 reconvicted
    assert d.cohort_value(Decimal("1.40"), 100) == Decimal("1.40") and d.cohort_value(Decimal(1), None) is None
    t = d.total([10, None, 0, 7])
    assert (t.value, t.parts, t.left_out) == (17, 3, 1)
    assert d.total([None, None]).value is None


def publish(n: int, ks: tuple[int, ...]) -> tuple:
    """What publicResults and the page show of a cohort of n with k_i achieving metric i."""
    shown_n = d.count(n)
    parts = tuple(d.part(k, n) for k in ks)
    return shown_n, parts, tuple(d.rate(p, shown_n) for p in parts)


MAX_N = 14


@st.composite
def cohorts(draw):
    n = draw(st.integers(0, MAX_N - 2))
    ks = tuple(draw(st.lists(st.integers(0, n), min_size=1, max_size=3)))
    return n, ks


@settings(max_examples=300, deadline=None)
@given(cohorts())
def test_no_suppressed_count_rate_or_complement_can_be_derived(cohort):
    n, ks = cohort
    seen = publish(n, ks)
    shown_n, parts, rates = seen
    # every world (n', k'_i) with k'_i <= n' that publishes exactly the same figures
    values_n, values_k = set(), [set() for _ in ks]
    for n2 in range(0, MAX_N + 4):
        options = [[k2 for k2 in range(n2 + 1) if publish(n2, (k2,))[1][0] == parts[i]
                    and publish(n2, (k2,))[2][0] == rates[i]] for i in range(len(ks))]
        if d.count(n2) != shown_n or any(not o for o in options):
            continue
        values_n.add(n2)
        for i, o in enumerate(options):
            values_k[i].update(o)
    assert n in values_n and all(k in values_k[i] for i, k in enumerate(ks))
    if shown_n is None:
        assert len(values_n) > 1
    for i, p in enumerate(parts):
        if p is None:
            assert len(values_k[i]) > 1, (n, ks, i)
            # nor its complement: n' - k' takes more than one value too
            assert len({n2 - k2 for n2 in values_n for k2 in values_k[i] if k2 <= n2}) > 1
        if rates[i] is not None:
            assert parts[i] is not None and shown_n is not None


def test_zero_is_shown_as_zero_and_everyone_as_everyone():
    assert publish(8, (0, 8)) == (8, (0, 8), (Decimal("0.0000"), Decimal("1.0000")))


# --- the evaluation report: totals over contracts never give a suppressed figure back ------------

PRICE = 4_000_000  # 40 000.00 per outcome, in öre


def figure(contract_id: int, code: str, count: int) -> MetricFigures:
    return MetricFigures(contract_id, f"Contract {contract_id}", code, code, "RATE_CARD", "OUTCOME", Decimal(count),
                         count * PRICE, "SEK", PRICE)


def publication(table: dict[int, dict[str, int]], groups: dict[int, str]) -> tuple:
    """Everything the public report shows: each metric figure, each contract row, each group row."""
    figures = {c: [published_figure(figure(c, code, n), None) for code, n in sorted(metrics.items())]
               for c, metrics in table.items()}
    shown = [(f.contract_id, f.code, f.quantity, f.amount_paid_minor, f.cost_per_unit_minor)
             for fs in figures.values() for f in fs]
    rows = [group_row(f"contract:{c}", "", None, "SEK", [(c, figures[c], 0)]) for c in table]
    for g in sorted(set(groups.values())):
        rows.append(group_row(g, g, g, "SEK", [(c, figures[c], 0) for c in table if groups[c] == g]))
    return tuple(shown), tuple(rows)


@st.composite
def tables(draw):
    contracts = draw(st.integers(1, 4))
    table = {c: {code: draw(st.integers(0, 12)) for code in draw(st.sets(st.sampled_from(["A", "B", "C"]), min_size=1))}
             for c in range(1, contracts + 1)}
    groups = {c: draw(st.sampled_from(["PRIVATE", "NONPROFIT", "PUBLIC_IN_HOUSE"])) for c in table}
    return table, groups


@settings(max_examples=200, deadline=None)
@given(tables(), st.data())
def test_report_totals_and_costs_never_give_back_a_suppressed_count(case, data):
    table, groups = case
    seen = publication(table, groups)
    for c, metrics in table.items():
        for code, n in metrics.items():
            if not d.is_small(n):
                continue
            # another true value of the suppressed count publishes exactly the same report
            other = data.draw(st.sampled_from([x for x in range(1, d.SMALL_COUNT) if x != n]))
            changed = {cc: dict(m) for cc, m in table.items()}
            changed[c][code] = other
            assert publication(changed, groups) == seen, (table, c, code, other)
    for row in seen[1]:  # and a published cost per outcome is over published outcomes only
        if row.outcomes is not None and row.outcomes:
            assert row.cost_per_outcome_minor == PRICE
