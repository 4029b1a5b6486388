"""What a fund manager has decided about publishing: the status of INDIGO fields per contract.

Append-only (triggers): a change is a new row, and the newest row per (contract, path) is in
force, so the history of who made what private, and when, is kept beside the audit trail.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models.base import Base, UTCDateTime, utcnow
from ledger.models.parties import _in

FIELD_STATUSES = ("PUBLIC", "PRIVATE")


class IndigoFieldStatus(Base):
    __tablename__ = "indigo_field_statuses"
    __table_args__ = (
        CheckConstraint(_in("status", FIELD_STATUSES), name="status"),
        Index("ix_indigo_field_statuses_contract_path", "contract_id", "path"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("outcome_contracts.id"))
    path: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10))
    set_by: Mapped[str] = mapped_column(String(200))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
