"""Disputes: a provider contests a rejection, an invalidation or a payout; a fund manager who did
not make the decision resolves it.

The provider has the contract's `dispute_window_days` from the decision to open a dispute,
and the fund has as many days from the opening to resolve it (`deadline`); an open dispute
past its deadline is overdue. UPHELD reinstates a disputed evidence item as VERIFIED, so
the next payout of its period pays it; an upheld payout dispute reverses the payout's ledger
transaction (PAYOUTS.md §9: the payout becomes REVERSED, its items and measurements payable
again, its commitments restored), through a change request when the fund has dual control,
so that a new payout of the period pays what is owed. DISMISSED changes nothing.
"""
from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ledger import journal
from ledger.access import Actor, require_role
from ledger.contracts import get_contract
from ledger.corrections import change_requests
from ledger.db import UnitOfWork
from ledger.errors import Conflict, NotFound, PermissionDenied, ValidationError
from ledger.models import Dispute, Evidence, PayoutCalculation, utcnow
from ledger.parties import clean_text

DISPUTABLE_EVIDENCE = ("REJECTED", "INVALIDATED")
OUTCOMES = ("UPHELD", "DISMISSED")
MAX_WINDOW_DAYS = 3650


def check_window(days: int) -> int:
    """A dispute window is 1 to 3650 days."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_WINDOW_DAYS:
        raise ValidationError(f"disputeWindowDays is a whole number of days from 1 to {MAX_WINDOW_DAYS}",
                              code="INVALID_DISPUTE_WINDOW", field=["disputeWindowDays"])
    return days


def _subject(uow: UnitOfWork, actor: Actor, subject_type: str, subject_id: int):
    """(subject row, its contract, the decision's status, the day of the decision), if the actor's."""
    s = uow.session
    if subject_type == "EVIDENCE":
        row = s.execute(select(Evidence).where(Evidence.id == subject_id).with_for_update()).scalar_one_or_none()
        missing = NotFound(f"evidence {subject_id} does not exist", code="UNKNOWN_EVIDENCE", field=["subjectId"])
    elif subject_type == "PAYOUT":
        row = s.execute(select(PayoutCalculation).where(PayoutCalculation.id == subject_id)
                        .with_for_update()).scalar_one_or_none()
        missing = NotFound(f"payout {subject_id} does not exist", code="UNKNOWN_PAYOUT", field=["subjectId"])
    else:
        raise ValidationError("a dispute is about an evidence item or a payout", code="INVALID_ID", field=["subjectId"])
    # another provider's item answers exactly like a missing one
    if row is None:
        raise missing
    contract = get_contract(uow, row.contract_id)
    if contract.provider_id != actor.party_id:
        raise missing
    if subject_type == "EVIDENCE":
        if row.status not in DISPUTABLE_EVIDENCE:
            raise Conflict(f"only a rejected or invalidated item can be disputed; this one is {row.status}",
                           code="NOT_DISPUTABLE", field=["subjectId"])
        decided = row.decided_at if row.status == "REJECTED" else row.invalidated_at
    else:
        if row.status != "POSTED":
            raise Conflict(f"only a posted payout can be disputed; this one is {row.status}", code="NOT_DISPUTABLE",
                           field=["subjectId"])
        decided = row.approved_at
    return row, contract, row.status, decided.date()


def open_dispute(uow: UnitOfWork, *, actor: Actor, subject_type: str, subject_id: int, reason: str,
                 today: date) -> Dispute:
    """The contract's provider contests a decision, within the contract's dispute window."""
    require_role(actor, "PROVIDER")
    reason = clean_text(reason, "reason", max_len=4000)
    row, contract, status, decided_on = _subject(uow, actor, subject_type, subject_id)
    window = timedelta(days=contract.dispute_window_days)
    if today > decided_on + window:
        raise Conflict(f"the decision of {decided_on} could be disputed until {decided_on + window}",
                       code="DISPUTE_WINDOW_CLOSED", field=["subjectId"])
    s = uow.session
    if s.execute(select(Dispute.id).where(Dispute.subject_type == subject_type,
                                          Dispute.subject_id == subject_id)).first():
        raise Conflict("this decision has already been disputed", code="ALREADY_DISPUTED", field=["subjectId"])
    dispute = Dispute(contract_id=contract.id, subject_type=subject_type, subject_id=subject_id,
                      evidence_id=subject_id if subject_type == "EVIDENCE" else None,
                      payout_id=subject_id if subject_type == "PAYOUT" else None, status="OPEN", reason=reason,
                      opened_by=actor.label, deadline=today + window, subject_status=status)
    try:
        # the unique constraint decides between two requests that both passed the check above
        with s.begin_nested():
            s.add(dispute)
            s.flush()
    except IntegrityError:
        raise Conflict("this decision has already been disputed", code="ALREADY_DISPUTED",
                       field=["subjectId"]) from None
    return dispute


def _decided_by(uow: UnitOfWork, dispute: Dispute) -> set[str]:
    """Who made the disputed decision (labels for evidence decisions, names for payouts)."""
    s = uow.session
    if dispute.evidence_id is not None:
        ev = s.get(Evidence, dispute.evidence_id)
        return {ev.decided_by if dispute.subject_status == "REJECTED" else ev.invalidated_by}
    payout = s.get(PayoutCalculation, dispute.payout_id)
    return {payout.calculated_by, payout.approved_by}


def resolve_dispute(uow: UnitOfWork, *, actor: Actor, dispute_id: int, outcome: str, reason: str) -> Dispute:
    """UPHELD (a disputed item is VERIFIED again) or DISMISSED, by a fund manager who did not decide."""
    require_role(actor, "FUND_MANAGER")
    reason = clean_text(reason, "reason", max_len=4000)
    if outcome not in OUTCOMES:
        raise ValidationError(f"the outcome is one of {', '.join(OUTCOMES)}", code="INVALID_INPUT", field=["outcome"])
    s = uow.session
    # an upheld payout dispute posts a reversal: take the chain lock first, as postings do, so the
    # dispute and payout row locks below are never taken in the opposite order to a posting's
    journal.lock(uow)
    dispute = s.execute(select(Dispute).where(Dispute.id == dispute_id).with_for_update()).scalar_one_or_none()
    if dispute is None:
        raise NotFound(f"dispute {dispute_id} does not exist", code="UNKNOWN_DISPUTE", field=["disputeId"])
    if dispute.status != "OPEN":
        raise Conflict(f"the dispute is already {dispute.status}", code="ALREADY_DECIDED", field=["disputeId"])
    deciders = _decided_by(uow, dispute)
    if actor.label in deciders or actor.name in deciders:
        raise PermissionDenied("the person who made a decision cannot resolve a dispute of it", code="OWN_DECISION",
                               field=["disputeId"])
    if outcome == "UPHELD" and dispute.evidence_id is not None:
        ev = s.execute(select(Evidence).where(Evidence.id == dispute.evidence_id).with_for_update()).scalar_one()
        if ev.status != dispute.subject_status:
            raise Conflict(f"the item is {ev.status} now, not {dispute.subject_status}", code="CONFLICT",
                           field=["disputeId"])
        ev.status = "VERIFIED"
    if outcome == "UPHELD" and dispute.payout_id is not None:
        _reverse_payout(uow, actor, dispute, reason)
    dispute.status, dispute.resolved_by, dispute.resolved_at = outcome, actor.label, utcnow()
    dispute.resolution_reason = reason
    s.flush()
    return dispute


def _reverse_payout(uow: UnitOfWork, actor: Actor, dispute: Dispute, reason: str) -> None:
    """Undo an upheld payout so its period is paid anew: a reversal of its transaction (a change
    request under dual control); a payout that posted nothing is simply REVERSED. A payout
    already reversed since the dispute was opened needs nothing more."""
    payout = uow.session.execute(select(PayoutCalculation).where(PayoutCalculation.id == dispute.payout_id)
                                 .with_for_update()).scalar_one()
    if payout.status != "POSTED":
        return
    if payout.transaction_sequence is None:
        payout.status = "REVERSED"
        return
    change_requests.submit(uow, actor=actor, kind="REVERSE_TRANSACTION", transaction_id=payout.transaction_sequence,
                           reason=f"Dispute {dispute.id} upheld: {reason}")


def is_overdue(dispute: Dispute, today: date) -> bool:
    return dispute.status == "OPEN" and today > dispute.deadline

