"""Published results and the evaluation report: aggregated only, scoped to the caller's party when it has one."""
from __future__ import annotations

import enum
from decimal import Decimal

import strawberry
from strawberry.types import Info

from api.graphql.base import Money, ctx, from_global_id, query_error
from api.graphql.contracts import ContractStatus, MetricKind
from api.graphql.parties import Ownership
from api.graphql.investments import InvestorReturns
from ledger import reports
from ledger.errors import DomainError
from ledger.reads import visible_contracts

CONTRACT_PARTIES = frozenset({"MUNICIPALITY", "PROVIDER", "VERIFIER"})  # roles a contract names


def _ownership(value: str | None) -> Ownership | None:
    return None if value is None else Ownership(value)


@strawberry.type
class PublicMetricResult:
    code: str
    name: str
    kind: MetricKind
    participants: int | None = strawberry.field(description="Null when under 5 (small numbers can identify people).")
    achieved: int | None = strawberry.field(
        description="Participants with a verified outcome; null when 1–4, or when 1–4 participants did not achieve it "
                    "(that would identify them). Zero is shown as 0.")
    rate: Decimal | None = strawberry.field(description="achieved / participants; null when either is not published.")
    latest_observed: Decimal | None = strawberry.field(
        description="The newest measurement of a measured metric; null for a cohort under 5.")
    baseline: Decimal | None


@strawberry.type
class PublicResults:
    title: str
    policy_area: str
    status: ContractStatus
    provider: str
    ownership: Ownership | None
    municipality: str
    participants: int | None
    metrics: list[PublicMetricResult]


@strawberry.type(description="Outcomes and money of one contract, provider, ownership form or policy area, from "
                             "posted payouts (after clawbacks). For the public, each sum covers only the figures "
                             "that may be published; `leftOut` says how many were not.")
class ReportRow:
    label: str
    ownership: Ownership | None
    policy_area: str | None = strawberry.field(description="The policy area, on rows per contract and per area.")
    contracts: int = strawberry.field(description="Contracts in this row.")
    outcomes: int | None = strawberry.field(
        description="Rate-card outcomes paid for (after clawbacks); null when none may be published.")
    outcome_contracts: int = strawberry.field(description="Contracts behind `outcomes` and `costPerOutcome`.")
    outcome_units: Decimal = strawberry.field(description="Units of measured outcomes paid for (days, events avoided).")
    amount_paid: Money = strawberry.field(description="Money in posted payouts, all metrics.")
    paid_contracts: int = strawberry.field(description="Contracts behind `amountPaid`.")
    outcome_amount_paid: Money = strawberry.field(description="The part of `amountPaid` paid for rate-card outcomes.")
    penalties: Money = strawberry.field(description="Penalties issued to the providers (sanctions of level PENALTY).")
    penalty_contracts: int = strawberry.field(description="Contracts with a penalty.")
    cost_per_outcome: Money | None = strawberry.field(
        description="Money paid for rate-card metrics divided by rate-card outcomes (not the measured metrics' money).")
    cost_per_unit: Money | None = strawberry.field(
        description="Money paid for measured metrics per unit improved; only where the row has one such unit.")
    left_out: int = strawberry.field(
        description="Metric figures not published (too few people: they could be identified) and so not in the sums.")

    @classmethod
    def of(cls, r: reports.ReportRow) -> "ReportRow":
        money = lambda units: None if units is None else Money.minor(units, r.currency)  # noqa: E731
        return cls(label=r.label, ownership=_ownership(r.ownership), policy_area=r.policy_area, contracts=r.contracts,
                   outcomes=r.outcomes, outcome_contracts=r.outcome_contracts, outcome_units=r.outcome_units,
                   amount_paid=Money.minor(r.amount_paid_minor, r.currency), paid_contracts=r.paid_contracts,
                   outcome_amount_paid=Money.minor(r.outcome_paid_minor, r.currency),
                   penalties=Money.minor(r.penalties_minor, r.currency), penalty_contracts=r.penalty_contracts,
                   cost_per_outcome=money(r.cost_per_outcome_minor), cost_per_unit=money(r.cost_per_unit_minor),
                   left_out=r.left_out)


@strawberry.enum(description="What a metric's quantity counts.")
class MetricUnit(enum.Enum):
    OUTCOME = "OUTCOME"
    UNIT_IMPROVED = "UNIT_IMPROVED"


@strawberry.type(description="One metric of one contract in its own unit: outcomes for a rate card, units improved "
                             "(care days avoided, reconvictions avoided) for a measured metric.")
class MetricReportRow:
    contract_title: str
    code: str
    name: str
    kind: MetricKind
    unit: MetricUnit = strawberry.field(description="OUTCOME (rate card) or UNIT_IMPROVED (measured metric).")
    quantity: Decimal | None = strawberry.field(
        description="Outcomes or units improved paid for (after clawbacks); null when it may not be published.")
    amount_paid: Money | None = strawberry.field(description="Money paid for this metric; null with its quantity.")
    unit_price: Money = strawberry.field(description="The price per outcome or per unit in the terms in force.")
    cost_per_unit: Money | None = strawberry.field(
        description="Money paid per outcome (rate card) or per unit improved (measured metric).")

    @classmethod
    def of(cls, f: reports.MetricFigures) -> "MetricReportRow":
        money = lambda units: None if units is None else Money.minor(units, f.currency)  # noqa: E731
        return cls(contract_title=f.contract_title, code=f.code, name=f.name, kind=MetricKind(f.kind), unit=MetricUnit(f.unit),
                   quantity=f.quantity, amount_paid=money(f.amount_paid_minor),
                   unit_price=Money.minor(f.unit_price_minor, f.currency), cost_per_unit=money(f.cost_per_unit_minor))


@strawberry.type(description="What do we get for the money, whoever runs the service?")
class EvaluationReport:
    by_contract: list[ReportRow]
    by_provider: list[ReportRow]
    by_ownership: list[ReportRow]
    by_policy_area: list[ReportRow] = strawberry.field(description="The same figures per policy area.")
    by_metric: list[MetricReportRow] = strawberry.field(description="Per metric of each contract, in its own unit.")
    full: bool = strawberry.field(
        description="True for fund managers and auditors (every figure); false where small numbers are suppressed.")
    investor_returns: list[InvestorReturns] = strawberry.field(
        description="Per contract with investors (impact bonds): what they put in and got back, all together first, "
                    "then per tranche.")


def public_results_of(s, contract_id: int) -> PublicResults:
    r = reports.public_results(s, contract_id)
    return PublicResults(
        title=r.title, policy_area=r.policy_area, status=ContractStatus(r.status), provider=r.provider, ownership=_ownership(r.ownership),
        municipality=r.municipality, participants=r.participants,
        metrics=[PublicMetricResult(code=x.code, name=x.name, kind=MetricKind(x.kind), participants=x.participants,
                                    achieved=x.achieved, rate=x.rate, latest_observed=x.latest_observed,
                                    baseline=x.baseline) for x in r.metrics])


def evaluation_report_of(s, *, full: bool = False, scope=None) -> EvaluationReport:
    r = reports.evaluation_report(s, full=full, scope=scope)
    titles = {x.key: x.label for x in r.by_contract}
    return EvaluationReport(by_contract=[ReportRow.of(x) for x in r.by_contract],
                            by_provider=[ReportRow.of(x) for x in r.by_provider],
                            by_ownership=[ReportRow.of(x) for x in r.by_ownership],
                            by_policy_area=[ReportRow.of(x) for x in r.by_policy_area],
                            by_metric=[MetricReportRow.of(x) for x in r.by_metric], full=r.full,
                            investor_returns=[InvestorReturns.of(titles.get(f"contract:{cid}", f"contract {cid}"), x)
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

    @strawberry.field(description="Outcomes and money per contract, metric, provider, ownership form and policy area "
                                  "(posted payouts). Fund managers, auditors and admins: every contract, every "
                                  "figure. A party's token: its own contracts only (a provider's, a municipality's, a "
                                  "verifier's), small numbers suppressed. An investor's token or none: the published "
                                  "aggregate of the page /results, small numbers suppressed.")
    async def evaluation_report(self, info: Info) -> EvaluationReport:
        actor = ctx(info).actor
        full = actor is not None and actor.sees_everything
        # a party in contracts sees its own (issue 14); an investor and the public see what /results publishes
        scope = visible_contracts(actor) if actor is not None and actor.role in CONTRACT_PARTIES else None
        return await ctx(info).db.read(lambda s: evaluation_report_of(s, full=full, scope=scope))
