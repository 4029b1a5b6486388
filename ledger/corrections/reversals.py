"""Reversing a ledger transaction, and what it means for the payout that posted it."""
from __future__ import annotations

from datetime import date

from sqlalchemy import select

from ledger import journal
from ledger.access import Actor, require_role
from ledger.contracts import get_contract
from ledger.corrections import dual_control
from ledger.db import UnitOfWork
from ledger.models import PayoutCalculation, Transaction


def reverse_transaction(uow: UnitOfWork, *, actor: Actor, transaction_id: int, reason: str,
                        effective_date: date | None = None) -> Transaction:
    """Post the mirror image of a transaction; a payout it posted becomes REVERSED.

    The reversal undoes every entry, so the obligations it created and the fund commitment it
    drew down come back. The payout then no longer counts as paid: its evidence items and
    measurements are payable again in a new payout of the same period, and its clawbacks
    are due again.
    """
    require_role(actor, "FUND_MANAGER")
    original = uow.session.get(Transaction, transaction_id)
    if original is not None and original.contract_id is not None:
        dual_control.require_change_request(uow, get_contract(uow, original.contract_id), "a reversal")
    tx = journal.reverse(uow, actor=actor.label, sequence=transaction_id, reason=reason, effective_date=effective_date)
    for payout in uow.session.execute(select(PayoutCalculation).where(
            PayoutCalculation.transaction_sequence == transaction_id,
            PayoutCalculation.status == "POSTED").with_for_update()).scalars():
        payout.status = "REVERSED"
    uow.session.flush()
    return tx
