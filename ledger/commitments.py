"""Commitments by share (PAYOUTS.md §6): what each payer has promised a contract and not yet paid.

Each payer commits its share of `maxValue` (the largest-remainder split of §4, so the parts sum
to maxValue), or its own `maxAmount` if that is lower. A commitment is never moved by a running
counter: every event (activation, a posted payout, an amendment, a clawback, closing) computes
what each payer's commitment should now be,

    open contract:   max(0, target − what the payer has paid on it)
    closed or draft: 0

and posts the difference. So a payout posted after the commitment was released draws nothing
(committed can never go below zero), and a clawback that frees room under maxValue commits it
again. The fund's commitment sits on FUND_COMMITTED (part of the fund's position); any other
payer's on its own PAYER_COMMITTED account, visible to that payer.
"""
from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger import chart, journal
from ledger import money as m
from ledger.db import UnitOfWork
from ledger.models import Account, ContractTerms, OutcomeContract, OutcomesFund, PayoutCalculation, PayoutShare

COMMITMENT_CODES = (chart.FUND_COMMITTED, chart.PAYER_COMMITTED)


def targets(terms: ContractTerms) -> dict[int, int]:
    """Each payer's commitment before anything is paid: its share of maxValue, or its maxAmount if lower."""
    shares = list(terms.payer_shares)
    parts = m.split_largest_remainder(terms.max_value_minor, [s.percent for s in shares])
    return {s.party_id: part if s.max_amount_minor is None else min(part, s.max_amount_minor)
            for s, part in zip(shares, parts)}


def paid_by_payer(s: Session, contract_id: int) -> dict[int, int]:
    """What each payer has paid on the contract: its shares of the POSTED payouts (net of clawbacks)."""
    rows = s.execute(
        select(PayoutShare.party_id, func.sum(PayoutShare.amount_minor))
        .join(PayoutCalculation, PayoutCalculation.id == PayoutShare.payout_id)
        .where(PayoutCalculation.contract_id == contract_id, PayoutCalculation.status == "POSTED")
        .group_by(PayoutShare.party_id)).all()
    return {party: int(total) for party, total in rows}


def is_open(contract: OutcomeContract) -> bool:
    """Whether the contract still holds commitments: active, suspended, or terminated with its run-off not yet closed."""
    if contract.activated_at is None or contract.closed_at is not None:
        return False
    return contract.status in ("ACTIVE", "SUSPENDED", "TERMINATED")


def accounts(uow: UnitOfWork, contract: OutcomeContract, fund: OutcomesFund, party_id: int) -> tuple[Account, Account]:
    """(commitment, contra) accounts of one payer for the contract."""
    cur = contract.currency
    if party_id == fund.manager_id:
        commitment, contra = chart.accounts(
            uow, chart.wanted(chart.FUND_COMMITTED, party_id, cur, contract_id=contract.id, fund_id=fund.id),
            chart.wanted(chart.FUND_COMMITMENT_RESERVE, party_id, cur, fund_id=fund.id))
    else:
        commitment, contra = chart.accounts(uow, chart.wanted(chart.PAYER_COMMITTED, party_id, cur, contract_id=contract.id),
                                            chart.wanted(chart.PAYER_COMMITMENT_RESERVE, party_id, cur))
    return commitment, contra


def current(s: Session, contract_id: int) -> dict[int, int]:
    """Each payer's commitment to the contract now, from the ledger."""
    rows = s.execute(select(Account.party_id, func.sum(Account.balance_minor))
                     .where(Account.contract_id == contract_id, Account.code.in_(COMMITMENT_CODES))
                     .group_by(Account.party_id)).all()
    return {party: int(total) for party, total in rows}


def legs(uow: UnitOfWork, contract: OutcomeContract, fund: OutcomesFund, terms: ContractTerms, *,
         paying_now: Mapping[int, int] | None = None, open_: bool | None = None) -> list[tuple[Account, int]]:
    """Entries that bring every payer's commitment to what it should be after this event.

    `paying_now` are the shares of a payout being posted in the same transaction; `open_`
    overrides whether the contract holds commitments after the event (closing: False).
    """
    s = uow.session
    still_open = is_open(contract) if open_ is None else open_
    goal = targets(terms) if still_open else {}
    paid = paid_by_payer(s, contract.id)
    for party, units in (paying_now or {}).items():
        paid[party] = paid.get(party, 0) + units
    now = current(s, contract.id)
    out: list[tuple[Account, int]] = []
    for party in sorted(set(goal) | set(now)):
        want = max(0, goal.get(party, 0) - paid.get(party, 0))
        delta = want - now.get(party, 0)
        if delta:
            committed, reserve = accounts(uow, contract, fund, party)
            out += [(committed, delta), (reserve, -delta)]
    return out


def fund_delta(fund: OutcomesFund, entries: list[tuple[Account, int]]) -> int:
    """How much these entries change the fund's committed total."""
    return sum(units for acc, units in entries if acc.code == chart.FUND_COMMITTED and acc.fund_id == fund.id)


def post_adjustment(uow: UnitOfWork, *, actor: str, contract: OutcomeContract, entries: list[tuple[Account, int]],
                    kind: str, description: str, effective_date):
    """Post commitment entries as their own transaction (None when there is nothing to move)."""
    if not entries:
        return None
    return journal.post(uow, actor=actor, kind=kind, description=description, effective_date=effective_date,
                        contract_id=contract.id,
                        postings=[journal.Posting(acc.id, m.from_minor(units, contract.currency)) for acc, units in entries])
