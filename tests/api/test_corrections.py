"""Corrections through GraphQL: measurement versions, reversals, disputes and dual control."""
from __future__ import annotations

from api.graphql.base import to_global_id
from tests.factories import party
from tests.ledger.test_corrections import reject_new_claim, two_passes  # noqa: F401  (fixtures)
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


OPEN = """mutation($i: OpenDisputeInput!) { openDispute(input: $i) {
  dispute { id status deadline overdue subjectStatus subject { __typename ... on Evidence { status } } }
  userErrors { field code } } }"""
RESOLVE = """mutation($i: ResolveDisputeInput!) { resolveDispute(input: $i) {
  dispute { status resolvedBy subject { ... on Evidence { status } } } userErrors { field code } } }"""
DISPUTES = """query($c: ID, $s: DisputeStatus, $o: Boolean) { disputes(contractId: $c, status: $s, overdue: $o) {
  nodes { id status overdue } } }"""


def test_a_provider_disputes_a_rejection_and_a_second_fund_manager_upholds_it(api, db, two_passes):
    w = two_passes
    rejected = reject_new_claim(db, w)
    provider = api.token("PROVIDER", name="pia", party_id=w["prov"].id)
    other = api.token("PROVIDER", name="olle", party_id=party(db, role="PROVIDER").id)
    fm = api.token("FUND_MANAGER", name="gustav")
    subject = to_global_id("Evidence", rejected.id)
    # another provider cannot dispute it (as if it did not exist)
    theirs = api.ok(OPEN, {"i": {"subjectId": subject, "reason": "r"}}, other)["openDispute"]
    assert theirs["userErrors"] == [{"field": ["subjectId"], "code": "UNKNOWN_EVIDENCE"}]
    opened = api.ok(OPEN, {"i": {"subjectId": subject, "reason": "Intyget finns"}}, provider)["openDispute"]
    d = opened["dispute"]
    assert (d["status"], d["overdue"], d["subjectStatus"], d["subject"]) == (
        "OPEN", False, "REJECTED", {"__typename": "Evidence", "status": "REJECTED"})
    twice = api.ok(OPEN, {"i": {"subjectId": subject, "reason": "igen"}}, provider)["openDispute"]
    assert twice["userErrors"][0]["code"] == "ALREADY_DISPUTED"
    # listed for the provider and the fund manager, not for another provider
    assert [x["id"] for x in api.ok(DISPUTES, {"s": "OPEN"}, provider)["disputes"]["nodes"]] == [d["id"]]
    assert api.ok(DISPUTES, {}, other)["disputes"]["nodes"] == []
    assert api.ok(DISPUTES, {"o": True}, fm)["disputes"]["nodes"] == []
    # a fund manager upholds it: the item is VERIFIED again
    done = api.ok(RESOLVE, {"i": {"disputeId": d["id"], "outcome": "UPHELD", "reason": "Intyget godtas"}},
                  fm)["resolveDispute"]
    assert done["dispute"]["status"] == "UPHELD" and done["dispute"]["subject"] == {"status": "VERIFIED"}
    # both steps are in the audit trail
    ops = [e["operation"] for e in api.ok("{ auditEvents(first: 100) { nodes { operation } } }", None,
                                          api.token("AUDITOR"))["auditEvents"]["nodes"]]
    assert "openDispute" in ops and "resolveDispute" in ops


AMEND = """mutation($i: AmendContractInput!) { amendContract(input: $i) {
  contract { id } changeRequest { id kind status requestedBy } userErrors { field code } } }"""
REVERSE = """mutation($i: ReverseTransactionInput!) { reverseTransaction(input: $i) {
  transaction { sequence } changeRequest { id kind status } userErrors { code } } }"""
APPROVE_CR = """mutation($i: ApproveChangeRequestInput!) { approveChangeRequest(input: $i) {
  changeRequest { status decidedBy resultId } userErrors { field code } } }"""
REJECT_CR = """mutation($i: RejectChangeRequestInput!) { rejectChangeRequest(input: $i) {
  changeRequest { status decisionReason } userErrors { code } } }"""
FUND = """query($f: ID!) { node(id: $f) { ... on Fund { dualControl } } }"""


def test_under_dual_control_corrections_wait_for_a_second_fund_manager(api, db, two_passes):
    from tests.ledger.test_corrections import approve, calc
    w = two_passes
    # given a fund under dual control (the default for a fund created now; the fixture's is made without it)
    from sqlalchemy import update
    from ledger.models import OutcomesFund
    with db.uow() as uow:
        uow.session.execute(update(OutcomesFund).where(OutcomesFund.id == w["fund"].id).values(dual_control=True))
        uow.commit()
    frida, gustav = api.token("FUND_MANAGER", name="frida"), api.token("FUND_MANAGER", name="gustav")
    assert api.ok(FUND, {"f": to_global_id("Fund", w["fund"].id)}, frida)["node"] == {"dualControl": True}
    cid = to_global_id("OutcomeContract", w["contract"].id)
    # an amendment becomes a pending change request, and the contract field is null
    asked = api.ok(AMEND, {"i": {"contractId": cid, "effectiveDate": "2026-07-01", "reason": "Ny takgräns",
                                 "maxValue": {"amount": "9000000.00", "currency": "SEK"}}}, frida)["amendContract"]
    assert asked["contract"] is None and asked["userErrors"] == []
    request = asked["changeRequest"]
    assert (request["kind"], request["status"], request["requestedBy"]) == ("AMEND_CONTRACT", "PENDING", "frida")
    # bad input is refused at once
    bad = api.ok(AMEND, {"i": {"contractId": cid, "effectiveDate": "2030-01-01", "reason": "r"}}, frida)["amendContract"]
    assert bad["userErrors"][0]["code"] == "TERMS_OUTSIDE_CONTRACT" and bad["changeRequest"] is None
    # frida may not approve her own request; gustav does, and the amendment is made
    own = api.ok(APPROVE_CR, {"i": {"changeRequestId": request["id"]}}, frida)["approveChangeRequest"]
    assert own["userErrors"] == [{"field": ["changeRequestId"], "code": "FOUR_EYES_REQUIRED"}]
    done = api.ok(APPROVE_CR, {"i": {"changeRequestId": request["id"]}}, gustav)["approveChangeRequest"]
    assert done["changeRequest"]["status"] == "APPROVED" and done["changeRequest"]["resultId"] == cid
    terms = api.ok("query($c: ID!) { contract(id: $c) { termsHistory { maxValue { amount } } } }", {"c": cid}, gustav)
    assert [t["maxValue"]["amount"] for t in terms["contract"]["termsHistory"]] == ["10000000.00", "9000000.00"]
    # a payout's reversal too; rejected, nothing is reversed
    posted = approve(db, calc(db, w))
    tx = to_global_id("LedgerTransaction", posted.transaction_sequence)
    rev = api.ok(REVERSE, {"i": {"transactionId": tx, "reason": "Fel period"}}, frida)["reverseTransaction"]
    assert rev["transaction"] is None and rev["changeRequest"]["kind"] == "REVERSE_TRANSACTION"
    no = api.ok(REJECT_CR, {"i": {"changeRequestId": rev["changeRequest"]["id"], "reason": "Perioden stämmer"}},
                gustav)["rejectChangeRequest"]
    assert no["changeRequest"] == {"status": "REJECTED", "decisionReason": "Perioden stämmer"}
    listed = api.ok("{ changeRequests { nodes { kind status } } }", None, api.token("AUDITOR"))["changeRequests"]
    assert listed["nodes"] == [{"kind": "AMEND_CONTRACT", "status": "APPROVED"},
                               {"kind": "REVERSE_TRANSACTION", "status": "REJECTED"}]
    payouts = api.ok("query($c: ID!) { contract(id: $c) { payouts { nodes { status } } } }", {"c": cid}, gustav)
    assert payouts["contract"]["payouts"]["nodes"] == [{"status": "POSTED"}]


def test_a_fund_created_without_dual_control_works_as_before(api, db):
    from tests.factories import party as make_party
    manager = make_party(db, role="FUND")
    fm = api.token("FUND_MANAGER")
    made = api.ok("""mutation($i: CreateFundInput!) { createFund(input: $i) { fund { dualControl } } }""",
                  {"i": {"name": "F", "managerId": to_global_id("Party", manager.id), "currency": "SEK",
                         "dualControl": False}}, fm)["createFund"]
    assert made["fund"] == {"dualControl": False}
    default = api.ok("""mutation($i: CreateFundInput!) { createFund(input: $i) { fund { dualControl } } }""",
                     {"i": {"name": "G", "managerId": to_global_id("Party", manager.id), "currency": "SEK"}},
                     fm)["createFund"]
    assert default["fund"] == {"dualControl": True}


def test_what_was_owed_on_a_business_date(api, db, two_passes):
    from tests.ledger.test_corrections import approve, calc
    w = two_passes
    approve(db, calc(db, w))
    auditor = api.token("AUDITOR")
    doc = """query($c: ID, $e: Date) { obligations(contractId: $c, effectiveOn: $e) { outstanding { amount } } }"""
    cid = to_global_id("OutcomeContract", w["contract"].id)
    assert len(api.ok(doc, {"c": cid, "e": "2026-12-31"}, auditor)["obligations"]) == 2
    assert api.ok(doc, {"c": cid, "e": "2026-06-29"}, auditor)["obligations"] == []
    accounts = api.ok("""query($c: ID, $e: Date) { ledgerAccounts(contractId: $c, effectiveOn: $e) { id code balance { amount } } }""",
                      {"c": cid, "e": "2026-06-29"}, auditor)["ledgerAccounts"]
    payable = [a for a in accounts if a["code"] == "PAYABLE"]
    assert payable and all(a["balance"]["amount"] == "0.00" for a in payable)
    balances = {a["id"]: api.ok("""query($a: ID!, $e: Date) { balance(accountId: $a, effectiveOn: $e) { amount } }""",
                                {"a": a["id"], "e": "2026-06-30"}, auditor)["balance"]["amount"] for a in payable}
    assert sorted(balances.values())[:2] == ["-40000.00", "-40000.00"]
