"""Impact bonds: investors pre-finance the provider and are repaid only out of outcome receipts.

Use cases (each one unit of work, FUND_MANAGER only): `create_investment`, `record_drawdown`,
`distribute_receipts` (runs the pure engine `ledger.waterfall` on recorded inputs) and
`close_investments`; reads: `positions`, `recompute`.

Postings (debits positive):
- a drawdown:     Dr CASH (provider) / Cr CASH (investor), and
                  Dr INVESTMENT (investor, against the provider) / Cr PREFINANCE (provider, against
                  the investor): the provider's liability, repayable only out of receipts, so it
                  is not an obligation (not a PAYABLE) until a distribution says it is due;
- a distribution: principal: Dr PREFINANCE / Cr INVESTMENT; return: Dr INVESTOR_RETURN_COST
                  (provider) / Cr INVESTMENT_RETURN (investor); for both, the provider now owes
                  the investor (PAYABLE / RECEIVABLE), settled later by `recordPayment`. The
                  residual stays with the provider and is not posted;
- closing:        the principal not repaid: Dr INVESTMENT_LOSS / Cr INVESTMENT (investor) and
                  Dr PREFINANCE / Cr PREFINANCE_WRITTEN_OFF (provider): the provider owes nothing more.

Receipts of a distribution are exactly the payments recorded for the contract with the provider,
up to a date, that no distribution has counted yet: + what payers paid it, − what it paid back
to payers (a clawback or a penalty), so a repayment reduces the next distribution and never
changes a past one. Payments between the provider and its investors are not receipts.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger import journal, settlement
from ledger import money as m
from ledger import waterfall as wf
from ledger.access import Actor, require_role
from ledger.contracts import ENDED, get_contract
from ledger.db import UnitOfWork
from ledger.errors import Conflict, NotFound, ValidationError
from ledger.models import (
    DistributionLine, DistributionReceipt, Drawdown, Investment, InvestmentClosing, OutcomeContract, Payment,
    WaterfallDistribution,
)
from ledger.parties import clean_text, get_party

CASH = "CASH"
INVESTMENT = "INVESTMENT"
PREFINANCE = "PREFINANCE"
INVESTMENT_RETURN = "INVESTMENT_RETURN"
INVESTOR_RETURN_COST = "INVESTOR_RETURN_COST"
INVESTMENT_LOSS = "INVESTMENT_LOSS"
PREFINANCE_WRITTEN_OFF = "PREFINANCE_WRITTEN_OFF"
NAMES = {
    CASH: "Cash", INVESTMENT: "Impact bond principal lent (repaid only from outcomes)",
    PREFINANCE: "Investor pre-finance (repayable only from outcomes)", INVESTMENT_RETURN: "Impact bond return",
    INVESTOR_RETURN_COST: "Return paid to investors", INVESTMENT_LOSS: "Impact bond principal lost",
    PREFINANCE_WRITTEN_OFF: "Investor pre-finance written off",
}
# where each account sits in a beancount export (ledger.export)
BEANCOUNT_ROOTS = {
    INVESTMENT: "Assets", PREFINANCE: "Liabilities", INVESTMENT_RETURN: "Income", INVESTOR_RETURN_COST: "Expenses",
    INVESTMENT_LOSS: "Expenses", PREFINANCE_WRITTEN_OFF: "Income",
}


def _account(uow: UnitOfWork, code: str, party_id: int, contract: OutcomeContract, counterparty_id: int | None):
    contract_id = None if code == CASH else contract.id
    return journal.open_account(uow, code=code, name=NAMES[code], party_id=party_id, currency=contract.currency,
                                contract_id=contract_id, counterparty_id=None if code == CASH else counterparty_id)


def _closed(s: Session, contract_id: int) -> bool:
    return s.execute(select(InvestmentClosing.id).where(InvestmentClosing.contract_id == contract_id)).first() is not None


def _refuse_if_closed(uow: UnitOfWork, contract_id: int) -> None:
    if _closed(uow.session, contract_id):
        raise Conflict("the contract's investments are closed", code="INVESTMENTS_CLOSED", field=["contractId"])


def _money_in(contract: OutcomeContract, amount: m.Money, field: str) -> int:
    if amount.currency.code != contract.currency:
        raise ValidationError(f"the contract is in {contract.currency}", code="CURRENCY_MISMATCH",
                              field=[field, "currency"])
    units = m.minor_units(amount)
    if units <= 0:
        raise ValidationError("the amount must be more than zero", code="NON_POSITIVE_AMOUNT", field=[field, "amount"])
    return units


# --- use cases ----------------------------------------------------------------------------------

def create_investment(uow: UnitOfWork, *, actor: Actor, contract_id: int, investor_id: int, tranche: str,
                      principal: m.Money, return_cap: Decimal) -> Investment:
    """An investor's commitment to pre-finance the contract's provider, in a tranche, with a capped return."""
    require_role(actor, "FUND_MANAGER")
    contract = get_contract(uow, contract_id)
    get_party(uow, investor_id, role="INVESTOR", field="investorId")
    if contract.investor_id != investor_id:
        raise ValidationError("the contract does not name this investor", code="INVESTOR_NOT_ON_CONTRACT",
                              field=["investorId"])
    if contract.status in ENDED:
        raise Conflict(f"the contract is {contract.status}", code="CONTRACT_ENDED", field=["contractId"])
    if tranche not in wf.TRANCHES:
        raise ValidationError("the tranche is SENIOR or SUBORDINATE", code="INVALID_TRANCHE", field=["tranche"])
    units = _money_in(contract, principal, "principal")
    cap = m.decimal(return_cap, field="returnCap")
    if cap < 0 or cap > wf.MAX_RETURN_CAP:
        raise ValidationError(f"the return cap is a fraction of principal from 0 to {wf.MAX_RETURN_CAP} "
                              "(\"0.20\" is 20 %)", code="INVALID_RETURN_CAP", field=["returnCap"])
    _refuse_if_closed(uow, contract.id)
    inv = Investment(contract_id=contract.id, investor_id=investor_id, tranche=tranche, principal_minor=units,
                     currency=contract.currency, return_cap=cap.normalize() + 0 if cap else Decimal(0),
                     created_by=actor.label)
    uow.session.add(inv)
    uow.session.flush()
    return inv


def get_investment(uow_or_session, investment_id: int, *, field: str = "investmentId") -> Investment:
    s = getattr(uow_or_session, "session", uow_or_session)
    inv = s.get(Investment, investment_id)
    if inv is None:
        raise NotFound(f"investment {investment_id} does not exist", code="UNKNOWN_INVESTMENT", field=[field])
    return inv


def _drawn(s: Session, investment_id: int) -> int:
    return int(s.execute(select(func.coalesce(func.sum(Drawdown.amount_minor), 0))
                         .where(Drawdown.investment_id == investment_id)).scalar_one())


def record_drawdown(uow: UnitOfWork, *, actor: Actor, investment_id: int, amount: m.Money, paid_on: date,
                    reference: str) -> Drawdown:
    """The investor pays the provider part of the committed principal; posted to the ledger."""
    require_role(actor, "FUND_MANAGER")
    reference = clean_text(reference, "reference")
    inv = get_investment(uow, investment_id)
    contract = get_contract(uow, inv.contract_id)
    units = _money_in(contract, amount, "amount")
    # under the ledger lock: two drawdowns at once cannot both pass the check below
    journal.lock(uow)
    _refuse_if_closed(uow, contract.id)
    drawn = _drawn(uow.session, inv.id)
    if drawn + units > inv.principal_minor:
        left = m.from_minor(inv.principal_minor - drawn, inv.currency).amount
        raise Conflict(f"only {left} {inv.currency} of the committed principal is left to draw",
                       code="DRAWDOWN_EXCEEDS_PRINCIPAL", field=["amount", "amount"])
    provider, investor = contract.provider_id, inv.investor_id
    legs = [(_account(uow, CASH, provider, contract, None), units), (_account(uow, CASH, investor, contract, None), -units),
            (_account(uow, INVESTMENT, investor, contract, provider), units),
            (_account(uow, PREFINANCE, provider, contract, investor), -units)]
    tx = journal.post(uow, actor=actor.label, kind="DRAWDOWN", effective_date=paid_on, contract_id=contract.id,
                      description=f"Impact bond drawdown, investment {inv.id} ({inv.tranche.lower()}): {reference}",
                      postings=[journal.Posting(a.id, m.from_minor(u, contract.currency)) for a, u in legs])
    row = Drawdown(investment_id=inv.id, amount_minor=units, currency=inv.currency, paid_on=paid_on,
                   reference=reference, transaction_sequence=tx.sequence, recorded_by=actor.label)
    uow.session.add(row)
    uow.session.flush()
    return row


def _investor_ids(s: Session, contract: OutcomeContract) -> set[int]:
    ids = set(s.execute(select(Investment.investor_id).where(Investment.contract_id == contract.id)).scalars())
    return ids | ({contract.investor_id} if contract.investor_id else set())


def undistributed_receipts(s: Session, contract: OutcomeContract, up_to: date) -> list[wf.Receipt]:
    """Payments with the provider for the contract, paid by `up_to`, that no distribution has counted."""
    investors = _investor_ids(s, contract)
    counted = select(DistributionReceipt.payment_id)
    rows = s.execute(select(Payment).where(Payment.contract_id == contract.id, Payment.paid_on <= up_to,
                                           Payment.id.not_in(counted)).order_by(Payment.id)).scalars()
    out = []
    for p in rows:
        if p.creditor_id == contract.provider_id and p.debtor_id not in investors:
            out.append(wf.Receipt(p.id, m.from_minor(p.amount_minor, p.currency).amount))
        elif p.debtor_id == contract.provider_id and p.creditor_id not in investors:
            out.append(wf.Receipt(p.id, -m.from_minor(p.amount_minor, p.currency).amount))
    return out


def _paid(s: Session, contract_id: int) -> dict[tuple[int, str], int]:
    rows = s.execute(select(DistributionLine.investment_id, DistributionLine.kind, func.sum(DistributionLine.amount_minor))
                     .join(WaterfallDistribution, WaterfallDistribution.id == DistributionLine.distribution_id)
                     .where(WaterfallDistribution.contract_id == contract_id, DistributionLine.investment_id.is_not(None))
                     .group_by(DistributionLine.investment_id, DistributionLine.kind))
    return {(i, k): int(t) for i, k, t in rows}


def _drawn_by_investment(s: Session, ids: list[int]) -> dict[int, int]:
    if not ids:
        return {}
    return {i: int(t) for i, t in s.execute(select(Drawdown.investment_id, func.sum(Drawdown.amount_minor))
                                            .where(Drawdown.investment_id.in_(ids)).group_by(Drawdown.investment_id))}


def waterfall_inputs(s: Session, contract: OutcomeContract, up_to: date) -> wf.WaterfallInputs:
    invs = s.execute(select(Investment).where(Investment.contract_id == contract.id).order_by(Investment.id)).scalars().all()
    drawn = _drawn_by_investment(s, [i.id for i in invs])
    paid = _paid(s, contract.id)
    cur = contract.currency

    def amt(units: int) -> Decimal:
        return m.from_minor(units, cur).amount

    return wf.WaterfallInputs(
        contract_id=contract.id, currency=cur, up_to=up_to,
        investments=tuple(wf.Position(i.id, i.tranche, amt(drawn.get(i.id, 0)), amt(paid.get((i.id, wf.PRINCIPAL), 0)),
                                      amt(paid.get((i.id, wf.RETURN), 0)), i.return_cap) for i in invs),
        receipts=tuple(undistributed_receipts(s, contract, up_to)))


def distribute_receipts(uow: UnitOfWork, *, actor: Actor, contract_id: int, up_to: date) -> WaterfallDistribution:
    """Run the waterfall over the contract's undistributed receipts up to a date, and post what investors are owed."""
    require_role(actor, "FUND_MANAGER")
    contract = get_contract(uow, contract_id)
    # under the ledger lock: a concurrent distribution waits, then finds the payments counted
    journal.lock(uow)
    _refuse_if_closed(uow, contract.id)
    s = uow.session
    inputs = waterfall_inputs(s, contract, up_to)
    if not inputs.investments:
        raise Conflict("the contract has no investments", code="NO_INVESTMENTS", field=["contractId"])
    result = wf.distribute(inputs)
    if result.total <= 0:
        raise Conflict("the provider has received nothing for this contract that is not yet distributed"
                       + (" (repayments exceed new receipts)" if inputs.receipts else ""),
                       code="NOTHING_RECEIVED", field=["upTo"])
    cur = contract.currency
    units = lambda d: m.minor_units(m.money(d, cur))  # noqa: E731
    invs = {i.id: i for i in s.execute(select(Investment).where(Investment.contract_id == contract.id)).scalars()}
    legs: dict[int, int] = defaultdict(int)
    owed: dict[int, int] = defaultdict(int)
    provider = contract.provider_id
    for line in result.lines:
        if line.kind == wf.RESIDUAL:
            continue
        investor, u = invs[line.investment_id].investor_id, units(line.amount)
        if line.kind == wf.PRINCIPAL:
            legs[_account(uow, PREFINANCE, provider, contract, investor).id] += u
            legs[_account(uow, INVESTMENT, investor, contract, provider).id] -= u
        else:
            legs[_account(uow, INVESTOR_RETURN_COST, provider, contract, investor).id] += u
            legs[_account(uow, INVESTMENT_RETURN, investor, contract, provider).id] -= u
        owed[investor] += u
    for investor, u in sorted(owed.items()):
        for acc, x in settlement.obligation_legs(uow, contract, provider, investor, u):
            legs[acc.id] += x
    tx = None
    if any(legs.values()):
        tx = journal.post(uow, actor=actor.label, kind="DISTRIBUTION", effective_date=up_to, contract_id=contract.id,
                          description=f"Impact bond distribution on contract {contract.id}, receipts up to {up_to}",
                          postings=[journal.Posting(a, m.from_minor(u, cur)) for a, u in sorted(legs.items()) if u])
    dist = WaterfallDistribution(contract_id=contract.id, up_to=up_to, currency=cur, inputs_hash=result.inputs_hash,
                                 inputs=wf.canonical_inputs(inputs).decode("utf-8"), total_minor=units(result.total),
                                 transaction_sequence=tx.sequence if tx else None, distributed_by=actor.label)
    s.add(dist)
    s.flush()
    s.add_all([DistributionLine(distribution_id=dist.id, position=n, investment_id=x.investment_id, kind=x.kind,
                                amount_minor=units(x.amount)) for n, x in enumerate(result.lines, start=1)])
    s.add_all([DistributionReceipt(distribution_id=dist.id, payment_id=r.payment_id, amount_minor=units(r.amount))
               for r in inputs.receipts])
    s.flush()
    s.refresh(dist, attribute_names=["lines"])
    return dist


def close_investments(uow: UnitOfWork, *, actor: Actor, contract_id: int) -> InvestmentClosing:
    """At the end of an ended contract, write off the principal not repaid as the investors' loss."""
    require_role(actor, "FUND_MANAGER")
    contract = get_contract(uow, contract_id)
    journal.lock(uow)
    _refuse_if_closed(uow, contract.id)
    if contract.status not in ENDED:
        raise Conflict("investments close when the contract has ended (completed or terminated)",
                       code="CONTRACT_NOT_ENDED", field=["contractId"])
    s = uow.session
    invs = s.execute(select(Investment).where(Investment.contract_id == contract.id).order_by(Investment.id)).scalars().all()
    if not invs:
        raise Conflict("the contract has no investments", code="NO_INVESTMENTS", field=["contractId"])
    drawn = _drawn_by_investment(s, [i.id for i in invs])
    paid = _paid(s, contract.id)
    legs: dict[int, int] = defaultdict(int)
    provider = contract.provider_id
    for i in invs:
        loss = drawn.get(i.id, 0) - paid.get((i.id, wf.PRINCIPAL), 0)
        if loss > 0:
            legs[_account(uow, INVESTMENT_LOSS, i.investor_id, contract, provider).id] += loss
            legs[_account(uow, INVESTMENT, i.investor_id, contract, provider).id] -= loss
            legs[_account(uow, PREFINANCE, provider, contract, i.investor_id).id] += loss
            legs[_account(uow, PREFINANCE_WRITTEN_OFF, provider, contract, i.investor_id).id] -= loss
    tx = None
    if any(legs.values()):
        on = contract.ended_at.date() if contract.ended_at else contract.end_date
        tx = journal.post(uow, actor=actor.label, kind="INVESTMENT_WRITE_OFF", effective_date=on, contract_id=contract.id,
                          description=f"Impact bond on contract {contract.id} closed: principal not repaid written off",
                          postings=[journal.Posting(a, m.from_minor(u, contract.currency))
                                    for a, u in sorted(legs.items()) if u])
    closing = InvestmentClosing(contract_id=contract.id, transaction_sequence=tx.sequence if tx else None,
                                closed_by=actor.label)
    s.add(closing)
    s.flush()
    return closing


# --- reads ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class InvestmentPosition:
    """What an investor put in and got back, in minor units; percent and multiple to two decimals."""

    investment: Investment
    drawn: int
    repaid_principal: int
    return_paid: int
    loss: int

    @property
    def return_percent(self) -> Decimal | None:
        if not self.drawn:
            return None
        return (Decimal(self.return_paid) * 100 / self.drawn).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    @property
    def multiple(self) -> Decimal | None:
        if not self.drawn:
            return None
        return (Decimal(self.repaid_principal + self.return_paid) / self.drawn).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP)


def positions(s: Session, contract_ids: list[int], *, investor_id: int | None = None) -> dict[int, list[InvestmentPosition]]:
    """Every investment of the contracts (only one investor's, if given) with its figures, in a few queries."""
    stmt = select(Investment).where(Investment.contract_id.in_(contract_ids)).order_by(Investment.id)
    if investor_id is not None:
        stmt = stmt.where(Investment.investor_id == investor_id)
    invs = s.execute(stmt).scalars().all()
    drawn = _drawn_by_investment(s, [i.id for i in invs])
    paid: dict[tuple[int, str], int] = {}
    closed: set[int] = set()
    if invs:
        ids = [i.id for i in invs]
        paid = {(i, k): int(t) for i, k, t in s.execute(
            select(DistributionLine.investment_id, DistributionLine.kind, func.sum(DistributionLine.amount_minor))
            .where(DistributionLine.investment_id.in_(ids)).group_by(DistributionLine.investment_id, DistributionLine.kind))}
        closed = set(s.execute(select(InvestmentClosing.contract_id)
                               .where(InvestmentClosing.contract_id.in_(contract_ids))).scalars())
    out: dict[int, list[InvestmentPosition]] = {c: [] for c in contract_ids}
    for i in invs:
        d, r = drawn.get(i.id, 0), paid.get((i.id, wf.PRINCIPAL), 0)
        out[i.contract_id].append(InvestmentPosition(i, d, r, paid.get((i.id, wf.RETURN), 0),
                                                     d - r if i.contract_id in closed else 0))
    return out


def is_closed(s: Session, contract_id: int) -> bool:
    return _closed(s, contract_id)


def get_distribution(s: Session, distribution_id: int) -> WaterfallDistribution:
    d = s.get(WaterfallDistribution, distribution_id)
    if d is None:
        raise NotFound(f"distribution {distribution_id} does not exist", code="UNKNOWN_DISTRIBUTION",
                       field=["distributionId"])
    return d


@dataclass(frozen=True)
class Recomputation:
    matches: bool
    inputs_hash: str
    total_minor: int
    differences: tuple[str, ...]


def recompute(distribution: WaterfallDistribution) -> Recomputation:
    """Run the engine again on the recorded inputs and compare every figure with what was stored."""
    inputs = wf.inputs_from_canonical(distribution.inputs)
    result = wf.distribute(inputs)
    cur = distribution.currency
    units = lambda d: m.minor_units(m.money(d, cur))  # noqa: E731
    diffs = []
    if result.inputs_hash != distribution.inputs_hash:
        diffs.append("inputs hash")
    if wf.canonical_inputs(inputs).decode("utf-8") != distribution.inputs:
        diffs.append("canonical inputs")
    if [(x.investment_id, x.kind, x.amount_minor) for x in distribution.lines] != \
            [(x.investment_id, x.kind, units(x.amount)) for x in result.lines]:
        diffs.append("lines")
    if units(result.total) != distribution.total_minor:
        diffs.append("total")
    return Recomputation(not diffs, result.inputs_hash, units(result.total), tuple(diffs))


# --- what investors put in and got back, for the evaluation report and the public page ---------

@dataclass(frozen=True)
class InvestorReturns:
    """The investments of one contract, all together (tranche None) or of one tranche."""

    contract_id: int
    tranche: str | None
    investments: int
    drawn_minor: int  # put in
    repaid_minor: int  # principal back
    return_minor: int  # return on top
    loss_minor: int  # written off at closing
    currency: str

    @property
    def returned_minor(self) -> int:
        """Everything the investors got back: principal repaid plus return."""
        return self.repaid_minor + self.return_minor

    @property
    def return_percent(self) -> Decimal | None:
        if not self.drawn_minor:
            return None
        return (Decimal(self.return_minor) * 100 / self.drawn_minor).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    @property
    def multiple(self) -> Decimal | None:
        if not self.drawn_minor:
            return None
        return (Decimal(self.returned_minor) / self.drawn_minor).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def returns_by_contract(s: Session, contract_ids: list[int]) -> dict[int, tuple[InvestorReturns, ...]]:
    """Per contract with investments: the whole (first) and each tranche, senior first."""
    out: dict[int, tuple[InvestorReturns, ...]] = {}
    for cid, ps in positions(s, contract_ids).items():
        if not ps:
            continue
        groups = [(None, ps)] + [(t, [p for p in ps if p.investment.tranche == t]) for t in wf.TRANCHES]
        out[cid] = tuple(
            InvestorReturns(cid, t, len(g), sum(p.drawn for p in g), sum(p.repaid_principal for p in g),
                            sum(p.return_paid for p in g), sum(p.loss for p in g), ps[0].investment.currency)
            for t, g in groups if g)
    return out
