"""Publishing in the sector's open standard: the INDIGO 4.1.0 export and which fields stay private."""
from __future__ import annotations

import enum
from datetime import datetime

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.graphql.base import UserError, audited, ctx, from_global_id, mutate, query_error
from ledger.errors import DomainError
from ledger.models import IndigoFieldStatus as FieldStatusRow
from ledger.publishing import indigo_export


@strawberry.enum(description="Whether an INDIGO field is in the public export.")
class IndigoStatus(enum.Enum):
    PUBLIC = "PUBLIC"
    PRIVATE = "PRIVATE"


@strawberry.type(description="A fund manager's decision on one field (or list) of a contract's INDIGO export.")
class IndigoFieldStatus:
    path: str = strawberry.field(description="The INDIGO field, e.g. `outcome_payments` or `dates.outcomes_contract_signed`.")
    status: IndigoStatus
    set_by: str = strawberry.field(description="Who decided it.")
    set_at: datetime

    @classmethod
    def from_row(cls, row: FieldStatusRow) -> "IndigoFieldStatus":
        return cls(path=row.path, status=IndigoStatus(row.status), set_by=row.set_by, set_at=row.set_at)


@strawberry.input
class SetIndigoFieldStatusInput:
    contract_id: strawberry.ID
    path: str = strawberry.field(description="The INDIGO field or list to mark; see the error for the ones allowed.")
    status: IndigoStatus
    idempotency_key: str | None = None


@strawberry.type
class SetIndigoFieldStatusPayload:
    indigo_field_status: IndigoFieldStatus | None
    user_errors: list[UserError]


@strawberry.type
class PublishingQueries:
    @strawberry.field(description=(
        "The contract as an INDIGO 4.1.0 project (GO Lab's open data standard for outcomes contracts), with its "
        "organisations and its fund. `public: true` (the default) is for anyone and leaves out what the fund "
        "manager marked private and numbers so small they could identify people; `public: false` includes "
        "everything and is for fund managers, auditors and the contract's own parties."))
    async def indigo_project(self, info: Info, contract_id: strawberry.ID,
                             public: bool | None = True) -> JSON | None:
        actor = ctx(info).actor
        try:
            pk = from_global_id(contract_id, "OutcomeContract", field="contractId")
            return await ctx(info).db.read(
                lambda s: indigo_export.export_project(s, actor=actor, contract_id=pk, public=public is not False))
        except DomainError as err:
            raise query_error(err) from None


@strawberry.type
class PublishingMutations:
    @strawberry.mutation(description="Mark one field (or list) of a contract's INDIGO export PRIVATE, so the public "
                                     "export leaves it out, or PUBLIC again. Fund managers only; audited.")
    async def set_indigo_field_status(self, info: Info, input: SetIndigoFieldStatusInput) -> SetIndigoFieldStatusPayload:
        def run(uow, actor):
            cid = from_global_id(input.contract_id, "OutcomeContract", field="contractId")
            return audited(uow, actor, "setIndigoFieldStatus", input, lambda: indigo_export.set_field_status(
                uow, actor=actor, contract_id=cid, path=input.path, status=input.status.value))
        return await mutate(info, SetIndigoFieldStatusPayload, run,
                            lambda r: {"indigo_field_status": IndigoFieldStatus.from_row(r)})
