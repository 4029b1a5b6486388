"""The chart of accounts: which account records what, and how positions are read from it.

Sign convention: debits positive, credits negative. Every party-to-party obligation is one
PAYABLE account (owner = debtor, counterparty = creditor, per contract) mirrored by the
creditor's RECEIVABLE, so "who owes whom" is read from balances directly.

Fund capital and its allocation:
- depositCapital:        Dr FUND_CASH / Cr FUND_CAPITAL
- activateContract:      Dr FUND_COMMITTED (contract) / Cr FUND_COMMITMENT_RESERVE for the fund's
  share of maxValue; every other payer commits its share the same way on its own
  PAYER_COMMITTED / PAYER_COMMITMENT_RESERVE (see ledger/commitments.py)
- a posted payout draws each payer's commitment down by its share (never below zero) and
  books the fund's share as Dr OUTCOME_COST (contract) / Cr PAYABLE (contract, provider)
- closing a contract (completed, or terminated and its run-off over) releases what is left
All of a fund's accounts carry its fund_id. So capital = −FUND_CAPITAL, committed = Σ FUND_COMMITTED, paidOut = Σ the fund's
OUTCOME_COST, available = capital − committed − paidOut.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ledger import journal
from ledger.db import UnitOfWork
from ledger.models import Account

FUND_CASH = "FUND_CASH"
FUND_CAPITAL = "FUND_CAPITAL"
FUND_COMMITTED = "FUND_COMMITTED"
FUND_COMMITMENT_RESERVE = "FUND_COMMITMENT_RESERVE"
CASH = "CASH"
OUTCOME_COST = "OUTCOME_COST"
OUTCOME_REVENUE = "OUTCOME_REVENUE"
PAYABLE = "PAYABLE"
RECEIVABLE = "RECEIVABLE"
PAYER_COMMITTED = "PAYER_COMMITTED"
PAYER_COMMITMENT_RESERVE = "PAYER_COMMITMENT_RESERVE"
PENALTY_EXPENSE = "PENALTY_EXPENSE"
PENALTY_INCOME = "PENALTY_INCOME"

NAMES = {
    FUND_CASH: "Fund cash", FUND_CAPITAL: "Paid-in capital", FUND_COMMITTED: "Committed to contract",
    FUND_COMMITMENT_RESERVE: "Commitments (contra)", CASH: "Cash", OUTCOME_COST: "Outcome payments",
    OUTCOME_REVENUE: "Outcome revenue", PAYABLE: "Owed to", RECEIVABLE: "Owed by",
    PAYER_COMMITTED: "Committed to contract", PAYER_COMMITMENT_RESERVE: "Commitments (contra)",
    PENALTY_EXPENSE: "Penalties (vite) incurred", PENALTY_INCOME: "Penalties (vite) receivable",
}


def account(uow: UnitOfWork, code: str, party_id: int, currency: str, *, contract_id: int | None = None,
            counterparty_id: int | None = None, fund_id: int | None = None) -> Account:
    """The account of `code` for this owner (and contract, counterparty, fund), opened on first use."""
    return accounts(uow, wanted(code, party_id, currency, contract_id=contract_id, counterparty_id=counterparty_id,
                                fund_id=fund_id))[0]


def wanted(code: str, party_id: int, currency: str, *, contract_id: int | None = None,
           counterparty_id: int | None = None, fund_id: int | None = None) -> dict:
    """An account `accounts` is to give, named as `account` names it."""
    return dict(code=code, name=NAMES[code], party_id=party_id, currency=currency, contract_id=contract_id,
                counterparty_id=counterparty_id, fund_id=fund_id)


def accounts(uow: UnitOfWork, *each: dict) -> list[Account]:
    """Several accounts as `account` gives one (each from `wanted`), in one statement."""
    return journal.open_accounts(uow, each)


@dataclass(frozen=True)
class FundPosition:
    capital: int
    committed: int
    paid_out: int

    @property
    def available(self) -> int:
        return self.capital - self.committed - self.paid_out


def fund_positions(s: Session, fund_ids: list[int]) -> dict[int, FundPosition]:
    """The positions of several funds in one query."""
    sums: dict[int, dict[str, int]] = {f: {} for f in fund_ids}
    for fund_id, code, total in s.execute(
        select(Account.fund_id, Account.code, func.coalesce(func.sum(Account.balance_minor), 0))
        .where(Account.fund_id.in_(fund_ids), Account.code.in_([FUND_CAPITAL, FUND_COMMITTED, OUTCOME_COST]))
        .group_by(Account.fund_id, Account.code)
    ):
        sums[fund_id][code] = int(total)
    return {f: FundPosition(capital=-r.get(FUND_CAPITAL, 0), committed=r.get(FUND_COMMITTED, 0),
                            paid_out=r.get(OUTCOME_COST, 0)) for f, r in sums.items()}


def fund_position(s: Session, fund_id: int) -> FundPosition:
    """The fund's capital, commitments and outcome payments from its account balances now."""
    rows = dict(s.execute(
        select(Account.code, func.coalesce(func.sum(Account.balance_minor), 0))
        .where(Account.fund_id == fund_id, Account.code.in_([FUND_CAPITAL, FUND_COMMITTED, OUTCOME_COST]))
        .group_by(Account.code)
    ).all())
    return FundPosition(capital=-int(rows.get(FUND_CAPITAL, 0)), committed=int(rows.get(FUND_COMMITTED, 0)),
                        paid_out=int(rows.get(OUTCOME_COST, 0)))
