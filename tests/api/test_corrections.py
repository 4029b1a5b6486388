"""Corrections through GraphQL: measurement versions, reversals, disputes and dual control."""
from __future__ import annotations

from api.graphql.base import to_global_id
from tests.ledger.test_measurement_corrections import case_b, pay, record  # noqa: F401  (fixtures)

CORRECT = """mutation($i: CorrectMeasurementInput!) { correctMeasurement(input: $i) {
  measurement { id status observedValue correctionReason } userErrors { field code } } }"""
VOID = """mutation($i: VoidMeasurementInput!) { voidMeasurement(input: $i) {
  measurement { id status voidReason } userErrors { field code } } }"""
MEASUREMENTS = """query($c: ID!) { contract(id: $c) { measurements { id status observedValue supersededBy } } }"""


def test_a_verifier_corrects_then_voids_a_measurement_and_the_old_versions_stay(api, db, case_b):
    w = case_b
    first = record(db, w, "3100")
    pay(db, w)
    verifier = api.token("VERIFIER", name="vera", party_id=w["ver"].id)
    old_id = to_global_id("Measurement", first.id)
    # when the verifier corrects it
    done = api.ok(CORRECT, {"i": {"measurementId": old_id, "observedValue": "3000", "reason": "Fel i rapporten"}},
                  verifier)["correctMeasurement"]
    assert done["userErrors"] == []
    assert done["measurement"]["status"] == "CURRENT" and done["measurement"]["correctionReason"] == "Fel i rapporten"
    # then correcting the old version again is refused with a stable code
    again = api.ok(CORRECT, {"i": {"measurementId": old_id, "observedValue": "1", "reason": "x"}},
                   verifier)["correctMeasurement"]
    assert again == {"measurement": None, "userErrors": [{"field": ["measurementId"], "code": "MEASUREMENT_NOT_CURRENT"}]}
    # a fund manager may not; another verifier sees no such measurement
    fm = api.ok(VOID, {"i": {"measurementId": done["measurement"]["id"], "reason": "x"}},
                api.token("FUND_MANAGER"))["voidMeasurement"]
    assert fm["userErrors"][0]["code"] == "PERMISSION_DENIED"
    voided = api.ok(VOID, {"i": {"measurementId": done["measurement"]["id"], "reason": "Fel kohort"}},
                    verifier)["voidMeasurement"]
    assert voided["measurement"]["status"] == "VOIDED"
    listed = api.ok(MEASUREMENTS, {"c": to_global_id("OutcomeContract", w["contract"].id)}, verifier)
    assert [(m["status"], m["observedValue"], m["supersededBy"]) for m in listed["contract"]["measurements"]] == [
        ("SUPERSEDED", "3100", done["measurement"]["id"]), ("VOIDED", "3000", None)]
