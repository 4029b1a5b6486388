"""Parties, API tokens and the viewer."""
from __future__ import annotations

import enum
from datetime import datetime

from typing import Annotated

import strawberry
from sqlalchemy import select
from strawberry.types import Info

from strawberry.dataloader import DataLoader

from api.graphql.base import (
    BEFORE, LAST, Connection, Node, UserError, Window, audited, aware, ctx, from_global_id, keyset_page, mutate,
    require_actor,
)
from ledger import models, parties, tokens
from ledger.audit import result_ref
from ledger.models import utcnow


@strawberry.enum
class PartyRole(enum.Enum):
    FUND = "FUND"
    MUNICIPALITY = "MUNICIPALITY"
    PROVIDER = "PROVIDER"
    INVESTOR = "INVESTOR"
    VERIFIER = "VERIFIER"


@strawberry.enum
class Ownership(enum.Enum):
    PRIVATE = "PRIVATE"
    NONPROFIT = "NONPROFIT"
    PUBLIC_IN_HOUSE = "PUBLIC_IN_HOUSE"


@strawberry.enum
class Role(enum.Enum):
    ADMIN = "ADMIN"
    FUND_MANAGER = "FUND_MANAGER"
    MUNICIPALITY = "MUNICIPALITY"
    PROVIDER = "PROVIDER"
    VERIFIER = "VERIFIER"
    AUDITOR = "AUDITOR"
    INVESTOR = "INVESTOR"


@strawberry.type
class Party(Node):
    pk: strawberry.Private[int]
    name: str
    role: PartyRole
    ownership: Ownership | None
    org_number: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, p: models.Party) -> "Party":
        return cls(pk=p.id, name=p.name, role=PartyRole(p.role), ownership=Ownership(p.ownership) if p.ownership else None,
                   org_number=p.org_number, created_at=p.created_at)


@strawberry.type
class ApiToken(Node):
    pk: strawberry.Private[int]
    name: str
    role: Role
    party_id: strawberry.Private[int | None]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @strawberry.field
    async def party(self, info: Info) -> Party | None:
        return await load_party(info, self.party_id)

    @classmethod
    def from_row(cls, t: models.ApiToken) -> "ApiToken":
        return cls(pk=t.id, name=t.name, role=Role(t.role), party_id=t.party_id, created_at=t.created_at,
                   expires_at=t.expires_at, revoked_at=t.revoked_at, last_used_at=t.last_used_at)


@strawberry.type
class Viewer:
    name: str
    role: Role
    party_id: strawberry.Private[int | None]

    @strawberry.field
    async def party(self, info: Info) -> Party | None:
        return await load_party(info, self.party_id)


async def load_party(info: Info, party_id: int | None) -> Party | None:
    """A party through the request's DataLoader (parties are visible to every signed-in caller)."""
    if party_id is None:
        return None
    c = ctx(info)

    async def batch(keys: list[int]) -> list[Party | None]:
        rows = await c.db.read(lambda s: {p.id: Party.from_row(p) for p in s.execute(
            select(models.Party).where(models.Party.id.in_(keys))).scalars()})
        return [rows.get(k) for k in keys]

    return await c.loader("party", lambda: DataLoader(batch)).load(party_id)


# --- inputs and payloads --------------------------------------------------------------------

@strawberry.input
class CreatePartyInput:
    name: str
    role: PartyRole
    ownership: Ownership | None = None
    org_number: str | None = None
    idempotency_key: str | None = None


@strawberry.type
class CreatePartyPayload:
    party: Party | None
    user_errors: list[UserError]


@strawberry.input
class CreateApiTokenInput:
    name: str
    role: Role
    party_id: strawberry.ID | None = None
    expires_at: datetime | None = None
    idempotency_key: str | None = None


@strawberry.type
class CreateApiTokenPayload:
    token: str | None = strawberry.field(description="The bearer secret. Shown once; only its hash is kept.")
    api_token: ApiToken | None
    user_errors: list[UserError]


@strawberry.input
class RevokeApiTokenInput:
    token_id: strawberry.ID
    idempotency_key: str | None = None


@strawberry.type
class RevokeApiTokenPayload:
    api_token: ApiToken | None
    user_errors: list[UserError]


@strawberry.type
class PartyQueries:
    @strawberry.field
    def viewer(self, info: Info) -> Viewer | None:
        a = ctx(info).actor
        return None if a is None else Viewer(name=a.name, role=Role(a.role), party_id=a.party_id)

    @strawberry.field
    async def parties(self, info: Info, role: PartyRole | None = None, first: int | None = None,
                      after: str | None = None, last: Annotated[int | None, LAST] = None,
                      before: Annotated[str | None, BEFORE] = None) -> Connection[Party]:
        require_actor(info)
        stmt = select(models.Party) if role is None else select(models.Party).where(models.Party.role == role.value)
        return await keyset_page(info, lambda s: stmt, models.Party.id, Party.from_row,
                                 Window.of(first, after, last, before))


@strawberry.type
class PartyMutations:
    @strawberry.mutation
    async def create_party(self, info: Info, input: CreatePartyInput) -> CreatePartyPayload:
        def run(uow, actor):
            return audited(uow, actor, "createParty", input, lambda: parties.create_party(
                uow, actor=actor, name=input.name, role=input.role.value,
                ownership=input.ownership.value if input.ownership else None, org_number=input.org_number))
        return await mutate(info, CreatePartyPayload, run, lambda p: {"party": Party.from_row(p)})

    @strawberry.mutation
    async def create_api_token(self, info: Info, input: CreateApiTokenInput) -> CreateApiTokenPayload:
        def run(uow, actor):
            party_id = from_global_id(input.party_id, "Party", field="partyId") if input.party_id else None
            return audited(
                uow, actor, "createApiToken", input,
                lambda: tokens.create_token(uow, actor=actor, name=input.name, role=input.role.value,
                                            party_id=party_id, expires_at=aware(input.expires_at, "expiresAt")),
                ref=lambda r: result_ref(r.api_token),
                # a retry gets the token's record again, but never its secret: only the hash is kept
                load=lambda u, _t, i: tokens.IssuedToken(None, u.session.get(models.ApiToken, int(i))),
            )
        return await mutate(info, CreateApiTokenPayload, run,
                            lambda r: {"token": r.token, "api_token": ApiToken.from_row(r.api_token)})

    @strawberry.mutation
    async def revoke_api_token(self, info: Info, input: RevokeApiTokenInput) -> RevokeApiTokenPayload:
        def run(uow, actor):
            token_id = from_global_id(input.token_id, "ApiToken", field="tokenId")
            return audited(uow, actor, "revokeApiToken", input,
                           lambda: tokens.revoke_token(uow, actor=actor, token_id=token_id, now=utcnow()))
        return await mutate(info, RevokeApiTokenPayload, run, lambda t: {"api_token": ApiToken.from_row(t)})
