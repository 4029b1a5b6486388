"""The audit trail: who did what, when, with which input."""
from __future__ import annotations

from datetime import datetime

from typing import Annotated

import strawberry
from graphql import GraphQLError
from sqlalchemy import select
from strawberry.types import Info

from api.graphql.base import BEFORE, LAST, Connection, Node, Window, keyset_page, require_actor
from api.graphql.parties import Role
from ledger import models


@strawberry.type
class AuditEvent(Node):
    pk: strawberry.Private[int]
    occurred_at: datetime
    actor: str
    role: Role = strawberry.field(description="The role of the token that made the change.")
    operation: str
    input: str = strawberry.field(description="The mutation's input as JSON; identity numbers only as keyed hashes.")
    result_type: str | None
    result_id: str | None

    @classmethod
    def from_row(cls, e: models.AuditEvent) -> "AuditEvent":
        return cls(pk=e.id, occurred_at=e.occurred_at, actor=e.actor, role=Role(e.role), operation=e.operation,
                   input=e.input, result_type=e.result_type, result_id=e.result_id)


def require_overseer(info: Info):
    actor = require_actor(info)
    if not actor.sees_everything:
        raise GraphQLError("only admins, fund managers and auditors read the audit trail",
                           extensions={"code": "PERMISSION_DENIED"})
    return actor


@strawberry.type
class AuditQueries:
    @strawberry.field
    async def audit_events(self, info: Info, first: int | None = None, after: str | None = None,
                           last: Annotated[int | None, LAST] = None,
                           before: Annotated[str | None, BEFORE] = None) -> Connection[AuditEvent]:
        require_overseer(info)
        return await keyset_page(info, lambda s: select(models.AuditEvent), models.AuditEvent.id, AuditEvent.from_row,
                                 Window.of(first, after, last, before))
