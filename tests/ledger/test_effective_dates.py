"""As of a business date (effectiveOn) beside the moment of recording (asOf): a bitemporal view."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import journal, settlement
from tests.factories import accounts, post
from tests.ledger.test_corrections import H1, approve, calc, two_passes  # noqa: F401  (fixture)


def test_a_payout_effective_30_june_is_owed_on_31_december(db, two_passes):
    # given a payout for H1, posted now, effective on the period's last day
    w = two_passes
    approve(db, calc(db, w))

    def owed(**kw):
        with db.reading() as s:
            return {(o.debtor_id, o.outstanding_minor)
                    for o in settlement.obligations(s, contract_id=w["contract"].id, **kw)}
    both = {(w["manager"].id, 4_000_000), (w["muni"].id, 4_000_000)}
    # then it is owed on 30 June and on 31 December, and not on 29 June
    assert owed(effective_on=date(2026, 12, 31)) == both
    assert owed(effective_on=H1[1]) == both
    assert owed(effective_on=date(2026, 6, 29)) == set()
    # and what the ledger held yesterday about 31 December: nothing yet
    yesterday = datetime.now(timezone.utc) - timedelta(days=1)
    assert owed(as_of=yesterday, effective_on=date(2026, 12, 31)) == set()


def test_a_backdated_posting_changes_the_past_position_only_from_when_it_was_recorded(db):
    a, b = accounts(db)
    june = post(db, [(a, "100.00"), (b, "-100.00")], effective=date(2026, 6, 1))
    march = post(db, [(a, "10.00"), (b, "-10.00")], effective=date(2026, 3, 1))  # recorded later, backdated
    with db.reading() as s:
        acc = s.get(journal.Account, a.id)
        at = lambda **kw: journal.balance_minor(s, acc, **kw)  # noqa: E731
        assert at(effective_on=date(2026, 4, 1)) == 1_000
        assert at(effective_on=date(2026, 4, 1), as_of_sequence=june.sequence) == 0
        assert at(effective_on=date(2026, 6, 1)) == 11_000
        assert at(effective_on=date(2026, 6, 1), as_of_sequence=march.sequence - 1) == 10_000


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                                 HealthCheck.function_scoped_fixture])
@given(postings=st.lists(st.tuples(st.integers(1, 10_000), st.integers(0, 60)), min_size=1, max_size=8),
       day=st.integers(0, 60), upto=st.integers(0, 8))
def test_the_balance_on_a_date_is_the_sum_of_what_was_effective_by_then(db, postings, day, upto):
    a, b = accounts(db)
    start = date(2026, 1, 1)
    posted = [(post(db, [(a, f"{units / 100:.2f}"), (b, f"{-units / 100:.2f}")],
                    effective=start + timedelta(days=d)).sequence, units, d) for units, d in postings]
    limit = posted[min(upto, len(posted) - 1)][0]
    with db.reading() as s:
        acc = s.get(journal.Account, a.id)
        got = journal.balance_minor(s, acc, effective_on=start + timedelta(days=day), as_of_sequence=limit)
    assert got == sum(units for seq, units, d in posted if d <= day and seq <= limit)
