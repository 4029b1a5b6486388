"""Commitments by share and payer caps (PAYOUTS.md §6 "Commitments", §8): any sequence of contract
steps keeps capital = committed + available + paidOut and committed ≥ 0 at every ledger sequence."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, assume, given, settings as hsettings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import select

from ledger import calculations, chart, commitments, contracts, journal, payouts
from ledger import evidence as ev
from ledger import money as m
from ledger.access import Actor
from ledger.contracts import ShareSpec
from ledger.db import Database
from ledger.errors import DomainError
from ledger.models import Account, Entry
from tests.conftest import table_counts
from tests.factories import contract, funded, party, rate_card, sek

FM = Actor("frida", "FUND_MANAGER")
FM2 = Actor("gustav", "FUND_MANAGER")
SECRET = b"test-secret-for-hmac-0123456789"
TODAY = date(2026, 11, 23)


def committed_by_payer(db, contract_id):
    with db.reading() as s:
        return commitments.current(s, contract_id)


def position(db, fund):
    with db.reading() as s:
        return chart.fund_position(s, fund.id)


def pay(db, c, prov, ver, n, *, price_day=date(2026, 3, 2), start=date(2026, 1, 1), end=date(2026, 6, 30), tag="p"):
    """Enrol n participants with one verified SCHOOL_PASS each, then calculate and approve the period's payout."""
    provider, verifier = Actor(f"pia-{tag}", "PROVIDER", prov.id), Actor("vera", "VERIFIER", ver.id)
    items = []
    with db.uow() as uow:
        for i in range(n):
            who = ev.enroll_participant(uow, actor=provider, secret=SECRET, contract_id=c.id, personal_identity_number=None,
                                        external_ref=f"{tag}-{i}", area=None, enrolled_on=date(2026, 1, 10), today=TODAY)
            e = ev.submit_evidence(uow, actor=provider, contract_id=c.id, today=TODAY,
                                   claim=ev.Claim(who.id, "SCHOOL_PASS", achieved_on=price_day))
            ev.verify_evidence(uow, actor=verifier, evidence_id=e.id, note=None)
            items.append(e.id)
        uow.commit()
    with db.uow() as uow:
        p = calculations.calculate_payout(uow, actor=FM, contract_id=c.id, period_start=start, period_end=end)
        uow.commit()
    with db.uow() as uow:
        p = calculations.approve_payout(uow, actor=FM2, payout_id=p.id)
        uow.commit()
    return p, items


def test_each_payer_commits_its_share_or_its_max_amount(db):
    # given a 20 % top-up fund, a municipality paying 50 % and a region paying 30 % up to 2 MSEK
    fund, manager, muni, prov, ver = funded(db, FM)
    region = party(db, role="MUNICIPALITY", name="Region Västerbotten")
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True, max_value="10000000.00", shares=(
        ShareSpec(manager.id, Decimal(20)), ShareSpec(muni.id, Decimal(50)), ShareSpec(region.id, Decimal(30), sek("2000000.00"))))
    # then the fund locks only its share, and each payer's commitment is on its own account
    assert position(db, fund).committed == 200_000_000
    assert committed_by_payer(db, c.id) == {manager.id: 200_000_000, muni.id: 500_000_000, region.id: 200_000_000}
    with db.reading() as s:
        region_accounts = s.execute(select(Account.code, Account.balance_minor).where(Account.party_id == region.id)).all()
    assert (chart.PAYER_COMMITTED, 200_000_000) in region_accounts
    # when a payout of 3 × 40 000 is posted, each commitment is drawn down by the payer's share
    p, _ = pay(db, c, prov, ver, 3)
    assert [s.amount_minor for s in p.shares] == [2_400_000, 6_000_000, 3_600_000]
    assert committed_by_payer(db, c.id) == {manager.id: 197_600_000, muni.id: 494_000_000, region.id: 196_400_000}
    # when the contract is completed, every commitment is released
    with db.uow() as uow:
        contracts.complete_contract(uow, actor=FM, contract_id=c.id, reason="done")
        uow.commit()
    assert committed_by_payer(db, c.id) == {manager.id: 0, muni.id: 0, region.id: 0}
    p_ = position(db, fund)
    assert (p_.committed, p_.paid_out, p_.available) == (0, 2_400_000, 5_000_000_000 - 2_400_000)


def test_a_payout_posted_after_termination_keeps_committed_at_zero_and_available_right(db):
    # given an active contract with verified outcomes, terminated (its commitment released)
    fund, manager, muni, prov, ver = funded(db, FM, capital="10000000.00")
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True, max_value="10000000.00")
    provider, verifier = Actor("pia", "PROVIDER", prov.id), Actor("vera", "VERIFIER", ver.id)
    with db.uow() as uow:
        who = ev.enroll_participant(uow, actor=provider, secret=SECRET, contract_id=c.id, personal_identity_number=None,
                                    external_ref="x", area=None, enrolled_on=date(2026, 1, 10), today=TODAY)
        e = ev.submit_evidence(uow, actor=provider, contract_id=c.id, today=TODAY,
                               claim=ev.Claim(who.id, "SCHOOL_PASS", achieved_on=date(2026, 3, 1)))
        ev.verify_evidence(uow, actor=verifier, evidence_id=e.id, note=None)
        uow.commit()
    with db.uow() as uow:
        contracts.terminate_contract(uow, actor=FM, contract_id=c.id, reason="Leverantören gick i konkurs")
        uow.commit()
    assert position(db, fund).committed == 0
    # when the outcome achieved during the term is paid
    with db.uow() as uow:
        p = calculations.calculate_payout(uow, actor=FM, contract_id=c.id, period_start=date(2026, 1, 1),
                                          period_end=date(2026, 6, 30))
        uow.commit()
    with db.uow() as uow:
        calculations.approve_payout(uow, actor=FM2, payout_id=p.id)
        uow.commit()
    # then committed stays at zero and the fund's share comes out of available
    pos = position(db, fund)
    assert (pos.committed, pos.paid_out, pos.available) == (0, 2_000_000, 1_000_000_000 - 2_000_000)
    # and a second contract cannot be activated beyond what is really available
    c2 = contract(db, FM, fund, manager, muni, prov, ver, max_value="20000000.00")
    with pytest.raises(DomainError) as err, db.uow() as uow:
        contracts.activate_contract(uow, actor=FM, contract_id=c2.id)
    assert err.value.code == "INSUFFICIENT_FUND_CAPITAL"


@pytest.mark.parametrize("case,code", [
    ("max_amount_in_euro", "CURRENCY_MISMATCH"),
    ("max_amount_zero", "NON_POSITIVE_AMOUNT"),
    ("payer_is_provider", "INVALID_PAYER"),
    ("shares_99", "SHARES_NOT_100"),
    ("unknown_payer", "UNKNOWN_PARTY"),
])
def test_bad_payers_are_refused_and_nothing_is_written(db, case, code):
    fund, manager, muni, prov, ver = funded(db, FM)
    region = party(db, role="MUNICIPALITY", name="Region")
    shares = {
        "max_amount_in_euro": (ShareSpec(manager.id, Decimal(50), m.money("100.00", "EUR")), ShareSpec(muni.id, Decimal(50))),
        "max_amount_zero": (ShareSpec(manager.id, Decimal(50), sek("0.00")), ShareSpec(muni.id, Decimal(50))),
        "payer_is_provider": (ShareSpec(manager.id, Decimal(50)), ShareSpec(prov.id, Decimal(50))),
        "shares_99": (ShareSpec(manager.id, Decimal(33)), ShareSpec(muni.id, Decimal(33)), ShareSpec(region.id, Decimal(33))),
        "unknown_payer": (ShareSpec(manager.id, Decimal(50)), ShareSpec(999_999, Decimal(50))),
    }[case]
    before = table_counts(db)
    with pytest.raises(DomainError) as err:
        contract(db, FM, fund, manager, muni, prov, ver, shares=shares)
    assert err.value.code == code
    assert table_counts(db) == before


def test_case_e_a_payers_cap_binds():
    # PAYOUTS.md Case E: fund 60 % (maxAmount 600 000.00, 580 000.00 paid), municipality 40 %; 100 000.00 after §2
    terms = payouts.Terms(version=1, currency="SEK", max_value=Decimal("10000000.00"), participant_cap=None,
                          payer_shares=(payouts.PayerShare("fund", Decimal(60), Decimal("600000.00")),
                                        payouts.PayerShare("muni", Decimal(40))),
                          metrics=(payouts.MetricTerms("SCHOOL_PASS", "RATE_CARD", "HIGHER_IS_BETTER", Decimal("100000.00")),))
    inputs = payouts.PayoutInputs(
        contract_id="1", period_start=date(2026, 1, 1), period_end=date(2026, 3, 31), terms=terms,
        evidence=(payouts.EvidenceItem(1, 1, "SCHOOL_PASS", date(2026, 2, 1)),),
        paid_before=payouts.PaidBefore(total=Decimal("966666.67"), per_payer={"fund": Decimal("580000.00"),
                                                                             "muni": Decimal("386666.67")}))
    result = payouts.calculate(inputs)
    assert result.total == Decimal("33333.33")
    assert [(x.party_id, x.amount) for x in result.shares] == [("fund", Decimal("20000.00")), ("muni", Decimal("13333.33"))]
    assert result.lines[0].caps == (("PAYER_CAP", Decimal("66666.67")),)
    # the recorded inputs read back to the same bytes, maxAmount and per-payer amounts included
    canonical = payouts.canonical_inputs(inputs)
    assert payouts.canonical_inputs(payouts.inputs_from_canonical(canonical)) == canonical


@given(total=st.integers(1, 10**9), paid=st.integers(0, 10**8), cap=st.integers(1, 10**8),
       percents=st.lists(st.integers(1, 9_000), min_size=1, max_size=4), capped=st.lists(st.booleans(), min_size=4, max_size=4))
@hsettings(max_examples=300, deadline=None)
def test_property_payer_cap_gives_no_payer_more_than_its_room_and_is_the_largest_such_total(total, paid, cap, percents, capped):
    # percents in hundredths, scaled so they sum to exactly 100.00
    scale = sum(percents)
    pcts = [Decimal(p * 10_000 // scale) / 100 for p in percents]
    pcts[-1] += Decimal(100) - sum(pcts)
    assume(all(p > 0 for p in pcts))  # a payer's share is always positive
    shares = [payouts.PayerShare(str(i), p, m.from_minor(cap, "SEK").amount if capped[i] else None) for i, p in enumerate(pcts)]
    paid_by = {str(i): m.from_minor(paid, "SEK").amount for i in range(len(pcts))}
    total_d = m.from_minor(total, "SEK").amount
    allowed = payouts.payer_cap_total(total_d, shares, paid_by, "SEK")
    assert Decimal(0) <= allowed <= total_d

    def fits(amount: Decimal) -> bool:
        split = payouts.split_total(amount, shares, "SEK")
        return all(x.amount <= s.max_amount - paid_by[s.party_id] for s, x in zip(shares, split) if s.max_amount is not None)
    assert fits(allowed) or allowed == 0
    if allowed < total_d:
        # one öre more would break a payer's cap, or pass the bound of §8
        step = allowed + Decimal("0.01")
        bound = min((max(Decimal(0), s.max_amount - paid_by[s.party_id]) * 100 / s.percent).quantize(Decimal("0.01"), "ROUND_FLOOR")
                    for s in shares if s.max_amount is not None)
        assert not fits(step) or step > bound


def test_an_amendment_cannot_go_below_what_was_paid(db):
    fund, manager, muni, prov, ver = funded(db, FM)
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True, max_value="1000000.00")
    pay(db, c, prov, ver, 2)  # 80 000 paid: 40 000 by each payer
    before = table_counts(db)
    for kw, where in [(dict(max_value=sek("79999.99")), ["maxValue"]),
                      (dict(payer_shares=[ShareSpec(manager.id, Decimal(50), sek("39999.99")), ShareSpec(muni.id, Decimal(50))]),
                       ["payerShares", "0", "maxAmount"]),
                      (dict(metrics=[rate_card(cap_total=sek("50000.00"))]), ["metrics", "0", "capTotal"])]:
        with pytest.raises(DomainError) as err, db.uow() as uow:
            contracts.amend_contract(uow, actor=FM, contract_id=c.id, effective_date=date(2026, 7, 1), reason="x", **kw)
        assert (err.value.code, err.value.field) == ("BELOW_AMOUNT_PAID", where)
    assert table_counts(db) == before
    # lowering maxValue to exactly what was paid releases the rest of every commitment
    with db.uow() as uow:
        contracts.amend_contract(uow, actor=FM, contract_id=c.id, effective_date=date(2026, 7, 1), reason="x",
                                 max_value=sek("80000.00"))
        uow.commit()
    assert committed_by_payer(db, c.id) == {manager.id: 0, muni.id: 0}


class ContractLife(RuleBasedStateMachine):
    """Activate, pay, amend, terminate, close and claw back in any order: the fund's identities hold."""

    engine = None

    def __init__(self):
        super().__init__()
        self.conn = self.engine.connect()
        self.outer = self.conn.begin()
        self.db = Database(self.conn)
        self.fund, self.manager, self.muni, self.prov, self.ver = funded(self.db, FM, capital="300000.00")
        self.region = party(self.db, role="MUNICIPALITY", name="Region")
        self.contracts = []
        self.paid_items: list[int] = []
        self.n = 0

    def teardown(self):
        self.outer.rollback()
        self.conn.close()

    def _try(self, fn):
        try:
            fn()
        except DomainError:
            pass

    @rule(max_value=st.integers(1_000_000, 40_000_000), fund_pct=st.sampled_from([20, 50, 100]),
          region_cap=st.one_of(st.none(), st.integers(1, 5_000_000)))
    def create(self, max_value, fund_pct, region_cap):
        rest = 100 - fund_pct
        shares = [ShareSpec(self.manager.id, Decimal(fund_pct))]
        if rest:
            shares += [ShareSpec(self.muni.id, Decimal(rest) / 2),
                       ShareSpec(self.region.id, Decimal(rest) / 2, m.from_minor(region_cap, "SEK") if region_cap else None)]
        c = contract(self.db, FM, self.fund, self.manager, self.muni, self.prov, self.ver,
                     max_value=str(m.from_minor(max_value, "SEK").amount), shares=shares,
                     metrics=(rate_card(price="40000.00"),))
        self.contracts.append(c)

    def _contract(self, i):
        return self.contracts[i % len(self.contracts)]

    @precondition(lambda self: self.contracts)
    @rule(i=st.integers(0, 20))
    def activate(self, i):
        def go():
            with self.db.uow() as uow:
                contracts.activate_contract(uow, actor=FM, contract_id=self._contract(i).id)
                uow.commit()
        self._try(go)

    @precondition(lambda self: self.contracts)
    @rule(i=st.integers(0, 20), n=st.integers(1, 3))
    def pay(self, i, n):
        self.n += 1
        try:
            _, items = pay(self.db, self._contract(i), self.prov, self.ver, n, tag=f"t{self.n}")
            self.paid_items += items
        except DomainError:
            pass

    @precondition(lambda self: self.contracts)
    @rule(i=st.integers(0, 20), max_value=st.integers(1, 40_000_000))
    def amend(self, i, max_value):
        def go():
            with self.db.uow() as uow:
                contracts.amend_contract(uow, actor=FM, contract_id=self._contract(i).id, effective_date=date(2026, 7, 1),
                                         reason="r", max_value=m.from_minor(max_value, "SEK"))
                uow.commit()
        self._try(go)

    @precondition(lambda self: self.contracts)
    @rule(i=st.integers(0, 20), close=st.booleans())
    def end(self, i, close):
        def go():
            with self.db.uow() as uow:
                if close:
                    contracts.complete_contract(uow, actor=FM, contract_id=self._contract(i).id, reason="r")
                else:
                    contracts.terminate_contract(uow, actor=FM, contract_id=self._contract(i).id, reason="r")
                uow.commit()
        self._try(go)

    @precondition(lambda self: self.paid_items)
    @rule(j=st.integers(0, 100))
    def claw_back(self, j):
        def go():
            with self.db.uow() as uow:
                e = ev.invalidate_evidence(uow, actor=FM, evidence_id=self.paid_items.pop(j % len(self.paid_items)),
                                           reason="fel")
                uow.commit()
            with self.db.uow() as uow:
                p = calculations.calculate_payout(uow, actor=FM, contract_id=e.contract_id, period_start=date(2026, 1, 1),
                                                  period_end=date(2026, 6, 30))
                uow.commit()
            with self.db.uow() as uow:
                calculations.approve_payout(uow, actor=FM2, payout_id=p.id)
                uow.commit()
        self._try(go)

    @invariant()
    def identities_hold_at_every_sequence(self):
        with self.db.reading() as s:
            p = chart.fund_position(s, self.fund.id)
            assert p.capital == p.committed + p.available + p.paid_out
            assert p.committed >= 0 and p.available >= 0
            # every commitment account, after every posting to it, is ≥ 0
            low = s.execute(select(Entry.balance_after_minor).join(Account, Account.id == Entry.account_id)
                            .where(Account.code.in_(commitments.COMMITMENT_CODES), Entry.balance_after_minor < 0)).first()
            assert low is None
            # the fund's committed total, replayed sequence by sequence, never dips below zero
            running, lowest = 0, 0
            for amount in s.execute(select(Entry.amount_minor).join(Account, Account.id == Entry.account_id)
                                    .where(Account.code == chart.FUND_COMMITTED, Account.fund_id == self.fund.id)
                                    .order_by(Entry.sequence, Entry.line)).scalars():
                running += amount
                lowest = min(lowest, running)
            assert lowest >= 0
            # each contract holds exactly the rule's commitment per payer
            for c in self.contracts:
                row = contracts.get_contract(s, c.id)
                terms = contracts.terms_in_force(s, c.id)
                paid = commitments.paid_by_payer(s, c.id)
                goal = commitments.targets(terms) if commitments.is_open(row) else {}
                want = {party: max(0, t - paid.get(party, 0)) for party, t in goal.items()}
                have = {k: v for k, v in commitments.current(s, c.id).items() if v}
                assert have == {k: v for k, v in want.items() if v}
            assert journal.verify(s).ok


def test_property_contract_life_state_machine(engine):
    ContractLife.engine = engine
    ContractLife.TestCase.settings = hsettings(max_examples=12, stateful_step_count=14, deadline=None,
                                               suppress_health_check=list(HealthCheck))
    ContractLife.TestCase().runTest()


def test_eight_concurrent_calculations_of_overlapping_periods_leave_no_overlap(fresh_engine):
    """8 threads each calculate a different, overlapping period of one free-period contract at once:
    the chain-head lock serialises them, so the payouts recorded never overlap (PERIOD_OVERLAPS)."""
    import threading
    from datetime import timedelta
    if fresh_engine.dialect.name != "postgresql":
        pytest.skip("concurrency under row locks is a PostgreSQL matter; SQLite has one writer")
    db = Database(fresh_engine)
    fund, manager, muni, prov, ver = funded(db, FM)
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True)
    outcomes, errors = [], []

    def worker(n):
        try:
            with db.uow() as uow:
                start = date(2026, 1, 1) + timedelta(days=n)
                calculations.calculate_payout(uow, actor=FM, contract_id=c.id, period_start=start,
                                              period_end=start + timedelta(days=30))
                uow.commit()
            outcomes.append("ok")
        except DomainError as err:
            outcomes.append(err.code)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(outcomes) == ["PERIOD_OVERLAPS"] * 7 + ["ok"]
