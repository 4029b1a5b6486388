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
    return two_passes_world(db)


def two_passes_world(db):
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


# --- 4. disputes --------------------------------------------------------------------------------

def dispute(db, w, subject_type, subject_id, today=TODAY, reason="Eleven klarade provet"):
    from ledger.corrections import disputes
    with db.uow() as uow:
        d = disputes.open_dispute(uow, actor=w["provider"], subject_type=subject_type, subject_id=subject_id,
                                  reason=reason, today=today)
        uow.commit()
    return d


def resolve(db, d, outcome, actor=FM2, reason="Bedömt"):
    from ledger.corrections import disputes
    with db.uow() as uow:
        d = disputes.resolve_dispute(uow, actor=actor, dispute_id=d.id, outcome=outcome, reason=reason)
        uow.commit()
    return d


def reject_new_claim(db, w, day=5):
    with db.uow() as uow:
        person = ev.enroll_participant(uow, actor=w["provider"], secret=SECRET, contract_id=w["contract"].id,
                                       personal_identity_number=None, external_ref=f"R{day}", area=None,
                                       enrolled_on=date(2026, 1, 10), today=TODAY)
        e = ev.submit_evidence(uow, actor=w["provider"], contract_id=w["contract"].id, today=TODAY,
                               claim=ev.Claim(person.id, "SCHOOL_PASS", achieved_on=date(2026, 4, day)))
        ev.reject_evidence(uow, actor=w["verifier"], evidence_id=e.id, reason="Intyget saknas")
        uow.commit()
    return e


def test_an_upheld_dispute_of_a_rejection_is_paid_in_the_next_payout_of_its_period(db, two_passes):
    w = two_passes
    approve(db, calc(db, w))
    rejected = reject_new_claim(db, w)
    # when the provider disputes the rejection and a fund manager upholds it
    d = dispute(db, w, "EVIDENCE", rejected.id)
    assert (d.status, d.subject_status) == ("OPEN", "REJECTED")
    done = resolve(db, d, "UPHELD")
    assert done.status == "UPHELD" and done.resolved_by.startswith("gustav")
    # then the item is VERIFIED and the next payout of H1 pays it
    supplementary = calc(db, w)
    assert supplementary.total_minor == 4_000_000
    assert approve(db, supplementary).status == "POSTED"


def test_an_invalidation_upheld_after_its_clawback_is_paid_again(db, two_passes):
    w = two_passes
    approve(db, calc(db, w))
    with db.uow() as uow:
        ev.invalidate_evidence(uow, actor=FM, evidence_id=w["items"][0].id, reason="Fel elev")
        uow.commit()
    approve(db, calc(db, w, period=(date(2026, 7, 1), date(2026, 12, 31))))  # the clawback
    d = dispute(db, w, "EVIDENCE", w["items"][0].id)
    # frida invalidated it: she may not resolve the dispute; gustav may
    refused(db, "OWN_DECISION", lambda uow: __import__("ledger.corrections.disputes", fromlist=["x"]).resolve_dispute(
        uow, actor=FM, dispute_id=d.id, outcome="UPHELD", reason="r"))
    resolve(db, d, "UPHELD")
    assert calc(db, w).total_minor == 4_000_000


def test_a_dismissed_dispute_changes_nothing_and_a_payout_can_be_disputed(db, two_passes):
    w = two_passes
    posted = approve(db, calc(db, w))
    rejected = reject_new_claim(db, w)
    resolve(db, dispute(db, w, "EVIDENCE", rejected.id), "DISMISSED")
    assert calc(db, w).total_minor == 0
    d = dispute(db, w, "PAYOUT", posted.id, reason="Fel andel")
    # frida calculated the payout, gustav approved it: neither may resolve; a third fund manager may
    from ledger.corrections import disputes
    for who in (FM, FM2):
        refused(db, "OWN_DECISION", lambda uow, who=who: disputes.resolve_dispute(
            uow, actor=who, dispute_id=d.id, outcome="DISMISSED", reason="r"))
    assert resolve(db, d, "DISMISSED", actor=Actor("hanna", "FUND_MANAGER")).status == "DISMISSED"


def test_bad_disputes_are_refused_with_a_code_and_write_nothing(db, two_passes):
    from ledger.corrections import disputes
    w = two_passes
    rejected = reject_new_claim(db, w)
    verified = w["items"][0]
    other = Actor("olle", "PROVIDER", __import__("tests.factories", fromlist=["party"]).party(db, role="PROVIDER").id)

    def open_(subject_id, actor=w["provider"], kind="EVIDENCE", today=TODAY):
        return lambda uow: disputes.open_dispute(uow, actor=actor, subject_type=kind, subject_id=subject_id,
                                                 reason="r", today=today)
    refused(db, "NOT_DISPUTABLE", open_(verified.id))
    refused(db, "UNKNOWN_EVIDENCE", open_(rejected.id, actor=other))   # another provider's: as if missing
    refused(db, "UNKNOWN_PAYOUT", open_(999_999, kind="PAYOUT"))
    refused(db, "PERMISSION_DENIED", open_(rejected.id, actor=FM))
    # the window is 30 days from the decision
    decided = rejected.decided_at.date()
    refused(db, "DISPUTE_WINDOW_CLOSED", open_(rejected.id, today=decided + __import__("datetime").timedelta(days=31)))
    d = dispute(db, w, "EVIDENCE", rejected.id, today=decided + __import__("datetime").timedelta(days=30))
    refused(db, "ALREADY_DISPUTED", open_(rejected.id))
    resolve(db, d, "DISMISSED")
    refused(db, "ALREADY_DECIDED", lambda uow: disputes.resolve_dispute(uow, actor=FM2, dispute_id=d.id,
                                                                        outcome="UPHELD", reason="r"))
    refused(db, "ALREADY_DISPUTED", open_(rejected.id))


def test_the_database_allows_one_dispute_per_subject(db, two_passes):
    # the unique constraint refuses a second dispute written past the use case's check, and the
    # unit of work answers it as the check would
    from ledger.models import Dispute
    w = two_passes
    d = dispute(db, w, "EVIDENCE", reject_new_claim(db, w).id)
    with pytest.raises(DomainError, match="already been disputed") as err, db.uow() as uow:
        uow.session.add(Dispute(contract_id=d.contract_id, subject_type="EVIDENCE", subject_id=d.subject_id,
                                evidence_id=d.evidence_id, status="OPEN", reason="again", opened_by="x",
                                deadline=d.deadline, subject_status="REJECTED"))
        uow.session.flush()
    assert err.value.code == "ALREADY_DISPUTED"


def test_a_contract_sets_its_dispute_window(db):
    fund, manager, muni, prov, ver = funded(db, FM)
    c = contract(db, FM, fund, manager, muni, prov, ver)
    assert c.dispute_window_days == 30
    from ledger.contracts import TermsSpec
    with pytest.raises(DomainError) as err, db.uow() as uow:
        contracts.create_contract(uow, actor=FM, title="T", fund_id=fund.id, municipality_id=muni.id,
                                  provider_id=prov.id, verifier_id=None, investor_id=None, policy_area="p",
                                  start_date=date(2026, 1, 1), end_date=date(2026, 12, 31), dispute_window_days=0,
                                  terms=TermsSpec(sek("1.00"), None, (ShareSpec(muni.id, Decimal(100)),),
                                                  (rate_card(),)))
    assert err.value.code == "INVALID_DISPUTE_WINDOW"


# --- 5. dual control ----------------------------------------------------------------------------

def dual(db, w, on=True):
    from ledger.models import OutcomesFund
    with db.uow() as uow:
        uow.session.get(OutcomesFund, w["fund"].id).dual_control = on
        uow.commit()


def test_under_dual_control_an_amendment_waits_for_a_second_fund_manager(db, two_passes):
    from ledger.corrections import change_requests as cr
    from ledger.contracts import terms_history
    w = two_passes
    dual(db, w)
    # when frida amends the contract
    with db.uow() as uow:
        request = cr.submit(uow, actor=FM, kind="AMEND_CONTRACT", contract_id=w["contract"].id,
                            effective_date=date(2026, 7, 1), reason="Nytt pris",
                            metrics=(rate_card("SCHOOL_PASS", "45000.00"),))
        uow.commit()
    # then nothing changes yet: a PENDING request
    assert (request.kind, request.status, request.requested_by) == ("AMEND_CONTRACT", "PENDING", "frida")
    with db.reading() as s:
        assert len(terms_history(s, w["contract"].id)) == 1
    # frida cannot approve her own request
    refused(db, "FOUR_EYES_REQUIRED", lambda uow: cr.approve_change_request(uow, actor=FM,
                                                                            change_request_id=request.id))
    # gustav approves it: the amendment is made as asked
    with db.uow() as uow:
        done = cr.approve_change_request(uow, actor=FM2, change_request_id=request.id)
        uow.commit()
    assert done.status == "APPROVED" and done.result_type == "OutcomeContract"
    with db.reading() as s:
        terms = terms_history(s, w["contract"].id)
        assert [(t.version, t.effective_from, t.metrics[0].unit_price_minor) for t in terms] == [
            (1, date(2026, 1, 1), 4_000_000), (2, date(2026, 7, 1), 4_500_000)]
    refused(db, "ALREADY_DECIDED", lambda uow: cr.approve_change_request(uow, actor=FM2, change_request_id=request.id))


def test_under_dual_control_reversal_termination_and_penalty_are_requests(db, two_passes):
    from ledger import sanctions
    from ledger.corrections import change_requests as cr
    from ledger.models import ChangeRequest
    w = two_passes
    dual(db, w)
    posted = approve(db, calc(db, w))
    with db.uow() as uow:
        reversal = cr.submit(uow, actor=FM, kind="REVERSE_TRANSACTION", transaction_id=posted.transaction_sequence,
                             reason="Fel period")
        penalty = cr.submit(uow, actor=FM, kind="ISSUE_SANCTION", contract_id=w["contract"].id, level="PENALTY",
                            reason="Sen rapport", penalty=sek("25000.00"))
        warning = cr.submit(uow, actor=FM, kind="ISSUE_SANCTION", contract_id=w["contract"].id, level="WARNING",
                            reason="Påminnelse", penalty=None)
        ending = cr.submit(uow, actor=FM, kind="TERMINATE_CONTRACT", contract_id=w["contract"].id, reason="Konkurs")
        uow.commit()
    assert [type(x).__name__ for x in (reversal, penalty, warning, ending)] == [
        "ChangeRequest", "ChangeRequest", "Sanction", "ChangeRequest"]
    # a request that would fail is refused at once, and writes nothing
    refused(db, "PENALTY_REQUIRED", lambda uow: cr.submit(uow, actor=FM, kind="ISSUE_SANCTION",
                                                          contract_id=w["contract"].id, level="PENALTY", reason="r",
                                                          penalty=None))
    # rejected: nothing happens; approved: the reversal is posted and the payout REVERSED
    with db.uow() as uow:
        cr.reject_change_request(uow, actor=FM2, change_request_id=ending.id, reason="Inte nu")
        cr.approve_change_request(uow, actor=FM2, change_request_id=reversal.id)
        cr.approve_change_request(uow, actor=FM2, change_request_id=penalty.id)
        uow.commit()
    with db.reading() as s:
        assert calculations.get_payout(s, posted.id).status == "REVERSED"
        assert contracts.get_contract(s, w["contract"].id).status == "ACTIVE"
        statuses = dict(s.execute(__import__("sqlalchemy").select(ChangeRequest.id, ChangeRequest.status)).all())
        assert statuses == {reversal.id: "APPROVED", penalty.id: "APPROVED", ending.id: "REJECTED"}
        assert [x.level for x in s.execute(__import__("sqlalchemy").select(sanctions.Sanction)).scalars()] == [
            "WARNING", "PENALTY"]


def test_without_dual_control_the_change_is_made_at_once(db, two_passes):
    from ledger.corrections import change_requests as cr
    w = two_passes
    dual(db, w, on=False)
    with db.uow() as uow:
        done = cr.submit(uow, actor=FM, kind="TERMINATE_CONTRACT", contract_id=w["contract"].id, reason="Konkurs")
        uow.commit()
    assert type(done).__name__ == "OutcomeContract" and done.status == "TERMINATED"


def test_an_approval_that_no_longer_applies_writes_nothing(db, two_passes):
    from ledger.corrections import change_requests as cr
    w = two_passes
    dual(db, w)
    with db.uow() as uow:
        first = cr.submit(uow, actor=FM, kind="TERMINATE_CONTRACT", contract_id=w["contract"].id, reason="A")
        second = cr.submit(uow, actor=FM, kind="TERMINATE_CONTRACT", contract_id=w["contract"].id, reason="B")
        uow.commit()
    with db.uow() as uow:
        cr.approve_change_request(uow, actor=FM2, change_request_id=first.id)
        uow.commit()
    refused(db, "INVALID_TRANSITION", lambda uow: cr.approve_change_request(uow, actor=FM2,
                                                                            change_request_id=second.id))


def test_new_funds_have_dual_control_and_funds_made_before_it_do_not(db):
    from sqlalchemy import inspect
    from ledger import funds
    _, manager, *_ = funded(db, FM)
    with db.uow() as uow:
        fund = funds.create_fund(uow, actor=FM, name="Nya fonden", manager_id=manager.id, currency="SEK")
        uow.commit()
    assert fund.dual_control is True
    # the column's default, which the migration gave the funds that existed: off
    default = next(c for c in inspect(db.bind).get_columns("outcome_funds") if c["name"] == "dual_control")["default"]
    assert default is not None and ("false" in str(default).lower() or str(default).strip("'") == "0")


def test_eight_disputes_of_one_decision_at_once_make_one(fresh_engine):
    import threading
    from ledger.corrections import disputes
    from ledger.db import Database
    db = Database(fresh_engine)
    w = two_passes_world(db)
    rejected = reject_new_claim(db, w)
    barrier, outcomes = threading.Barrier(8), []

    def attempt():
        barrier.wait()
        try:
            with db.uow() as uow:
                disputes.open_dispute(uow, actor=w["provider"], subject_type="EVIDENCE", subject_id=rejected.id,
                                      reason="Intyget finns", today=TODAY)
                uow.commit()
            outcomes.append("OK")
        except DomainError as err:
            outcomes.append(err.code)
        except Exception as err:  # noqa: BLE001 - the test reports any unexpected failure
            outcomes.append(f"unexpected {type(err).__name__}: {err}")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ALREADY_DISPUTED"] * 7 + ["OK"], outcomes


def test_under_dual_control_the_use_cases_refuse_a_change_made_without_a_request(db, two_passes):
    # given a dual-control fund with a posted payout
    from ledger import sanctions
    from ledger.corrections import reversals
    w = two_passes
    posted = approve(db, calc(db, w))
    dual(db, w)
    cid = w["contract"].id
    # when the use cases are called directly (a script, a CLI), not through a change request:
    # then each is refused and writes nothing
    for change in (
        lambda uow: reversals.reverse_transaction(uow, actor=FM, transaction_id=posted.transaction_sequence,
                                                  reason="Fel period"),
        lambda uow: contracts.amend_contract(uow, actor=FM, contract_id=cid, effective_date=date(2026, 7, 1),
                                             reason="Nytt pris", metrics=(rate_card("SCHOOL_PASS", "45000.00"),)),
        lambda uow: contracts.terminate_contract(uow, actor=FM, contract_id=cid, reason="Konkurs"),
        lambda uow: sanctions.issue_sanction(uow, actor=FM, contract_id=cid, level="PENALTY", reason="Sen rapport",
                                             penalty=sek("25000.00")),
        lambda uow: sanctions.issue_sanction(uow, actor=FM, contract_id=cid, level="DEAUTHORISATION", reason="Fusk"),
    ):
        refused(db, "CHANGE_REQUEST_REQUIRED", change)
    # a warning is not controlled
    with db.uow() as uow:
        assert sanctions.issue_sanction(uow, actor=FM, contract_id=cid, level="WARNING", reason="Påminnelse").id
        uow.commit()


def test_an_upheld_payout_dispute_reverses_the_payout_and_its_period_is_paid_anew(db, two_passes):
    w = two_passes
    posted = approve(db, calc(db, w))
    d = dispute(db, w, "PAYOUT", posted.id, reason="Fel andel")
    # when a third fund manager upholds it (no dual control)
    resolve(db, d, "UPHELD", actor=Actor("hanna", "FUND_MANAGER"))
    # then the payout is REVERSED, and a new payout of the period pays its items again
    with db.reading() as s:
        assert calculations.get_payout(s, posted.id).status == "REVERSED"
    again = calc(db, w)
    assert again.total_minor == posted.total_minor
    assert approve(db, again).status == "POSTED"


def test_under_dual_control_an_upheld_payout_dispute_is_a_reversal_request(db, two_passes):
    from ledger.corrections import change_requests as cr
    from ledger.models import ChangeRequest
    w = two_passes
    posted = approve(db, calc(db, w))
    dual(db, w)
    d = dispute(db, w, "PAYOUT", posted.id, reason="Fel andel")
    hanna = Actor("hanna", "FUND_MANAGER")
    resolve(db, d, "UPHELD", actor=hanna)
    # then the payout stands until a second fund manager approves the reversal hanna asked for
    with db.reading() as s:
        assert calculations.get_payout(s, posted.id).status == "POSTED"
        request = s.execute(__import__("sqlalchemy").select(ChangeRequest)).scalar_one()
        assert (request.kind, request.status, request.requested_by) == ("REVERSE_TRANSACTION", "PENDING", "hanna")
        request_id = request.id
    refused(db, "FOUR_EYES_REQUIRED", lambda uow: cr.approve_change_request(uow, actor=hanna,
                                                                            change_request_id=request_id))
    with db.uow() as uow:
        cr.approve_change_request(uow, actor=FM, change_request_id=request_id)
        uow.commit()
    with db.reading() as s:
        assert calculations.get_payout(s, posted.id).status == "REVERSED"
