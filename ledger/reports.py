"""Published results and the evaluation report: what do we get for the money, whoever runs it?

Both are aggregates with no personal data. Counts under `SMALL_COUNT` are suppressed (None):
small numbers can identify people.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from ledger.contracts import get_contract, terms_in_force
from ledger.errors import NotFound
from ledger.investments import InvestorReturns, returns_by_contract
from ledger.models import (
    Evidence, Measurement, OutcomeContract, Participant, Party, PayoutCalculation, PayoutLine,
)

SMALL_COUNT = 5
PUBLISHED = ("ACTIVE", "SUSPENDED", "COMPLETED", "TERMINATED")


def suppress(n: int | None) -> int | None:
    return None if n is None or n < SMALL_COUNT else n


def _rate(part: int | None, whole: int | None) -> Decimal | None:
    if part is None or not whole:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


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
    for metric in terms_in_force(s, contract.id).metrics:
        latest = None
        if metric.kind != "RATE_CARD":
            latest = s.execute(select(Measurement.observed_value).where(
                Measurement.contract_id == contract.id, Measurement.metric_code == metric.code)
                .order_by(Measurement.period_end.desc()).limit(1)).scalar_one_or_none()
        people = suppress(cohort)
        got = suppress(achieved.get(metric.code, 0)) if metric.kind == "RATE_CARD" else None
        out.append(MetricResult(metric.code, metric.name, metric.kind, people, got, _rate(got, people), latest,
                                metric.baseline))
    return ContractResults(contract.id, contract.title, contract.policy_area, contract.status, provider.name,
                           provider.ownership, municipality.name, suppress(cohort), tuple(out))


@dataclass(frozen=True)
class ReportRow:
    """Outcomes and money for one contract, one provider or one ownership form."""

    key: str
    label: str
    ownership: str | None
    contracts: int
    outcomes: int | None  # rate-card outcomes paid for (after clawbacks); small counts suppressed
    outcome_units: Decimal  # units of measured outcomes paid for (care days avoided, events avoided)
    amount_paid_minor: int
    currency: str

    @property
    def cost_per_outcome_minor(self) -> int | None:
        """Money paid per rate-card outcome (None without enough outcomes to publish)."""
        if not self.outcomes:
            return None
        return int((Decimal(self.amount_paid_minor) / self.outcomes).to_integral_value(rounding=ROUND_HALF_UP))

    @property
    def cost_per_unit_minor(self) -> int | None:
        """Money paid per unit of measured outcome, where a row has only measured outcomes."""
        if self.outcomes or not self.outcome_units:
            return None
        return int((Decimal(self.amount_paid_minor) / self.outcome_units).to_integral_value(rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class EvaluationReport:
    by_contract: tuple[ReportRow, ...]
    by_provider: tuple[ReportRow, ...]
    by_ownership: tuple[ReportRow, ...]
    # per contract with investors (impact bonds): what they put in and got back, whole and by tranche
    investor_returns: dict[int, tuple[InvestorReturns, ...]] = field(default_factory=dict)


def evaluation_report(s: Session, *, scope=None) -> EvaluationReport:
    """Outcomes achieved and amounts paid in POSTED payouts, per contract, provider and ownership form."""
    C, P, L = OutcomeContract, PayoutCalculation, PayoutLine
    contracts = select(C, Party).join(Party, Party.id == C.provider_id).where(C.status.in_(PUBLISHED)).order_by(C.id)
    if scope is not None:
        contracts = contracts.where(scope)
    rows = s.execute(contracts).all()
    ids = [c.id for c, _ in rows]
    paid = dict(s.execute(select(P.contract_id, func.sum(P.total_minor))
                          .where(P.status == "POSTED", P.contract_id.in_(ids)).group_by(P.contract_id)).all())
    # quantities of posted lines, split by whether the metric is a rate card (a count) or measured (units)
    kinds = {}
    for c, _ in rows:
        for metric in terms_in_force(s, c.id).metrics:
            kinds[(c.id, metric.code)] = metric.kind
    counts: dict[int, int] = defaultdict(int)
    units: dict[int, Decimal] = defaultdict(Decimal)
    for contract_id, code, quantity in s.execute(
            select(P.contract_id, L.metric_code, L.quantity).join(P, P.id == L.payout_id)
            .where(P.status == "POSTED", P.contract_id.in_(ids))):
        if kinds.get((contract_id, code), "RATE_CARD") == "RATE_CARD":
            counts[contract_id] += int(quantity)
        else:
            units[contract_id] += quantity
    by_contract, groups_p, groups_o = [], defaultdict(list), defaultdict(list)
    for c, provider in rows:
        row = dict(contracts=1, outcomes=counts[c.id], units=units[c.id], paid=int(paid.get(c.id) or 0), cur=c.currency)
        by_contract.append(_row(f"contract:{c.id}", c.title, provider.ownership, row))
        groups_p[(provider.id, provider.name, provider.ownership)].append(row)
        groups_o[provider.ownership].append(row)

    def total(parts):
        return dict(contracts=sum(p["contracts"] for p in parts), outcomes=sum(p["outcomes"] for p in parts),
                    units=sum((p["units"] for p in parts), Decimal(0)), paid=sum(p["paid"] for p in parts),
                    cur=parts[0]["cur"])
    return EvaluationReport(
        investor_returns=returns_by_contract(s, ids),
        by_contract=tuple(by_contract),
        by_provider=tuple(_row(f"provider:{pid}", name, own, total(parts)) for (pid, name, own), parts in groups_p.items()),
        by_ownership=tuple(_row(f"ownership:{own}", own or "", own, total(parts))
                           for own, parts in sorted(groups_o.items(), key=lambda kv: kv[0] or "")),
    )


def _row(key: str, label: str, ownership: str | None, r: dict) -> ReportRow:
    return ReportRow(key, label, ownership, r["contracts"], suppress(r["outcomes"]), r["units"], r["paid"], r["cur"])
