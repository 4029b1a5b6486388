"""factory-boy factories for domain rows, and small helpers to post to the ledger in tests."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import factory

from ledger import journal
from ledger import money as m
from ledger.models import Account, Party


class PartyFactory(factory.Factory):
    class Meta:
        model = Party

    name = factory.Sequence(lambda n: f"Organisation {n}")
    role = "MUNICIPALITY"
    ownership = None
    org_number = None


def add(db, obj):
    """Insert a factory-built row in its own unit of work and return it."""
    with db.uow() as uow:
        uow.session.add(obj)
        uow.commit()
    return obj


def party(db, **kw) -> Party:
    if kw.get("role") == "PROVIDER":
        kw.setdefault("ownership", "PRIVATE")
    return add(db, PartyFactory.build(**kw))


def accounts(db, n: int = 2, currency: str = "SEK", owner: Party | None = None) -> list[Account]:
    """`n` open accounts of one party in `currency`."""
    owner = owner or party(db)
    out = []
    with db.uow() as uow:
        for i in range(n):
            out.append(journal.open_account(uow, code=f"TEST_{i}", name=f"Test account {i}",
                                            party_id=owner.id, currency=currency))
        uow.commit()
    return out


def post(db, legs: list[tuple[Account, str]], *, kind: str = "TEST", description: str = "test posting",
         effective: date = date(2026, 1, 15)):
    """Post one transaction of (account, amount) legs in its own unit of work."""
    with db.uow() as uow:
        tx = journal.post(uow, actor="test", kind=kind, description=description, effective_date=effective,
                          postings=[journal.Posting(a.id, m.money(Decimal(x), a.currency)) for a, x in legs])
        uow.commit()
    return tx
