"""Correcting and voiding a cohort measurement: a new version, the old one kept.

A correction supersedes the current version with a new CURRENT one (same metric and
period, new values, a reason); voiding marks it VOIDED. If the old version was paid, the
period's next payout carries an ADJUSTMENT line (see ledger.calculations).
"""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from ledger.access import Actor, require_role
from ledger.contracts import get_contract, terms_in_force
from ledger.db import UnitOfWork
from ledger.errors import Conflict, NotFound, ValidationError
from ledger.evidence import check_measured_values, insert_current_measurement
from ledger.models import Measurement, utcnow
from ledger.parties import clean_text


def _current_version(uow: UnitOfWork, actor: Actor, measurement_id: int) -> Measurement:
    """The measurement, locked, if it is the actor's contract's and current."""
    s = uow.session
    row = s.execute(select(Measurement).where(Measurement.id == measurement_id).with_for_update()).scalar_one_or_none()
    # another verifier's measurement answers exactly like a missing one
    if row is None or get_contract(uow, row.contract_id).verifier_id != actor.party_id:
        raise NotFound(f"measurement {measurement_id} does not exist", code="UNKNOWN_MEASUREMENT",
                       field=["measurementId"])
    if row.status != "CURRENT":
        raise Conflict(f"measurement {measurement_id} is {row.status}: correct its current version instead",
                       code="MEASUREMENT_NOT_CURRENT", field=["measurementId"])
    return row


def correct_measurement(uow: UnitOfWork, *, actor: Actor, measurement_id: int, observed_value: Decimal,
                        comparison_value: Decimal | None, cohort_size: int | None, reason: str) -> Measurement:
    """A new CURRENT version of a measurement with corrected values; the old one is SUPERSEDED."""
    require_role(actor, "VERIFIER")
    reason = clean_text(reason, "reason", max_len=2000)
    old = _current_version(uow, actor, measurement_id)
    metric = next((x for x in terms_in_force(uow.session, old.contract_id, old.period_end).metrics
                   if x.code == old.metric_code), None)
    if metric is None:
        raise ValidationError(f"the terms no longer have metric {old.metric_code}", code="UNKNOWN_METRIC",
                              field=["measurementId"])
    check_measured_values(metric, observed_value, comparison_value, cohort_size)
    s = uow.session
    old.status = "SUPERSEDED"
    s.flush()  # first, so the new version never overlaps a current one
    new = Measurement(contract_id=old.contract_id, metric_code=old.metric_code, period_start=old.period_start,
                      period_end=old.period_end, observed_value=observed_value, comparison_value=comparison_value,
                      cohort_size=cohort_size, recorded_by=actor.label, correction_reason=reason)
    insert_current_measurement(uow, new)
    old.superseded_by_id = new.id
    s.flush()
    return new


def void_measurement(uow: UnitOfWork, *, actor: Actor, measurement_id: int, reason: str) -> Measurement:
    """Mark a measurement VOIDED (kept, with the reason): it pays nothing from now on."""
    require_role(actor, "VERIFIER")
    reason = clean_text(reason, "reason", max_len=2000)
    row = _current_version(uow, actor, measurement_id)
    row.status, row.voided_by, row.voided_at, row.void_reason = "VOIDED", actor.label, utcnow(), reason
    uow.session.flush()
    return row
