"""Funds and contracts: capital, commitments, the lifecycle, amendments and sanctions."""
from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings as hsettings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import select, text

from ledger import chart, contracts, funds, journal, sanctions
from ledger.access import Actor
from ledger.contracts import MetricSpec, ShareSpec, TermsSpec
from ledger.db import Database
from ledger.errors import DomainError
from ledger.models import Account
from tests.conftest import table_counts
from tests.factories import contract, funded, party, rate_card, sek

FM = Actor("frida", "FUND_MANAGER")


def position(db, fund):
    with db.reading() as s:
        return chart.fund_position(s, fund.id)


def test_capital_commitment_and_release_are_read_from_the_ledger(db):
    # given a fund with 50 MSEK
    fund, manager, muni, prov, ver = funded(db, FM)
    assert position(db, fund) == chart.FundPosition(capital=5_000_000_000, committed=0, paid_out=0)
    # when a 10 MSEK contract is activated
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True)
    # then the fund commits its 50 % share, 5 MSEK, and 45 MSEK stay available
    p = position(db, fund)
    assert (p.committed, p.available) == (500_000_000, 4_500_000_000)
    # when it is terminated, the remainder is released
    with db.uow() as uow:
        contracts.terminate_contract(uow, actor=FM, contract_id=c.id, reason="Provider went bankrupt")
        uow.commit()
    p = position(db, fund)
    assert (p.committed, p.available) == (0, 5_000_000_000)
    with db.reading() as s:
        assert journal.verify(s).ok
        kinds = [t.kind for t in s.execute(select(journal.Transaction).order_by(journal.Transaction.sequence)).scalars()]
    assert kinds == ["CAPITAL_DEPOSIT", "COMMITMENT", "COMMITMENT_RELEASE"]


def test_activation_beyond_available_capital_is_refused_and_writes_nothing(db):
    fund, manager, muni, prov, ver = funded(db, FM, capital="1000000.00")
    c = contract(db, FM, fund, manager, muni, prov, ver, max_value="2000000.02")  # the fund's 50 %: 1 000 000.01
    before = table_counts(db)
    with pytest.raises(DomainError) as err, db.uow() as uow:
        contracts.activate_contract(uow, actor=FM, contract_id=c.id)
    assert err.value.code == "INSUFFICIENT_FUND_CAPITAL"
    assert table_counts(db) == before


def _create(db, fund, manager, muni, prov, **overrides):
    args = dict(
        title="T", fund_id=fund.id, municipality_id=muni.id, provider_id=prov.id, verifier_id=None, investor_id=None,
        policy_area="school", start_date=date(2026, 1, 1), end_date=date(2027, 1, 1),
        terms=TermsSpec(max_value=sek("1000.00"), participant_cap=None,
                        payer_shares=(ShareSpec(manager.id, Decimal(50)), ShareSpec(muni.id, Decimal(50))),
                        metrics=(rate_card(),)),
    )
    terms_over = {k: overrides.pop(k) for k in list(overrides) if k in ("max_value", "participant_cap", "payer_shares", "metrics")}
    args["terms"] = replace(args["terms"], **terms_over)
    args.update(overrides)
    with db.uow() as uow:
        return contracts.create_contract(uow, actor=FM, **args)


@pytest.mark.parametrize("case,code", [
    ("end_before_start", "INVALID_TERM"),
    ("shares_99", "SHARES_NOT_100"),
    ("payer_twice", "DUPLICATE_PAYER"),
    ("payer_is_provider", "INVALID_PAYER"),
    ("duplicate_metric", "DUPLICATE_METRIC_CODE"),
    ("zero_price", "NON_POSITIVE_PRICE"),
    ("other_currency", "CURRENCY_MISMATCH"),
    ("provider_wrong_role", "WRONG_PARTY_ROLE"),
    ("no_metrics", "NO_METRICS"),
    ("baseline_missing", "BASELINE_REQUIRED"),
    ("threshold_missing", "THRESHOLD_REQUIRED"),
    ("threshold_above_one", "INVALID_THRESHOLD"),
    ("bad_metric_code", "INVALID_METRIC_CODE"),
    ("unknown_fund", "UNKNOWN_FUND"),
])
def test_bad_contracts_are_refused_with_a_code_and_write_nothing(db, case, code):
    fund, manager, muni, prov, ver = funded(db, FM)
    base = MetricSpec(code="CARE_DAYS", name="Care days", kind="BASELINE_IMPROVEMENT", direction="LOWER_IS_BETTER",
                      unit_price=sek("1850.00"), baseline=Decimal(3650))
    over = {
        "end_before_start": dict(end_date=date(2025, 12, 31)),
        "shares_99": dict(payer_shares=(ShareSpec(manager.id, Decimal("49.00")), ShareSpec(muni.id, Decimal(50)))),
        "payer_twice": dict(payer_shares=(ShareSpec(muni.id, Decimal(50)), ShareSpec(muni.id, Decimal(50)))),
        "payer_is_provider": dict(payer_shares=(ShareSpec(prov.id, Decimal(100)),)),
        "duplicate_metric": dict(metrics=(rate_card(), rate_card())),
        "zero_price": dict(metrics=(rate_card(price="0.00"),)),
        "other_currency": dict(max_value=__import__("ledger.money", fromlist=["money"]).money("10.00", "EUR")),
        "provider_wrong_role": dict(provider_id=muni.id),
        "no_metrics": dict(metrics=()),
        "baseline_missing": dict(metrics=(replace(base, baseline=None),)),
        "threshold_missing": dict(metrics=(replace(base, kind="COMPARISON_THRESHOLD"),)),
        "threshold_above_one": dict(metrics=(replace(base, kind="COMPARISON_THRESHOLD", threshold=Decimal("1.5")),)),
        "bad_metric_code": dict(metrics=(rate_card(code="school pass"),)),
        "unknown_fund": dict(fund_id=999999),
    }[case]
    before = table_counts(db)
    with pytest.raises(DomainError) as err:
        _create(db, fund, manager, muni, prov, **over)
    assert err.value.code == code
    assert table_counts(db) == before


def test_every_ownership_form_gets_the_same_rules(db):
    fund, manager, muni, _, ver = funded(db, FM)
    for form in ("PRIVATE", "NONPROFIT", "PUBLIC_IN_HOUSE"):
        prov = party(db, role="PROVIDER", ownership=form)
        c = contract(db, FM, fund, manager, muni, prov, ver, max_value="1000.00", activate=True)
        assert c.status == "ACTIVE"


def test_illegal_lifecycle_steps_are_refused(db):
    fund, manager, muni, prov, ver = funded(db, FM)
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True)
    steps = [
        (lambda uow: contracts.activate_contract(uow, actor=FM, contract_id=c.id), "INVALID_TRANSITION"),
        (lambda uow: sanctions.lift_suspension(uow, actor=FM, contract_id=c.id, reason="x"), "NOT_SUSPENDED"),
    ]
    for step, code in steps:
        with pytest.raises(DomainError) as err, db.uow() as uow:
            step(uow)
        assert err.value.code == code
    with db.uow() as uow:
        contracts.terminate_contract(uow, actor=FM, contract_id=c.id, reason="end")
        uow.commit()
    before = table_counts(db)
    for step in (
        lambda uow: contracts.amend_contract(uow, actor=FM, contract_id=c.id, effective_date=date(2026, 6, 1), reason="x"),
        lambda uow: contracts.terminate_contract(uow, actor=FM, contract_id=c.id, reason="again"),
        lambda uow: sanctions.issue_sanction(uow, actor=FM, contract_id=c.id, level="WARNING", reason="late"),
    ):
        with pytest.raises(DomainError) as err, db.uow() as uow:
            step(uow)
        assert err.value.code in ("INVALID_TRANSITION", "CONTRACT_NOT_ACTIVE")
    assert table_counts(db) == before


def test_amendment_is_a_new_version_and_moves_the_commitment(db):
    fund, manager, muni, prov, ver = funded(db, FM, capital="12000000.00")
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True)
    # when maxValue is raised by 1 MSEK from July
    with db.uow() as uow:
        contracts.amend_contract(uow, actor=FM, contract_id=c.id, effective_date=date(2026, 7, 1),
                                 reason="Utökad målgrupp", max_value=sek("11000000.00"),
                                 metrics=[rate_card(price="45000.00")])
        uow.commit()
    # then both versions are readable and the fund's 50 % commitment grew
    with db.reading() as s:
        history = contracts.terms_history(s, c.id)
        assert [(t.version, t.effective_from) for t in history] == [(1, date(2026, 1, 1)), (2, date(2026, 7, 1))]
        assert history[0].metrics[0].unit_price_minor == 4_000_000 and history[1].metrics[0].unit_price_minor == 4_500_000
        assert contracts.terms_in_force(s, c.id, date(2026, 6, 30)).version == 1
        assert contracts.terms_in_force(s, c.id, date(2026, 7, 1)).version == 2
    assert position(db, fund).committed == 550_000_000
    # beyond what is available: refused
    with pytest.raises(DomainError) as err, db.uow() as uow:
        contracts.amend_contract(uow, actor=FM, contract_id=c.id, effective_date=date(2026, 8, 1), reason="more",
                                 max_value=sek("25000000.00"))
    assert err.value.code == "INSUFFICIENT_FUND_CAPITAL"
    for day, code in [(date(2030, 1, 1), "TERMS_OUTSIDE_CONTRACT"), (date(2026, 3, 1), "EFFECTIVE_DATE_BEFORE_CURRENT")]:
        with pytest.raises(DomainError) as err, db.uow() as uow:
            contracts.amend_contract(uow, actor=FM, contract_id=c.id, effective_date=day, reason="x")
        assert err.value.code == code


def test_the_database_refuses_edits_of_terms(db):
    fund, manager, muni, prov, ver = funded(db, FM)
    contract(db, FM, fund, manager, muni, prov, ver)
    for sql in ("UPDATE metrics SET unit_price_minor = 1", "DELETE FROM payer_shares",
                "UPDATE contract_terms SET max_value_minor = 1"):
        with db.uow() as uow, pytest.raises(Exception) as err:
            uow.session.execute(text(sql))
        assert "append-only" in str(err.value)


def test_sanction_ladder(db):
    fund, manager, muni, prov, ver = funded(db, FM)
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True)

    def issue(level, penalty=None):
        with db.uow() as uow:
            out = sanctions.issue_sanction(uow, actor=FM, contract_id=c.id, level=level, reason=f"{level} reason",
                                           penalty=penalty)
            uow.commit()
            return out

    assert issue("WARNING").penalty_minor is None
    # a penalty is an obligation of the provider to the municipality
    p = issue("PENALTY", sek("25000.00"))
    with db.reading() as s:
        owed = s.execute(select(Account).where(Account.code == chart.PAYABLE, Account.party_id == prov.id,
                                               Account.counterparty_id == muni.id)).scalar_one()
        assert owed.balance_minor == -2_500_000 and p.transaction_sequence
    for bad, code in [(dict(level="PENALTY"), "PENALTY_REQUIRED"),
                      (dict(level="WARNING", penalty=sek("1.00")), "PENALTY_NOT_ALLOWED"),
                      (dict(level="PENALTY", penalty=sek("-1.00")), "NON_POSITIVE_AMOUNT"),
                      (dict(level="STRIKE"), "INVALID_SANCTION_LEVEL")]:
        with pytest.raises(DomainError) as err, db.uow() as uow:
            sanctions.issue_sanction(uow, actor=FM, contract_id=c.id, reason="r", **bad)
        assert err.value.code == code
    issue("SUSPENSION")
    with db.reading() as s:
        assert contracts.get_contract(s, c.id).status == "SUSPENDED"
    with db.uow() as uow:
        sanctions.lift_suspension(uow, actor=FM, contract_id=c.id, reason="Rättat")
        uow.commit()
    issue("DEAUTHORISATION")
    with db.reading() as s:
        assert contracts.get_contract(s, c.id).status == "TERMINATED"
    assert position(db, fund).committed == 0


@pytest.mark.parametrize("role", ["ADMIN", "AUDITOR", "MUNICIPALITY", "PROVIDER", "VERIFIER"])
def test_only_fund_managers_run_fund_and_contract_use_cases(db, role):
    fund, manager, muni, prov, ver = funded(db, FM)
    c = contract(db, FM, fund, manager, muni, prov, ver)
    who = Actor("x", role, muni.id)
    calls = [
        lambda uow: funds.create_fund(uow, actor=who, name="F", manager_id=manager.id, currency="SEK"),
        lambda uow: funds.deposit_capital(uow, actor=who, fund_id=fund.id, amount=sek("1.00"),
                                          effective_date=date(2026, 1, 1), reference="r"),
        lambda uow: contracts.activate_contract(uow, actor=who, contract_id=c.id),
        lambda uow: contracts.terminate_contract(uow, actor=who, contract_id=c.id, reason="r"),
        lambda uow: sanctions.issue_sanction(uow, actor=who, contract_id=c.id, level="WARNING", reason="r"),
    ]
    for call in calls:
        with pytest.raises(DomainError) as err, db.uow() as uow:
            call(uow)
        assert err.value.code in ("PERMISSION_DENIED", "READ_ONLY_ROLE")


class FundLifecycle(RuleBasedStateMachine):
    """Any sequence of deposits, contract steps and sanctions keeps the fund's identities."""

    engine = None

    def __init__(self):
        super().__init__()
        self.conn = self.engine.connect()
        self.outer = self.conn.begin()
        self.db = Database(self.conn)
        self.fund, self.manager, self.muni, self.prov, self.ver = funded(self.db, FM, capital="1000.00")
        self.contracts = []

    def teardown(self):
        self.outer.rollback()
        self.conn.close()

    def _try(self, fn):
        try:
            with self.db.uow() as uow:
                fn(uow)
                uow.commit()
        except DomainError:
            pass

    @rule(amount=st.integers(1, 100_000))
    def deposit(self, amount):
        self._try(lambda uow: funds.deposit_capital(uow, actor=FM, fund_id=self.fund.id,
                                                    amount=__import__("ledger.money", fromlist=["m"]).from_minor(amount, "SEK"),
                                                    effective_date=date(2026, 1, 1), reference="more"))

    @rule(max_value=st.integers(1, 200_000))
    def create(self, max_value):
        c = contract(self.db, FM, self.fund, self.manager, self.muni, self.prov, self.ver,
                     max_value=str(Decimal(max_value) / 100))
        self.contracts.append(c.id)

    @precondition(lambda self: self.contracts)
    @rule(i=st.integers(0, 50), step=st.sampled_from(["activate", "terminate", "complete", "suspend", "lift", "amend", "penalty"]))
    def act(self, i, step):
        cid = self.contracts[i % len(self.contracts)]
        fn = {
            "activate": lambda uow: contracts.activate_contract(uow, actor=FM, contract_id=cid),
            "terminate": lambda uow: contracts.terminate_contract(uow, actor=FM, contract_id=cid, reason="r"),
            "complete": lambda uow: contracts.complete_contract(uow, actor=FM, contract_id=cid, reason="r"),
            "suspend": lambda uow: sanctions.issue_sanction(uow, actor=FM, contract_id=cid, level="SUSPENSION", reason="r"),
            "lift": lambda uow: sanctions.lift_suspension(uow, actor=FM, contract_id=cid, reason="r"),
            "amend": lambda uow: contracts.amend_contract(uow, actor=FM, contract_id=cid, effective_date=date(2026, 6, 1),
                                                          reason="r", max_value=sek(str(Decimal(i * 37) / 10 + 1))),
            "penalty": lambda uow: sanctions.issue_sanction(uow, actor=FM, contract_id=cid, level="PENALTY", reason="r",
                                                            penalty=sek("10.00")),
        }[step]
        self._try(fn)

    @invariant()
    def identities_hold(self):
        with self.db.reading() as s:
            p = chart.fund_position(s, self.fund.id)
            cash = s.execute(select(Account.balance_minor).where(Account.fund_id == self.fund.id,
                                                                  Account.code == chart.FUND_CASH)).scalar_one()
            # capital = committed + available + paidOut, and the fund is never over-committed
            assert p.capital == p.committed + p.available + p.paid_out
            assert p.available >= 0 and p.committed >= 0
            assert cash == p.capital
            # each live commitment is the fund's 50 % of its contract's maxValue; ended or draft ones hold nothing
            for cid in self.contracts:
                c = contracts.get_contract(s, cid)
                committed = s.execute(select(Account.balance_minor).where(
                    Account.contract_id == cid, Account.code == chart.FUND_COMMITTED)).scalar_one_or_none() or 0
                live = c.status in ("ACTIVE", "SUSPENDED")
                max_value = contracts.terms_in_force(s, cid).max_value_minor
                expected = (max_value + 1) // 2 if live else 0  # the odd öre goes to the first-listed share
                assert committed == expected


def test_property_fund_lifecycle_state_machine(engine):
    FundLifecycle.engine = engine
    FundLifecycle.TestCase.settings = hsettings(max_examples=15, stateful_step_count=15, deadline=None,
                                                suppress_health_check=list(HealthCheck))
    FundLifecycle.TestCase().runTest()
