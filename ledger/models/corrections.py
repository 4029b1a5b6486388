"""Disputes of decisions and change requests under dual control.

Both are workflows: a row is opened, then decided once (its status moves from OPEN or
PENDING exactly once); who did what is also in the audit trail.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models.base import Base, UTCDateTime, utcnow
from ledger.models.parties import _in

DISPUTE_STATUSES = ("OPEN", "UPHELD", "DISMISSED")
DISPUTE_SUBJECTS = ("EVIDENCE", "PAYOUT")
CHANGE_REQUEST_STATUSES = ("PENDING", "APPROVED", "REJECTED")
CHANGE_REQUEST_KINDS = ("REVERSE_TRANSACTION", "AMEND_CONTRACT", "TERMINATE_CONTRACT", "ISSUE_SANCTION")


class Dispute(Base):
    """A provider's challenge of a rejection, an invalidation or a payout."""

    __tablename__ = "disputes"
    __table_args__ = (
        CheckConstraint(_in("status", DISPUTE_STATUSES), name="status"),
        CheckConstraint(_in("subject_type", DISPUTE_SUBJECTS), name="subject_type"),
        CheckConstraint("(evidence_id IS NULL) <> (payout_id IS NULL)", name="one_subject"),
        # a decision is disputed once: the database refuses a second dispute of one subject
        UniqueConstraint("subject_type", "subject_id", name="subject"),
        Index("ix_disputes_contract_status", "contract_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("outcome_contracts.id"))
    subject_type: Mapped[str] = mapped_column(String(20))
    subject_id: Mapped[int] = mapped_column(Integer)
    evidence_id: Mapped[int | None] = mapped_column(ForeignKey("evidence.id"))
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("payouts.id"))
    status: Mapped[str] = mapped_column(String(20), default="OPEN")
    reason: Mapped[str] = mapped_column(Text)
    opened_by: Mapped[str] = mapped_column(String(200))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deadline: Mapped[date] = mapped_column(Date)
    # the status the subject had when disputed (REJECTED, INVALIDATED or POSTED)
    subject_status: Mapped[str] = mapped_column(String(20))
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolution_reason: Mapped[str | None] = mapped_column(Text)


class ChangeRequest(Base):
    """A change a fund manager asked for under dual control, carried out when another approves."""

    __tablename__ = "change_requests"
    __table_args__ = (
        CheckConstraint(_in("status", CHANGE_REQUEST_STATUSES), name="status"),
        CheckConstraint(_in("kind", CHANGE_REQUEST_KINDS), name="kind"),
        Index("ix_change_requests_fund_status", "fund_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    fund_id: Mapped[int] = mapped_column(ForeignKey("outcome_funds.id"))
    contract_id: Mapped[int | None] = mapped_column(ForeignKey("outcome_contracts.id"))
    kind: Mapped[str] = mapped_column(String(30))
    payload: Mapped[str] = mapped_column(Text)  # the use case's input as canonical JSON, replayed on approval
    status: Mapped[str] = mapped_column(String(20), default="PENDING")
    requested_by: Mapped[str] = mapped_column(String(200))  # the person (Actor.name): four eyes compare it
    requested_by_label: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decision_reason: Mapped[str | None] = mapped_column(Text)
    result_type: Mapped[str | None] = mapped_column(String(60))
    result_id: Mapped[str | None] = mapped_column(String(60))
