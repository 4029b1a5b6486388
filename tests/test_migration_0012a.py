"""Migration 0012a on a database made before it: commitments become "by share" through postings,
no row is lost and the hash chain stays intact (issue 12)."""
from __future__ import annotations

import importlib.util
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from ledger import chart, journal, schema
from ledger.db import make_engine
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database, pg_url, require_postgres

REVISION = Path(__file__).parents[1] / "migrations" / "versions" / "20261129_0012a_contract_life.py"
NOW = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


def _revision_module():
    spec = importlib.util.spec_from_file_location("rev_0012a", REVISION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=BACKENDS)
def old_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
    else:
        require_postgres()
        name = create_pg_database("utfall_m12")
        yield pg_url(name)
        drop_pg_database(name)


def _insert(conn, table, **values):
    t = sa.table(table, *(sa.column(k) for k in values))
    return conn.execute(sa.insert(t).values(**values).returning(sa.column("id"))).scalar_one()


def _world_before_0012a(conn, rev):
    """A fund (10 MSEK), contract A active with 100 % of 1 MSEK committed and 20 000 paid 50/50,
    contract B terminated, then paid 10 000 after termination: its commitment went negative (the bug)."""
    party = lambda name, role: _insert(conn, "parties", name=name, role=role, created_at=NOW)  # noqa: E731
    fund_party, muni, prov = party("Fonden", "FUND"), party("Kommunen", "MUNICIPALITY"), party("Utföraren", "PROVIDER")
    fund = _insert(conn, "outcome_funds", name="F", manager_id=fund_party, currency="SEK", created_at=NOW)

    def account(code, owner, contract=None, fund_id=None):
        return rev._account(conn, code, code.title(), owner, "SEK", contract, fund_id, NOW)

    def post(contract_id, *legs):
        rev._post(conn, contract_id=contract_id, currency="SEK",
                  legs=[(acc, account_balance(acc), amount) for acc, amount in legs], now=NOW)

    def account_balance(acc):
        return conn.execute(sa.text("SELECT balance_minor FROM ledger_accounts WHERE id = :i"), {"i": acc}).scalar_one()

    cash, capital = account("FUND_CASH", fund_party, None, fund)[0], account("FUND_CAPITAL", fund_party, None, fund)[0]
    post(None, (cash, 1_000_000_000), (capital, -1_000_000_000))
    reserve = account("FUND_COMMITMENT_RESERVE", fund_party, None, fund)[0]
    ids = {}
    for key, status in (("A", "ACTIVE"), ("B", "TERMINATED")):
        c = _insert(conn, "outcome_contracts", title=key, fund_id=fund, municipality_id=muni, provider_id=prov,
                    policy_area="school", currency="SEK", start_date=date(2026, 1, 1), end_date=date(2027, 12, 31),
                    status=status, created_by="x", created_at=NOW, activated_at=NOW,
                    ended_at=NOW if status == "TERMINATED" else None)
        t = _insert(conn, "contract_terms", contract_id=c, version=1, effective_from=date(2026, 1, 1), reason="r",
                    max_value_minor=100_000_000, created_by="x", created_at=NOW)
        for i, payer in enumerate((fund_party, muni)):
            _insert(conn, "payer_shares", terms_id=t, position=i, party_id=payer, percent="50")
        committed = account("FUND_COMMITTED", fund_party, c, fund)[0]
        cost = account("OUTCOME_COST", fund_party, c, fund)[0]
        payable = account("PAYABLE", fund_party, c, fund)[0]
        post(c, (committed, 100_000_000), (reserve, -100_000_000))  # the old rule: 100 % of maxValue
        if status == "TERMINATED":
            post(c, (committed, -100_000_000), (reserve, 100_000_000))  # released at termination
        paid = 1_000_000 if key == "A" else 500_000
        p = _insert(conn, "payouts", contract_id=c, period_start=date(2026, 1, 1), period_end=date(2026, 3, 31),
                    status="POSTED", terms_version=1, currency="SEK", inputs_hash="0" * 64, inputs="{}",
                    total_minor=2 * paid, posted_before=0, calculated_by="a", calculated_at=NOW)
        for i, payer in enumerate((fund_party, muni)):
            _insert(conn, "payout_shares", payout_id=p, position=i, party_id=payer, amount_minor=paid)
        # the old posting drew the fund's share from the commitment, even after termination
        post(c, (cost, paid), (payable, -paid), (committed, -paid), (reserve, paid))
        ids[key] = c
    return dict(fund=fund, fund_party=fund_party, muni=muni, **ids)


def test_existing_commitments_move_to_the_share_rule_by_postings_and_the_chain_holds(old_url):
    rev = _revision_module()
    command.upgrade(schema.alembic_config(old_url), "0004")
    engine = make_engine(old_url)
    with engine.begin() as conn:
        w = _world_before_0012a(conn, rev)
    tables = ("parties", "outcome_funds", "outcome_contracts", "contract_terms", "payer_shares", "payouts",
              "payout_shares", "ledger_transactions", "ledger_entries")
    with engine.connect() as conn:
        before = {t: conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in tables}
        negative = conn.execute(sa.text("SELECT balance_minor FROM ledger_accounts WHERE code = 'FUND_COMMITTED' "
                                        "AND contract_id = :c"), {"c": w["B"]}).scalar_one()
    assert negative == -500_000  # the reproduced bug, as an old database holds it
    # when the database is migrated
    schema.upgrade(old_url)
    from ledger import commitments
    from ledger.db import Database
    db = Database(engine)
    with db.reading() as s:
        # then no row is lost, the chain verifies and one posting per contract moved its commitments
        after = {t: s.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in tables}
        assert all(after[t] == before[t] for t in tables if t not in ("ledger_transactions", "ledger_entries"))
        kinds = s.execute(sa.text("SELECT kind FROM ledger_transactions WHERE sequence > :n ORDER BY sequence"),
                          {"n": before["ledger_transactions"]}).scalars().all()
        assert kinds == ["COMMITMENT_MIGRATION", "COMMITMENT_MIGRATION"]
        assert journal.verify(s).ok
        # A: each payer holds its 50 % of 1 MSEK less what it paid; B (ended) holds nothing, and is closed
        assert commitments.current(s, w["A"]) == {w["fund_party"]: 49_000_000, w["muni"]: 49_000_000}
        assert set(commitments.current(s, w["B"]).values()) == {0}
        assert s.execute(sa.text("SELECT closed_at IS NOT NULL FROM outcome_contracts WHERE id = :c"),
                         {"c": w["B"]}).scalar_one()
        p = chart.fund_position(s, w["fund"])
        assert (p.capital, p.committed, p.paid_out, p.available) == (
            1_000_000_000, 49_000_000, 1_500_000, 1_000_000_000 - 49_000_000 - 1_500_000)
    engine.dispose()
