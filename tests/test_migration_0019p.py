"""Migration 0019p on a database with payouts made before it: the payout items table loses its
keys to evidence, measurements and participants, and every old item stays readable, traceable
(evidence → payout) and auditable (the payout recomputes to the same figures)."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic import command

from ledger import calculations, journal, schema
from ledger import evidence as ev
from ledger.access import Actor
from ledger.db import Database, make_engine
from ledger.models import PayoutCalculation
from tests.conftest import BACKENDS, drop_pg_database, empty_database_url
from tests.factories import contract, funded, rate_card, sek
from tests.legacy_payout_items import inputs_in_payout_rows, items_as_rows

FM, FM2 = Actor("frida", "FUND_MANAGER"), Actor("gustav", "FUND_MANAGER")
SECRET = b"test-secret-for-hmac-0123456789"
TODAY = date(2026, 11, 23)
ITEM_COLUMNS = ("id, payout_id, kind, evidence_id, measurement_id, participant_id, metric_code, gross_minor, "
                "capped_minor, net_minor")


@pytest.fixture(params=BACKENDS)
def old_url(request, tmp_path):
    url, pg_name = empty_database_url(request.param, tmp_path, "utfall_m19p")
    yield url
    if pg_name:
        drop_pg_database(pg_name)


def _paid_and_clawed_back(db: Database) -> tuple[int, list[int]]:
    """Case A's evidence paid (caps bind), then one item invalidated and clawed back: both posted."""
    fund, manager, muni, prov, ver = funded(db, FM)
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True, participant_cap=sek("50000.00"),
                 metrics=(rate_card("SCHOOL_PASS", "40000.00", once_only=True,
                                    area_supplements=(("RURAL", Decimal(15)),)),
                          rate_card("ATTENDANCE", "12500.00", cap_per_participant=sek("25000.00"))))
    provider, verifier = Actor("pia", "PROVIDER", prov.id), Actor("vera", "VERIFIER", ver.id)
    with db.uow() as uow:
        people = {name: ev.enroll_participant(uow, actor=provider, secret=SECRET, contract_id=c.id,
                                              personal_identity_number=None, external_ref=name, area=area,
                                              enrolled_on=date(2026, 1, 10), today=TODAY)
                  for name, area in (("P1", "URBAN"), ("P2", "RURAL"))}
        items = []
        for who, code, day in (("P1", "SCHOOL_PASS", 1), ("P1", "ATTENDANCE", 2), ("P1", "ATTENDANCE", 3),
                               ("P1", "ATTENDANCE", 4), ("P2", "SCHOOL_PASS", 5), ("P2", "ATTENDANCE", 6)):
            e = ev.submit_evidence(uow, actor=provider, contract_id=c.id, today=TODAY,
                                   claim=ev.Claim(people[who].id, code, achieved_on=date(2026, 3, day)))
            ev.verify_evidence(uow, actor=verifier, evidence_id=e.id, note=None)
            items.append(e.id)
        uow.commit()
    payouts = []
    for start, end in ((date(2026, 1, 1), date(2026, 6, 30)), (date(2026, 7, 1), date(2026, 12, 31))):
        if payouts:
            with db.uow() as uow:
                ev.invalidate_evidence(uow, actor=verifier, evidence_id=items[-1], reason="Närvarolistan var falsk")
                uow.commit()
        with db.uow() as uow:
            p = calculations.calculate_payout(uow, actor=FM, contract_id=c.id, period_start=start, period_end=end)
            uow.commit()
        with db.uow() as uow:
            calculations.approve_payout(uow, actor=FM2, payout_id=p.id)
            uow.commit()
        payouts.append(p.id)
    return c.id, payouts


def test_old_payout_items_stay_readable_traceable_and_auditable(old_url):
    command.upgrade(schema.alembic_config(old_url), "0018c")
    engine = make_engine(old_url)
    db = Database(engine)
    with items_as_rows(), inputs_in_payout_rows():  # as payouts were recorded before 0020p
        contract_id, payout_ids = _paid_and_clawed_back(db)
    with engine.connect() as conn:
        before = conn.execute(sa.text(f"SELECT {ITEM_COLUMNS} FROM payout_items ORDER BY id")).all()
    assert {r.kind for r in before} == {"OUTCOME", "CLAWBACK"} and len(before) == 7
    # when the database is migrated
    schema.upgrade(old_url)
    with engine.connect() as conn:
        # then every item is there, unchanged
        after = conn.execute(sa.text(f"SELECT {ITEM_COLUMNS} FROM payout_items ORDER BY id")).all()
        assert after == before
        # without a foreign key checked per item
        assert sa.inspect(conn).get_foreign_keys("payout_items") == []
        if conn.dialect.name == "postgresql":  # new recorded inputs are compressed with lz4 (this server has it;
            # since 0021p they are in payout_inputs)
            assert conn.execute(sa.text("SELECT attcompression FROM pg_attribute WHERE attrelid = "
                                        "'payout_inputs'::regclass AND attname = 'inputs'")).scalar() == "l"
        payout_id = after[0].payout_id
    # but they stay append-only, an item still names a payout that exists, and no payout
    # with items (none at all) can be deleted
    for change in ("UPDATE payout_items SET net_minor = 0", "DELETE FROM payout_items",
                   "INSERT INTO payout_items (payout_id, kind, metric_code, gross_minor, capped_minor, net_minor) "
                   "VALUES (999999, 'OUTCOME', 'ATTENDANCE', 1, 0, 1)",
                   f"DELETE FROM payouts WHERE id = {payout_id}"):
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.execute(sa.text(change))
    # an INSERT of many rows is refused whole if one names no payout
    with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO payout_items (payout_id, kind, metric_code, gross_minor, capped_minor, "
                             "net_minor) VALUES (:p, 'OUTCOME', 'A', 1, 0, 1), (999999, 'OUTCOME', 'A', 1, 0, 1)"),
                     {"p": payout_id})
    with engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT {ITEM_COLUMNS} FROM payout_items ORDER BY id")).all() == before
    with db.reading() as s:
        # an auditor recomputes each old payout from its recorded inputs to the same figures
        for pid in payout_ids:
            assert calculations.recompute(s, s.get(PayoutCalculation, pid)).matches
        assert journal.verify(s).ok
    # evidence → payout: the old payouts' items still count as paid, so nothing is paid twice
    with db.uow() as uow:
        again = calculations.calculate_payout(uow, actor=FM, contract_id=contract_id, period_start=date(2026, 1, 1),
                                              period_end=date(2026, 6, 30))
        uow.commit()
    assert again.total_minor == 0 and again.lines == []
    engine.dispose()
