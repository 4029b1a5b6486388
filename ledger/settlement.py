"""Obligations between parties, read from the ledger, and the payments that settle them.

An obligation of a debtor to a creditor on a contract is the (negated) balance of the
debtor's PAYABLE account held against the creditor, mirrored by the creditor's RECEIVABLE.
A new obligation first nets against any obligation the other way on the same contract, so
a clawback or a penalty is settled by the next payout before anyone owes anyone twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import chart, journal
from ledger import money as m
from ledger.access import Actor, require_role
from ledger.contracts import get_contract
from ledger.db import UnitOfWork
from ledger.errors import Conflict, NotFound, PermissionDenied, ValidationError
from ledger.funds import get_fund
from ledger.models import Account, OutcomeContract, Payment
from ledger.parties import clean_text, get_party
from ledger.reads import may_see_contract


def fund_of(uow_or_session, contract: OutcomeContract, party_id: int) -> int | None:
    """The fund id to tag a party's accounts with: the contract's fund for its manager, else None."""
    fund = get_fund(uow_or_session, contract.fund_id)
    return fund.id if fund.manager_id == party_id else None


def _pair(uow: UnitOfWork, contract: OutcomeContract, debtor: int, creditor: int) -> tuple[Account, Account]:
    cur = contract.currency
    payable, receivable = chart.accounts(
        uow, chart.wanted(chart.PAYABLE, debtor, cur, contract_id=contract.id, counterparty_id=creditor,
                          fund_id=fund_of(uow, contract, debtor)),
        chart.wanted(chart.RECEIVABLE, creditor, cur, contract_id=contract.id, counterparty_id=debtor,
                     fund_id=fund_of(uow, contract, creditor)))
    return payable, receivable


def obligation_legs(uow: UnitOfWork, contract: OutcomeContract, debtor: int, creditor: int,
                    units: int) -> list[tuple[Account, int]]:
    """Entries that make `debtor` owe `creditor` `units` more, netting first what the creditor owes back."""
    if units <= 0:
        return []
    back_payable, back_receivable = _pair(uow, contract, creditor, debtor)
    offset = min(units, -back_payable.balance_minor)
    legs: list[tuple[Account, int]] = []
    if offset > 0:
        legs += [(back_payable, offset), (back_receivable, -offset)]
    rest = units - offset
    if rest > 0:
        payable, receivable = _pair(uow, contract, debtor, creditor)
        legs += [(payable, -rest), (receivable, rest)]
    return legs


@dataclass(frozen=True)
class Obligation:
    debtor_id: int
    creditor_id: int
    contract_id: int
    currency: str
    outstanding_minor: int


def end_of(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=timezone.utc)


def obligations(s: Session, *, debtor_id: int | None = None, creditor_id: int | None = None,
                contract_id: int | None = None, as_of: datetime | None = None,
                scope=None, contract_ids: list[int] | None = None, effective_on: date | None = None) -> list[Obligation]:
    """Who owes whom on which contract, now or as of a time (and on a business date); only non-zero ones."""
    stmt = select(Account).where(Account.code == chart.PAYABLE).order_by(Account.id)
    if debtor_id is not None:
        stmt = stmt.where(Account.party_id == debtor_id)
    if creditor_id is not None:
        stmt = stmt.where(Account.counterparty_id == creditor_id)
    if contract_id is not None:
        stmt = stmt.where(Account.contract_id == contract_id)
    if contract_ids is not None:
        stmt = stmt.where(Account.contract_id.in_(contract_ids))
    if scope is not None:
        stmt = stmt.where(scope)
    out = []
    for acc in s.execute(stmt).scalars():
        owed = -journal.balance_minor(s, acc, as_of=as_of, effective_on=effective_on)
        if owed:
            out.append(Obligation(acc.party_id, acc.counterparty_id, acc.contract_id, acc.currency, owed))
    return out


def record_payment(uow: UnitOfWork, *, actor: Actor, debtor_id: int, creditor_id: int, contract_id: int,
                   amount: m.Money, paid_on: date, reference: str) -> Payment:
    """A payment that settles (part of) what the debtor owes the creditor on the contract."""
    require_role(actor, "FUND_MANAGER", "MUNICIPALITY")
    if actor.role == "MUNICIPALITY" and actor.party_id != debtor_id:
        raise PermissionDenied("a municipality records payments of its own debts only", code="PERMISSION_DENIED",
                               field=["debtorId"])
    reference = clean_text(reference, "reference")
    get_party(uow, debtor_id, field="debtorId")
    get_party(uow, creditor_id, field="creditorId")
    journal.lock(uow)
    contract = get_contract(uow, contract_id)
    if not may_see_contract(actor, contract):  # another party's contract answers exactly like a missing one
        raise NotFound(f"contract {contract_id} does not exist", code="UNKNOWN_CONTRACT", field=["contractId"])
    if amount.currency.code != contract.currency:
        raise ValidationError(f"the contract is in {contract.currency}", code="CURRENCY_MISMATCH",
                              field=["amount", "currency"])
    units = m.minor_units(amount)
    if units <= 0:
        raise ValidationError("a payment must be more than zero", code="NON_POSITIVE_AMOUNT", field=["amount", "amount"])
    payable, receivable = _pair(uow, contract, debtor_id, creditor_id)
    owed = -payable.balance_minor
    if owed <= 0:
        raise Conflict("the debtor owes the creditor nothing on this contract", code="NO_OBLIGATION",
                       field=["creditorId"])
    if units > owed:
        raise Conflict(f"the debtor owes {m.from_minor(owed, contract.currency).amount}, less than the payment",
                       code="OVERPAYMENT", field=["amount", "amount"])
    cur = contract.currency

    def cash(party: int) -> Account:
        fund = fund_of(uow, contract, party)
        code = chart.FUND_CASH if fund is not None else chart.CASH
        return chart.account(uow, code, party, cur, fund_id=fund)

    legs = [(payable, units), (cash(debtor_id), -units), (cash(creditor_id), units), (receivable, -units)]
    tx = journal.post(uow, actor=actor.label, kind="PAYMENT", effective_date=paid_on, contract_id=contract.id,
                      description=f"Payment on contract {contract.id}: {reference}",
                      postings=[journal.Posting(a.id, m.from_minor(u, cur)) for a, u in legs])
    payment = Payment(debtor_id=debtor_id, creditor_id=creditor_id, contract_id=contract.id, amount_minor=units,
                      currency=cur, paid_on=paid_on, reference=reference, transaction_sequence=tx.sequence,
                      recorded_by=actor.label)
    uow.session.add(payment)
    uow.session.flush()
    return payment
