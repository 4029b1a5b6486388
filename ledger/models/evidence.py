"""Participants (pseudonymous), outcome evidence with its documents, and cohort measurements.

Evidence is never edited once submitted, except its status as it is verified, rejected or
invalidated; a correction is a rejection and a new claim.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger, CheckConstraint, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint, and_, exists, select,
)
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from ledger.models.base import Base, DecimalText, UTCDateTime, utcnow
from ledger.models.parties import _in

EVIDENCE_STATUSES = ("SUBMITTED", "VERIFIED", "REJECTED", "INVALIDATED")


class Participant(Base):
    """A member of a contract's cohort, known only by a keyed hash of their identity number."""

    __tablename__ = "participants"
    __table_args__ = (
        UniqueConstraint("contract_id", "identity_hash", name="identity"),
        UniqueConstraint("contract_id", "external_ref", name="external_ref"),
        CheckConstraint("identity_hash IS NOT NULL OR external_ref IS NOT NULL", name="identified"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("outcome_contracts.id"), index=True)
    # HMAC-SHA256(server secret, contract id ‖ normalised number): recognises a person within
    # a contract without making them identifiable from a copy of the database
    identity_hash: Mapped[str | None] = mapped_column(String(64))
    external_ref: Mapped[str | None] = mapped_column(String(100))
    area: Mapped[str | None] = mapped_column(String(60))
    enrolled_on: Mapped[date] = mapped_column(Date)
    enrolled_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Evidence(Base):
    __tablename__ = "evidence"
    __table_args__ = (
        CheckConstraint(_in("status", EVIDENCE_STATUSES), name="status"),
        Index("ix_evidence_contract_status", "contract_id", "status"),
        Index("ix_evidence_participant_metric", "participant_id", "metric_code"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("outcome_contracts.id"))
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    metric_code: Mapped[str] = mapped_column(String(60))
    achieved_on: Mapped[date | None] = mapped_column(Date)
    period_start: Mapped[date | None] = mapped_column(Date)
    period_end: Mapped[date | None] = mapped_column(Date)
    value: Mapped[Decimal | None] = mapped_column(DecimalText())
    status: Mapped[str] = mapped_column(String(20), default="SUBMITTED")
    submitted_by: Mapped[str] = mapped_column(String(200))
    submitted_party_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decision_note: Mapped[str | None] = mapped_column(Text)
    invalidated_by: Mapped[str | None] = mapped_column(String(200))
    invalidated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    invalidation_reason: Mapped[str | None] = mapped_column(Text)

    documents: Mapped[list["EvidenceDocument"]] = relationship(order_by="EvidenceDocument.id", lazy="selectin", viewonly=True)
    # loaded with the evidence in one extra SELECT per page, so the API needs no async lookup per row
    participant: Mapped["Participant"] = relationship(lazy="selectin", viewonly=True)


class DocumentUpload(Base):
    """A party uploaded the bytes with this SHA-256 (stored once, by hash, in the document store).

    Never changed or deleted (database triggers refuse it, revision 0018c): a party uploading
    the same bytes again finds its row; another party uploading them gets a row of its own.
    """

    __tablename__ = "document_uploads"
    __table_args__ = (
        UniqueConstraint("sha256", "party_id", name="sha256_party"),
        CheckConstraint("size_bytes >= 0", name="size_not_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    media_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    uploaded_by: Mapped[str] = mapped_column(String(200))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EvidenceDocument(Base):
    __tablename__ = "evidence_documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    evidence_id: Mapped[int] = mapped_column(ForeignKey("evidence.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # who may download a document (api/uploads.py)
    filename: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(100))
    # the evidence's submitting party uploaded these bytes: only then can they be downloaded
    # through the evidence (loaded with the documents' own SELECT, no query per document)
    uploaded: Mapped[bool] = column_property(exists(select(DocumentUpload.id).where(and_(
        DocumentUpload.sha256 == sha256,
        DocumentUpload.party_id == select(Evidence.submitted_party_id).where(Evidence.id == evidence_id)
        .correlate_except(Evidence).scalar_subquery(),
    ))))


MEASUREMENT_STATUSES = ("CURRENT", "SUPERSEDED", "VOIDED")


class Measurement(Base):
    """A verifier's measured result of a cohort metric for a period.

    Never edited in substance: a correction is a new CURRENT version and the old one becomes
    SUPERSEDED (pointing at its successor); a voided one stays, VOIDED. Two CURRENT
    measurements of one metric never overlap: the database refuses it (an exclusion
    constraint on PostgreSQL, triggers on SQLite; see migration 0013a).
    """

    __tablename__ = "measurements"
    __table_args__ = (
        CheckConstraint("period_end >= period_start", name="period"),
        CheckConstraint(_in("status", MEASUREMENT_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("outcome_contracts.id"), index=True)
    metric_code: Mapped[str] = mapped_column(String(60))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    observed_value: Mapped[Decimal] = mapped_column(DecimalText())
    comparison_value: Mapped[Decimal | None] = mapped_column(DecimalText())
    cohort_size: Mapped[int | None] = mapped_column(Integer)
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status: Mapped[str] = mapped_column(String(20), default="CURRENT", server_default="CURRENT")
    superseded_by_id: Mapped[int | None] = mapped_column(ForeignKey("measurements.id"))
    # why this version was recorded (a correction) or why it was voided, by whom and when
    correction_reason: Mapped[str | None] = mapped_column(Text)
    voided_by: Mapped[str | None] = mapped_column(String(200))
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    void_reason: Mapped[str | None] = mapped_column(Text)
