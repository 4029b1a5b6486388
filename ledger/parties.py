"""Parties: organisations with a role, and Swedish organisation numbers."""
from __future__ import annotations

import re

from sqlalchemy import select

from ledger.access import Actor, require_role
from ledger.db import UnitOfWork
from ledger.errors import Conflict, NotFound, ValidationError
from ledger.models import Party
from ledger.models.parties import OWNERSHIP_FORMS, PARTY_ROLES


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check used by Swedish organisation and identity numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def normalise_org_number(raw: str) -> str:
    """`NNNNNN-NNNN` from 10 digits with or without the hyphen (or a 16 prefix); checksum validated."""
    s = raw.strip()
    if not re.fullmatch(r"(16)?\d{6}-?\d{4}", s):
        raise ValidationError(f"{raw!r} is not a Swedish organisation number", code="INVALID_ORG_NUMBER", field=["orgNumber"])
    digits = s.replace("-", "")
    if len(digits) == 12:
        digits = digits[2:]
    if not luhn_ok(digits):
        raise ValidationError(f"{raw!r} has a wrong check digit", code="INVALID_ORG_NUMBER", field=["orgNumber"])
    return f"{digits[:6]}-{digits[6:]}"


def clean_text(value: str, field: str, *, max_len: int = 200, required: bool = True) -> str:
    """Trimmed text without NUL or control characters, within `max_len`."""
    v = (value or "").strip()
    if required and not v:
        raise ValidationError(f"{field} must not be empty", code="REQUIRED", field=[field])
    if len(v) > max_len:
        raise ValidationError(f"{field} is longer than {max_len} characters", code="TOO_LONG", field=[field])
    if any(ord(c) < 32 and c not in "\t\n" for c in v):
        raise ValidationError(f"{field} contains control characters", code="INVALID_TEXT", field=[field])
    return v


def create_party(
    uow: UnitOfWork, *, actor: Actor, name: str, role: str, ownership: str | None = None,
    org_number: str | None = None,
) -> Party:
    """Register an organisation. Providers must state their ownership form; others must not."""
    require_role(actor, "ADMIN", "FUND_MANAGER")
    name = clean_text(name, "name")
    if role not in PARTY_ROLES:
        raise ValidationError(f"unknown party role {role!r}", code="INVALID_ROLE", field=["role"])
    if role == "PROVIDER":
        if ownership not in OWNERSHIP_FORMS:
            raise ValidationError(
                "a provider needs an ownership form: PRIVATE, NONPROFIT or PUBLIC_IN_HOUSE",
                code="OWNERSHIP_REQUIRED", field=["ownership"],
            )
    elif ownership is not None:
        raise ValidationError("only providers have an ownership form", code="OWNERSHIP_NOT_ALLOWED", field=["ownership"])
    org = normalise_org_number(org_number) if org_number else None
    s = uow.session
    if org and s.execute(select(Party.id).where(Party.org_number == org)).first():
        raise Conflict(f"a party with organisation number {org} exists", code="DUPLICATE_ORG_NUMBER", field=["orgNumber"])
    party = Party(name=name, role=role, ownership=ownership, org_number=org)
    s.add(party)
    s.flush()
    return party


def get_party(uow_or_session, party_id: int, *, role: str | None = None, field: str = "partyId") -> Party:
    """The party, checked to exist and (if given) to have `role`."""
    s = getattr(uow_or_session, "session", uow_or_session)
    party = s.get(Party, party_id)
    if party is None:
        raise NotFound(f"party {party_id} does not exist", code="UNKNOWN_PARTY", field=[field])
    if role is not None and party.role != role:
        raise ValidationError(f"party {party_id} is a {party.role}, not a {role}", code="WRONG_PARTY_ROLE", field=[field])
    return party
