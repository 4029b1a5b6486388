"""Payout calculations with their lines, items and split, and payments between parties.

A calculation records the canonical bytes of its inputs, so anyone can recompute it. Its
lines, items and shares are append-only; only its status moves
(CALCULATED → POSTED → REVERSED, or SUPERSEDED).
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy import select
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from ledger.models.base import Base, DecimalText, UTCDateTime, utcnow
from ledger.models.parties import _in

# REVERSED: its ledger transaction was reversed; what it paid counts as unpaid again
PAYOUT_STATUSES = ("CALCULATED", "APPROVED", "POSTED", "SUPERSEDED", "REVERSED")


class PayoutRecordedInputs(Base):
    """A payout's recorded canonical inputs (the JSON its `inputs_hash` covers), written once.

    A table of their own since migration 0021p: they are 11 MB for a payout over 100 000
    items, and on SQLite every change of the payout's row (superseded, approved, posted)
    rewrote them with it. Append-only: UPDATE and DELETE are refused by the database.
    """

    __tablename__ = "payout_inputs"

    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id"), primary_key=True)
    inputs: Mapped[str] = mapped_column(Text)


class PayoutCalculation(Base):
    __tablename__ = "payouts"
    __table_args__ = (
        CheckConstraint(_in("status", PAYOUT_STATUSES), name="status"),
        CheckConstraint("period_end >= period_start", name="period"),
        Index("ix_payouts_contract_status", "contract_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("outcome_contracts.id"))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="CALCULATED")
    terms_version: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    inputs_hash: Mapped[str] = mapped_column(String(64))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    # how many payouts of the contract were POSTED when this was calculated: if another is
    # posted before approval, "paid before" has changed and this one must be recalculated
    posted_before: Mapped[int] = mapped_column(Integer)
    calculated_by: Mapped[str] = mapped_column(String(200))
    calculated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    transaction_sequence: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_transactions.sequence"))
    superseded_by_id: Mapped[int | None] = mapped_column(ForeignKey("payouts.id"))

    # the canonical JSON the hash covers, read with the row as before (PayoutRecordedInputs);
    # recorded by ledger.calculations.calculate_payout, not by setting this attribute. Never
    # expired by a flush of the row's status: the inputs never change
    inputs: Mapped[str] = column_property(
        select(PayoutRecordedInputs.inputs).where(PayoutRecordedInputs.payout_id == id).scalar_subquery(),
        expire_on_flush=False)

    lines: Mapped[list["PayoutLine"]] = relationship(order_by="PayoutLine.position", lazy="selectin", viewonly=True)
    shares: Mapped[list["PayoutShare"]] = relationship(order_by="PayoutShare.position", lazy="selectin", viewonly=True)


class PayoutLine(Base):
    __tablename__ = "payout_lines"

    id: Mapped[int] = mapped_column(primary_key=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    metric_code: Mapped[str] = mapped_column(String(60))
    kind: Mapped[str] = mapped_column(String(20))
    quantity: Mapped[Decimal] = mapped_column(DecimalText())
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
    gross_minor: Mapped[int] = mapped_column(BigInteger)
    capped_minor: Mapped[int] = mapped_column(BigInteger)
    net_minor: Mapped[int] = mapped_column(BigInteger)
    caps: Mapped[str] = mapped_column(Text, default="")  # "CAP_NAME=amount;..." in cap order


class PayoutItem(Base):
    """What one evidence item or measurement earned (or, for a clawback, gave back).

    Since migration 0020p a payout's evidence items are recorded in `PayoutItemBlock`s; this
    table keeps its measurement items (a few per payout) and the evidence items of payouts
    calculated before (read beside the blocks, see ledger/payout_items.py).
    """

    __tablename__ = "payout_items"
    # No foreign keys (migration 0019p): a key costs a lookup per item, 100 000 in a large
    # payout. The evidence, measurement and participant ids come from rows the calculation's
    # own transaction has just read; that the payout exists (amount → payout → evidence) is
    # checked once per INSERT statement by a trigger, and payouts are never deleted.
    __table_args__ = (
        Index("ix_payout_items_evidence", "evidence_id"),
        # a few measurement items per payout, beside up to 100 000 evidence items with none
        Index("ix_payout_items_measurement", "measurement_id", postgresql_where=text("measurement_id IS NOT NULL"),
              sqlite_where=text("measurement_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payout_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(20))
    evidence_id: Mapped[int | None] = mapped_column(Integer)
    measurement_id: Mapped[int | None] = mapped_column(Integer)
    participant_id: Mapped[int | None] = mapped_column(Integer)
    metric_code: Mapped[str] = mapped_column(String(60))
    gross_minor: Mapped[int] = mapped_column(BigInteger)
    capped_minor: Mapped[int] = mapped_column(BigInteger)
    net_minor: Mapped[int] = mapped_column(BigInteger)


class PayoutItemBlock(Base):
    """Up to `ledger.payout_items.BLOCK` evidence items of one payout as one compact, append-only row.

    One row per few thousand items instead of one per item: a payout over 100 000 items
    writes 13 rows, not 100 000 rows and their index entries (migration 0020p). The items
    keep the ids they would have had as rows (first_item_id onwards, taken from the
    payout_items id sequence), so each is still traced amount → payout → evidence.
    `packed` holds six columns of little-endian signed 64-bit integers, item_count values each:
    evidence id, participant id, an index into `names`, gross, capped and net in minor units
    (whole öre: never a float). `names` is the block's distinct "KIND METRIC_CODE" pairs, one per
    line. Evidence → payout: the blocks whose min..max evidence id range holds an id
    (ix_payout_item_blocks_evidence), membership checked in the block.
    """

    __tablename__ = "payout_item_blocks"
    __table_args__ = (
        Index("ix_payout_item_blocks_evidence", "min_evidence_id", "max_evidence_id"),
        CheckConstraint("item_count > 0", name="item_count_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id"), index=True)
    first_item_id: Mapped[int] = mapped_column(BigInteger)
    item_count: Mapped[int] = mapped_column(Integer)
    min_evidence_id: Mapped[int] = mapped_column(BigInteger)
    max_evidence_id: Mapped[int] = mapped_column(BigInteger)
    names: Mapped[str] = mapped_column(Text)
    packed: Mapped[bytes] = mapped_column(LargeBinary)


class PayoutShare(Base):
    __tablename__ = "payout_shares"

    id: Mapped[int] = mapped_column(primary_key=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (CheckConstraint("amount_minor > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    debtor_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), index=True)
    creditor_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), index=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("outcome_contracts.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    paid_on: Mapped[date] = mapped_column(Date)
    reference: Mapped[str] = mapped_column(String(200))
    transaction_sequence: Mapped[int] = mapped_column(BigInteger, ForeignKey("ledger_transactions.sequence"))
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
