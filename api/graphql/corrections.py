"""Corrections: measurement versions, disputes and change requests under dual control."""
from __future__ import annotations

from decimal import Decimal

import strawberry
from strawberry.types import Info

from api.graphql.base import UserError, audited, from_global_id, mutate
from api.graphql.evidence import Measurement
from ledger.corrections import measurements as measurement_uc


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
