"""API tokens: created by an admin (or the CLI), stored as SHA-256 of the secret only."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from ledger.access import PARTY_BOUND, Actor, require_role
from ledger.cursor_reads import CursorQuery
from ledger.db import UnitOfWork
from ledger.errors import NotFound, PermissionDenied, ValidationError
from ledger.models import ApiToken
from ledger.models.parties import TOKEN_ROLES
from ledger.parties import clean_text, get_party

TOKEN_PREFIX = "utf_"


@dataclass(frozen=True)
class IssuedToken:
    token: str  # the secret, shown once
    api_token: ApiToken


def secret_hash(secret: str) -> str:
    """What is stored of a secret (and what a process may keep to recognise one): its SHA-256."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(
    uow: UnitOfWork, *, actor: Actor, name: str, role: str, party_id: int | None = None,
    expires_at: datetime | None = None,
) -> IssuedToken:
    """A new bearer token for a person in a role; party-bound roles need a party of that role."""
    require_role(actor, "ADMIN")
    name = clean_text(name, "name")
    if role not in TOKEN_ROLES:
        raise ValidationError(f"unknown role {role!r}", code="INVALID_ROLE", field=["role"])
    if role in PARTY_BOUND:
        if party_id is None:
            raise ValidationError(f"a {role} token is bound to a party", code="PARTY_REQUIRED", field=["partyId"])
        get_party(uow, party_id, role=role)
    elif party_id is not None:
        get_party(uow, party_id)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tok = ApiToken(name=name, role=role, party_id=party_id, secret_hash=secret_hash(secret), expires_at=expires_at)
    uow.session.add(tok)
    uow.session.flush()
    return IssuedToken(secret, tok)


def authenticate(s: Session, secret: str, now: datetime) -> Actor:
    """The actor for a bearer secret, or UNAUTHENTICATED (unknown, revoked or expired)."""
    return authenticate_with_last_use(s, secret, now)[0]


# on the driver's cursor: it runs before every request
_BY_SECRET_HASH = CursorQuery(select(ApiToken.id, ApiToken.name, ApiToken.role, ApiToken.party_id, ApiToken.revoked_at,
                                     ApiToken.expires_at, ApiToken.last_used_at)
                              .where(ApiToken.secret_hash == bindparam("secret_hash")))


def authenticate_with_last_use(s: Session, secret: str, now: datetime) -> tuple[Actor, datetime | None]:
    """The actor for a bearer secret and when its token was last used, in one SELECT."""
    if len(secret) > 200 or "\x00" in secret:
        raise PermissionDenied("unknown bearer token", code="UNAUTHENTICATED")
    # the columns it needs as a plain row (no ORM instance); secret_hash is unique: one row or none
    found = _BY_SECRET_HASH.rows(s.connection(), {"secret_hash": secret_hash(secret)})
    if not found:
        raise PermissionDenied("unknown bearer token", code="UNAUTHENTICATED")
    token_id, name, role, party_id, revoked_at, expires_at, last_used_at = found[0]
    if revoked_at is not None:
        raise PermissionDenied("this token has been revoked", code="UNAUTHENTICATED")
    if expires_at is not None and expires_at <= now:
        raise PermissionDenied("this token has expired", code="UNAUTHENTICATED")
    return Actor(name=name, role=role, party_id=party_id, token_id=token_id), last_used_at


def touch(uow: UnitOfWork, token_id: int, now: datetime) -> None:
    """Record when a token was last used."""
    uow.session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))


def revoke_token(uow: UnitOfWork, *, actor: Actor, token_id: int, now: datetime) -> ApiToken:
    require_role(actor, "ADMIN")
    tok = uow.session.get(ApiToken, token_id)
    if tok is None:
        raise NotFound(f"token {token_id} does not exist", code="UNKNOWN_TOKEN", field=["tokenId"])
    if tok.revoked_at is None:
        tok.revoked_at = now
        uow.session.flush()
    return tok
