"""The evaluation report: what do we get for the money, whoever runs the service?

Every figure comes from POSTED payouts (after clawbacks) and issued penalties:
- per metric of a contract, in its own unit: cost per outcome for a rate card (money paid for
  that metric / its outcomes), cost per unit improved for a measured metric (per care day
  avoided, per reconviction avoided). A metric's kind is read from the terms version the payout
  was calculated under, so a metric an amendment later dropped keeps its kind;
- per contract, provider, ownership form and policy area: paid, penalties, rate-card outcomes
  and cost per outcome (rate-card money / rate-card outcomes), each with the number of
  contracts behind it.

`full=True` (fund managers, auditors) gives every figure. Otherwise (the public) each metric
figure goes through disclosure control and every aggregate is the sum of the published metric
figures only (see ledger.publishing.disclosure), with the number left out.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger.models import (
    ContractTerms, Measurement, Metric, OutcomeContract, Participant, Party, PayoutCalculation, PayoutLine, Sanction,
)
from ledger.publishing import disclosure

PUBLISHED = ("ACTIVE", "SUSPENDED", "COMPLETED", "TERMINATED")


def _per(paid_minor: int | None, quantity: Decimal | int | None) -> int | None:
    if paid_minor is None or not quantity:
        return None
    return int((Decimal(paid_minor) / Decimal(quantity)).to_integral_value(rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class MetricFigures:
    """One metric of one contract: its quantity paid for, in its own unit, and the money."""

    contract_id: int
    contract_title: str
    code: str
    name: str
    kind: str
    unit: str  # OUTCOME (rate card: outcomes) or UNIT_IMPROVED (measured: days, events avoided)
    quantity: Decimal | None  # None when suppressed for the public
    amount_paid_minor: int | None  # None when suppressed for the public
    currency: str
    unit_price_minor: int

    @property
    def cost_per_unit_minor(self) -> int | None:
        """Money paid per outcome (rate card) or per unit improved (measured metric)."""
        return _per(self.amount_paid_minor, self.quantity)

    @property
    def is_rate_card(self) -> bool:
        return self.kind == "RATE_CARD"


def published_figure(f: MetricFigures, cohort: int | None) -> MetricFigures:
    """A metric figure as the public may see it: a rate-card count of 1–4 is suppressed, and a
    measured quantity of a cohort under 5; the money goes with its quantity (quantity × price
    would give the count back)."""
    qty = f.quantity
    if qty is not None and f.is_rate_card:
        shown = disclosure.count(int(qty))
        qty = None if shown is None else Decimal(shown)
    elif qty:  # measured: a cohort measurement, published only for cohorts of at least 5
        qty = disclosure.cohort_value(qty, cohort)
    return replace(f, quantity=qty, amount_paid_minor=None if qty is None else f.amount_paid_minor)


def group_row(key: str, label: str, ownership: str | None, currency: str,
              contracts: list[tuple[int, list[MetricFigures], int]], policy_area: str | None = None) -> ReportRow:
    """One report row over (contract id, its metric figures, its penalties): sums of what is given."""
    g = _Group(key, label, ownership, currency, policy_area)
    for contract_id, figures, penalty in contracts:
        g.add(contract_id, figures, penalty)
    return g.row()


@dataclass(frozen=True)
class ReportRow:
    """Outcomes and money for one contract, provider, ownership form or policy area."""

    key: str
    label: str
    ownership: str | None
    contracts: int  # contracts in the group
    outcomes: int | None  # rate-card outcomes paid for (after clawbacks); None when none may be published
    outcome_units: Decimal  # units of measured outcomes paid for (care days, events avoided)
    amount_paid_minor: int  # money in posted payouts (of the published metric figures, for the public)
    currency: str
    policy_area: str | None = None
    outcome_paid_minor: int = 0  # the rate-card part of amount_paid
    measured_paid_minor: int = 0  # the measured part of amount_paid
    penalties_minor: int = 0
    outcome_contracts: int = 0  # contracts behind `outcomes` and the cost per outcome
    paid_contracts: int = 0  # contracts behind `amount_paid`
    penalty_contracts: int = 0  # contracts with a penalty
    left_out: int = 0  # metric figures not published (disclosure control), so not in the sums
    unit_labels: tuple[str, ...] = ()  # the units of `outcome_units`

    @property
    def cost_per_outcome_minor(self) -> int | None:
        """Money paid for rate-card metrics per rate-card outcome (None without outcomes)."""
        return _per(self.outcome_paid_minor, self.outcomes)

    @property
    def cost_per_unit_minor(self) -> int | None:
        """Money paid for measured metrics per unit improved, when the row has one unit only."""
        if len(self.unit_labels) != 1:
            return None
        return _per(self.measured_paid_minor, self.outcome_units)


@dataclass(frozen=True)
class EvaluationReport:
    by_contract: tuple[ReportRow, ...]
    by_provider: tuple[ReportRow, ...]
    by_ownership: tuple[ReportRow, ...]
    by_metric: tuple[MetricFigures, ...] = ()
    by_policy_area: tuple[ReportRow, ...] = ()
    full: bool = True
    # per contract with investors (impact bonds): what they put in and got back, whole and by tranche
    investor_returns: dict = field(default_factory=dict)


@dataclass
class _Group:
    key: str
    label: str
    ownership: str | None
    currency: str
    policy_area: str | None = None
    contracts: set = field(default_factory=set)
    outcome_contracts: set = field(default_factory=set)
    paid_contracts: set = field(default_factory=set)
    penalty_contracts: set = field(default_factory=set)
    outcomes: int = 0
    units: Decimal = Decimal(0)
    outcome_paid: int = 0
    measured_paid: int = 0
    penalties: int = 0
    left_out: int = 0
    rate_card_published: int = 0
    rate_card_left_out: int = 0
    unit_labels: set = field(default_factory=set)

    def add(self, contract_id: int, figures: list[MetricFigures], penalty: int) -> None:
        self.contracts.add(contract_id)
        if penalty:
            self.penalties += penalty
            self.penalty_contracts.add(contract_id)
        for f in figures:
            if f.quantity is None or f.amount_paid_minor is None:
                self.left_out += 1
                if f.is_rate_card:
                    self.rate_card_left_out += 1
                continue
            self.paid_contracts.add(contract_id)
            if f.is_rate_card:
                self.rate_card_published += 1
                self.outcome_contracts.add(contract_id)
                self.outcomes += int(f.quantity)
                self.outcome_paid += f.amount_paid_minor
            else:
                self.units += f.quantity
                self.measured_paid += f.amount_paid_minor
                if f.quantity:
                    self.unit_labels.add(f.name)

    def row(self) -> ReportRow:
        # no rate-card figure published while some were left out: the outcome count is unknown
        outcomes = None if not self.rate_card_published and self.rate_card_left_out else self.outcomes
        return ReportRow(
            key=self.key, label=self.label, ownership=self.ownership, contracts=len(self.contracts), outcomes=outcomes,
            outcome_units=self.units, amount_paid_minor=self.outcome_paid + self.measured_paid, currency=self.currency,
            policy_area=self.policy_area, outcome_paid_minor=self.outcome_paid, measured_paid_minor=self.measured_paid,
            penalties_minor=self.penalties, outcome_contracts=len(self.outcome_contracts),
            paid_contracts=len(self.paid_contracts), penalty_contracts=len(self.penalty_contracts),
            left_out=self.left_out, unit_labels=tuple(sorted(self.unit_labels)))


def evaluation_report(s: Session, *, full: bool, scope=None, fund_id: int | None = None,
                      period: tuple[date, date] | None = None) -> EvaluationReport:
    """The report over published contracts (optionally one fund's, and payouts for periods ending
    within `period` and penalties issued within it)."""
    C, P, L = OutcomeContract, PayoutCalculation, PayoutLine
    stmt = select(C, Party).join(Party, Party.id == C.provider_id).where(C.status.in_(PUBLISHED)).order_by(C.id)
    if scope is not None:
        stmt = stmt.where(scope)
    if fund_id is not None:
        stmt = stmt.where(C.fund_id == fund_id)
    rows = s.execute(stmt).all()
    ids = [c.id for c, _ in rows]
    if not ids:
        return EvaluationReport((), (), (), (), (), full)

    # every metric of every terms version: the kind of a paid metric is the one it was paid under
    metric_of: dict[tuple[int, int, str], Metric] = {}
    latest: dict[int, dict[str, Metric]] = defaultdict(dict)  # contract → code → newest definition
    for version, contract_id, metric in s.execute(
            select(ContractTerms.version, ContractTerms.contract_id, Metric)
            .join(Metric, Metric.terms_id == ContractTerms.id)
            .where(ContractTerms.contract_id.in_(ids)).order_by(ContractTerms.contract_id, ContractTerms.version)):
        metric_of[(contract_id, version, metric.code)] = metric
        latest[contract_id][metric.code] = metric

    quantity: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    paid: dict[tuple[int, str], int] = defaultdict(int)
    kind_paid: dict[tuple[int, str], str] = {}
    lines = (select(P.contract_id, P.terms_version, L.metric_code, L.quantity, L.net_minor)
             .join(P, P.id == L.payout_id).where(P.status == "POSTED", P.contract_id.in_(ids)))
    if period is not None:
        lines = lines.where(P.period_end >= period[0], P.period_end <= period[1])
    for contract_id, version, code, qty, net in s.execute(lines):
        key = (contract_id, code)
        quantity[key] += qty
        paid[key] += net
        metric = metric_of.get((contract_id, version, code))
        if metric is not None:
            kind_paid[key] = metric.kind

    penalties: dict[int, int] = defaultdict(int)
    for contract_id, amount, issued_at in s.execute(
            select(Sanction.contract_id, Sanction.penalty_minor, Sanction.issued_at)
            .where(Sanction.contract_id.in_(ids), Sanction.penalty_minor.is_not(None))):
        if period is None or period[0] <= issued_at.date() <= period[1]:
            penalties[contract_id] += amount

    cohort: dict[int, int] = dict(s.execute(select(Participant.contract_id, func.count())
                                            .where(Participant.contract_id.in_(ids)).group_by(Participant.contract_id)).all())
    # the smallest cohort any measurement of a metric was taken over (its own size, else the contract's)
    smallest: dict[tuple[int, str], int] = {}
    for contract_id, code, size in s.execute(select(Measurement.contract_id, Measurement.metric_code,
                                                    Measurement.cohort_size).where(Measurement.contract_id.in_(ids))):
        size = size if size is not None else cohort.get(contract_id, 0)
        smallest[(contract_id, code)] = min(size, smallest.get((contract_id, code), size))

    by_metric: list[MetricFigures] = []
    per_contract: dict[int, list[MetricFigures]] = {}
    for c, _provider in rows:
        figures = []
        for code, metric in latest[c.id].items():
            key = (c.id, code)
            kind = kind_paid.get(key, metric.kind)
            qty, money = quantity.get(key, Decimal(0)), paid.get(key, 0)
            if kind == "RATE_CARD":
                qty = Decimal(int(qty))
            figure = MetricFigures(c.id, c.title, code, metric.name, kind,
                                   "OUTCOME" if kind == "RATE_CARD" else "UNIT_IMPROVED", qty, money, c.currency,
                                   metric.unit_price_minor)
            figures.append(figure if full else published_figure(figure, smallest.get(key, cohort.get(c.id, 0))))
        per_contract[c.id] = figures
        by_metric.extend(figures)

    def grouped(key_of) -> tuple[ReportRow, ...]:
        groups: dict[tuple, _Group] = {}
        for c, provider in rows:
            key, label, ownership, area = key_of(c, provider)
            g = groups.get((key, c.currency))
            if g is None:
                g = groups[(key, c.currency)] = _Group(key, label, ownership, c.currency, area)
            g.add(c.id, per_contract[c.id], penalties.get(c.id, 0))
        return tuple(g.row() for g in groups.values())

    by_contract = grouped(lambda c, p: (f"contract:{c.id}", c.title, p.ownership, c.policy_area))
    by_provider = grouped(lambda c, p: (f"provider:{p.id}", p.name, p.ownership, None))
    by_ownership = tuple(sorted(grouped(lambda c, p: (f"ownership:{p.ownership}", p.ownership or "", p.ownership, None)),
                                key=lambda r: (r.ownership or "", r.currency)))
    by_area = tuple(sorted(grouped(lambda c, p: (f"policyArea:{c.policy_area}", c.policy_area, None, c.policy_area)),
                           key=lambda r: (r.label, r.currency)))
    from ledger.investments import returns_by_contract
    return EvaluationReport(by_contract, by_provider, by_ownership, tuple(by_metric), by_area, full,
                            investor_returns=returns_by_contract(s, ids))
