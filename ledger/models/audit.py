"""Audit events and idempotency keys, written in the same transaction as the mutation."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models.base import Base, UTCDateTime, utcnow


class AuditEvent(Base):
    """Who did what, when, with which input. Append-only like the journal."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    party_id: Mapped[int | None] = mapped_column(Integer)
    operation: Mapped[str] = mapped_column(String(80))
    input: Mapped[str] = mapped_column(Text)
    result_type: Mapped[str | None] = mapped_column(String(60))
    result_id: Mapped[str | None] = mapped_column(String(60))


class IdempotencyKey(Base):
    """The first result of a mutation under a caller's key, so a retry returns it again."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "key", name="scope_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    operation: Mapped[str] = mapped_column(String(80))
    request_hash: Mapped[str] = mapped_column(String(64))
    result_type: Mapped[str] = mapped_column(String(60))
    result_id: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
