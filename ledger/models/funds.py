"""Outcomes funds: capital paid in by a funder, committed to contracts, paid out on outcomes.

Capital, commitments and payouts are never counters on this row: they are read from the
ledger's balances (see ledger/funds.py).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models.base import Base, UTCDateTime, utcnow


class OutcomesFund(Base):
    __tablename__ = "outcome_funds"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    manager_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
