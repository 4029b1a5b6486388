"""Every list field resolves its relations in batches: the statement count does not grow with rows."""
from __future__ import annotations

from datetime import date

from sqlalchemy import event

from ledger import calculations, sanctions
from ledger import evidence as ev
from ledger.access import Actor
from tests.factories import contract, funded

FM, FM2 = Actor("frida", "FUND_MANAGER"), Actor("gustav", "FUND_MANAGER")
TODAY = date(2026, 11, 23)

QUERY = """{ contracts(first: 50) { totalCount nodes {
  title status committed { amount } fund { name available { amount } } provider { name } municipality { name }
  terms { version metrics { code } payerShares { party { name } } } sanctions { level }
  participants(first: 5) { totalCount nodes { externalRef } }
  evidence(first: 5) { totalCount nodes { status participant { externalRef } documents { sha256 } } }
  measurements { metricCode }
  payouts(first: 5) { nodes { status total { amount } lines { net { amount } } shares { party { name } amount { amount } }
                              transaction { sequence entries { amount { amount } account { code } } }
                              items { net { amount } evidence { status participant { area } } }
                              itemsConnection(last: 1) { totalCount nodes { net { amount } } } } }
  obligations { debtor { name } creditor { name } outstanding { amount } }
  obligationsConnection(first: 2) { totalCount nodes { debtor { name } outstanding { amount } } }
  sanctionsConnection(first: 2) { totalCount nodes { level penalty { amount } } }
  measurementsConnection(first: 2) { totalCount nodes { metricCode } }
} } }"""


def build(db, n: int) -> None:
    """`n` active contracts, each with two participants, two verified claims and a posted payout."""
    fund, manager, muni, prov, ver = funded(db, FM, capital="900000000.00")
    provider, verifier = Actor("pia", "PROVIDER", prov.id), Actor("vera", "VERIFIER", ver.id)
    for i in range(n):
        c = contract(db, FM, fund, manager, muni, prov, ver, max_value="1000000.00", activate=True, title=f"C{i}")
        with db.uow() as uow:
            for j in range(2):
                p = ev.enroll_participant(uow, actor=provider, secret=b"s" * 16, contract_id=c.id,
                                          personal_identity_number=None, external_ref=f"{i}-{j}", area="URBAN",
                                          enrolled_on=date(2026, 1, 10), today=TODAY)
                e = ev.submit_evidence(uow, actor=provider, contract_id=c.id, today=TODAY,
                                       claim=ev.Claim(p.id, "SCHOOL_PASS", achieved_on=date(2026, 3, 1 + j)))
                ev.verify_evidence(uow, actor=verifier, evidence_id=e.id, note=None)
            payout = calculations.calculate_payout(uow, actor=FM, contract_id=c.id, period_start=date(2026, 1, 1),
                                                   period_end=date(2026, 6, 30))
            calculations.approve_payout(uow, actor=FM2, payout_id=payout.id)
            sanctions.issue_sanction(uow, actor=FM, contract_id=c.id, level="WARNING", reason="Sen rapport")
            uow.commit()


def selects(api, token, query: str = QUERY) -> tuple[int, dict]:
    count = [0]

    def on_execute(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            count[0] += 1
    event.listen(api.db.engine, "before_cursor_execute", on_execute)
    try:
        data = api.ok(query, token=token)
    finally:
        event.remove(api.db.engine, "before_cursor_execute", on_execute)
    return count[0], data


def test_the_statement_count_does_not_grow_with_the_number_of_contracts(api, db):
    token = api.token("AUDITOR")
    build(db, 5)
    few, data = selects(api, token)
    assert len(data["contracts"]["nodes"]) == 5
    build(db, 45)
    many, data = selects(api, token)
    nodes = data["contracts"]["nodes"]
    assert len(nodes) == 50
    assert all(len(n["evidence"]["nodes"]) == 2 and n["payouts"]["nodes"][0]["status"] == "POSTED" for n in nodes)
    assert data["contracts"]["totalCount"] == 50
    assert all(n["evidence"]["totalCount"] == 2 and n["participants"]["totalCount"] == 2 for n in nodes)
    assert all(n["obligationsConnection"]["totalCount"] == len(n["obligations"]) == 2 for n in nodes)
    assert all(p["itemsConnection"]["totalCount"] == len(p["items"]) == 2 for n in nodes for p in n["payouts"]["nodes"])
    assert all(n["sanctionsConnection"]["nodes"] == [{"level": "WARNING", "penalty": None}] for n in nodes)
    assert many == few, f"{few} SELECTs for 5 contracts, {many} for 50"
