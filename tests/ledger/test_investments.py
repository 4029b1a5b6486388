"""Impact bonds through the database: WATERFALL.md W1 and W2 (scaled to Case A's receipts), the
ledger postings, receipts after a clawback, recomputation, and bad input that writes nothing."""
from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from ledger import contracts, journal, settlement
from ledger import evidence as ev
from ledger import investments as inv
from ledger import money as m
from ledger.access import Actor
from ledger.db import Database
from ledger.errors import DomainError
from ledger.models import Account, OutcomeContract, Transaction
from tests.conftest import table_counts
from tests.factories import party, sek
from tests.ledger.test_calculations import FM, approve, calc, case_a, owed  # noqa: F401

MUNI = lambda w: Actor("mona", "MUNICIPALITY", w["muni"].id)  # noqa: E731


def make_bond(db, w: dict) -> dict:
    """Give Case A's contract an investor and, as in W1 scaled by 1/20, A: SENIOR 50 000.00 at 20 %
    and B: SUBORDINATE 25 000.00 at 50 %, both drawn in full. Adds investor, a and b to `w`."""
    w["investor"] = party(db, role="INVESTOR", name="Social Finance Norden AB")
    with db.uow() as uow:
        # createContract names the investor; Case A's contract was made without one
        uow.session.execute(update(OutcomeContract).where(OutcomeContract.id == w["contract"].id)
                            .values(investor_id=w["investor"].id))
        uow.commit()
    with db.uow() as uow:
        a = inv.create_investment(uow, actor=FM, contract_id=w["contract"].id, investor_id=w["investor"].id,
                                  tranche="SENIOR", principal=sek("50000.00"), return_cap=Decimal("0.20"))
        b = inv.create_investment(uow, actor=FM, contract_id=w["contract"].id, investor_id=w["investor"].id,
                                  tranche="SUBORDINATE", principal=sek("25000.00"), return_cap=Decimal("0.50"))
        inv.record_drawdown(uow, actor=FM, investment_id=a.id, amount=sek("50000.00"), paid_on=date(2026, 1, 15),
                            reference="Avrop 1")
        inv.record_drawdown(uow, actor=FM, investment_id=b.id, amount=sek("10000.00"), paid_on=date(2026, 1, 15),
                            reference="Avrop 1")
        inv.record_drawdown(uow, actor=FM, investment_id=b.id, amount=sek("15000.00"), paid_on=date(2026, 2, 15),
                            reference="Avrop 2")
        uow.commit()
    w.update(a=a, b=b)
    return w


@pytest.fixture
def bond(db, case_a):
    """Case A's contract, its first payout posted (56 250.00 owed by each payer), with the bond of `make_bond`."""
    w = make_bond(db, dict(case_a))
    approve(db, calc(db, w))
    return w


def pay(db, w, debtor, creditor, amount, actor=FM, on=date(2026, 7, 10)):
    with db.uow() as uow:
        p = settlement.record_payment(uow, actor=actor, debtor_id=debtor.id, creditor_id=creditor.id,
                                      contract_id=w["contract"].id, amount=sek(amount), paid_on=on, reference="Betalning")
        uow.commit()
    return p


def distribute(db, w, up_to=date(2026, 12, 31)):
    with db.uow() as uow:
        d = inv.distribute_receipts(uow, actor=FM, contract_id=w["contract"].id, up_to=up_to)
        uow.commit()
    return d


def lines(d, w):
    name = {w["a"].id: "A", w["b"].id: "B", None: "-"}
    return [(name[x.investment_id], x.kind, m.from_minor(x.amount_minor, "SEK").amount) for x in d.lines]


def figures(db, w):
    with db.reading() as s:
        got = inv.positions(s, [w["contract"].id])[w["contract"].id]
    return [(p.drawn, p.repaid_principal, p.return_paid, str(p.return_percent), str(p.multiple), p.loss) for p in got]


def test_w1_three_distributions_repay_both_tranches_with_capped_returns(db, bond):
    w = bond
    D = Decimal
    # when the provider receives 30 000, then 45 000, then 35 000, each distributed
    pay(db, w, w["muni"], w["prov"], "30000.00", actor=MUNI(w))
    first = distribute(db, w)
    pay(db, w, w["muni"], w["prov"], "26250.00", actor=MUNI(w))
    pay(db, w, w["manager"], w["prov"], "18750.00")
    second = distribute(db, w)
    pay(db, w, w["manager"], w["prov"], "35000.00")
    third = distribute(db, w)
    # then the lines of W1, to the öre
    assert lines(first, w) == [("A", "PRINCIPAL", D("30000.00"))]
    assert lines(second, w) == [("A", "PRINCIPAL", D("20000.00")), ("A", "RETURN", D("10000.00")),
                                ("B", "PRINCIPAL", D("15000.00"))]
    assert lines(third, w) == [("B", "PRINCIPAL", D("10000.00")), ("B", "RETURN", D("12500.00")),
                               ("-", "RESIDUAL", D("12500.00"))]
    assert [d.total_minor for d in (first, second, third)] == [3_000_000, 4_500_000, 3_500_000]
    # A: 60 000 back, 20 %, 1.20; B: 37 500, 50 %, 1.50
    assert figures(db, w) == [(5_000_000, 5_000_000, 1_000_000, "20.00", "1.20", 0),
                              (2_500_000, 2_500_000, 1_250_000, "50.00", "1.50", 0)]
    # the provider owes the investor what was distributed to it: 97 500.00
    assert owed(db, w["prov"], w["investor"], w["contract"].id) == 9_750_000
    # every distribution recomputes from its recorded inputs, and the ledger still verifies
    with db.reading() as s:
        assert all(inv.recompute(inv.get_distribution(s, d.id)).matches for d in (first, second, third))
        assert journal.verify(s).ok
    # and the provider pays the investor: an ordinary payment, not a receipt to distribute
    pay(db, w, w["prov"], w["investor"], "97500.00")
    with pytest.raises(DomainError) as err:
        distribute(db, w)
    assert err.value.code == "NOTHING_RECEIVED"


def test_w2_the_contract_ends_and_the_investors_carry_the_loss(db, bond):
    w = bond
    pay(db, w, w["muni"], w["prov"], "15000.00", actor=MUNI(w))
    distribute(db, w)
    with db.uow() as uow:
        contracts.terminate_contract(uow, actor=FM, contract_id=w["contract"].id, reason="Avbrutet")
        closing = inv.close_investments(uow, actor=FM, contract_id=w["contract"].id)
        uow.commit()
    # A lost 35 000 (multiple 0.30), B all 25 000 (0.00)
    assert figures(db, w) == [(5_000_000, 1_500_000, 0, "0.00", "0.30", 3_500_000),
                              (2_500_000, 0, 0, "0.00", "0.00", 2_500_000)]
    with db.reading() as s:
        tx = s.get(Transaction, closing.transaction_sequence)
        accounts = {a.id: a for a in s.execute(select(Account)).scalars()}
        # the provider's pre-finance is gone: it owes only what was distributed
        prefinance = [a for a in accounts.values() if a.code == inv.PREFINANCE]
        assert prefinance and all(a.balance_minor == 0 for a in prefinance)
        assert tx.kind == "INVESTMENT_WRITE_OFF"
    assert owed(db, w["prov"], w["investor"], w["contract"].id) == 1_500_000
    # closed is closed
    for fn in (lambda uow: inv.close_investments(uow, actor=FM, contract_id=w["contract"].id),
               lambda uow: inv.distribute_receipts(uow, actor=FM, contract_id=w["contract"].id, up_to=date(2027, 1, 1)),
               lambda uow: inv.record_drawdown(uow, actor=FM, investment_id=w["a"].id, amount=sek("1.00"),
                                               paid_on=date(2027, 1, 1), reference="x")):
        with pytest.raises(DomainError) as err, db.uow() as uow:
            fn(uow)
        assert err.value.code == "INVESTMENTS_CLOSED"


def test_a_clawback_the_provider_repays_reduces_the_next_receipts_not_a_past_distribution(db, bond):
    w = bond
    pay(db, w, w["muni"], w["prov"], "56250.00", actor=MUNI(w))
    first = distribute(db, w)
    assert lines(first, w)[0] == ("A", "PRINCIPAL", Decimal("50000.00"))
    # P3's attendance turns out false: the next payout claws 12 500.00 back, half from the provider to the municipality
    with db.uow() as uow:
        ev.invalidate_evidence(uow, actor=w["verifier"], evidence_id=w["items"][-1].id, reason="Falsk närvarolista")
        uow.commit()
    approve(db, calc(db, w, start=date(2026, 7, 1), end=date(2026, 12, 31)))
    pay(db, w, w["prov"], w["muni"], "6250.00", on=date(2026, 8, 1))
    # the fund then pays 10 000.00 of its (netted) debt: 10 000 − 6 250 = 3 750 to distribute
    pay(db, w, w["manager"], w["prov"], "10000.00", on=date(2026, 8, 2))
    second = distribute(db, w)
    assert second.total_minor == 375_000
    assert lines(second, w) == [("A", "RETURN", Decimal("3750.00"))]
    with db.reading() as s:
        assert inv.recompute(inv.get_distribution(s, first.id)).matches
        assert inv.get_distribution(s, first.id).total_minor == 5_625_000


def test_a_repayment_larger_than_new_receipts_waits_for_later_receipts(db, bond):
    w = bond
    pay(db, w, w["muni"], w["prov"], "56250.00", actor=MUNI(w))
    distribute(db, w)
    with db.uow() as uow:
        ev.invalidate_evidence(uow, actor=w["verifier"], evidence_id=w["items"][-1].id, reason="Falsk närvarolista")
        uow.commit()
    approve(db, calc(db, w, start=date(2026, 7, 1), end=date(2026, 12, 31)))
    pay(db, w, w["prov"], w["muni"], "6250.00", on=date(2026, 8, 1))
    pay(db, w, w["manager"], w["prov"], "5000.00", on=date(2026, 8, 2))
    before = table_counts(db)
    with pytest.raises(DomainError) as err:
        distribute(db, w)
    assert err.value.code == "NOTHING_RECEIVED" and table_counts(db) == before
    pay(db, w, w["manager"], w["prov"], "2000.00", on=date(2026, 9, 1))
    assert distribute(db, w).total_minor == 75_000  # 5 000 + 2 000 − 6 250


def test_receipts_are_counted_up_to_the_date_given(db, bond):
    w = bond
    pay(db, w, w["muni"], w["prov"], "1000.00", actor=MUNI(w), on=date(2026, 7, 10))
    pay(db, w, w["muni"], w["prov"], "2000.00", actor=MUNI(w), on=date(2026, 8, 10))
    assert distribute(db, w, up_to=date(2026, 7, 31)).total_minor == 100_000
    assert distribute(db, w, up_to=date(2026, 8, 31)).total_minor == 200_000


def test_bad_input_gets_a_stable_code_and_writes_nothing(db, bond):
    w = bond
    c = w["contract"].id
    other_investor = party(db, role="INVESTOR", name="Annan investerare AB")
    create = lambda **kw: lambda uow: inv.create_investment(uow, **{  # noqa: E731
        "actor": FM, "contract_id": c, "investor_id": w["investor"].id, "tranche": "SENIOR",
        "principal": sek("100.00"), "return_cap": Decimal("0.1"), **kw})
    cases = [
        (create(investor_id=other_investor.id), "INVESTOR_NOT_ON_CONTRACT"),
        (create(investor_id=w["prov"].id), "WRONG_PARTY_ROLE"),
        (create(return_cap=Decimal("-0.01")), "INVALID_RETURN_CAP"),
        (create(return_cap=Decimal("10.01")), "INVALID_RETURN_CAP"),
        (create(tranche="MEZZANINE"), "INVALID_TRANCHE"),
        (create(principal=sek("0.00")), "NON_POSITIVE_AMOUNT"),
        (create(principal=m.money("1.00", "EUR")), "CURRENCY_MISMATCH"),
        (create(actor=Actor("x", "PROVIDER", w["prov"].id)), "PERMISSION_DENIED"),
        (create(actor=Actor("x", "AUDITOR")), "READ_ONLY_ROLE"),
        (create(contract_id=999_999), "UNKNOWN_CONTRACT"),
        (lambda uow: inv.record_drawdown(uow, actor=FM, investment_id=w["a"].id, amount=sek("0.01"),
                                         paid_on=date(2026, 3, 1), reference="x"), "DRAWDOWN_EXCEEDS_PRINCIPAL"),
        (lambda uow: inv.record_drawdown(uow, actor=FM, investment_id=999_999, amount=sek("1.00"),
                                         paid_on=date(2026, 3, 1), reference="x"), "UNKNOWN_INVESTMENT"),
        (lambda uow: inv.distribute_receipts(uow, actor=FM, contract_id=c, up_to=date(2026, 12, 31)), "NOTHING_RECEIVED"),
        (lambda uow: inv.close_investments(uow, actor=FM, contract_id=c), "CONTRACT_NOT_ENDED"),
    ]
    before = table_counts(db)
    for fn, code in cases:
        with pytest.raises(DomainError) as err, db.uow() as uow:
            fn(uow)
        assert err.value.code == code
    assert table_counts(db) == before


def test_a_return_cap_of_exactly_0_and_10_is_accepted(db, bond):
    with db.uow() as uow:
        for cap in ("0", "10"):
            x = inv.create_investment(uow, actor=FM, contract_id=bond["contract"].id, investor_id=bond["investor"].id,
                                      tranche="SUBORDINATE", principal=sek("1.00"), return_cap=Decimal(cap))
            assert x.return_cap == Decimal(cap)


def test_eight_concurrent_drawdowns_never_exceed_the_committed_principal(fresh_engine):
    # given an investment of 1 000.00 and eight requests to draw 300.00 at once
    db = Database(fresh_engine)
    from tests.factories import contract, funded
    fund, manager, muni, prov, ver = funded(db, FM)
    investor = party(db, role="INVESTOR")
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True)
    with db.uow() as uow:
        uow.session.execute(update(OutcomeContract).where(OutcomeContract.id == c.id).values(investor_id=investor.id))
        x = inv.create_investment(uow, actor=FM, contract_id=c.id, investor_id=investor.id, tranche="SENIOR",
                                  principal=sek("1000.00"), return_cap=Decimal("0.1"))
        uow.commit()
    codes, barrier = [], threading.Barrier(8)

    def draw():
        barrier.wait()
        try:
            with db.uow() as uow:
                inv.record_drawdown(uow, actor=FM, investment_id=x.id, amount=sek("300.00"), paid_on=date(2026, 2, 1),
                                    reference="Avrop")
                uow.commit()
            codes.append("ok")
        except DomainError as err:
            codes.append(err.code)

    threads = [threading.Thread(target=draw) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then exactly three succeed: 900.00 drawn, never more than 1 000.00
    assert sorted(codes) == ["DRAWDOWN_EXCEEDS_PRINCIPAL"] * 5 + ["ok"] * 3
    with db.reading() as s:
        assert inv.positions(s, [c.id])[c.id][0].drawn == 90_000


def test_the_demo_has_an_impact_bond_with_two_tranches_and_distributions(db):
    from ledger import demo
    from ledger.models import Investment, WaterfallDistribution
    demo.load(db, today=date(2026, 11, 23), secret=b"demo-test-secret-0123456789")
    with db.reading() as s:
        bond_ = s.execute(select(OutcomeContract).where(OutcomeContract.investor_id.is_not(None))).scalar_one()
        assert {i.tranche for i in s.execute(select(Investment)).scalars()} == {"SENIOR", "SUBORDINATE"}
        dists = s.execute(select(WaterfallDistribution).order_by(WaterfallDistribution.id)).scalars().all()
        assert len(dists) >= 1 and all(inv.recompute(d).matches for d in dists)
        senior, subordinate = inv.positions(s, [bond_.id])[bond_.id]
        # the care days paid so far repay part of the senior tranche; the subordinate waits
        assert 0 < senior.repaid_principal < senior.drawn and subordinate.repaid_principal == 0
        assert journal.verify(s).ok


def test_eight_concurrent_distributions_count_each_receipt_once(fresh_engine):
    # given a bond whose provider has received 1 000.00 from the municipality
    db = Database(fresh_engine)
    from tests.factories import contract, funded
    fund, manager, muni, prov, ver = funded(db, FM)
    investor = party(db, role="INVESTOR")
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True)
    with db.uow() as uow:
        uow.session.execute(update(OutcomeContract).where(OutcomeContract.id == c.id).values(investor_id=investor.id))
        x = inv.create_investment(uow, actor=FM, contract_id=c.id, investor_id=investor.id, tranche="SENIOR",
                                  principal=sek("5000.00"), return_cap=Decimal("0.1"))
        inv.record_drawdown(uow, actor=FM, investment_id=x.id, amount=sek("5000.00"), paid_on=date(2026, 2, 1),
                            reference="Avrop")
        contract_row = uow.session.get(OutcomeContract, c.id)
        # the municipality owes the provider 1 000.00 (as a posted payout would make it) and pays it
        legs = settlement.obligation_legs(uow, contract_row, muni.id, prov.id, 100_000)
        journal.post(uow, actor="test", kind="TEST", description="an obligation", effective_date=date(2026, 7, 1),
                     postings=[journal.Posting(a.id, m.from_minor(u, "SEK")) for a, u in legs], contract_id=c.id)
        settlement.record_payment(uow, actor=FM, debtor_id=muni.id, creditor_id=prov.id, contract_id=c.id,
                                  amount=sek("1000.00"), paid_on=date(2026, 7, 2), reference="Faktura")
        uow.commit()
    codes, barrier = [], threading.Barrier(8)

    # when eight fund managers distribute at once
    def run():
        barrier.wait()
        try:
            with db.uow() as uow:
                inv.distribute_receipts(uow, actor=FM, contract_id=c.id, up_to=date(2026, 12, 31))
                uow.commit()
            codes.append("ok")
        except DomainError as err:
            codes.append(err.code)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then one distributes the 1 000.00; the others find nothing received
    assert sorted(codes) == ["NOTHING_RECEIVED"] * 7 + ["ok"]
    with db.reading() as s:
        assert inv.positions(s, [c.id])[c.id][0].repaid_principal == 100_000


def test_an_investor_token_is_bound_to_a_party_of_role_investor(db):
    from ledger import tokens
    from ledger.access import SYSTEM
    investor, provider = party(db, role="INVESTOR"), party(db, role="PROVIDER")
    for party_id, code in ((None, "PARTY_REQUIRED"), (provider.id, "WRONG_PARTY_ROLE")):
        with pytest.raises(DomainError) as err, db.uow() as uow:
            tokens.create_token(uow, actor=SYSTEM, name="ingrid", role="INVESTOR", party_id=party_id)
        assert err.value.code == code
    with db.uow() as uow:
        issued = tokens.create_token(uow, actor=SYSTEM, name="ingrid", role="INVESTOR", party_id=investor.id)
        uow.commit()
    assert issued.api_token.role == "INVESTOR" and issued.api_token.party_id == investor.id


def test_a_bond_exports_to_beancount_that_bean_check_accepts(db, bond, tmp_path):
    pytest.importorskip("beancount")
    from ledger import export
    from tests.ledger.test_export import bean_check, export_text
    w = bond
    pay(db, w, w["muni"], w["prov"], "56250.00", actor=MUNI(w))
    distribute(db, w)
    with db.uow() as uow:
        contracts.terminate_contract(uow, actor=FM, contract_id=w["contract"].id, reason="Avbrutet")
        inv.close_investments(uow, actor=FM, contract_id=w["contract"].id)
        uow.commit()
    path = tmp_path / "bond.beancount"
    path.write_text(export_text(db, "beancount")[0], encoding="utf-8")
    checked = bean_check(path)
    assert (checked.returncode, checked.stderr) == (0, ""), checked.stdout
    text = path.read_text(encoding="utf-8")
    for code, root in inv.BEANCOUNT_ROOTS.items():
        assert f" {root}:{export._component(code)}:" in text, code
