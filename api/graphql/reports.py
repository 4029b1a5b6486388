"""Published results and the evaluation report: readable without a token, aggregated only."""
from __future__ import annotations

from decimal import Decimal

import strawberry
from strawberry.types import Info

from api.graphql.base import Money, ctx, from_global_id, query_error
from api.graphql.investments import InvestorReturns
from ledger import reports
from ledger.errors import DomainError


@strawberry.type
class PublicMetricResult:
    code: str
    name: str
    kind: str
    participants: int | None = strawberry.field(description="Null when under 5 (small numbers can identify people).")
    achieved: int | None = strawberry.field(description="Participants with a verified outcome; null when under 5.")
    rate: Decimal | None
    latest_observed: Decimal | None
    baseline: Decimal | None


@strawberry.type
class PublicResults:
    title: str
    policy_area: str
    status: str
    provider: str
    ownership: str | None
    municipality: str
    participants: int | None
    metrics: list[PublicMetricResult]


@strawberry.type
class ReportRow:
    label: str
    ownership: str | None
    contracts: int
    outcomes: int | None = strawberry.field(description="Rate-card outcomes paid for; null when under 5.")
    outcome_units: Decimal = strawberry.field(description="Units of measured outcomes paid for (days, events avoided).")
    amount_paid: Money
    cost_per_outcome: Money | None
    cost_per_unit: Money | None

    @classmethod
    def of(cls, r: reports.ReportRow) -> "ReportRow":
        money = lambda units: None if units is None else Money.minor(units, r.currency)  # noqa: E731
        return cls(label=r.label, ownership=r.ownership, contracts=r.contracts, outcomes=r.outcomes,
                   outcome_units=r.outcome_units, amount_paid=Money.minor(r.amount_paid_minor, r.currency),
                   cost_per_outcome=money(r.cost_per_outcome_minor), cost_per_unit=money(r.cost_per_unit_minor))


@strawberry.type(description="What do we get for the money, whoever runs the service?")
class EvaluationReport:
    by_contract: list[ReportRow]
    by_provider: list[ReportRow]
    by_ownership: list[ReportRow]
    investor_returns: list[InvestorReturns] = strawberry.field(
        description="Per contract with investors (impact bonds): what they put in and got back, all together first, "
                    "then per tranche.")


def public_results_of(s, contract_id: int) -> PublicResults:
    r = reports.public_results(s, contract_id)
    return PublicResults(
        title=r.title, policy_area=r.policy_area, status=r.status, provider=r.provider, ownership=r.ownership,
        municipality=r.municipality, participants=r.participants,
        metrics=[PublicMetricResult(code=x.code, name=x.name, kind=x.kind, participants=x.participants,
                                    achieved=x.achieved, rate=x.rate, latest_observed=x.latest_observed,
                                    baseline=x.baseline) for x in r.metrics])


def evaluation_report_of(s) -> EvaluationReport:
    r = reports.evaluation_report(s)
    titles = {x.key: x.label for x in r.by_contract}
    return EvaluationReport(by_contract=[ReportRow.of(x) for x in r.by_contract],
                            by_provider=[ReportRow.of(x) for x in r.by_provider],
                            by_ownership=[ReportRow.of(x) for x in r.by_ownership],
                            investor_returns=[InvestorReturns.of(titles[f"contract:{cid}"], x)
                                              for cid, rows in r.investor_returns.items() for x in rows])


@strawberry.type
class ReportQueries:
    @strawberry.field(description="Aggregated outcomes per metric for anyone, token or not; counts under 5 are null.")
    async def public_results(self, info: Info, contract_id: strawberry.ID) -> PublicResults | None:
        try:
            pk = from_global_id(contract_id, "OutcomeContract", field="contractId")
            return await ctx(info).db.read(lambda s: public_results_of(s, pk))
        except DomainError as err:
            raise query_error(err) from None

    @strawberry.field(description="Outcomes and money per contract, provider and ownership form (posted payouts).")
    async def evaluation_report(self, info: Info) -> EvaluationReport:
        return await ctx(info).db.read(evaluation_report_of)
