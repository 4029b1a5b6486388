"""Who is calling: the actor behind a token, and the role checks every use case makes."""
from __future__ import annotations

from dataclasses import dataclass

from ledger.errors import PermissionDenied

ALL_SEEING = frozenset({"ADMIN", "FUND_MANAGER", "AUDITOR"})
PARTY_BOUND = frozenset({"MUNICIPALITY", "PROVIDER", "VERIFIER", "INVESTOR"})


@dataclass(frozen=True)
class Actor:
    """The caller of a use case. `name` is the person; four-eyes rules compare it."""

    name: str
    role: str
    party_id: int | None = None
    token_id: int | None = None

    @property
    def sees_everything(self) -> bool:
        return self.role in ALL_SEEING

    @property
    def label(self) -> str:
        return f"{self.name} ({self.role}{'' if self.party_id is None else f', party {self.party_id}'})"


SYSTEM = Actor(name="system", role="ADMIN")


def require_role(actor: Actor | None, *roles: str) -> Actor:
    """The actor, if it has one of `roles`; otherwise PERMISSION_DENIED (UNAUTHENTICATED without one)."""
    if actor is None:
        raise PermissionDenied("this needs a bearer token", code="UNAUTHENTICATED")
    if actor.role not in roles:
        if actor.role == "AUDITOR":
            raise PermissionDenied("auditors have read-only access", code="READ_ONLY_ROLE")
        raise PermissionDenied(f"a {actor.role} token may not do this", code="PERMISSION_DENIED")
    return actor


def require_reader(actor: Actor | None) -> Actor:
    if actor is None:
        raise PermissionDenied("this needs a bearer token", code="UNAUTHENTICATED")
    return actor
