"""Outcomes funds: capital paid in by a funder, committed to contracts, paid out on outcomes.

Capital, commitments and payouts are never counters on this row: they are read from the
ledger's balances (see ledger/funds.py).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, false
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models.base import Base, UTCDateTime, utcnow


class OutcomesFund(Base):
    __tablename__ = "outcome_funds"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    manager_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # four eyes on reversals, amendments, terminations and heavy sanctions: on for new funds;
    # funds made before it existed keep working as they did (false)
    dual_control: Mapped[bool] = mapped_column(Boolean, default=True, server_default=false())
