"""Participants, outcome evidence and its verification, and cohort measurements.

Providers enroll and claim; the contract's verifier decides; a verified claim can later be
invalidated (the payout engine then claws back what was paid for it). The submitter can
never decide on their own claim.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ledger import schedule
from ledger.access import Actor, require_role
from ledger.contracts import get_contract, terms_history, terms_in_force
from ledger.db import UnitOfWork
from ledger.errors import Conflict, DomainError, MultipleErrors, NotFound, PermissionDenied, ValidationError
from ledger.identity import identity_hash, normalise
from ledger.models import (
    Evidence, EvidenceDocument, LateClaimGrant, Measurement, Metric, OutcomeContract, Participant, utcnow,
)
from ledger.parties import clean_text
from ledger.reads import may_see_contract

SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Document:
    sha256: str
    filename: str
    media_type: str


@dataclass(frozen=True)
class Claim:
    """One piece of evidence as submitted: an outcome on a date, or a value for a period."""

    participant_id: int
    metric_code: str
    achieved_on: date | None = None
    period_start: date | None = None
    period_end: date | None = None
    value: Decimal | None = None
    documents: tuple[Document, ...] = ()


def _own_contract(uow: UnitOfWork, actor: Actor, contract_id: int, *, party_field: str) -> OutcomeContract:
    """The contract, if the actor's party holds the given role in it; UNKNOWN_CONTRACT otherwise (no leak)."""
    contract = get_contract(uow, contract_id)
    if getattr(contract, party_field) != actor.party_id:
        if may_see_contract(actor, contract):
            raise PermissionDenied("your party has another role in this contract", code="PERMISSION_DENIED",
                                   field=["contractId"])
        raise NotFound(f"contract {contract_id} does not exist", code="UNKNOWN_CONTRACT", field=["contractId"])
    return contract


def _require_claimable(contract: OutcomeContract) -> None:
    """Claims are accepted while the contract is active, and through the run-off of a terminated one."""
    if contract.status == "TERMINATED" and contract.closed_at is None:
        return
    _require_active(contract)


@dataclass(frozen=True)
class ClaimRules:
    """What decides whether an outcome can still be claimed (PAYOUTS.md §6), loaded once per contract."""

    last_day: date                          # the last day an outcome counts (outcomesEndDate, or the termination date)
    periods: tuple[schedule.Period, ...]    # empty: the contract has no schedule and no claim windows
    grants: tuple[tuple[int | None, str | None, date], ...]   # late claims: (participant, metric, until)

    @classmethod
    def load(cls, s, contract: OutcomeContract, today: date) -> "ClaimRules":
        grants = () if contract.payment_frequency is None else tuple(s.execute(
            select(LateClaimGrant.participant_id, LateClaimGrant.metric_code, LateClaimGrant.until)
            .where(LateClaimGrant.contract_id == contract.id, LateClaimGrant.until >= today)).all())
        return cls(schedule.outcomes_end(contract), schedule.of(contract), tuple(map(tuple, grants)))

    def check(self, start: date, end: date, today: date, *, participant_id: int | None, metric_code: str,
              field_name: str) -> None:
        """An outcome dated after the last day that counts is refused; on a scheduled contract it must
        fall in one scheduled period (a measurement wholly) and arrive by that period's claim
        deadline, unless a fund manager granted a late claim that covers it."""
        if end > self.last_day:
            raise ValidationError(f"outcomes after {self.last_day} do not count for this contract", code="OUTSIDE_TERM",
                                  field=[field_name])
        if not self.periods:
            return
        period = next((p for p in self.periods if p.contains(start)), None)
        if period is None or not period.contains(end):
            raise ValidationError("the measured period must lie within one scheduled period (see Contract.schedule)",
                                  code="MEASUREMENT_OUTSIDE_PERIOD", field=["periodStart"])
        if today <= period.claim_deadline:
            return
        if not any((p is None or p == participant_id) and (m is None or m == metric_code) and today <= until
                   for p, m, until in self.grants):
            raise Conflict(f"the claim window for {period.start}..{period.end} closed on {period.claim_deadline}",
                           code="CLAIM_WINDOW_CLOSED", field=[field_name])


def _require_active(contract: OutcomeContract) -> None:
    if contract.status == "SUSPENDED":
        raise Conflict("the contract is suspended: nothing new until the suspension is lifted",
                       code="CONTRACT_SUSPENDED", field=["contractId"])
    if contract.status != "ACTIVE":
        raise Conflict(f"the contract is {contract.status}, not ACTIVE", code="CONTRACT_NOT_ACTIVE", field=["contractId"])


def _within_term(contract: OutcomeContract, day: date, today: date, field_name: str) -> None:
    if day > today:
        raise ValidationError(f"{field_name} is in the future", code="DATE_IN_FUTURE", field=[field_name])
    if not (contract.start_date <= day <= contract.end_date):
        raise ValidationError(f"{field_name} is outside the contract's term", code="OUTSIDE_TERM", field=[field_name])


def enroll_participant(
    uow: UnitOfWork, *, actor: Actor, secret: bytes, contract_id: int, personal_identity_number: str | None,
    external_ref: str | None, area: str | None, enrolled_on: date, today: date,
) -> Participant:
    """Enroll a person in the cohort; the identity number is only hashed, never stored."""
    require_role(actor, "PROVIDER")
    contract = _own_contract(uow, actor, contract_id, party_field="provider_id")
    _require_active(contract)
    if not personal_identity_number and not external_ref:
        raise ValidationError("give a personal identity number or an external reference", code="IDENTITY_REQUIRED",
                              field=["personalIdentityNumber"])
    digest = identity_hash(secret, contract.id, normalise(personal_identity_number, today)) if personal_identity_number else None
    ref = clean_text(external_ref, "externalRef", max_len=100) if external_ref else None
    area = clean_text(area, "area", max_len=60) if area else None
    _within_term(contract, enrolled_on, today, "enrolledOn")
    if enrolled_on > schedule.service_end(contract):
        raise ValidationError(f"service ended on {schedule.service_end(contract)}: no new participants",
                              code="ENROLMENT_CLOSED", field=["enrolledOn"])
    s = uow.session
    clash = select(Participant.id).where(Participant.contract_id == contract.id)
    if digest and s.execute(clash.where(Participant.identity_hash == digest)).first():
        raise Conflict("this person is already enrolled in the contract", code="DUPLICATE_PARTICIPANT",
                       field=["personalIdentityNumber"])
    if ref and s.execute(clash.where(Participant.external_ref == ref)).first():
        raise Conflict("this external reference is already enrolled", code="DUPLICATE_PARTICIPANT", field=["externalRef"])
    p = Participant(contract_id=contract.id, identity_hash=digest, external_ref=ref, area=area, enrolled_on=enrolled_on,
                    enrolled_by=actor.label)
    s.add(p)
    s.flush()
    return p


def _metric(uow: UnitOfWork, contract: OutcomeContract, code: str, on: date) -> Metric:
    terms = terms_in_force(uow.session, contract.id, on)
    for metric in terms.metrics:
        if metric.code == code:
            return metric
    raise ValidationError(f"the contract's terms have no metric {code!r}", code="UNKNOWN_METRIC", field=["metricCode"])


def _submit_one(uow: UnitOfWork, actor: Actor, contract: OutcomeContract, claim: Claim, today: date) -> Evidence:
    s = uow.session
    participant = s.execute(select(Participant).where(Participant.id == claim.participant_id,
                                                      Participant.contract_id == contract.id).with_for_update()).scalar_one_or_none()
    if participant is None:
        raise NotFound("the participant is not in this contract", code="UNKNOWN_PARTICIPANT", field=["participantId"])
    on = claim.achieved_on or claim.period_end
    if on is None:
        raise ValidationError("give achievedOn, or periodStart and periodEnd", code="DATE_REQUIRED", field=["achievedOn"])
    metric = _metric(uow, contract, claim.metric_code, min(max(on, contract.start_date), contract.end_date))
    if metric.kind == "RATE_CARD":
        if claim.achieved_on is None:
            raise ValidationError("a rate-card outcome needs achievedOn", code="DATE_REQUIRED", field=["achievedOn"])
        _within_term(contract, claim.achieved_on, today, "achievedOn")
        if claim.achieved_on < participant.enrolled_on:
            raise ValidationError("the outcome is dated before the participant's enrolment", code="BEFORE_ENROLMENT",
                                  field=["achievedOn"])
        ClaimRules.load(s, contract, today).check(claim.achieved_on, claim.achieved_on, today,
                                                  participant_id=participant.id, metric_code=metric.code,
                                                  field_name="achievedOn")
        if metric.once_only and s.execute(select(Evidence.id).where(
                Evidence.participant_id == participant.id, Evidence.metric_code == metric.code,
                Evidence.status.in_(("SUBMITTED", "VERIFIED")))).first():
            raise Conflict(f"{metric.code} is paid once per participant and is already claimed",
                           code="DUPLICATE_CLAIM", field=["metricCode"])
    else:
        if claim.period_start is None or claim.period_end is None or claim.value is None:
            raise ValidationError("a measured metric needs periodStart, periodEnd and value", code="VALUE_REQUIRED",
                                  field=["value"])
        if claim.period_end < claim.period_start:
            raise ValidationError("the period ends before it starts", code="INVALID_PERIOD", field=["periodEnd"])
        _within_term(contract, claim.period_end, today, "periodEnd")
        _within_term(contract, claim.period_start, today, "periodStart")
        ClaimRules.load(s, contract, today).check(claim.period_start, claim.period_end, today,
                                                  participant_id=participant.id, metric_code=metric.code,
                                                  field_name="periodEnd")
    docs = []
    for i, d in enumerate(claim.documents):
        where = ["documents", str(i)]
        if not SHA256.fullmatch(d.sha256 or ""):
            raise ValidationError("a document's sha256 is 64 lower-case hex digits", code="INVALID_SHA256",
                                  field=[*where, "sha256"])
        docs.append(EvidenceDocument(sha256=d.sha256, filename=clean_text(d.filename, "filename", max_len=255),
                                     media_type=clean_text(d.media_type, "mediaType", max_len=100)))
    ev = Evidence(contract_id=contract.id, participant_id=participant.id, metric_code=metric.code,
                  achieved_on=claim.achieved_on, period_start=claim.period_start, period_end=claim.period_end,
                  value=claim.value, status="SUBMITTED", submitted_by=actor.label, submitted_party_id=actor.party_id)
    s.add(ev)
    s.flush()
    for doc in docs:
        doc.evidence_id = ev.id
        s.add(doc)
    s.flush()
    s.refresh(ev, ["documents"])  # loaded now, so the caller can read them after the commit
    return ev


def submit_evidence(uow: UnitOfWork, *, actor: Actor, contract_id: int, claim: Claim, today: date) -> Evidence:
    """A provider's claim that a participant achieved an outcome (or a value for a period)."""
    require_role(actor, "PROVIDER")
    contract = _own_contract(uow, actor, contract_id, party_field="provider_id")
    _require_claimable(contract)
    return _submit_one(uow, actor, contract, claim, today)


def submit_evidence_batch(uow: UnitOfWork, *, actor: Actor, contract_id: int, claims: Sequence[Claim],
                          today: date, max_items: int = 1000) -> list[Evidence]:
    """Many claims at once, all or nothing: every failing item is reported with its index."""
    require_role(actor, "PROVIDER")
    contract = _own_contract(uow, actor, contract_id, party_field="provider_id")
    _require_active(contract)
    if not claims:
        raise ValidationError("a batch needs at least one item", code="EMPTY_BATCH", field=["items"])
    if len(claims) > max_items:
        raise ValidationError(f"a batch holds at most {max_items} items", code="BATCH_TOO_LARGE", field=["items"])
    out, errors = [], []
    for i, claim in enumerate(claims):
        try:
            with uow.session.begin_nested():
                out.append(_submit_one(uow, actor, contract, claim, today))
        except DomainError as err:
            errors.append(err.at("items", str(i)))
    if errors:
        raise MultipleErrors(errors)
    return out


def _decidable(uow: UnitOfWork, actor: Actor, evidence_id: int) -> Evidence:
    s = uow.session
    ev = s.execute(select(Evidence).where(Evidence.id == evidence_id).with_for_update()).scalar_one_or_none()
    if ev is None:
        raise NotFound(f"evidence {evidence_id} does not exist", code="UNKNOWN_EVIDENCE", field=["evidenceId"])
    contract = get_contract(uow, ev.contract_id)
    if actor.role == "VERIFIER" and contract.verifier_id != actor.party_id:
        raise NotFound(f"evidence {evidence_id} does not exist", code="UNKNOWN_EVIDENCE", field=["evidenceId"])
    if ev.submitted_by == actor.label or (ev.submitted_party_id is not None and ev.submitted_party_id == actor.party_id):
        raise PermissionDenied("the submitter can never decide on their own claim", code="SELF_VERIFICATION",
                               field=["evidenceId"])
    return ev


def verify_evidence(uow: UnitOfWork, *, actor: Actor, evidence_id: int, note: str | None) -> Evidence:
    require_role(actor, "VERIFIER")
    ev = _decidable(uow, actor, evidence_id)
    if ev.status != "SUBMITTED":
        raise Conflict(f"the evidence is already {ev.status}", code="ALREADY_DECIDED", field=["evidenceId"])
    ev.status, ev.decided_by, ev.decided_at = "VERIFIED", actor.label, utcnow()
    ev.decision_note = clean_text(note, "note", max_len=2000, required=False) or None
    uow.session.flush()
    return ev


def reject_evidence(uow: UnitOfWork, *, actor: Actor, evidence_id: int, reason: str) -> Evidence:
    require_role(actor, "VERIFIER")
    reason = clean_text(reason, "reason", max_len=2000)
    ev = _decidable(uow, actor, evidence_id)
    if ev.status != "SUBMITTED":
        raise Conflict(f"the evidence is already {ev.status}", code="ALREADY_DECIDED", field=["evidenceId"])
    ev.status, ev.decided_by, ev.decided_at, ev.decision_note = "REJECTED", actor.label, utcnow(), reason
    uow.session.flush()
    return ev


def invalidate_evidence(uow: UnitOfWork, *, actor: Actor, evidence_id: int, reason: str) -> Evidence:
    """VERIFIED → INVALIDATED; what was paid for it is clawed back by the next payout."""
    require_role(actor, "VERIFIER", "FUND_MANAGER")
    reason = clean_text(reason, "reason", max_len=2000)
    ev = _decidable(uow, actor, evidence_id)
    if ev.status != "VERIFIED":
        raise Conflict("only verified evidence can be invalidated", code="NOT_VERIFIED", field=["evidenceId"])
    ev.status, ev.invalidated_by, ev.invalidated_at, ev.invalidation_reason = "INVALIDATED", actor.label, utcnow(), reason
    uow.session.flush()
    return ev


def record_measurement(
    uow: UnitOfWork, *, actor: Actor, contract_id: int, metric_code: str, period_start: date, period_end: date,
    observed_value: Decimal, comparison_value: Decimal | None, cohort_size: int | None, today: date,
) -> Measurement:
    """The verifier's measured result of a cohort metric (BASELINE_IMPROVEMENT or COMPARISON_THRESHOLD)."""
    require_role(actor, "VERIFIER")
    contract = _own_contract(uow, actor, contract_id, party_field="verifier_id")
    if contract.status not in ("ACTIVE", "SUSPENDED", "COMPLETED") and not (
            contract.status == "TERMINATED" and contract.closed_at is None):
        raise Conflict(f"the contract is {contract.status}", code="CONTRACT_NOT_ACTIVE", field=["contractId"])
    if period_end < period_start:
        raise ValidationError("the period ends before it starts", code="INVALID_PERIOD", field=["periodEnd"])
    _within_term(contract, period_start, today, "periodStart")
    _within_term(contract, period_end, today, "periodEnd")
    metric = _metric(uow, contract, metric_code, period_end)
    if metric.kind == "RATE_CARD":
        raise ValidationError("rate-card outcomes are claimed as evidence, not measured", code="MEASUREMENT_NOT_ALLOWED",
                              field=["metricCode"])
    ClaimRules.load(uow.session, contract, today).check(period_start, period_end, today, participant_id=None,
                                                        metric_code=metric.code, field_name="periodEnd")
    check_measured_values(metric, observed_value, comparison_value, cohort_size)
    get_contract(uow, contract.id, for_update=True)  # one measurement at a time per contract: no overlap by race
    overlap = uow.session.execute(select(Measurement.id).where(
        Measurement.contract_id == contract.id, Measurement.metric_code == metric.code, Measurement.status == "CURRENT",
        Measurement.period_start <= period_end, Measurement.period_end >= period_start)).first()
    if overlap:
        raise Conflict("a measurement of this metric already covers part of the period", code="OVERLAPPING_MEASUREMENT",
                       field=["periodStart"])
    row = Measurement(contract_id=contract.id, metric_code=metric.code, period_start=period_start, period_end=period_end,
                      observed_value=observed_value, comparison_value=comparison_value, cohort_size=cohort_size,
                      recorded_by=actor.label)
    insert_current_measurement(uow, row)
    return row


def insert_current_measurement(uow: UnitOfWork, row: Measurement) -> None:
    """Insert a CURRENT measurement; the database refuses one that overlaps another current one.

    The check before it gives the usual answer; this catches the request that raced past it
    (PostgreSQL's exclusion constraint makes the second writer wait for the first, then fail).
    """
    try:
        with uow.session.begin_nested():
            uow.session.add(row)
            uow.session.flush()
    except IntegrityError:
        raise Conflict("a measurement of this metric already covers part of the period",
                       code="OVERLAPPING_MEASUREMENT", field=["periodStart"]) from None


def check_measured_values(metric: Metric, observed_value: Decimal, comparison_value: Decimal | None,
                          cohort_size: int | None) -> None:
    """The values of a cohort measurement make sense for its metric (recorded or corrected)."""
    if observed_value < 0 or (comparison_value is not None and comparison_value < 0):
        raise ValidationError("measured values are not negative", code="INVALID_VALUE", field=["observedValue"])
    if metric.kind == "COMPARISON_THRESHOLD":
        if cohort_size is None or cohort_size <= 0:
            raise ValidationError("a comparison metric needs the cohort size", code="COHORT_SIZE_REQUIRED",
                                  field=["cohortSize"])
        if comparison_value is None and metric.baseline is None:
            raise ValidationError("give a comparison value (the metric has no baseline)", code="COMPARISON_REQUIRED",
                                  field=["comparisonValue"])
        if (comparison_value if comparison_value is not None else metric.baseline) == 0:
            raise ValidationError("the comparison value must not be zero", code="INVALID_VALUE",
                                  field=["comparisonValue"])


def grant_late_claim(uow: UnitOfWork, *, actor: Actor, contract_id: int, reason: str, until: date,
                     participant_id: int | None = None, metric_code: str | None = None, today: date) -> LateClaimGrant:
    """A fund manager opens a closed claim window until `until` (for one participant and/or metric, or all)."""
    require_role(actor, "FUND_MANAGER")
    reason = clean_text(reason, "reason", max_len=2000)
    contract = get_contract(uow, contract_id, for_update=True)
    if contract.status == "DRAFT" or contract.status == "COMPLETED" or contract.closed_at is not None:
        raise Conflict(f"the contract is {contract.status.lower()} and closed: no more claims",
                       code="LATE_CLAIM_NOT_ALLOWED", field=["contractId"])
    if until < today:
        raise ValidationError("a late claim deadline is today or later", code="INVALID_DATE", field=["until"])
    if participant_id is not None and uow.session.execute(select(Participant.id).where(
            Participant.id == participant_id, Participant.contract_id == contract.id)).first() is None:
        raise NotFound("the participant is not in this contract", code="UNKNOWN_PARTICIPANT", field=["participantId"])
    if metric_code is not None and metric_code not in {x.code for t in terms_history(uow.session, contract.id)
                                                       for x in t.metrics}:
        raise ValidationError(f"the contract has no metric {metric_code!r}", code="UNKNOWN_METRIC", field=["metricCode"])
    grant = LateClaimGrant(contract_id=contract.id, participant_id=participant_id, metric_code=metric_code,
                           reason=reason, until=until, granted_by=actor.label)
    uow.session.add(grant)
    uow.session.flush()
    return grant
