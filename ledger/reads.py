"""What a caller may see of the ledger: scoping rules shared by the API and the CLI."""
from __future__ import annotations

from sqlalchemy import exists, or_, select

from ledger.access import Actor
from ledger.models import Account, Entry, Transaction


def visible_accounts(actor: Actor):
    """A WHERE clause for the accounts an actor may read: all, or its party's and those held against it."""
    if actor.sees_everything:
        return None
    return or_(Account.party_id == actor.party_id, Account.counterparty_id == actor.party_id)


def visible_transactions(actor: Actor):
    """A WHERE clause for transactions an actor may read: those touching an account it may see."""
    clause = visible_accounts(actor)
    if clause is None:
        return None
    return exists(select(Entry.sequence).join(Account, Account.id == Entry.account_id)
                  .where(Entry.sequence == Transaction.sequence, clause))


def may_see_account(actor: Actor, account: Account) -> bool:
    return actor.sees_everything or actor.party_id in (account.party_id, account.counterparty_id)
