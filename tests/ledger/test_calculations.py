"""Payouts through the database: Case A end to end, four eyes, posting, obligations, payments, clawback."""
from __future__ import annotations

import hashlib
from datetime import date
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import event, select, text

from ledger import calculations, chart, contracts, journal, payouts, sanctions, settlement
from ledger import evidence as ev
from ledger.access import Actor
from ledger.contracts import ShareSpec
from ledger.errors import DomainError
from ledger.models import PayoutRecordedInputs
from tests.conftest import table_counts
from tests.factories import contract, funded, rate_card, sek

FM = Actor("frida", "FUND_MANAGER")
FM2 = Actor("gustav", "FUND_MANAGER")
SECRET = b"test-secret-for-hmac-0123456789"
TODAY = date(2026, 11, 23)


@pytest.fixture
def case_a(db):
    """PAYOUTS.md Case A: the rate card with caps, a rural supplement and a 50/50 split."""
    fund, manager, muni, prov, ver = funded(db, FM)
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True, participant_cap=sek("50000.00"),
                 metrics=(rate_card("SCHOOL_PASS", "40000.00", once_only=True, area_supplements=(("RURAL", Decimal(15)),)),
                          rate_card("ATTENDANCE", "12500.00", cap_per_participant=sek("25000.00"),
                                    area_supplements=(("RURAL", Decimal(15)),))))
    provider, verifier = Actor("pia", "PROVIDER", prov.id), Actor("vera", "VERIFIER", ver.id)
    people = {}
    with db.uow() as uow:
        for name, area in (("P1", "URBAN"), ("P2", "RURAL"), ("P3", "URBAN")):
            people[name] = ev.enroll_participant(uow, actor=provider, secret=SECRET, contract_id=c.id,
                                                 personal_identity_number=None, external_ref=name, area=area,
                                                 enrolled_on=date(2026, 1, 10), today=TODAY)
        claims = [("P1", "SCHOOL_PASS", 1), ("P1", "ATTENDANCE", 2), ("P1", "ATTENDANCE", 3), ("P1", "ATTENDANCE", 4),
                  ("P2", "SCHOOL_PASS", 5), ("P2", "ATTENDANCE", 6), ("P3", "ATTENDANCE", 7)]
        items = []
        for who, code, day in claims:
            e = ev.submit_evidence(uow, actor=provider, contract_id=c.id, today=TODAY,
                                   claim=ev.Claim(people[who].id, code, achieved_on=date(2026, 3, day)))
            ev.verify_evidence(uow, actor=verifier, evidence_id=e.id, note=None)
            items.append(e)
        uow.commit()
    return dict(fund=fund, manager=manager, muni=muni, prov=prov, ver=ver, contract=c, people=people, items=items,
                provider=provider, verifier=verifier)


def calc(db, w, start=date(2026, 1, 1), end=date(2026, 6, 30), actor=FM):
    with db.uow() as uow:
        p = calculations.calculate_payout(uow, actor=actor, contract_id=w["contract"].id, period_start=start, period_end=end)
        uow.commit()
    return p


def approve(db, payout, actor=FM2):
    with db.uow() as uow:
        p = calculations.approve_payout(uow, actor=actor, payout_id=payout.id)
        uow.commit()
    return p


def owed(db, debtor, creditor, contract_id):
    with db.reading() as s:
        rows = settlement.obligations(s, debtor_id=debtor.id, creditor_id=creditor.id, contract_id=contract_id)
    return sum(o.outstanding_minor for o in rows)


def test_case_a_through_the_database_posts_the_obligations(db, case_a):
    w = case_a
    # when
    p = calc(db, w)
    # then the figures of PAYOUTS.md Case A
    assert p.status == "CALCULATED" and p.total_minor == 11_250_000
    assert [(s.party_id, s.amount_minor) for s in p.shares] == [(w["manager"].id, 5_625_000), (w["muni"].id, 5_625_000)]
    # P1: 40 000 + 10 000 (participant cap); P2: 46 000 + 4 000; P3: 12 500
    assert {(x.metric_code, x.kind, x.net_minor) for x in p.lines} == {
        ("SCHOOL_PASS", "OUTCOME", 8_600_000), ("ATTENDANCE", "OUTCOME", 2_650_000)}
    assert sum(x.gross_minor for x in p.lines) == 4_000_000 + 4_600_000 + 3 * 1_250_000 + 1_437_500 + 1_250_000
    # four eyes
    with pytest.raises(DomainError) as err:
        approve(db, p, actor=FM)
    assert err.value.code == "FOUR_EYES_REQUIRED"
    posted = approve(db, p)
    assert posted.status == "POSTED" and posted.transaction_sequence
    # the ledger: each payer owes the provider its share; the fund's commitment is drawn down
    assert owed(db, w["manager"], w["prov"], w["contract"].id) == 5_625_000
    assert owed(db, w["muni"], w["prov"], w["contract"].id) == 5_625_000
    with db.reading() as s:
        pos = chart.fund_position(s, w["fund"].id)
        assert (pos.paid_out, pos.committed) == (5_625_000, 500_000_000 - 5_625_000)  # the fund commits its 50 % of 10 MSEK
        assert pos.capital == pos.committed + pos.available + pos.paid_out
        assert journal.verify(s).ok
        assert calculations.recompute(s, calculations.get_payout(s, p.id)).matches
    # approving twice, or the same evidence again, pays nothing more
    with pytest.raises(DomainError) as err:
        approve(db, p)
    assert err.value.code == "ALREADY_POSTED"
    again = calc(db, w)
    assert again.total_minor == 0 and again.lines == []


def test_recalculating_supersedes_and_a_superseded_payout_cannot_be_approved(db, case_a):
    first = calc(db, case_a)
    second = calc(db, case_a)
    with db.reading() as s:
        assert calculations.get_payout(s, first.id).status == "SUPERSEDED"
    with pytest.raises(DomainError) as err:
        approve(db, first)
    assert err.value.code == "PAYOUT_SUPERSEDED"
    assert approve(db, second).status == "POSTED"


def test_a_payout_calculated_before_another_was_posted_is_stale(db, case_a):
    a = calc(db, case_a, end=date(2026, 3, 3))
    b = calc(db, case_a, start=date(2026, 3, 4), end=date(2026, 3, 31))
    approve(db, a)
    before = table_counts(db)
    with pytest.raises(DomainError) as err:
        approve(db, b)
    assert err.value.code == "STALE_PAYOUT"
    assert table_counts(db) == before


def test_clawback_payments_and_negative_totals(db, case_a):
    w = case_a
    approve(db, calc(db, w))
    # the municipality pays part of its debt, then the rest; paying more is refused
    muni_actor = Actor("mona", "MUNICIPALITY", w["muni"].id)
    pay = lambda units, actor=muni_actor, debtor=w["muni"], creditor=w["prov"]: settlement.record_payment(  # noqa: E731
        uow, actor=actor, debtor_id=debtor.id, creditor_id=creditor.id, contract_id=w["contract"].id,
        amount=__import__("ledger.money", fromlist=["m"]).from_minor(units, "SEK"), paid_on=date(2026, 7, 10),
        reference="Faktura 17")
    with db.uow() as uow:
        pay(5_000_000)
        uow.commit()
    assert owed(db, w["muni"], w["prov"], w["contract"].id) == 625_000
    for units, kw, code in [(625_001, {}, "OVERPAYMENT"),
                            (100, dict(debtor=w["prov"], creditor=w["muni"], actor=FM), "NO_OBLIGATION"),
                            (100, dict(debtor=w["manager"]), "PERMISSION_DENIED")]:
        with pytest.raises(DomainError) as err, db.uow() as uow:
            pay(units, **kw)
        assert err.value.code == code
    with db.uow() as uow:
        pay(625_000)
        uow.commit()
    assert owed(db, w["muni"], w["prov"], w["contract"].id) == 0
    # P3's attendance (12 500.00, paid in full) turns out false: the next payout claws it back
    p3_item = w["items"][-1]
    with db.uow() as uow:
        ev.invalidate_evidence(uow, actor=w["verifier"], evidence_id=p3_item.id, reason="Närvarolistan var falsk")
        uow.commit()
    claw = calc(db, w, start=date(2026, 7, 1), end=date(2026, 12, 31))
    assert [(x.kind, x.net_minor) for x in claw.lines] == [("CLAWBACK", -1_250_000)]
    assert claw.total_minor == -1_250_000
    assert [s.amount_minor for s in claw.shares] == [-625_000, -625_000]
    approve(db, claw)
    # the municipality had paid in full: now the provider owes it; the fund's share nets
    # against the fund's unpaid debt to the provider
    assert owed(db, w["prov"], w["muni"], w["contract"].id) == 625_000
    assert owed(db, w["manager"], w["prov"], w["contract"].id) == 5_625_000 - 625_000
    with db.reading() as s:
        pos = chart.fund_position(s, w["fund"].id)
        assert pos.paid_out == 5_625_000 - 625_000
        assert journal.verify(s).ok
    # a clawback is made once
    assert calc(db, w, start=date(2026, 7, 1), end=date(2026, 12, 31)).lines == []


def test_bad_payout_requests_write_nothing(db, case_a):
    w = case_a
    before = table_counts(db)
    cases = [
        (dict(period_start=date(2026, 6, 1), period_end=date(2026, 5, 1)), "INVALID_PERIOD"),
        (dict(period_start=date(2030, 1, 1), period_end=date(2030, 6, 1)), "PERIOD_OUTSIDE_TERM"),
    ]
    for kw, code in cases:
        with pytest.raises(DomainError) as err, db.uow() as uow:
            calculations.calculate_payout(uow, actor=FM, contract_id=w["contract"].id, **kw)
        assert err.value.code == code
    for role in ("AUDITOR", "PROVIDER", "MUNICIPALITY", "VERIFIER", "ADMIN"):
        with pytest.raises(DomainError) as err, db.uow() as uow:
            calculations.calculate_payout(uow, actor=Actor("x", role, w["prov"].id), contract_id=w["contract"].id,
                                          period_start=date(2026, 1, 1), period_end=date(2026, 6, 30))
        assert err.value.code in ("PERMISSION_DENIED", "READ_ONLY_ROLE")
    assert table_counts(db) == before
    # a suspended contract is not paid; a terminated one is paid only for periods before its end
    with db.uow() as uow:
        sanctions.issue_sanction(uow, actor=FM, contract_id=w["contract"].id, level="SUSPENSION", reason="Brister")
        uow.commit()
    with pytest.raises(DomainError) as err:
        calc(db, w)
    assert err.value.code == "CONTRACT_SUSPENDED"
    with db.uow() as uow:
        contracts.terminate_contract(uow, actor=FM, contract_id=w["contract"].id, reason="Avslutat")
        uow.commit()
    with pytest.raises(DomainError) as err:
        calc(db, w, start=date(2027, 1, 1), end=date(2027, 6, 30))
    assert err.value.code == "CONTRACT_ENDED"
    assert calc(db, w).total_minor == 11_250_000


def test_recorded_inputs_read_back_exactly(db, case_a):
    p = calc(db, case_a)
    inputs = payouts.inputs_from_canonical(p.inputs)
    assert payouts.canonical_inputs(inputs).decode() == p.inputs
    assert payouts.inputs_hash(inputs) == p.inputs_hash


def test_the_payout_as_stored_is_the_payout_returned(db, case_a):
    # the payout's row is written before the engine has its total (its inputs are stored while
    # the engine caps) and its lines and shares are not read back: what is committed must be
    # what the calculation returned, and recompute from it
    p = calc(db, case_a)
    with db.reading() as s:
        again = calculations.get_payout(s, p.id)
        assert (again.total_minor, again.inputs_hash, again.terms_version, again.status) == (
            p.total_minor, p.inputs_hash, p.terms_version, "CALCULATED")
        assert p.total_minor > 0
        assert [(x.position, x.metric_code, x.net_minor, x.caps) for x in again.lines] == [
            (x.position, x.metric_code, x.net_minor, x.caps) for x in p.lines]
        assert [(x.party_id, x.amount_minor) for x in again.shares] == [(x.party_id, x.amount_minor) for x in p.shares]
        assert sum(x.amount_minor for x in again.shares) == again.total_minor
        assert calculations.recompute(s, again).matches


def test_measurements_are_read_only_where_they_can_matter(db, case_a):
    """A rate-card contract without a posted payout reads no measurement (two statements fewer
    for the usual large payout); once a payout is posted, the adjustments are looked for again."""
    statements: list[str] = []

    def on_execute(_conn, _cursor, statement, *_args):
        statements.append(statement)

    def gathered() -> list[str]:
        statements.clear()
        event.listen(db.engine, "before_cursor_execute", on_execute)
        try:
            with db.reading() as s:
                c = contracts.get_contract(s, case_a["contract"].id)
                calculations.gather_inputs(s, c, date(2026, 1, 1), date(2026, 6, 30))
        finally:
            event.remove(db.engine, "before_cursor_execute", on_execute)
        return [x for x in statements if "FROM measurements" in x]

    assert gathered() == []
    approve(db, calc(db, case_a))
    assert len(gathered()) == 1  # the adjustments of paid measurements; still no CURRENT ones (no measured metric)
    assert calc(db, case_a).total_minor == 0


def test_a_draft_contract_is_not_paid_and_a_payment_must_be_in_its_currency(db):
    fund, manager, muni, prov, ver = funded(db, FM)
    draft = contract(db, FM, fund, manager, muni, prov, ver)
    with pytest.raises(DomainError) as err, db.uow() as uow:
        calculations.calculate_payout(uow, actor=FM, contract_id=draft.id, period_start=date(2026, 1, 1),
                                      period_end=date(2026, 6, 30))
    assert err.value.code == "CONTRACT_NOT_ACTIVE"
    from ledger import money as m
    with pytest.raises(DomainError) as err, db.uow() as uow:
        settlement.record_payment(uow, actor=FM, debtor_id=muni.id, creditor_id=prov.id, contract_id=draft.id,
                                  amount=m.money("10.00", "EUR"), paid_on=date(2026, 7, 1), reference="r")
    assert err.value.code == "CURRENCY_MISMATCH"


def test_recorded_inputs_are_a_row_of_their_own_and_a_failed_calculation_writes_none(db, case_a, monkeypatch):
    w = case_a
    before = table_counts(db)
    # the engine fails: no payout and no recorded inputs are kept
    with monkeypatch.context() as mp:
        mp.setattr(payouts, "_calculate_minor_units", lambda *a, **kw: 1 / 0)
        with pytest.raises(ZeroDivisionError), db.uow() as uow:
            calculations.calculate_payout(uow, actor=FM, contract_id=w["contract"].id,
                                          period_start=date(2026, 1, 1), period_end=date(2026, 6, 30))
    assert table_counts(db) == before
    # otherwise a payout's inputs are one row of payout_inputs, under the payout's id, which
    # hash to its inputs hash and stay as they were when it is superseded
    p = calc(db, w)
    added = {k: v - before[k] for k, v in table_counts(db).items() if v != before[k]}
    assert added["payout_inputs"] == 1 and added["payouts"] == 1
    calc(db, w)
    with db.reading() as s:
        recorded = s.execute(select(PayoutRecordedInputs.inputs).where(PayoutRecordedInputs.payout_id == p.id)
                             ).scalar_one()
        again = calculations.get_payout(s, p.id)
        assert again.status == "SUPERSEDED" and recorded == p.inputs == again.inputs
    assert hashlib.sha256(recorded.encode("utf-8")).hexdigest() == p.inputs_hash


def test_recorded_inputs_must_name_a_payout(db):
    # (their append-only triggers are tested by tests/test_migration_0021p.py)
    with pytest.raises(Exception, match="(?i)foreign key"):
        with db.uow() as uow:
            uow.session.execute(text("INSERT INTO payout_inputs (payout_id, inputs) VALUES (999999, '{}')"))
            uow.commit()


def test_the_evidence_streams_in_chunks_as_it_did_row_by_row(db, case_a, monkeypatch):
    # PostgreSQL: a chunk of rows at a time through psycopg's loader; the same columns as
    # Cursor.stream gives row by row, over several chunks, and a stream left by an error mid-way
    # leaves the transaction usable (SQLite reads through fetchmany, unchanged)
    w = case_a
    monkeypatch.setattr(calculations, "_STREAM_CHUNK", 2)

    def gathered():
        with db.reading() as s:
            c = calculations.get_contract(s, w["contract"].id)
            return calculations.gather_inputs(s, c, date(2026, 1, 1), date(2026, 6, 30)).evidence

    chunked = gathered()
    assert chunked.evidence_ids == sorted(x.id for x in w["items"])

    def row_by_row(cursor, sql, params):
        yield cursor.stream(sql, params, size=calculations._STREAM_CHUNK)

    monkeypatch.setattr(calculations, "_stream_chunks", row_by_row)
    assert gathered() == chunked
    monkeypatch.undo()
    monkeypatch.setattr(calculations, "_STREAM_CHUNK", 2)
    if db.engine.dialect.name != "postgresql" or not calculations._CHUNKED_ROWS:
        return

    class Stop(Exception):
        pass

    with db.reading() as s:
        cursor = s.connection().connection.driver_connection.cursor()
        sql = "SELECT id FROM evidence WHERE contract_id = %s ORDER BY id"
        with pytest.raises(Stop):
            for chunk in calculations._stream_chunks(cursor, sql, (w["contract"].id,)):
                assert len(chunk) == 2
                raise Stop
        cursor.close()
        # the rest of the result read (or the query cancelled): the connection takes a statement
        # again (a cancelled query leaves the transaction to be rolled back, as Cursor.stream does)
        assert cursor.connection.pgconn.transaction_status != psycopg.pq.TransactionStatus.ACTIVE
