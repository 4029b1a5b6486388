"""evaluationReport over GraphQL: full figures for fund managers and auditors, suppressed for the public."""
from __future__ import annotations

from tests.factories import party
from tests.ledger.test_evaluation_report import passes_and_care_days

Q = """{ evaluationReport { full
  byOwnership { ownership outcomes outcomeContracts leftOut costPerOutcome { amount } penalties { amount } }
  byPolicyArea { label contracts outcomes }
  byMetric { code unit quantity amountPaid { amount } costPerUnit { amount } } } }"""


def test_full_figures_for_auditors_and_suppressed_ones_for_the_public(api, db):
    # given
    passes_and_care_days(db, 10, policy_area="Skola")
    own = party(db, role="PROVIDER", name="Egen regi", ownership="PUBLIC_IN_HOUSE")
    passes_and_care_days(db, 2, provider=own, policy_area="Skola")
    # when
    full = api.ok(Q, token=api.token("AUDITOR"))["evaluationReport"]
    public = api.ok(Q)["evaluationReport"]
    # then
    assert full["full"] is True and public["full"] is False
    in_house = next(r for r in full["byOwnership"] if r["ownership"] == "PUBLIC_IN_HOUSE")
    assert in_house["outcomes"] == 2 and in_house["costPerOutcome"] == {"amount": "40000.00"}
    hidden = next(r for r in public["byOwnership"] if r["ownership"] == "PUBLIC_IN_HOUSE")
    assert hidden["outcomes"] is None and hidden["costPerOutcome"] is None and hidden["leftOut"] == 1
    assert {"code": "CARE_DAYS", "unit": "UNIT_IMPROVED", "quantity": "100", "amountPaid": {"amount": "125000.00"},
            "costPerUnit": {"amount": "1250.00"}} in full["byMetric"]
    assert full["byPolicyArea"] == [{"label": "Skola", "contracts": 2, "outcomes": 12}]
