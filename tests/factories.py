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


def sek(amount: str) -> m.Money:
    return m.money(amount, "SEK")


def rate_card(code: str = "SCHOOL_PASS", price: str = "40000.00", **kw):
    from ledger.contracts import MetricSpec
    return MetricSpec(code=code, name=code.replace("_", " ").title(), kind="RATE_CARD", direction="HIGHER_IS_BETTER",
                      unit_price=sek(price), **kw)


def funded(db, fm, *, capital: str = "50000000.00", dual_control: bool = False):
    """A FUND party with a SEK fund holding `capital`, a municipality, a provider and a verifier.

    Dual control is off unless asked for, so one fund manager can run a test's whole story."""
    from ledger import funds
    manager = party(db, role="FUND", name="Statens utfallsfond")
    muni = party(db, role="MUNICIPALITY", name="Umeå kommun")
    prov = party(db, role="PROVIDER", name="Skolframgång AB")
    ver = party(db, role="VERIFIER", name="Oberoende utvärdering AB")
    with db.uow() as uow:
        fund = funds.create_fund(uow, actor=fm, name="Utfallsfonden", manager_id=manager.id, currency="SEK",
                                 dual_control=dual_control)
        if capital:
            funds.deposit_capital(uow, actor=fm, fund_id=fund.id, amount=sek(capital), effective_date=date(2026, 1, 1),
                                  reference="Anslag 2026")
        uow.commit()
    return fund, manager, muni, prov, ver


def contract(db, fm, fund, manager, muni, prov, ver=None, *, max_value: str = "10000000.00", metrics=None,
             shares=None, activate: bool = False, **kw):
    from ledger import contracts
    terms = contracts.TermsSpec(
        max_value=sek(max_value), participant_cap=kw.pop("participant_cap", None),
        payer_shares=tuple(shares or (contracts.ShareSpec(manager.id, Decimal("50")),
                                      contracts.ShareSpec(muni.id, Decimal("50")))),
        metrics=tuple(metrics or (rate_card(),)),
    )
    with db.uow() as uow:
        c = contracts.create_contract(
            uow, actor=fm, title=kw.pop("title", "Skolresultat i Umeå"), fund_id=fund.id, municipality_id=muni.id,
            provider_id=prov.id, verifier_id=ver.id if ver else None, investor_id=None,
            policy_area=kw.pop("policy_area", "school"), start_date=kw.pop("start_date", date(2026, 1, 1)),
            end_date=kw.pop("end_date", date(2028, 12, 31)), terms=terms)
        if activate:
            contracts.activate_contract(uow, actor=fm, contract_id=c.id)
        uow.commit()
    return c


def payout(db, fm, contract_id: int, period: tuple[date, date], *, approver=None):
    """A payout of the period calculated by `fm`, and approved by `approver` (four eyes) if given."""
    from ledger import calculations
    with db.uow() as uow:
        p = calculations.calculate_payout(uow, actor=fm, contract_id=contract_id, period_start=period[0],
                                          period_end=period[1])
        uow.commit()
    if approver is not None:
        with db.uow() as uow:
            calculations.approve_payout(uow, actor=approver, payout_id=p.id)
            uow.commit()
    return p
