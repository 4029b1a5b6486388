"""Migration 0020p on a database with payouts made before it: their items stay rows and read
exactly as before, beside the item blocks new payouts write; what they paid counts as paid,
and an item they paid is clawed back by a new payout, traced evidence → payout across both."""
from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa
from alembic import command

from ledger import calculations, journal, payout_items, schema
from ledger import evidence as ev
from ledger.access import Actor
from ledger.db import Database, make_engine
from ledger.models import OutcomeContract, PayoutCalculation
from tests.factories import payout
from tests.legacy_payout_items import inputs_in_payout_rows, items_as_rows
from tests.test_migration_0019p import FM, FM2, ITEM_COLUMNS, _paid_and_clawed_back
from tests.test_migration_0019p import old_url  # noqa: F401  (the fixture: an empty database of each backend)

H1, H2 = (date(2026, 1, 1), date(2026, 6, 30)), (date(2026, 7, 1), date(2026, 12, 31))


def _pay(db, contract_id, period, approve=True):
    return payout(db, FM, contract_id, period, approver=FM2 if approve else None)


def test_old_payout_items_stay_rows_and_read_beside_new_blocks(old_url):
    command.upgrade(schema.alembic_config(old_url), "0019p")
    engine = make_engine(old_url)
    db = Database(engine)
    with items_as_rows(), inputs_in_payout_rows():  # as payouts were recorded and read before 0020p
        contract_id, old_payouts = _paid_and_clawed_back(db)
        with db.reading() as s:
            old_read = payout_items.rows_of(s, old_payouts)
    with engine.connect() as conn:
        before = conn.execute(sa.text(f"SELECT {ITEM_COLUMNS} FROM payout_items ORDER BY id")).all()
    with db.reading() as s:
        paid_evidence = sorted({r.evidence_id for r in before if r.kind == "OUTCOME"})
    assert len(before) == 7
    # when the database is migrated
    schema.upgrade(old_url)
    with engine.connect() as conn:
        # then no row is changed or moved, and the old payouts read exactly as before
        assert conn.execute(sa.text(f"SELECT {ITEM_COLUMNS} FROM payout_items ORDER BY id")).all() == before
        assert conn.execute(sa.text("SELECT count(*) FROM payout_item_blocks")).scalar() == 0
    with db.reading() as s:
        assert payout_items.rows_of(s, old_payouts) == old_read
        assert [tuple(r) for p in old_payouts for r in old_read[p]] == [tuple(r) for r in before]
        for pid in old_payouts:
            assert calculations.recompute(s, s.get(PayoutCalculation, pid)).matches
    # what the old payouts paid stays paid
    assert _pay(db, contract_id, H1, approve=False).total_minor == 0
    # and when an item an old payout paid is invalidated, a new payout claws it back from a block
    with db.uow() as uow:
        ev.invalidate_evidence(uow, actor=Actor("vera", "VERIFIER", _verifier(db, contract_id)),
                               evidence_id=paid_evidence[0], reason="Fel person")
        uow.commit()
    new = _pay(db, contract_id, H2)
    with db.reading() as s:
        rows = payout_items.rows_of(s, [new.id])[new.id]
        assert [(r.kind, r.evidence_id) for r in rows] == [("CLAWBACK", paid_evidence[0])]
        assert rows[0].id == before[-1].id + 1  # the next id after the old rows, as a row would have had
        assert s.execute(sa.text(
            f"SELECT count(*) FROM payout_items WHERE payout_id = {new.id}")).scalar() == 0
        trace = payout_items.items_of_evidence(s, paid_evidence[0])
        assert [(r.payout_id, r.kind) for r in trace] == [(old_payouts[0], "OUTCOME"), (new.id, "CLAWBACK")]
        assert sum(r.net_minor for r in trace) == 0
        assert journal.verify(s).ok
    # so it is not clawed back twice
    assert _pay(db, contract_id, H2, approve=False).total_minor == 0
    # a database with item blocks is not downgraded below 0020p: they would be lost
    with pytest.raises(RuntimeError, match="payout_item_blocks holds payout items"):
        command.downgrade(schema.alembic_config(old_url), "0019p")
    engine.dispose()


def _verifier(db, contract_id) -> int:
    with db.reading() as s:
        return s.get(OutcomeContract, contract_id).verifier_id


def test_0020p_downgrades_and_upgrades_again_while_no_block_is_written(old_url):
    cfg = schema.alembic_config(old_url)
    command.upgrade(cfg, "head")
    command.downgrade(cfg, "0019p")
    engine = make_engine(old_url)
    assert "payout_item_blocks" not in sa.inspect(engine).get_table_names()
    engine.dispose()
    command.upgrade(cfg, "head")
    engine = make_engine(old_url)
    assert "payout_item_blocks" in sa.inspect(engine).get_table_names()
    engine.dispose()
