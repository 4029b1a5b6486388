"""Outcomes funds: creation, paid-in capital, and positions read from the ledger."""
from __future__ import annotations

from datetime import date

from ledger import chart, journal
from ledger import money as m
from ledger.access import Actor, require_role
from ledger.db import UnitOfWork
from ledger.errors import NotFound, ValidationError
from ledger.models import OutcomesFund, Transaction
from ledger.parties import clean_text, get_party


def create_fund(uow: UnitOfWork, *, actor: Actor, name: str, manager_id: int, currency: str,
                dual_control: bool = True) -> OutcomesFund:
    """A fund managed by a FUND party, holding money in one currency; dual control on unless turned off."""
    require_role(actor, "FUND_MANAGER")
    name = clean_text(name, "name")
    m.currency(currency)
    get_party(uow, manager_id, role="FUND", field="managerId")
    fund = OutcomesFund(name=name, manager_id=manager_id, currency=currency, dual_control=bool(dual_control))
    uow.session.add(fund)
    uow.session.flush()
    return fund


def get_fund(uow_or_session, fund_id: int) -> OutcomesFund:
    s = getattr(uow_or_session, "session", uow_or_session)
    fund = s.get(OutcomesFund, fund_id)
    if fund is None:
        raise NotFound(f"fund {fund_id} does not exist", code="UNKNOWN_FUND", field=["fundId"])
    # held for as long as the session (a unit of work's, a request's reads): the session's identity map
    # holds what it loaded only weakly, so a fund read by a use case and again for its mutation's answer
    # (depositCapital) was read from the database twice, the second time waiting for the posting queued
    # before it — a round trip of each deposit's own inside a group commit batch
    s.info.setdefault(_HELD_FUNDS, {})[fund_id] = fund
    return fund


_HELD_FUNDS = "utfall.funds_read"


def deposit_capital(uow: UnitOfWork, *, actor: Actor, fund_id: int, amount: m.Money, effective_date: date,
                    reference: str) -> Transaction:
    """Post paid-in capital: Dr fund cash, Cr paid-in capital."""
    require_role(actor, "FUND_MANAGER")
    fund = get_fund(uow, fund_id)
    reference = clean_text(reference, "reference")
    if amount.currency.code != fund.currency:
        raise ValidationError(f"the fund holds {fund.currency}, not {amount.currency.code}",
                              code="CURRENCY_MISMATCH", field=["amount", "currency"])
    if amount.amount <= 0:
        raise ValidationError("capital paid in must be positive", code="NON_POSITIVE_AMOUNT", field=["amount", "amount"])
    cash, capital = chart.accounts(uow, chart.wanted(chart.FUND_CASH, fund.manager_id, fund.currency, fund_id=fund.id),
                                   chart.wanted(chart.FUND_CAPITAL, fund.manager_id, fund.currency, fund_id=fund.id))
    return journal.post(
        uow, actor=actor.label, kind="CAPITAL_DEPOSIT", description=f"Capital paid in to {fund.name}: {reference}",
        effective_date=effective_date, postings=[journal.Posting(cash.id, amount), journal.Posting(capital.id, -amount)],
    )
