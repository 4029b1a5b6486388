"""The ledger's tables: accounts with running balances, and the append-only journal.

`ledger_transactions` and `ledger_entries` are never updated or deleted: triggers created by
the migrations make the database refuse it. `ledger_head` is the one mutable row that
serialises postings and carries the newest (sequence, hash).
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ledger.models.base import Base, UTCDateTime, utcnow

GENESIS_HASH = "0" * 64


class Account(Base):
    __tablename__ = "ledger_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    # code + owner + contract + counterparty + currency, so "the account for this" is one lookup
    key: Mapped[str] = mapped_column(String(200), unique=True)
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(300))
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), index=True)
    contract_id: Mapped[int | None] = mapped_column(Integer, index=True)
    counterparty_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"))
    # the outcomes fund an account belongs to, so one party can manage several funds
    fund_id: Mapped[int | None] = mapped_column(ForeignKey("outcome_funds.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    balance_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    last_sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LedgerHead(Base):
    __tablename__ = "ledger_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Transaction(Base):
    __tablename__ = "ledger_transactions"
    __table_args__ = (CheckConstraint("sequence > 0", name="sequence_positive"),)

    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    effective_date: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    # a transaction can be reversed once: the unique index makes a second reversal impossible
    reverses: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("ledger_transactions.sequence"), unique=True)
    contract_id: Mapped[int | None] = mapped_column(Integer, index=True)
    previous_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    entries: Mapped[list["Entry"]] = relationship(order_by="Entry.line", lazy="selectin", viewonly=True)


class Entry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount_minor <> 0", name="amount_not_zero"),
        Index("ix_ledger_entries_account_sequence", "account_id", "sequence", "line"),
    )

    sequence: Mapped[int] = mapped_column(BigInteger, ForeignKey("ledger_transactions.sequence"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    balance_after_minor: Mapped[int] = mapped_column(BigInteger)
