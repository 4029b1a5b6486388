"""What a caller may see of the ledger: scoping rules shared by the API and the CLI."""
from __future__ import annotations

from collections import namedtuple

from sqlalchemy import Connection, bindparam, exists, or_, select

from ledger.access import Actor
from ledger.cursor_reads import CursorQuery
from ledger.models import Account, Entry, OutcomeContract, Transaction


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


def visible_contracts(actor: Actor, party=None):
    """A WHERE clause for the contracts an actor may read (None: all of them). `party` stands for the
    actor's party in it (a bound parameter, for a statement made once); by default its value."""
    from ledger.models import OutcomeContract as C
    if actor.sees_everything:
        return None
    column = {"MUNICIPALITY": C.municipality_id, "PROVIDER": C.provider_id, "VERIFIER": C.verifier_id}.get(actor.role)
    if column is None:
        return C.id.is_(None)
    party = actor.party_id if party is None else party
    if actor.role == "MUNICIPALITY":
        # a region or municipality that pays a share sees the contract as the commissioning one does
        from ledger.models import ContractTerms as T, PayerShare as S
        pays = exists(select(S.id).join(T, T.id == S.terms_id).where(T.contract_id == C.id, S.party_id == party))
        return or_(column == party, pays)
    return column == party


# a contract's row with its columns by name, as the ORM model names them (what OutcomeContract.from_row reads)
ContractRow = namedtuple("ContractRow", [c.key for c in OutcomeContract.__table__.columns])
_VISIBLE_CONTRACT: dict[tuple, CursorQuery] = {}


def visible_contract_row(conn: Connection, actor: Actor, contract_id: int) -> ContractRow | None:
    """The contract's row if `actor` may see it (visible_contracts), else None; one SELECT on the driver's
    cursor (it runs in every request that reads a contract), made once per kind of actor."""
    shape = (actor.sees_everything, actor.role)
    query = _VISIBLE_CONTRACT.get(shape)
    if query is None:
        table = OutcomeContract.__table__
        stmt = select(table).where(table.c.id == bindparam("id"))
        clause = visible_contracts(actor, party=bindparam("party"))
        if clause is not None:
            stmt = stmt.where(clause)
        query = _VISIBLE_CONTRACT[shape] = CursorQuery(stmt)
    if actor.party_id is None and not actor.sees_everything:
        # `= NULL` matches nothing, while the clause with the value would say IS NULL: ask it as it is
        stmt = select(OutcomeContract.__table__).where(OutcomeContract.id == contract_id)
        clause = visible_contracts(actor)
        row = conn.execute(stmt.where(clause) if clause is not None else stmt).first()
        return ContractRow(*row) if row is not None else None
    rows = query.rows(conn, {"id": contract_id, "party": actor.party_id})
    return ContractRow(*rows[0]) if rows else None


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
