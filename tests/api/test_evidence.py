"""Providers and verifiers through GraphQL: enrolment, evidence, batches, decisions."""
from __future__ import annotations

from datetime import date

from api.graphql.base import to_global_id
from ledger.access import Actor
from tests.conftest import table_counts
from tests.factories import contract, funded

FM = Actor("frida", "FUND_MANAGER")
ENROLL = """mutation($i: EnrollParticipantInput!) { enrollParticipant(input: $i) {
  participant { id area enrolledOn } userErrors { field code message } } }"""
SUBMIT = """mutation($i: SubmitEvidenceInput!) { submitEvidence(input: $i) {
  evidence { id status metricCode documents { sha256 } } userErrors { field code message } } }"""
BATCH = """mutation($i: SubmitEvidenceBatchInput!) { submitEvidenceBatch(input: $i) {
  evidence { id } userErrors { field code message } } }"""
VERIFY = "mutation($i: VerifyEvidenceInput!) { verifyEvidence(input: $i) { evidence { status decidedBy } userErrors { code } } }"


def test_enrol_submit_batch_and_verify(api, db):
    fund, manager, muni, prov, ver = funded(db, FM)
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True)
    cid = to_global_id("OutcomeContract", c.id)
    pia = api.token("PROVIDER", name="pia", party_id=prov.id)
    vera = api.token("VERIFIER", name="vera", party_id=ver.id)
    # enrol by identity number: the response and the audit trail never show it
    out = api.ok(ENROLL, {"i": {"contractId": cid, "personalIdentityNumber": "19811218-9876", "area": "RURAL",
                                "enrolledOn": "2026-02-01"}}, pia)["enrollParticipant"]
    assert out["userErrors"] == []
    pid = out["participant"]["id"]
    again = api.ok(ENROLL, {"i": {"contractId": cid, "personalIdentityNumber": "811218-9876",
                                  "enrolledOn": "2026-02-01"}}, pia)["enrollParticipant"]
    assert again["userErrors"][0]["code"] == "DUPLICATE_PARTICIPANT"
    events = api.ok("{ auditEvents { nodes { input } } }", token=api.token("AUDITOR"))["auditEvents"]["nodes"]
    assert events and all("9876" not in e["input"] for e in events)
    # evidence
    ev = api.ok(SUBMIT, {"i": {"contractId": cid, "participantId": pid, "metricCode": "SCHOOL_PASS",
                               "achievedOn": "2026-06-10",
                               "documents": [{"sha256": "b" * 64, "filename": "betyg.pdf", "mediaType": "application/pdf"}]}},
                pia)["submitEvidence"]
    assert ev["evidence"]["status"] == "SUBMITTED"
    # a batch with one bad item in the middle writes nothing and names the item
    before = table_counts(db)
    items = [{"participantId": pid, "metricCode": "SCHOOL_PASS", "achievedOn": f"2026-07-0{d}"} for d in (1, 2, 3)]
    items[1]["metricCode"] = "NOPE"
    bad = api.ok(BATCH, {"i": {"contractId": cid, "items": items}}, pia)["submitEvidenceBatch"]
    assert bad["evidence"] is None
    assert [(e["field"][:2], e["code"]) for e in bad["userErrors"]] == [(["items", "1"], "UNKNOWN_METRIC")]
    assert table_counts(db) == before
    # the provider cannot verify; the verifier can, once
    assert api.ok(VERIFY, {"i": {"evidenceId": ev["evidence"]["id"]}}, pia)["verifyEvidence"]["userErrors"][0]["code"] == "PERMISSION_DENIED"
    done = api.ok(VERIFY, {"i": {"evidenceId": ev["evidence"]["id"], "note": "ok"}}, vera)["verifyEvidence"]
    assert done["evidence"] == {"status": "VERIFIED", "decidedBy": "vera (VERIFIER, party %d)" % ver.id}
    # reading back, scoped
    q = "query($c: ID!) { evidence(contractId: $c, status: VERIFIED) { nodes { metricCode participant { area } } } }"
    assert api.ok(q, {"c": cid}, vera)["evidence"]["nodes"] == [{"metricCode": "SCHOOL_PASS", "participant": {"area": "RURAL"}}]
    other = api.token("PROVIDER", party_id=funded(db, FM)[3].id)
    assert api.ok(q, {"c": cid}, other)["evidence"]["nodes"] == []
    assert api.ok("query($id: ID!) { node(id: $id) { id } }", {"id": ev["evidence"]["id"]}, other)["node"] is None
    detail = api.ok("query($id: ID!) { contract(id: $id) { participants { nodes { id } } evidence { nodes { status } } } }",
                    {"id": cid}, pia)["contract"]
    assert detail["participants"]["nodes"] == [{"id": pid}] and detail["evidence"]["nodes"] == [{"status": "VERIFIED"}]
    assert date.fromisoformat("2026-06-10")


def test_identity_numbers_never_reach_the_logs(api, db, caplog):
    import logging
    caplog.set_level(logging.DEBUG)
    fund, manager, muni, prov, ver = funded(db, FM)
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True)
    pia = api.token("PROVIDER", party_id=prov.id)
    for pnr in ("19811218-9876", "not-a-number-811218"):
        api.ok(ENROLL, {"i": {"contractId": to_global_id("OutcomeContract", c.id), "personalIdentityNumber": pnr,
                              "enrolledOn": "2026-02-01"}}, pia)
    text = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert "9876" not in text and "811218" not in text
