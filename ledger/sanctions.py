"""Sanctions, the ladder used in Swedish choice systems (LOV).

WARNING is recorded; PENALTY (vite) is a money obligation of the provider to the
municipality, in the ledger; SUSPENSION stops new evidence and payouts until lifted;
DEAUTHORISATION ends the contract. A commissioner may start at any rung that fits the breach.
"""
from __future__ import annotations

from sqlalchemy import select

from ledger import chart, journal
from ledger import money as m
from ledger.access import Actor, require_role
from ledger.contracts import end_contract, get_contract
from ledger.corrections import dual_control
from ledger.db import UnitOfWork
from ledger.errors import Conflict, ValidationError
from ledger.models import Sanction, utcnow
from ledger.models.contracts import SANCTION_LEVELS
from ledger.parties import clean_text
from ledger.settlement import obligation_legs

# the sanctions a dual-control fund makes only through a change request
CONTROLLED_LEVELS = ("PENALTY", "DEAUTHORISATION")


def issue_sanction(uow: UnitOfWork, *, actor: Actor, contract_id: int, level: str, reason: str,
                   penalty: m.Money | None = None) -> Sanction:
    require_role(actor, "FUND_MANAGER")
    reason = clean_text(reason, "reason", max_len=2000)
    if level not in SANCTION_LEVELS:
        raise ValidationError(f"unknown sanction level {level!r}", code="INVALID_SANCTION_LEVEL", field=["level"])
    journal.lock(uow)
    contract = get_contract(uow, contract_id, for_update=True)
    if level in CONTROLLED_LEVELS:
        dual_control.require_change_request(uow, contract, f"a {level}")
    if contract.status not in ("ACTIVE", "SUSPENDED"):
        raise Conflict(f"a {contract.status} contract cannot be sanctioned", code="CONTRACT_NOT_ACTIVE",
                       field=["contractId"])
    if level != "PENALTY" and penalty is not None:
        raise ValidationError("only a PENALTY carries an amount", code="PENALTY_NOT_ALLOWED", field=["penalty"])
    sanction = Sanction(contract_id=contract.id, level=level, reason=reason, issued_by=actor.label)
    if level == "PENALTY":
        if penalty is None:
            raise ValidationError("a penalty needs an amount", code="PENALTY_REQUIRED", field=["penalty"])
        if penalty.currency.code != contract.currency:
            raise ValidationError(f"the contract is in {contract.currency}", code="CURRENCY_MISMATCH",
                                  field=["penalty", "currency"])
        units = m.minor_units(penalty)
        if units <= 0:
            raise ValidationError("a penalty must be more than zero", code="NON_POSITIVE_AMOUNT", field=["penalty", "amount"])
        cur, p, mu = contract.currency, contract.provider_id, contract.municipality_id
        legs = [
            (chart.account(uow, chart.PENALTY_EXPENSE, p, cur, contract_id=contract.id), units),
            (chart.account(uow, chart.PENALTY_INCOME, mu, cur, contract_id=contract.id), -units),
            # nets first against what the municipality still owes the provider on this contract
            *obligation_legs(uow, contract, p, mu, units),
        ]
        tx = journal.post(uow, actor=actor.label, kind="PENALTY", effective_date=utcnow().date(),
                          description=f"Penalty (vite) on contract {contract.id}: {reason}", contract_id=contract.id,
                          postings=[journal.Posting(a.id, m.from_minor(u, cur)) for a, u in legs])
        sanction.penalty_minor = units
        sanction.transaction_sequence = tx.sequence
    elif level == "SUSPENSION":
        if contract.status == "SUSPENDED":
            raise Conflict("the contract is already suspended", code="ALREADY_SUSPENDED", field=["contractId"])
        contract.status = "SUSPENDED"
    elif level == "DEAUTHORISATION":
        end_contract(uow, actor=actor, contract=contract, status="TERMINATED", reason=f"Deauthorised: {reason}")
    uow.session.add(sanction)
    uow.session.flush()
    return sanction


def lift_suspension(uow: UnitOfWork, *, actor: Actor, contract_id: int, reason: str) -> Sanction:
    """SUSPENDED → ACTIVE; the suspension is marked lifted, by whom and when."""
    require_role(actor, "FUND_MANAGER")
    clean_text(reason, "reason", max_len=2000)
    contract = get_contract(uow, contract_id, for_update=True)
    if contract.status != "SUSPENDED":
        raise Conflict("the contract is not suspended", code="NOT_SUSPENDED", field=["contractId"])
    suspension = uow.session.execute(
        select(Sanction).where(Sanction.contract_id == contract.id, Sanction.level == "SUSPENSION",
                               Sanction.lifted_at.is_(None)).order_by(Sanction.id.desc()).limit(1)
    ).scalar_one()
    suspension.lifted_at = utcnow()
    suspension.lifted_by = actor.label
    contract.status = "ACTIVE"
    uow.session.flush()
    return suspension
