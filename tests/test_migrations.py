"""Alembic is the only way the schema changes: `upgrade head` must give exactly the ORM's schema."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from ledger.models import Base

APPEND_ONLY = ("ledger_transactions", "ledger_entries", "audit_events",
               "contract_terms", "payer_shares", "metrics", "area_supplements",
               "payout_lines", "payout_items", "payout_shares", "payments", "merkle_nodes", "effective_balance_buckets",
               "indigo_field_statuses",
               "investments", "investment_drawdowns", "distributions", "distribution_lines",
               "distribution_receipts", "investment_closings", "document_uploads", "payout_item_blocks")


def test_alembic_head_matches_the_orm(engine):
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], diff


def test_check_constraints_and_append_only_triggers_exist(engine):
    # alembic's comparison sees neither triggers nor CHECK constraints: check them here
    insp = inspect(engine)
    for table in Base.metadata.sorted_tables:
        expected = {c.name for c in table.constraints if c.__class__.__name__ == "CheckConstraint"}
        found = {c["name"] for c in insp.get_check_constraints(table.name)}
        assert expected <= found, (table.name, expected - found)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            rows = conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).scalars().all()
            want = {f"{t}_{k}" for t in APPEND_ONLY
                    for k in ("append_only", "no_truncate")}
        else:
            rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars().all()
            want = {f"{t}_no_{v}" for t in APPEND_ONLY
                    for v in ("update", "delete")}
    assert want <= set(rows)
