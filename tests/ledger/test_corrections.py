"""Corrections you can trust (PAYOUTS.md §9): stale approvals, reversals, measurement
corrections, disputes and dual control, through the database."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ledger import calculations, contracts
from ledger import evidence as ev
from ledger.access import Actor
from ledger.contracts import ShareSpec
from ledger.errors import DomainError
from tests.conftest import table_counts
from tests.factories import contract, funded, rate_card, sek

FM = Actor("frida", "FUND_MANAGER")
FM2 = Actor("gustav", "FUND_MANAGER")
SECRET = b"test-secret-for-hmac-0123456789"
TODAY = date(2026, 11, 23)
H1 = (date(2026, 1, 1), date(2026, 6, 30))


@pytest.fixture
def two_passes(db):
    """A contract paying 40 000.00 per school pass, 50/50, with two verified passes in H1 2026."""
    fund, manager, muni, prov, ver = funded(db, FM)
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True, metrics=(rate_card("SCHOOL_PASS", "40000.00"),))
    provider, verifier = Actor("pia", "PROVIDER", prov.id), Actor("vera", "VERIFIER", ver.id)
    items = []
    with db.uow() as uow:
        for i, ref in enumerate(("P1", "P2")):
            person = ev.enroll_participant(uow, actor=provider, secret=SECRET, contract_id=c.id,
                                           personal_identity_number=None, external_ref=ref, area=None,
                                           enrolled_on=date(2026, 1, 10), today=TODAY)
            e = ev.submit_evidence(uow, actor=provider, contract_id=c.id, today=TODAY,
                                   claim=ev.Claim(person.id, "SCHOOL_PASS", achieved_on=date(2026, 3, 1 + i)))
            ev.verify_evidence(uow, actor=verifier, evidence_id=e.id, note=None)
            items.append(e)
        uow.commit()
    return dict(fund=fund, manager=manager, muni=muni, prov=prov, ver=ver, contract=c, items=items,
                provider=provider, verifier=verifier)


def calc(db, w, period=H1, actor=FM):
    with db.uow() as uow:
        p = calculations.calculate_payout(uow, actor=actor, contract_id=w["contract"].id, period_start=period[0],
                                          period_end=period[1])
        uow.commit()
    return p


def approve(db, payout, actor=FM2):
    with db.uow() as uow:
        p = calculations.approve_payout(uow, actor=actor, payout_id=payout.id)
        uow.commit()
    return p


def refused(db, code, fn):
    """`fn(uow)` fails with `code` and writes nothing."""
    before = table_counts(db)
    with pytest.raises(DomainError) as err, db.uow() as uow:
        fn(uow)
        uow.commit()
    assert err.value.code == code, err.value.message
    assert table_counts(db) == before


# --- 1. stale approval ------------------------------------------------------------------------

def test_the_issues_case_amended_and_invalidated_after_calculation_is_stale(db, two_passes):
    # given 80 000.00 calculated under terms v1
    w = two_passes
    p = calc(db, w)
    assert p.total_minor == 8_000_000 and p.terms_version == 1
    # when v2 takes effect inside the period (maxValue 50 000.00, shares 20/80) and an item is invalidated
    with db.uow() as uow:
        contracts.amend_contract(uow, actor=FM, contract_id=w["contract"].id, effective_date=date(2026, 5, 1),
                                 reason="Omförhandlat", max_value=sek("50000.00"),
                                 payer_shares=(ShareSpec(w["manager"].id, Decimal(20)),
                                               ShareSpec(w["muni"].id, Decimal(80))))
        ev.invalidate_evidence(uow, actor=w["verifier"], evidence_id=w["items"][0].id, reason="Fel elev")
        uow.commit()
    # then approval is refused and writes nothing
    refused(db, "STALE_PAYOUT", lambda uow: calculations.approve_payout(uow, actor=FM2, payout_id=p.id))
    # and a new calculation pays the one remaining item under v2's shares
    again = calc(db, w)
    assert again.terms_version == 2 and again.total_minor == 4_000_000
    assert [s.amount_minor for s in again.shares] == [800_000, 3_200_000]
    assert approve(db, again).status == "POSTED"


@pytest.mark.parametrize("change", ["amend", "invalidate", "new_evidence"])
def test_any_change_to_the_inputs_after_calculation_makes_approval_stale(db, two_passes, change):
    w = two_passes
    p = calc(db, w)
    with db.uow() as uow:
        if change == "amend":
            contracts.amend_contract(uow, actor=FM, contract_id=w["contract"].id, effective_date=date(2026, 6, 1),
                                     reason="Nytt pris", metrics=(rate_card("SCHOOL_PASS", "30000.00"),))
        elif change == "invalidate":
            ev.invalidate_evidence(uow, actor=FM, evidence_id=w["items"][1].id, reason="Dubblett")
        else:
            person = ev.enroll_participant(uow, actor=w["provider"], secret=SECRET, contract_id=w["contract"].id,
                                           personal_identity_number=None, external_ref="P3", area=None,
                                           enrolled_on=date(2026, 1, 10), today=TODAY)
            e = ev.submit_evidence(uow, actor=w["provider"], contract_id=w["contract"].id, today=TODAY,
                                   claim=ev.Claim(person.id, "SCHOOL_PASS", achieved_on=date(2026, 4, 1)))
            ev.verify_evidence(uow, actor=w["verifier"], evidence_id=e.id, note=None)
        uow.commit()
    refused(db, "STALE_PAYOUT", lambda uow: calculations.approve_payout(uow, actor=FM2, payout_id=p.id))


def test_an_unchanged_payout_is_approved(db, two_passes):
    p = calc(db, two_passes)
    assert approve(db, p).status == "POSTED"


# --- 2. reversal --------------------------------------------------------------------------------

def reverse(db, sequence, actor=FM, reason="Fel period"):
    from ledger.corrections import reversals
    with db.uow() as uow:
        tx = reversals.reverse_transaction(uow, actor=actor, transaction_id=sequence, reason=reason)
        uow.commit()
    return tx


def test_reversing_a_payouts_transaction_makes_it_reversed_and_its_items_payable_again(db, two_passes):
    from ledger import chart, journal, settlement
    w = two_passes
    with db.reading() as s:
        before = chart.fund_position(s, w["fund"].id)
    posted = approve(db, calc(db, w))
    # when its transaction is reversed
    reverse(db, posted.transaction_sequence)
    # then the payout is REVERSED, nothing is owed, and the fund's commitment is whole again
    with db.reading() as s:
        assert calculations.get_payout(s, posted.id).status == "REVERSED"
        assert settlement.obligations(s, contract_id=w["contract"].id) == []
        assert chart.fund_position(s, w["fund"].id) == before
        assert journal.verify(s).ok
    # and a new payout of the period pays the same items again
    again = calc(db, w)
    assert again.total_minor == 8_000_000
    assert approve(db, again).status == "POSTED"
    with db.reading() as s:
        owed = {(o.debtor_id, o.creditor_id): o.outstanding_minor
                for o in settlement.obligations(s, contract_id=w["contract"].id)}
        assert owed == {(w["manager"].id, w["prov"].id): 4_000_000, (w["muni"].id, w["prov"].id): 4_000_000}
        pos = chart.fund_position(s, w["fund"].id)
        assert (pos.committed, pos.paid_out) == (before.committed - 4_000_000, 4_000_000)


def test_a_calculation_made_before_a_reversal_is_stale(db, two_passes):
    w = two_passes
    posted = approve(db, calc(db, w))
    pending = calc(db, w, period=(date(2026, 7, 1), date(2026, 12, 31)))
    reverse(db, posted.transaction_sequence)
    refused(db, "STALE_PAYOUT", lambda uow: calculations.approve_payout(uow, actor=FM2, payout_id=pending.id))


def test_a_clawback_reversed_is_due_again(db, two_passes):
    w = two_passes
    approve(db, calc(db, w))
    with db.uow() as uow:
        ev.invalidate_evidence(uow, actor=w["verifier"], evidence_id=w["items"][0].id, reason="Fel elev")
        uow.commit()
    claw = approve(db, calc(db, w, period=(date(2026, 7, 1), date(2026, 12, 31))))
    assert claw.total_minor == -4_000_000
    reverse(db, claw.transaction_sequence)
    again = calc(db, w, period=(date(2026, 7, 1), date(2026, 12, 31)))
    assert [(x.kind, x.net_minor) for x in again.lines] == [("CLAWBACK", -4_000_000)]


def test_the_migration_marks_payouts_whose_transaction_was_reversed(db, two_passes):
    # given a payout whose transaction was reversed before payouts could be REVERSED (the bare journal)
    import importlib.util
    import pathlib
    from ledger import journal
    posted = approve(db, calc(db, two_passes))
    with db.uow() as uow:
        journal.reverse(uow, actor="old code", sequence=posted.transaction_sequence, reason="före 0013a")
        uow.commit()
    with db.reading() as s:
        assert calculations.get_payout(s, posted.id).status == "POSTED"
    path = next(pathlib.Path("migrations/versions").glob("*_0013a_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0013a", path)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    # when the migration's data step runs
    with db.uow() as uow:
        migration.mark_reversed_payouts(uow.session.connection())
        uow.commit()
    # then
    with db.reading() as s:
        assert calculations.get_payout(s, posted.id).status == "REVERSED"
