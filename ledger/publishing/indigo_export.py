"""INDIGO export use cases: read a contract's facts from the database, decide who may see what,
and let a fund manager mark fields PRIVATE or PUBLIC. The mapping itself is ledger.publishing.indigo.

Who may export:
- `public=True`: anyone, with a token or without, for a contract with published results;
- `public=False` (private data included): ADMIN, FUND_MANAGER and AUDITOR, and the parties of
  the contract (its municipality, provider and verifier) for their own contract. Anyone else
  is told the contract does not exist, exactly as for a missing one.

Payment plans come from the contract's schedule, payers' maxima from the commitments, DISPUTED
items from open disputes and investments with their drawdowns from the impact bond tables.
"""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger import commitments, payout_items, schedule
from ledger import money as m
from ledger.access import Actor, require_role
from ledger.chart import fund_position
from ledger.contracts import get_contract, terms_in_force
from ledger.db import UnitOfWork
from ledger.errors import NotFound, ValidationError
from ledger.models import (
    Dispute, Drawdown, Evidence, IndigoFieldStatus, Investment, Measurement, OutcomeContract, OutcomesFund,
    Participant, Party, Payment, PayoutCalculation, PayoutItem, PayoutLine, PayoutShare,
)
from ledger.models.publishing import FIELD_STATUSES
from ledger.publishing import indigo
from ledger.publishing.evaluation import PUBLISHED


# --- facts from the schedule, the commitments, disputes and investments -----------------------

def payment_plans_of(s: Session, contract: OutcomeContract) -> tuple[indigo.PaymentPlanFacts, ...]:
    """The contract's scheduled periods (ledger.schedule); none for a contract without a payment frequency."""
    return tuple(indigo.PaymentPlanFacts(p.start, p.end, p.claim_deadline) for p in schedule.of(contract))


def investments_of(s: Session, contract: OutcomeContract) -> tuple[indigo.InvestmentFacts, ...]:
    """The contract's investments with their drawdowns, oldest first."""
    rows = list(s.execute(select(Investment).where(Investment.contract_id == contract.id)
                          .order_by(Investment.id)).scalars())
    if not rows:
        return ()
    drawn: dict[int, list[tuple]] = defaultdict(list)
    for d in s.execute(select(Drawdown).where(Drawdown.investment_id.in_([i.id for i in rows]))
                       .order_by(Drawdown.paid_on, Drawdown.id)).scalars():
        drawn[d.investment_id].append((d.paid_on, m.from_minor(d.amount_minor, d.currency).amount))
    # return_cap is a fraction of the principal drawn ("0.20"); INDIGO's maximum_potential_return is a percentage
    return tuple(indigo.InvestmentFacts(
        i.id, i.investor_id, m.from_minor(i.principal_minor, i.currency).amount,
        sum((a for _, a in drawn[i.id]), Decimal(0)), i.return_cap * 100, tuple(drawn[i.id])) for i in rows)


def disputed_of(s: Session, contract: OutcomeContract) -> frozenset[tuple[str, str]]:
    """What an open dispute puts in question.

    A disputed payout: its outcome payments, ("outcome_payments", "payout:<id>"). A disputed
    evidence item (rejected or invalidated, so in no payout) is not an item of the export, but
    upholding it changes the figures of the period it falls in: the result of its metric for each
    posted payout period containing it, ("results", "<metric>:<period start>"), is DISPUTED.
    A resolved dispute (UPHELD or DISMISSED) marks nothing.
    """
    out: set[tuple[str, str]] = set()
    evidence = []
    for d in s.execute(select(Dispute).where(Dispute.contract_id == contract.id, Dispute.status == "OPEN")).scalars():
        if d.payout_id is not None:
            out.add(("outcome_payments", f"payout:{d.payout_id}"))
        elif d.evidence_id is not None:
            evidence.append(s.get(Evidence, d.evidence_id))
    if evidence:
        periods = s.execute(select(PayoutCalculation.period_start, PayoutCalculation.period_end).where(
            PayoutCalculation.contract_id == contract.id, PayoutCalculation.status == "POSTED")).all()
        for ev in evidence:
            # a rate-card claim has its day; a measured claim its period (its end decides, as for payouts)
            day = ev.achieved_on or ev.period_end
            for start, end in periods:
                if day is not None and start <= day <= end:
                    out.add(("results", indigo.result_key(ev.metric_code, start)))
    return frozenset(out)


def payer_max_amounts_of(s: Session, contract: OutcomeContract) -> dict[int, Decimal]:
    """The most each payer with a maxAmount can pay, by party id: its commitment target
    (ledger.commitments.targets: its share of maxValue, or its maxAmount if lower)."""
    terms = terms_in_force(s, contract.id)
    targets = commitments.targets(terms)
    return {p.party_id: m.from_minor(targets[p.party_id], contract.currency).amount
            for p in terms.payer_shares if p.max_amount_minor is not None}


# --- reading the facts --------------------------------------------------------------------------

def field_statuses(s: Session, contract_id: int) -> dict[str, str]:
    """The status in force per path: the newest row per path."""
    out: dict[str, str] = {}
    for path, status in s.execute(select(IndigoFieldStatus.path, IndigoFieldStatus.status)
                                  .where(IndigoFieldStatus.contract_id == contract_id)
                                  .order_by(IndigoFieldStatus.id)):
        out[path] = status
    return out


def read_facts(s: Session, contract: OutcomeContract) -> indigo.ProjectFacts:
    cur = contract.currency

    def amount(minor: int | None) -> Decimal:
        return m.from_minor(int(minor or 0), cur).amount

    terms = terms_in_force(s, contract.id)
    fund = s.get(OutcomesFund, contract.fund_id)
    position = fund_position(s, fund.id)
    fund_contracts = s.execute(select(func.count()).select_from(OutcomeContract).where(
        OutcomeContract.fund_id == fund.id, OutcomeContract.status != "DRAFT")).scalar_one()
    posted = list(s.execute(select(PayoutCalculation).where(PayoutCalculation.contract_id == contract.id,
                                                            PayoutCalculation.status == "POSTED")
                            .order_by(PayoutCalculation.period_start, PayoutCalculation.id)).scalars())
    posted_ids = [p.id for p in posted]
    shares = list(s.execute(select(PayoutShare).where(PayoutShare.payout_id.in_(posted_ids))
                            .order_by(PayoutShare.payout_id, PayoutShare.position)).scalars()) if posted_ids else []
    paid_by: dict[int, int] = defaultdict(int)
    for sh in shares:
        paid_by[sh.party_id] += sh.amount_minor
    maxima = payer_max_amounts_of(s, contract)
    party_ids = {contract.municipality_id, contract.provider_id, fund.manager_id,
                 *(p.party_id for p in terms.payer_shares), *(sh.party_id for sh in shares)}
    if contract.verifier_id:
        party_ids.add(contract.verifier_id)
    investments = investments_of(s, contract)
    party_ids |= {i.investor_id for i in investments}
    payments = list(s.execute(select(Payment).where(Payment.contract_id == contract.id).order_by(Payment.id)).scalars())
    party_ids |= {p.debtor_id for p in payments} | {p.creditor_id for p in payments}
    parties = s.execute(select(Party).where(Party.id.in_(party_ids))).scalars().all()

    enrolled = [d for (d,) in s.execute(select(Participant.enrolled_on).where(Participant.contract_id == contract.id))]
    kinds = {x.code: x.kind for x in terms.metrics}
    results = []
    if posted_ids:
        qty: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
        for payout_id, code, q in s.execute(select(PayoutLine.payout_id, PayoutLine.metric_code, PayoutLine.quantity)
                                            .where(PayoutLine.payout_id.in_(posted_ids))):
            qty[(payout_id, code)] += q
        # participants with a positive outcome per payout and metric: their evidence items, as
        # rows (payouts calculated before migration 0020p) and as item blocks
        who: dict[tuple[int, str], set] = defaultdict(set)
        for pid, code, participant in s.execute(
                select(PayoutItem.payout_id, PayoutItem.metric_code, PayoutItem.participant_id)
                .where(PayoutItem.payout_id.in_(posted_ids), PayoutItem.kind == "OUTCOME",
                       PayoutItem.evidence_id.is_not(None), PayoutItem.participant_id.is_not(None)).distinct()):
            who[(pid, code)].add(participant)
        for block in payout_items.blocks_of(s, posted_ids):
            for kind, code, participant in zip(block.kinds, block.metric_codes, block.participant_ids):
                if kind == "OUTCOME":
                    who[(block.payout_id, code)].add(participant)
        positive = {key: len(people) for key, people in who.items()}
        measured = {}
        for pid, code, observed, cohort in s.execute(
                select(PayoutItem.payout_id, PayoutItem.metric_code, Measurement.observed_value, Measurement.cohort_size)
                .join(Measurement, Measurement.id == PayoutItem.measurement_id)
                .where(PayoutItem.payout_id.in_(posted_ids)).order_by(Measurement.period_end)):
            measured[(pid, code)] = (observed, cohort)
        for p in posted:
            engaged = sum(1 for d in enrolled if d <= p.period_end)
            for (pid, code), q in sorted(qty.items()):
                if pid != p.id:
                    continue
                rate_card = kinds.get(code, "RATE_CARD") == "RATE_CARD"
                observed, cohort = measured.get((pid, code), (None, None))
                results.append(indigo.ResultFacts(
                    code, p.period_start, p.period_end, engaged,
                    int(positive.get((pid, code), 0)) if rate_card else None, q,
                    None if rate_card else observed, None if rate_card else (cohort if cohort is not None else engaged)))
    plans = payment_plans_of(s, contract)

    def plan_for(p: PayoutCalculation) -> str | None:
        plan = next((x for x in plans if x.period_start <= p.period_end and p.period_start <= x.period_end), None)
        return indigo.plan_id(plan) if plan else None

    by_payout = {p.id: p for p in posted}
    return indigo.ProjectFacts(
        contract_id=contract.id, title=contract.title, status=contract.status, policy_area=contract.policy_area,
        currency=cur, start_date=contract.start_date, end_date=contract.end_date,
        signed_on=contract.activated_at.date() if contract.activated_at else None,
        ended_on=contract.ended_at.date() if contract.ended_at else None,
        max_value=amount(terms.max_value_minor), paid=amount(sum(p.total_minor for p in posted)),
        participants=len(enrolled),
        fund=indigo.FundFacts(fund.id, fund.name, fund.manager_id, fund.currency,
                              m.from_minor(position.capital, fund.currency).amount, fund_contracts,
                              fund.created_at.date() if fund.created_at else None),
        municipality_id=contract.municipality_id, provider_id=contract.provider_id, verifier_id=contract.verifier_id,
        organisations=tuple(indigo.Organisation(p.id, p.name, p.role, p.ownership, p.org_number) for p in parties),
        payers=tuple(indigo.PayerCommitment(p.party_id, p.percent, amount(paid_by.get(p.party_id)),
                                            maxima.get(p.party_id)) for p in terms.payer_shares),
        metrics=tuple(indigo.MetricFacts(
            x.code, x.name, x.kind, x.direction, amount(x.unit_price_minor), x.baseline, x.threshold,
            x.baseline_source, tuple((a.area, a.percent) for a in x.supplements),
            amount(x.cap_per_participant_minor) if x.cap_per_participant_minor else None,
            amount(x.cap_per_period_minor) if x.cap_per_period_minor else None,
            amount(x.cap_total_minor) if x.cap_total_minor else None, x.once_only) for x in terms.metrics),
        results=tuple(results),
        outcome_payments=tuple(indigo.OutcomePaymentFacts(
            sh.payout_id, sh.party_id, by_payout[sh.payout_id].period_start, by_payout[sh.payout_id].period_end,
            amount(sh.amount_minor), plan_for(by_payout[sh.payout_id])) for sh in shares),
        transactions=tuple(indigo.TransactionFacts(p.id, p.debtor_id, p.creditor_id, p.paid_on, amount(p.amount_minor))
                           for p in payments),
        payment_plans=plans, investments=investments,
        field_status=field_statuses(s, contract.id), disputed=disputed_of(s, contract),
    )


# --- use cases ----------------------------------------------------------------------------------

def _unknown(contract_id: int) -> NotFound:
    return NotFound(f"contract {contract_id} does not exist", code="UNKNOWN_CONTRACT", field=["contractId"])


def may_see_private(actor: Actor | None, contract: OutcomeContract) -> bool:
    if actor is None:
        return False
    if actor.sees_everything:
        return True
    return actor.party_id is not None and actor.party_id in (
        contract.municipality_id, contract.provider_id, contract.verifier_id)


def export_project(s: Session, *, actor: Actor | None, contract_id: int, public: bool) -> dict:
    """The contract's INDIGO project, organisations and fund (see the module docstring for access)."""
    try:
        contract = get_contract(s, contract_id)
    except NotFound:
        raise _unknown(contract_id) from None
    if public:
        if contract.status not in PUBLISHED and not may_see_private(actor, contract):
            raise _unknown(contract_id)
    elif not may_see_private(actor, contract):
        raise _unknown(contract_id)
    return indigo.project_export(read_facts(s, contract), public=public)


def set_field_status(uow: UnitOfWork, *, actor: Actor, contract_id: int, path: str, status: str) -> IndigoFieldStatus:
    """A fund manager marks one INDIGO field (or list) of a contract PRIVATE or PUBLIC again."""
    require_role(actor, "FUND_MANAGER")
    get_contract(uow, contract_id)
    if status not in FIELD_STATUSES:
        raise ValidationError(f"status is one of {', '.join(FIELD_STATUSES)}", code="INVALID_VALUE", field=["status"])
    if path not in indigo.MARKABLE:
        raise ValidationError(f"{path!r} is not an INDIGO field that can be marked; one of: "
                              f"{', '.join(indigo.MARKABLE)}", code="UNKNOWN_INDIGO_FIELD", field=["path"])
    row = IndigoFieldStatus(contract_id=contract_id, path=path, status=status, set_by=actor.label)
    uow.session.add(row)
    uow.session.flush()
    return row
