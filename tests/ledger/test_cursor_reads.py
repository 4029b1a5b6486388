"""Hot reads on the driver's cursor (ledger.cursor_reads) give exactly the rows SQLAlchemy's Core execute gives:
the same values, converted the same way (dates and timestamps on SQLite, UTC timestamps, exact decimals)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from sqlalchemy import Boolean, Column, Date, Integer, MetaData, String, Table, Text, bindparam, delete, insert, select

from ledger.cursor_reads import ConvertedOnRead, CursorQuery, child_page
from ledger.models.base import DecimalText, UTCDateTime

metadata = MetaData()
probe = Table("cursor_reads_probe", metadata,
              Column("id", Integer, primary_key=True), Column("parent", Integer), Column("label", String(40)),
              Column("day", Date), Column("at", UTCDateTime()), Column("amount", DecimalText()),
              Column("flag", Boolean), Column("note", Text), Column("status", String(20)))

rows = st.lists(st.fixed_dictionaries({
    "parent": st.integers(1, 3),
    "label": st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20),
    "day": st.none() | st.dates(date(1900, 1, 1), date(2999, 12, 31)),
    "at": st.none() | st.datetimes(datetime(1900, 1, 2), datetime(2999, 12, 30),
                                   timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=2)),
                                                              timezone(timedelta(hours=-5, minutes=-30))])),
    "amount": st.none() | st.decimals(min_value=-10**9, max_value=10**9, places=2),
    "flag": st.none() | st.booleans(),
    "note": st.none() | st.just("") | st.text(max_size=5).filter(lambda t: "\x00" not in t),
    "status": st.sampled_from(["SUBMITTED", "VERIFIED"]),
}), max_size=12)


def _fill(conn, given_rows) -> None:
    metadata.create_all(conn)
    conn.execute(delete(probe))
    for i, row in enumerate(given_rows, start=1):
        conn.execute(insert(probe).values(id=i, **row))


def _filled_with(conn, given_rows):
    """The probe table holding `given_rows`; the SELECT of one parent's rows (parameter `parent`)."""
    _fill(conn, given_rows)
    return select(probe).where(probe.c.parent == bindparam("parent")).order_by(probe.c.id)


def one_parent(test):
    """A property over the rows of one parent among given rows."""
    return hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])(
        given(given_rows=rows, parent=st.integers(1, 3))(test))


@one_parent
def test_a_cursor_query_gives_the_rows_core_gives(db, given_rows, parent):
    with db.reading() as s:
        conn = s.connection()
        stmt = _filled_with(conn, given_rows)
        assert CursorQuery(stmt).rows(conn, {"parent": parent}) == \
            [tuple(r) for r in conn.execute(stmt, {"parent": parent}).all()]
        found = CursorQuery(stmt).rows(conn, {"parent": parent})
        assert all(isinstance(r[3], (date, type(None))) and isinstance(r[5], (Decimal, type(None))) for r in found)
        assert all(r[4] is None or r[4].tzinfo is timezone.utc for r in found)


class _ProbeOfRow:
    """Columns of a probe row converted when read, as the evidence items of a contract's page are."""
    day = ConvertedOnRead(3)
    at = ConvertedOnRead(4)
    amount = ConvertedOnRead(5)

    def __init__(self, row, conversions):
        self._row, self._conversions = row, conversions


@one_parent
def test_lazy_columns_converted_on_read_are_the_values_core_gives(db, given_rows, parent):
    with db.reading() as s:
        conn = s.connection()
        stmt = _filled_with(conn, given_rows)
        query = CursorQuery(stmt, lazy=frozenset({"day", "at", "amount"}))
        core = [tuple(r) for r in conn.execute(stmt, {"parent": parent}).all()]
        lazy = query.rows(conn, {"parent": parent})
        eager = [r[:3] + r[6:] for r in core]
        assert [r[:3] + r[6:] for r in lazy] == eager  # the other columns converted as before
        conversions = query.conversions(conn.dialect)
        for row, expected in zip(lazy, core):
            item = _ProbeOfRow(row, conversions)
            for _ in range(2):  # converted on the first read, kept for the next
                assert (item.day, item.at, item.amount) == expected[3:6]
                assert item.at is None or item.at.tzinfo is timezone.utc
            assert {"day", "at", "amount"} <= set(vars(item))


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(given_rows=rows, parent=st.integers(1, 3), after=st.none() | st.integers(0, 12),
       before=st.none() | st.integers(0, 13), backward=st.booleans(), limit=st.integers(1, 5),
       status=st.none() | st.sampled_from(["SUBMITTED", "VERIFIED"]))
def test_a_child_page_is_the_page_core_selects(db, given_rows, parent, after, before, backward, limit, status):
    with db.reading() as s:
        conn = s.connection()
        _fill(conn, given_rows)
        filters = {"status": status} if status else {}
        page = child_page(probe, probe.c.parent, tuple(filters), after=after is not None, before=before is not None,
                          backward=backward, limit=limit)
        stmt = select(probe).where(probe.c.parent == parent)
        if status:
            stmt = stmt.where(probe.c.status == status)
        if after is not None:
            stmt = stmt.where(probe.c.id > after)
        if before is not None:
            stmt = stmt.where(probe.c.id < before)
        stmt = stmt.order_by(probe.c.id.desc() if backward else probe.c.id).limit(limit)
        assert page.rows(conn, {"parent": parent, "after": after, "before": before, **filters}) == \
            [tuple(r) for r in conn.execute(stmt).all()]


def test_a_contract_row_on_the_cursor_is_visible_to_exactly_whom_visible_contracts_lets_see_it(db):
    from ledger import demo
    from ledger.access import Actor
    from ledger.models import OutcomeContract, Party
    from ledger.models.parties import TOKEN_ROLES
    from ledger.reads import visible_contract_row, visible_contracts
    demo.load(db, today=date(2026, 11, 23), secret=b"cursor-reads-secret-0123456789")
    with db.reading() as s:
        conn = s.connection()
        contracts = [c for (c,) in conn.execute(select(OutcomeContract.id))]
        parties = [p for (p,) in conn.execute(select(Party.id))]
        assert contracts and parties
        seen = 0
        for role in TOKEN_ROLES:
            for party in [None, *parties]:
                actor = Actor(name="someone", role=role, party_id=party)
                for contract_id in [*contracts, max(contracts) + 1]:
                    stmt = select(OutcomeContract.__table__).where(OutcomeContract.id == contract_id)
                    clause = visible_contracts(actor)
                    expected = conn.execute(stmt if clause is None else stmt.where(clause)).first()
                    found = visible_contract_row(conn, actor, contract_id)
                    assert (None if expected is None else tuple(expected)) == (None if found is None else tuple(found))
                    if found is not None:
                        assert found.id == contract_id and found.title == expected.title
                        seen += 1
        assert seen > len(contracts)  # some see them all, some only their own
