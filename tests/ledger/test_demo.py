"""`utfall demo`: a newcomer gets a fund with every kind of data to explore, and a token per role."""
from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from ledger import chart, commitments, contracts, demo, forecast, journal
from ledger.models import OutcomesFund, Evidence, OutcomeContract, Participant, Party, Payment, PayoutCalculation, PayoutLine, Sanction


def test_the_demo_has_what_the_walkthrough_needs(db):
    # when
    issued = demo.load(db, today=date(2026, 11, 23), secret=b"demo-test-secret-0123456789")
    # then
    assert {t.role for t in issued} == {"ADMIN", "FUND_MANAGER", "MUNICIPALITY", "PROVIDER", "VERIFIER", "AUDITOR",
                                          "INVESTOR"}
    with db.reading() as s:
        count = lambda stmt: s.execute(stmt).scalar_one()  # noqa: E731
        assert count(select(func.count()).select_from(OutcomeContract)) == 3
        assert {r for (r,) in s.execute(select(Party.ownership).where(Party.role == "PROVIDER"))} == \
            {"PRIVATE", "NONPROFIT", "PUBLIC_IN_HOUSE"}
        assert 450 <= count(select(func.count()).select_from(Participant)) <= 550
        statuses = dict(s.execute(select(Evidence.status, func.count()).group_by(Evidence.status)).all())
        assert statuses["VERIFIED"] > 100 and statuses["REJECTED"] > 0 and statuses["INVALIDATED"] == 1
        assert count(select(func.count()).select_from(PayoutCalculation).where(PayoutCalculation.status == "POSTED")) == 6
        assert count(select(func.count()).select_from(PayoutLine).where(PayoutLine.kind == "CLAWBACK")) == 1
        assert count(select(func.count()).select_from(Payment)) > 0
        assert count(select(func.count()).select_from(Sanction)) == 1
        fund_id = s.execute(select(OutcomesFund.id).where(OutcomesFund.name == demo.DEMO_FUND)).scalar_one()
        position = chart.fund_position(s, fund_id)
        assert position.capital == 5_000_000_000 and position.paid_out > 0
        assert journal.verify(s).ok
        # issue 12: schedules with a run-off, a three-payer contract and a terminated one
        rows = {c.title: c for c in s.execute(select(OutcomeContract)).scalars()}
        school = rows["Fullständiga betyg i Umeå"]
        assert school.payment_frequency == "HALF_YEARLY" and school.service_end_date < school.end_date
        assert len(contracts.terms_in_force(s, school.id).payer_shares) == 3
        assert rows["Minskat återfall i brott i Gävle"].status == "TERMINATED"
        assert all(v >= 0 for v in commitments.current(s, school.id).values())
        lines = forecast.forecast(s, fund_id=fund_id, today=date(2026, 11, 23))
        assert {x.contract_id for x in lines} == {school.id, rows["Färre vårddygn i Malmö"].id}
    # loading again adds no second fund, only fresh tokens
    before = journal.digest(db.read_session())
    again = demo.load(db, today=date(2026, 11, 23), secret=b"demo-test-secret-0123456789")
    assert len(again) == len(issued)
    with db.reading() as s:
        assert journal.digest(s) == before
