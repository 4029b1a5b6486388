"""Published results and the evaluation report: what do we get for the money, whoever runs it?

Both are aggregates with no personal data. What the public sees goes through disclosure
control (ledger.publishing.disclosure): small counts, small complements and measurements of
small cohorts are suppressed (None); the evaluation report lives in ledger.publishing.evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from ledger.contracts import get_contract, terms_in_force
from ledger.errors import NotFound
from ledger.models import Evidence, Measurement, Participant, Party
from ledger.publishing import disclosure
from ledger.publishing.evaluation import (  # noqa: F401  (the report's types, where callers look for them)
    PUBLISHED, EvaluationReport, MetricFigures, ReportRow, evaluation_report,
)

SMALL_COUNT = disclosure.SMALL_COUNT


def suppress(n: int | None) -> int | None:
    return disclosure.count(n)


@dataclass(frozen=True)
class MetricResult:
    code: str
    name: str
    kind: str
    participants: int | None
    achieved: int | None
    rate: Decimal | None
    latest_observed: Decimal | None
    baseline: Decimal | None
    direction: str = "HIGHER_IS_BETTER"
    period_months: int | None = None  # the length of the latest measurement's period (its unit: per half-year)


@dataclass(frozen=True)
class ContractResults:
    contract_id: int
    title: str
    policy_area: str
    status: str
    provider: str
    ownership: str | None
    municipality: str
    participants: int | None
    metrics: tuple[MetricResult, ...]
    fund_id: int | None = None
    currency: str = "SEK"


def public_results(s: Session, contract_id: int) -> ContractResults:
    """Per metric: participants, participants with a verified outcome, the rate; small counts suppressed."""
    contract = get_contract(s, contract_id)
    if contract.status not in PUBLISHED:
        raise NotFound(f"contract {contract_id} has no published results", code="UNKNOWN_CONTRACT",
                       field=["contractId"])
    provider, municipality = s.get(Party, contract.provider_id), s.get(Party, contract.municipality_id)
    cohort = s.execute(select(func.count()).select_from(Participant)
                       .where(Participant.contract_id == contract.id)).scalar_one()
    achieved = dict(s.execute(
        select(Evidence.metric_code, func.count(distinct(Evidence.participant_id)))
        .where(Evidence.contract_id == contract.id, Evidence.status == "VERIFIED").group_by(Evidence.metric_code)
    ).all())
    out = []
    people = disclosure.count(cohort)
    for metric in terms_in_force(s, contract.id).metrics:
        latest = months = None
        if metric.kind != "RATE_CARD":
            row = s.execute(select(Measurement.observed_value, Measurement.cohort_size, Measurement.period_start,
                                   Measurement.period_end).where(
                Measurement.contract_id == contract.id, Measurement.metric_code == metric.code)
                .order_by(Measurement.period_end.desc(), Measurement.id.desc()).limit(1)).first()
            if row is not None:  # a measurement of a cohort under 5 (its own size, else the contract's) is not shown
                months = max(1, round(((row.period_end - row.period_start).days + 1) / 30.44))
                latest = disclosure.cohort_value(row.observed_value, row.cohort_size if row.cohort_size is not None
                                                 else cohort)
        got = disclosure.part(achieved.get(metric.code, 0), cohort) if metric.kind == "RATE_CARD" else None
        rate = disclosure.rate(got, people) if metric.kind == "RATE_CARD" else None
        out.append(MetricResult(metric.code, metric.name, metric.kind, people, got, rate, latest, metric.baseline,
                                metric.direction, months))
    return ContractResults(contract.id, contract.title, contract.policy_area, contract.status, provider.name,
                           provider.ownership, municipality.name, people, tuple(out), contract.fund_id,
                           contract.currency)
