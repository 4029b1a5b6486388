"""Parties (organisations with a role) and the API tokens that act for them."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from ledger.models.base import Base, UTCDateTime, utcnow

PARTY_ROLES = ("FUND", "MUNICIPALITY", "PROVIDER", "INVESTOR", "VERIFIER")
OWNERSHIP_FORMS = ("PRIVATE", "NONPROFIT", "PUBLIC_IN_HOUSE")
TOKEN_ROLES = ("ADMIN", "FUND_MANAGER", "MUNICIPALITY", "PROVIDER", "VERIFIER", "AUDITOR", "INVESTOR")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Party(Base):
    __tablename__ = "parties"
    __table_args__ = (
        CheckConstraint(_in("role", PARTY_ROLES), name="role"),
        CheckConstraint(f"ownership IS NULL OR {_in('ownership', OWNERSHIP_FORMS)}", name="ownership"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    ownership: Mapped[str | None] = mapped_column(String(20))
    org_number: Mapped[str | None] = mapped_column(String(11), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    """A bearer token: only the SHA-256 of its secret is kept, so a database copy grants nothing."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint(_in("role", TOKEN_ROLES), name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    party_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
