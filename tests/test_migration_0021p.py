"""Migration 0021p on a database with payouts made before it: each payout's recorded inputs move
from its row to `payout_inputs`, byte for byte; the payouts still recompute to their figures and
hash, superseding a payout leaves its inputs untouched, and recorded inputs can no longer be
changed or deleted. Downgrading moves them back."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from ledger import calculations, schema
from ledger.db import Database, make_engine
from ledger.models import PayoutCalculation
from tests.legacy_payout_items import inputs_in_payout_rows
from tests.test_migration_0019p import _paid_and_clawed_back
from tests.test_migration_0019p import old_url  # noqa: F401  (the fixture: an empty database of each backend)
from tests.test_migration_0020p import H2, _pay


def test_recorded_inputs_move_to_their_own_table_and_back(old_url):
    cfg = schema.alembic_config(old_url)
    command.upgrade(cfg, "0020p")
    engine = make_engine(old_url)
    db = Database(engine)
    with inputs_in_payout_rows():  # as payouts were recorded before 0021p
        contract_id, old_payouts = _paid_and_clawed_back(db)
        superseded = _pay(db, contract_id, H2, approve=False)  # CALCULATED: the next one supersedes it
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT id, inputs_hash, inputs FROM payouts ORDER BY id")).all()
    assert len(before) == 3 and all(len(r.inputs) > 100 for r in before)
    # when the database is migrated
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        # then every payout's inputs are in payout_inputs, unchanged, and no longer in its row
        assert conn.execute(sa.text("SELECT payout_id, inputs FROM payout_inputs ORDER BY payout_id")).all() == \
            [(r.id, r.inputs) for r in before]
        assert "inputs" not in {c["name"] for c in sa.inspect(conn).get_columns("payouts")}
    with db.reading() as s:
        for r in before:
            p = s.get(PayoutCalculation, r.id)
            assert p.inputs == r.inputs
            assert calculations.recompute(s, p).matches
    # a new calculation supersedes the CALCULATED one and leaves its recorded inputs as they were
    newer = _pay(db, contract_id, H2, approve=False)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status, superseded_by_id FROM payouts WHERE id = :i"),
                            {"i": superseded.id}).one() == ("SUPERSEDED", newer.id)
        assert conn.execute(sa.text("SELECT inputs FROM payout_inputs WHERE payout_id = :i"),
                            {"i": superseded.id}).scalar() == before[-1].inputs
    # recorded inputs are never changed or deleted
    for statement in ("UPDATE payout_inputs SET inputs = '{}'", "DELETE FROM payout_inputs"):
        with pytest.raises(sa.exc.DBAPIError, match="payout_inputs"):
            with engine.begin() as conn:
                conn.execute(sa.text(statement))
    engine.dispose()
    # downgrading puts every payout's inputs back into its row
    command.downgrade(cfg, "0020p")
    engine = make_engine(old_url)
    with engine.connect() as conn:
        assert "payout_inputs" not in sa.inspect(conn).get_table_names()
        back = conn.execute(sa.text("SELECT id, inputs FROM payouts ORDER BY id")).all()
    assert back[:3] == [(r.id, r.inputs) for r in before] and back[3].id == newer.id and len(back[3].inputs) > 100
    engine.dispose()
    command.upgrade(cfg, "head")
