"""Corrections: measurement versions, disputes and change requests under dual control."""
from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Union

import strawberry
from sqlalchemy import select
from strawberry.types import Info

from api.graphql.base import (
    BEFORE, LAST, Connection, Node, UserError, Window, audited, ctx, from_global_id, keyset_page, mutate, query_error,
    require_actor, split_global_id,
)
from api.graphql.evidence import Evidence, Measurement
from api.graphql.payouts import Payout
from ledger import models
from ledger.corrections import disputes as dispute_uc
from ledger.corrections import measurements as measurement_uc
from ledger.errors import DomainError, ValidationError
from ledger.models import utcnow
from ledger.reads import visible_contracts


@strawberry.input(description="New values for a measurement; the old version is kept, marked SUPERSEDED.")
class CorrectMeasurementInput:
    measurement_id: strawberry.ID
    observed_value: Decimal
    comparison_value: Decimal | None = None
    cohort_size: int | None = None
    reason: str = strawberry.field(description="Why the measurement is corrected (kept with the new version).")
    idempotency_key: str | None = None


@strawberry.type
class CorrectMeasurementPayload:
    measurement: Measurement | None = strawberry.field(description="The new, current version.")
    user_errors: list[UserError]


@strawberry.input(description="Void a measurement: it is kept, marked VOIDED, and pays nothing from now on.")
class VoidMeasurementInput:
    measurement_id: strawberry.ID
    reason: str
    idempotency_key: str | None = None


@strawberry.type
class VoidMeasurementPayload:
    measurement: Measurement | None
    user_errors: list[UserError]


def _measurement_id(gid) -> int:
    return from_global_id(gid, "Measurement", field="measurementId")


@strawberry.type
class CorrectionMutations:
    @strawberry.mutation(description="The contract's verifier corrects a current measurement. If the old value was "
                                     "paid, the period's next payout carries an ADJUSTMENT line for the difference.")
    async def correct_measurement(self, info: Info, input: CorrectMeasurementInput) -> CorrectMeasurementPayload:
        def run(uow, actor):
            return audited(uow, actor, "correctMeasurement", input, lambda: measurement_uc.correct_measurement(
                uow, actor=actor, measurement_id=_measurement_id(input.measurement_id),
                observed_value=input.observed_value, comparison_value=input.comparison_value,
                cohort_size=input.cohort_size, reason=input.reason))
        return await mutate(info, CorrectMeasurementPayload, run, lambda x: {"measurement": Measurement.from_row(x)})

    @strawberry.mutation(description="The contract's verifier voids a current measurement. If it was paid, the "
                                     "period's next payout claws the payment back in an ADJUSTMENT line.")
    async def void_measurement(self, info: Info, input: VoidMeasurementInput) -> VoidMeasurementPayload:
        def run(uow, actor):
            return audited(uow, actor, "voidMeasurement", input, lambda: measurement_uc.void_measurement(
                uow, actor=actor, measurement_id=_measurement_id(input.measurement_id), reason=input.reason))
        return await mutate(info, VoidMeasurementPayload, run, lambda x: {"measurement": Measurement.from_row(x)})


# --- disputes -------------------------------------------------------------------------------------

@strawberry.enum(description="OPEN until a fund manager resolves it: UPHELD (the provider was right) or DISMISSED.")
class DisputeStatus(enum.Enum):
    OPEN = "OPEN"
    UPHELD = "UPHELD"
    DISMISSED = "DISMISSED"


@strawberry.enum(description="How a dispute ends.")
class DisputeOutcome(enum.Enum):
    UPHELD = strawberry.enum_value("UPHELD", description=(
        "The provider was right: a disputed item is VERIFIED again and paid in the next payout of its period; a "
        "disputed payout is reversed (under the fund's dual control: a reversal change request for a second fund "
        "manager to approve, listed in changeRequests), so a new payout of its period pays what is owed."))
    DISMISSED = strawberry.enum_value("DISMISSED", description="The decision stands.")


DisputeSubject = Annotated[Union[Evidence, Payout], strawberry.union(
    "DisputeSubject", description="What is disputed: a rejected or invalidated evidence item, or a payout.")]


@strawberry.enum(description="The decision a provider disputes.")
class DisputedDecision(enum.Enum):
    REJECTED = strawberry.enum_value("REJECTED", description="A verifier rejected the evidence.")
    INVALIDATED = strawberry.enum_value("INVALIDATED", description="Verified evidence was invalidated afterwards.")
    POSTED = strawberry.enum_value("POSTED", description="A payout was posted and the provider disputes its amount.")


@strawberry.type(description="A provider's dispute of a rejection, an invalidation or a payout.")
class Dispute(Node):
    pk: strawberry.Private[int]
    contract_pk: strawberry.Private[int]
    evidence_pk: strawberry.Private[int | None]
    payout_pk: strawberry.Private[int | None]
    status: DisputeStatus
    reason: str = strawberry.field(description="The provider's grounds.")
    deadline: date = strawberry.field(description="The last day for a fund manager to resolve it.")
    overdue: bool = strawberry.field(description="Still open after its deadline.")
    subject_status: DisputedDecision = strawberry.field(
        description="The disputed decision: REJECTED, INVALIDATED or POSTED.")
    opened_by: str
    opened_at: datetime
    resolved_by: str | None
    resolved_at: datetime | None
    resolution_reason: str | None

    @strawberry.field(description="The disputed evidence item or payout.")
    async def subject(self, info: Info) -> DisputeSubject | None:
        from api.graphql.evidence import load_node
        from api.graphql.payouts import load_payout
        if self.evidence_pk is not None:
            return await load_node(info, "Evidence", self.evidence_pk)
        return await load_payout(info, self.payout_pk)

    @strawberry.field
    async def contract(self, info: Info) -> Annotated["OutcomeContract", strawberry.lazy("api.graphql.contracts")] | None:  # noqa: F821
        from api.graphql.contracts import load_contract
        return await load_contract(info, self.contract_pk)

    @classmethod
    def from_row(cls, d: models.Dispute, today: date | None = None) -> "Dispute":
        return cls(pk=d.id, contract_pk=d.contract_id, evidence_pk=d.evidence_id, payout_pk=d.payout_id,
                   status=DisputeStatus(d.status), reason=d.reason, deadline=d.deadline,
                   overdue=dispute_uc.is_overdue(d, today or utcnow().date()),
                   subject_status=DisputedDecision(d.subject_status),
                   opened_by=d.opened_by, opened_at=d.opened_at, resolved_by=d.resolved_by, resolved_at=d.resolved_at,
                   resolution_reason=d.resolution_reason)


def _scoped(info: Info, stmt):
    clause = visible_contracts(require_actor(info))
    if clause is None:
        return stmt
    return stmt.join(models.OutcomeContract, models.OutcomeContract.id == models.Dispute.contract_id).where(clause)


async def load_dispute(info: Info, pk: int) -> Dispute | None:
    D = models.Dispute
    row = await ctx(info).db.read(lambda s: s.execute(_scoped(info, select(D)).where(D.id == pk)).scalar_one_or_none())
    return Dispute.from_row(row) if row else None


@strawberry.input
class OpenDisputeInput:
    subject_id: strawberry.ID = strawberry.field(description="The ID of a rejected or invalidated Evidence item, or "
                                                             "of a Payout.")
    reason: str
    idempotency_key: str | None = None


@strawberry.type
class OpenDisputePayload:
    dispute: Dispute | None
    user_errors: list[UserError]


@strawberry.input
class ResolveDisputeInput:
    dispute_id: strawberry.ID
    outcome: DisputeOutcome
    reason: str
    idempotency_key: str | None = None


@strawberry.type
class ResolveDisputePayload:
    dispute: Dispute | None
    user_errors: list[UserError]


def _subject(gid) -> tuple[str, int]:
    parsed = split_global_id(gid)
    if parsed is None or parsed[0] not in ("Evidence", "Payout"):
        raise ValidationError(f"{gid!r} is not the ID of an Evidence item or a Payout", code="INVALID_ID",
                              field=["subjectId"])
    return ("EVIDENCE" if parsed[0] == "Evidence" else "PAYOUT"), parsed[1]


@strawberry.type
class DisputeQueries:
    @strawberry.field(description="Disputes, newest last; a provider sees only its own contracts' disputes. "
                                  "With overdue: true, only open disputes past their deadline.")
    async def disputes(self, info: Info, contract_id: strawberry.ID | None = None, status: DisputeStatus | None = None,
                       overdue: bool | None = None, first: int | None = None,
                       after: str | None = None, last: Annotated[int | None, LAST] = None,
                       before: Annotated[str | None, BEFORE] = None) -> Connection[Dispute]:
        try:
            cid = None if contract_id is None else from_global_id(contract_id, "OutcomeContract", field="contractId")
        except DomainError as err:
            raise query_error(err) from None
        window = Window.of(first, after, last, before)
        today = utcnow().date()
        D = models.Dispute

        def build(s):
            stmt = _scoped(info, select(D))
            if cid is not None:
                stmt = stmt.where(D.contract_id == cid)
            if status is not None:
                stmt = stmt.where(D.status == status.value)
            if overdue is not None:
                late = (D.status == "OPEN") & (D.deadline < today)
                stmt = stmt.where(late if overdue else ~late)
            return stmt
        return await keyset_page(info, build, D.id, lambda d: Dispute.from_row(d, today), window)


@strawberry.type
class DisputeMutations:
    @strawberry.mutation(description="The contract's provider disputes a rejected or invalidated evidence item, or a "
                                     "payout, within the contract's disputeWindowDays from the decision.")
    async def open_dispute(self, info: Info, input: OpenDisputeInput) -> OpenDisputePayload:
        def run(uow, actor):
            kind, pk = _subject(input.subject_id)
            return audited(uow, actor, "openDispute", input, lambda: dispute_uc.open_dispute(
                uow, actor=actor, subject_type=kind, subject_id=pk, reason=input.reason, today=utcnow().date()))
        return await mutate(info, OpenDisputePayload, run, lambda d: {"dispute": Dispute.from_row(d)})

    @strawberry.mutation(description="A fund manager who did not make the disputed decision resolves the dispute.")
    async def resolve_dispute(self, info: Info, input: ResolveDisputeInput) -> ResolveDisputePayload:
        def run(uow, actor):
            pk = from_global_id(input.dispute_id, "Dispute", field="disputeId")
            return audited(uow, actor, "resolveDispute", input, lambda: dispute_uc.resolve_dispute(
                uow, actor=actor, dispute_id=pk, outcome=input.outcome.value, reason=input.reason))
        return await mutate(info, ResolveDisputePayload, run, lambda d: {"dispute": Dispute.from_row(d)})
