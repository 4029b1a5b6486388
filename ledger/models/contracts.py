"""Outcome contracts and their terms versions (metrics, payer shares, supplements), and sanctions.

Terms rows are append-only (triggers): a change is a new version with an effective date.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ledger.models.base import Base, DecimalText, UTCDateTime, utcnow
from ledger.models.parties import _in

CONTRACT_STATUSES = ("DRAFT", "ACTIVE", "SUSPENDED", "COMPLETED", "TERMINATED")
METRIC_KINDS = ("RATE_CARD", "BASELINE_IMPROVEMENT", "COMPARISON_THRESHOLD")
DIRECTIONS = ("HIGHER_IS_BETTER", "LOWER_IS_BETTER")
SANCTION_LEVELS = ("WARNING", "PENALTY", "SUSPENSION", "DEAUTHORISATION")
PAYMENT_FREQUENCIES = ("MONTHLY", "QUARTERLY", "HALF_YEARLY", "YEARLY")
DEFAULT_CLAIM_WINDOW_DAYS = 90


class OutcomeContract(Base):
    __tablename__ = "outcome_contracts"
    __table_args__ = (
        CheckConstraint(_in("status", CONTRACT_STATUSES), name="status"),
        CheckConstraint("end_date >= start_date", name="term"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    fund_id: Mapped[int] = mapped_column(ForeignKey("outcome_funds.id"), index=True)
    municipality_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), index=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), index=True)
    verifier_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"), index=True)
    investor_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"))
    policy_area: Mapped[str] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(3))
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="DRAFT")
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_reason: Mapped[str | None] = mapped_column(Text)
    # The schedule (PAYOUTS.md §6). A contract without a frequency (every contract made before
    # schedules existed) keeps free payout periods; the dates default to end_date.
    payment_frequency: Mapped[str | None] = mapped_column(String(20))
    service_end_date: Mapped[date | None] = mapped_column(Date)
    outcomes_end_date: Mapped[date | None] = mapped_column(Date)
    claim_window_days: Mapped[int | None] = mapped_column(Integer)
    # the business date a termination takes effect: outcomes after it do not count
    terminated_on: Mapped[date | None] = mapped_column(Date)
    # when the run-off ended and the remaining commitments were released (COMPLETED, or closed after termination)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # how many days the provider has to dispute a decision (and a fund manager to resolve it)
    dispute_window_days: Mapped[int] = mapped_column(Integer, default=30, server_default="30")

    terms: Mapped[list["ContractTerms"]] = relationship(order_by="ContractTerms.version", viewonly=True)


class ContractTerms(Base):
    __tablename__ = "contract_terms"
    __table_args__ = (UniqueConstraint("contract_id", "version", name="version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("outcome_contracts.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text)
    max_value_minor: Mapped[int] = mapped_column(BigInteger)
    participant_cap_minor: Mapped[int | None] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    payer_shares: Mapped[list["PayerShare"]] = relationship(order_by="PayerShare.position", lazy="selectin", viewonly=True)
    metrics: Mapped[list["Metric"]] = relationship(order_by="Metric.position", lazy="selectin", viewonly=True)


class PayerShare(Base):
    __tablename__ = "payer_shares"
    __table_args__ = (UniqueConstraint("terms_id", "party_id", name="party"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    terms_id: Mapped[int] = mapped_column(ForeignKey("contract_terms.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    percent: Mapped[Decimal] = mapped_column(DecimalText())
    # the most this payer pays over the contract (PAYOUTS.md §8); None: no cap of its own
    max_amount_minor: Mapped[int | None] = mapped_column(BigInteger)


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (
        UniqueConstraint("terms_id", "code", name="code"),
        CheckConstraint(_in("kind", METRIC_KINDS), name="kind"),
        CheckConstraint(_in("direction", DIRECTIONS), name="direction"),
        CheckConstraint("unit_price_minor > 0", name="unit_price_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    terms_id: Mapped[int] = mapped_column(ForeignKey("contract_terms.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(60))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(30))
    direction: Mapped[str] = mapped_column(String(20))
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
    baseline: Mapped[Decimal | None] = mapped_column(DecimalText())
    baseline_source: Mapped[str | None] = mapped_column(Text)
    baseline_method: Mapped[str | None] = mapped_column(Text)
    threshold: Mapped[Decimal | None] = mapped_column(DecimalText())
    cap_per_participant_minor: Mapped[int | None] = mapped_column(BigInteger)
    cap_per_period_minor: Mapped[int | None] = mapped_column(BigInteger)
    cap_total_minor: Mapped[int | None] = mapped_column(BigInteger)
    once_only: Mapped[bool] = mapped_column(Boolean, default=False)

    supplements: Mapped[list["AreaSupplement"]] = relationship(order_by="AreaSupplement.area", lazy="selectin", viewonly=True)


class AreaSupplement(Base):
    __tablename__ = "area_supplements"
    __table_args__ = (UniqueConstraint("metric_id", "area", name="area"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    metric_id: Mapped[int] = mapped_column(ForeignKey("metrics.id"), index=True)
    area: Mapped[str] = mapped_column(String(60))
    percent: Mapped[Decimal] = mapped_column(DecimalText())


class Sanction(Base):
    __tablename__ = "sanctions"
    __table_args__ = (CheckConstraint(_in("level", SANCTION_LEVELS), name="level"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("outcome_contracts.id"), index=True)
    level: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    penalty_minor: Mapped[int | None] = mapped_column(BigInteger)
    transaction_sequence: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_transactions.sequence"))
    issued_by: Mapped[str] = mapped_column(String(200))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lifted_by: Mapped[str | None] = mapped_column(String(200))


class LateClaimGrant(Base):
    """A fund manager's permission to claim after a claim window closed (PAYOUTS.md §6). Append-only."""

    __tablename__ = "late_claim_grants"

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("outcome_contracts.id"), index=True)
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participants.id"))
    metric_code: Mapped[str | None] = mapped_column(String(60))
    reason: Mapped[str] = mapped_column(Text)
    until: Mapped[date] = mapped_column(Date)
    granted_by: Mapped[str] = mapped_column(String(200))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
