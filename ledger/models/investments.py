"""Impact bonds: investments, their drawdowns, waterfall distributions and the closing.

Every row here is a fact and append-only (triggers): an investment's position is read from
its drawdowns and the distribution lines, and its loss from the closing. A payment belongs to
at most one distribution (a unique index), so receipts are never distributed twice.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ledger.models.base import Base, DecimalText, UTCDateTime, utcnow
from ledger.models.parties import _in

TRANCHES = ("SENIOR", "SUBORDINATE")
LINE_KINDS = ("PRINCIPAL", "RETURN", "RESIDUAL")


class Investment(Base):
    __tablename__ = "investments"
    __table_args__ = (
        CheckConstraint(_in("tranche", TRANCHES), name="tranche"),
        CheckConstraint("principal_minor > 0", name="principal_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("outcome_contracts.id"), index=True)
    investor_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), index=True)
    tranche: Mapped[str] = mapped_column(String(20))
    principal_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    return_cap: Mapped[Decimal] = mapped_column(DecimalText())  # a fraction of principal drawn
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Drawdown(Base):
    __tablename__ = "investment_drawdowns"
    __table_args__ = (CheckConstraint("amount_minor > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    investment_id: Mapped[int] = mapped_column(ForeignKey("investments.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    paid_on: Mapped[date] = mapped_column(Date)
    reference: Mapped[str] = mapped_column(String(200))
    transaction_sequence: Mapped[int] = mapped_column(BigInteger, ForeignKey("ledger_transactions.sequence"))
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WaterfallDistribution(Base):
    """One run of the waterfall over a contract's undistributed receipts, with its recorded inputs."""

    __tablename__ = "distributions"
    __table_args__ = (CheckConstraint("total_minor > 0", name="total_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("outcome_contracts.id"), index=True)
    up_to: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    inputs_hash: Mapped[str] = mapped_column(String(64))
    inputs: Mapped[str] = mapped_column(Text)  # the canonical JSON the hash covers
    total_minor: Mapped[int] = mapped_column(BigInteger)
    # none when everything stayed with the provider (a residual is not a posting)
    transaction_sequence: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_transactions.sequence"))
    distributed_by: Mapped[str] = mapped_column(String(200))
    distributed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    lines: Mapped[list["DistributionLine"]] = relationship(order_by="DistributionLine.position", lazy="selectin",
                                                           viewonly=True)


class DistributionLine(Base):
    __tablename__ = "distribution_lines"
    __table_args__ = (
        CheckConstraint(_in("kind", LINE_KINDS), name="kind"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("(kind = 'RESIDUAL') = (investment_id IS NULL)", name="residual_has_no_investment"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    distribution_id: Mapped[int] = mapped_column(ForeignKey("distributions.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    investment_id: Mapped[int | None] = mapped_column(ForeignKey("investments.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    amount_minor: Mapped[int] = mapped_column(BigInteger)


class DistributionReceipt(Base):
    """A payment counted by a distribution: received by the provider (> 0) or repaid by it (< 0)."""

    __tablename__ = "distribution_receipts"
    __table_args__ = (CheckConstraint("amount_minor <> 0", name="amount_not_zero"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    distribution_id: Mapped[int] = mapped_column(ForeignKey("distributions.id"), index=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), unique=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)


class InvestmentClosing(Base):
    """The end of a contract's investments: unrecovered principal written off as the investors' loss."""

    __tablename__ = "investment_closings"

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("outcome_contracts.id"), unique=True)
    transaction_sequence: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_transactions.sequence"))
    closed_by: Mapped[str] = mapped_column(String(200))
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
