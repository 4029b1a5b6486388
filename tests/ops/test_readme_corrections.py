"""Every GraphQL example of the README's "Corrections and disputes" section runs on the demo, as its role.

The examples are run in order on one demo database, each as the role its `<!-- role: ... -->`
line names (the second fund manager for approvals: four eyes); a quoted `"<...>"` placeholder
is filled in with what a user would paste there, found from the demo or an earlier answer.
"""
from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import select
from starlette.testclient import TestClient

from api.app import create_app
from api.graphql.base import to_global_id
from ledger import demo
from ledger.models import Evidence, Measurement, OutcomeContract, PayoutCalculation

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = b"readme-corrections-secret-0123456789"


def examples() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Corrections and disputes", 1)[1].split("\n## ", 1)[0]
    # marked tested-elsewhere: this test runs them, with the answers they need from one another
    return re.findall(r"<!-- role: (\w+) tested-elsewhere -->\n```graphql\n(.*?)```", section, re.S)


def test_the_readme_corrections_examples_run_as_their_roles(db, settings):
    # given the demo, and a token per role (two fund managers)
    issued = demo.load(db, today=date.today(), secret=SECRET)
    tokens = {t.role: t.token for t in reversed(issued)}  # the first of a role: Frida the fund manager
    second = next(t.token for t in issued if t.name == "Gustav Granskare")
    found = examples()
    assert len(found) >= 10 and {r for r, _ in found} == {"VERIFIER", "FUND_MANAGER", "FUND_MANAGER_2", "PROVIDER"}
    text = "".join(doc for _, doc in found)
    for name in ("correctMeasurement", "voidMeasurement", "reverseTransaction", "approveChangeRequest",
                 "openDispute", "resolveDispute", "effectiveOn", "asOf"):
        assert name in text, name

    with db.reading() as s:
        contracts = {c.title.split()[-1]: c.id for c in s.execute(select(OutcomeContract)).scalars()}
        h2 = date(2025, 7, 1)
        measurements = {place: s.execute(select(Measurement.id).where(
            Measurement.contract_id == contracts[place], Measurement.period_start == h2)).scalar_one()
            for place in ("Malmö", "Gävle")}
        umea_h2 = s.execute(select(PayoutCalculation.transaction_sequence).where(
            PayoutCalculation.contract_id == contracts["Umeå"], PayoutCalculation.period_start == h2)).scalar_one()
        rejected = s.execute(select(Evidence.id).where(Evidence.contract_id == contracts["Umeå"],
                                                       Evidence.status == "REJECTED").order_by(Evidence.id)).first()[0]
    answers: list[dict] = []

    def from_answers(field: str, path: tuple[str, ...], nth: int = -1):
        def find():
            data = [a[field] for a in answers if field in a][nth]
            for key in path:
                data = data[key]
            return data
        return find
    fill = {
        "Malmö measurement id, 2025-07-01": lambda: to_global_id("Measurement", measurements["Malmö"]),
        "Gävle measurement id, 2025-07-01": lambda: to_global_id("Measurement", measurements["Gävle"]),
        "Malmö contract id": lambda: to_global_id("OutcomeContract", contracts["Malmö"]),
        "Umeå contract id": lambda: to_global_id("OutcomeContract", contracts["Umeå"]),
        "Umeå payout transaction id, 2025-07-01": lambda: to_global_id("LedgerTransaction", umea_h2),
        "Malmö payout id": from_answers("calculatePayout", ("payout", "id"), 0),
        "Umeå payout id": from_answers("calculatePayout", ("payout", "id"), 1),
        "change request id": from_answers("reverseTransaction", ("changeRequest", "id")),
        "rejected evidence id": lambda: to_global_id("Evidence", rejected),
        "dispute id": from_answers("openDispute", ("dispute", "id")),
        "the day before you loaded the demo": lambda: (date.today() - timedelta(days=1)).isoformat(),
    }

    app = create_app(settings, db, workers=2)
    with TestClient(app) as client:
        for role, doc in found:
            token = second if role == "FUND_MANAGER_2" else tokens[role]
            doc = re.sub(r'"<([^">]+)>"', lambda m: f'"{fill[m.group(1)]()}"', doc)
            r = client.post("/graphql", json={"query": doc}, headers={"Authorization": f"Bearer {token}"})
            # then it answers with data, no errors and no userErrors
            body = r.json()
            assert r.status_code == 200 and "errors" not in body and body["data"], (role, doc, body)
            for field, value in body["data"].items():
                assert not (isinstance(value, dict) and value.get("userErrors")), (role, doc, body)
            answers.append(body["data"])

    def answer(field):
        return [a[field] for a in answers if field in a]
    # and it did what the README says
    corrected, = answer("correctMeasurement")
    assert corrected["measurement"]["status"] == "CURRENT" and corrected["measurement"]["observedValue"] == "2900"
    assert answer("voidMeasurement")[0]["measurement"]["status"] == "VOIDED"
    malmo, umea = answer("calculatePayout")
    assert any(line["kind"] == "ADJUSTMENT" and line["net"]["amount"].startswith("-")
               for line in malmo["payout"]["lines"])
    assert answer("reverseTransaction")[0]["changeRequest"]["status"] == "PENDING"
    assert answer("reverseTransaction")[0]["transaction"] is None
    assert answer("approveChangeRequest")[0]["changeRequest"]["status"] == "APPROVED"
    statuses = {(p["periodStart"], p["status"]) for p in answer("payouts")[0]["nodes"]}
    assert ("2025-07-01", "REVERSED") in statuses
    assert umea["payout"]["total"]["amount"] != "0.00"
    assert [p["payout"]["status"] for p in answer("approvePayout")] == ["POSTED", "POSTED"]
    resolved = answer("resolveDispute")[0]["dispute"]
    assert (resolved["status"], resolved["subject"]) == ("UPHELD", {"status": "VERIFIED"})
    bitemporal = answer("owedOn31December")[0]
    assert bitemporal and answer("heldTheDayBefore")[0] == []
