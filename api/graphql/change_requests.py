"""Change requests under dual control: the type the controlled mutations return, the list, and
approving or rejecting one."""
from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from typing import Annotated

import strawberry
from sqlalchemy import select
from strawberry.types import Info

from api.graphql.base import (
    BEFORE, LAST, Connection, Node, UserError, Window, audited, from_global_id, keyset_page, mutate, query_error,
    require_actor, to_global_id,
)
from ledger import models
from ledger.corrections import change_requests as uc
from ledger.errors import DomainError


@strawberry.enum(description="PENDING until a second fund manager approves (the change is then made) or rejects it.")
class ChangeRequestStatus(enum.Enum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


@strawberry.enum(description="The correction asked for.")
class ChangeRequestKind(enum.Enum):
    REVERSE_TRANSACTION = "REVERSE_TRANSACTION"
    AMEND_CONTRACT = "AMEND_CONTRACT"
    TERMINATE_CONTRACT = "TERMINATE_CONTRACT"
    ISSUE_SANCTION = "ISSUE_SANCTION"


@strawberry.type(description="A correction waiting for (or given) a second fund manager's decision under dual control.")
class ChangeRequest(Node):
    pk: strawberry.Private[int]
    fund_pk: strawberry.Private[int]
    contract_pk: strawberry.Private[int | None]
    kind: ChangeRequestKind
    status: ChangeRequestStatus
    requested_by: str = strawberry.field(description="The fund manager who asked for the change.")
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None = strawberry.field(description="Why it was rejected.")
    request: str = strawberry.field(description="What was asked for, as JSON: the input that approval carries out.")
    result_pk: strawberry.Private[str | None]
    result_type: strawberry.Private[str | None]

    @strawberry.field(description="The fund whose dual control applies.")
    def fund_id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("Fund", self.fund_pk))

    @strawberry.field(description="The contract concerned, if any.")
    def contract_id(self) -> strawberry.ID | None:
        return None if self.contract_pk is None else strawberry.ID(to_global_id("OutcomeContract", self.contract_pk))

    @strawberry.field(description="What approval made (a contract, a sanction or a ledger transaction), by global ID.")
    def result_id(self) -> strawberry.ID | None:
        if self.result_pk is None or not self.result_type:
            return None
        name = {"Transaction": "LedgerTransaction"}.get(self.result_type, self.result_type)
        return strawberry.ID(to_global_id(name, self.result_pk))

    @classmethod
    def from_row(cls, r: models.ChangeRequest) -> "ChangeRequest":
        return cls(pk=r.id, fund_pk=r.fund_id, contract_pk=r.contract_id, kind=ChangeRequestKind(r.kind),
                   status=ChangeRequestStatus(r.status), requested_by=r.requested_by, requested_at=r.requested_at,
                   decided_by=r.decided_by, decided_at=r.decided_at, decision_reason=r.decision_reason,
                   request=r.payload, result_pk=r.result_id, result_type=r.result_type)


def is_request(result: Any) -> bool:
    return isinstance(result, models.ChangeRequest)


def request_fields(result: Any) -> dict:
    """The payload's changeRequest: set when dual control turned the mutation into a request."""
    return {"change_request": ChangeRequest.from_row(result) if is_request(result) else None}


CHANGE_REQUEST_FIELD = strawberry.field(default=None, description=(
    "Under the fund's dual control: the PENDING change request (the result field is then null until a second "
    "fund manager approves it)."))


@strawberry.input
class ApproveChangeRequestInput:
    change_request_id: strawberry.ID
    idempotency_key: str | None = None


@strawberry.type
class ApproveChangeRequestPayload:
    change_request: ChangeRequest | None
    user_errors: list[UserError]


@strawberry.input
class RejectChangeRequestInput:
    change_request_id: strawberry.ID
    reason: str
    idempotency_key: str | None = None


@strawberry.type
class RejectChangeRequestPayload:
    change_request: ChangeRequest | None
    user_errors: list[UserError]


@strawberry.type
class ChangeRequestQueries:
    @strawberry.field(description="Change requests under dual control, oldest first (fund managers, admins, auditors).")
    async def change_requests(self, info: Info, fund_id: strawberry.ID | None = None,
                              status: ChangeRequestStatus | None = None, first: int | None = None,
                              after: str | None = None, last: Annotated[int | None, LAST] = None,
                              before: Annotated[str | None, BEFORE] = None) -> Connection[ChangeRequest]:
        actor = require_actor(info)
        try:
            fid = None if fund_id is None else from_global_id(fund_id, "Fund", field="fundId")
        except DomainError as err:
            raise query_error(err) from None
        window = Window.of(first, after, last, before)
        R = models.ChangeRequest

        def build(s):
            stmt = select(R)
            if not actor.sees_everything:
                stmt = stmt.where(R.id.is_(None))
            if fid is not None:
                stmt = stmt.where(R.fund_id == fid)
            if status is not None:
                stmt = stmt.where(R.status == status.value)
            return stmt
        return await keyset_page(info, build, R.id, ChangeRequest.from_row, window)


def _id(gid) -> int:
    return from_global_id(gid, "ChangeRequest", field="changeRequestId")


@strawberry.type
class ChangeRequestMutations:
    @strawberry.mutation(description="Another fund manager approves a change request: the change is made now, as "
                                     "asked (FOUR_EYES_REQUIRED for one's own request).")
    async def approve_change_request(self, info: Info, input: ApproveChangeRequestInput) -> ApproveChangeRequestPayload:
        def run(uow, actor):
            return audited(uow, actor, "approveChangeRequest", input,
                           lambda: uc.approve_change_request(uow, actor=actor, change_request_id=_id(input.change_request_id)))
        return await mutate(info, ApproveChangeRequestPayload, run,
                            lambda r: {"change_request": ChangeRequest.from_row(r)})

    @strawberry.mutation(description="End a change request without making the change, with a reason.")
    async def reject_change_request(self, info: Info, input: RejectChangeRequestInput) -> RejectChangeRequestPayload:
        def run(uow, actor):
            return audited(uow, actor, "rejectChangeRequest", input, lambda: uc.reject_change_request(
                uow, actor=actor, change_request_id=_id(input.change_request_id), reason=input.reason))
        return await mutate(info, RejectChangeRequestPayload, run,
                            lambda r: {"change_request": ChangeRequest.from_row(r)})
