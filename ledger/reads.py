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


def visible_contracts(actor: Actor):
    """A WHERE clause for the contracts an actor may read (None: all of them)."""
    from ledger.models import OutcomeContract as C
    if actor.sees_everything:
        return None
    column = {"MUNICIPALITY": C.municipality_id, "PROVIDER": C.provider_id, "VERIFIER": C.verifier_id}.get(actor.role)
    if column is None:
        return C.id.is_(None)
    if actor.role == "MUNICIPALITY":
        # a region or municipality that pays a share sees the contract as the commissioning one does
        from ledger.models import ContractTerms as T, PayerShare as S
        pays = exists(select(S.id).join(T, T.id == S.terms_id).where(T.contract_id == C.id, S.party_id == actor.party_id))
        return or_(column == actor.party_id, pays)
    return column == actor.party_id


def may_see_contract(actor: Actor, contract) -> bool:
    if actor.sees_everything:
        return True
    return actor.party_id == {"MUNICIPALITY": contract.municipality_id, "PROVIDER": contract.provider_id,
                              "VERIFIER": contract.verifier_id}.get(actor.role)


def visible_funds(actor: Actor):
    """Funds an actor may read: all, or those financing a contract it may see."""
    from ledger.models import OutcomeContract as C, OutcomesFund as F
    clause = visible_contracts(actor)
    if clause is None:
        return None
    return exists(select(C.id).where(C.fund_id == F.id, clause))
