"""Auditors read everything and change nothing; amounts trace to evidence; the public sees aggregates."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from api.graphql.base import to_global_id
from api.graphql.schema import schema
from ledger import calculations, journal
from ledger.access import Actor
from ledger.models import Evidence, Measurement, Participant, utcnow
from tests.conftest import table_counts
from tests.ledger.test_calculations import approve, calc, case_a  # noqa: F401

G = to_global_id


def mutations_with_inputs(w) -> dict[str, dict]:
    """A well-formed input for every mutation of the schema, naming real objects of the Case A world."""
    c, prov, muni, manager = G("OutcomeContract", w["contract"].id), G("Party", w["prov"].id), G("Party", w["muni"].id), \
        G("Party", w["manager"].id)
    e, p = G("Evidence", w["items"][0].id), G("Participant", w["people"]["P1"].id)
    money = {"amount": "10.00", "currency": "SEK"}
    return {
        "createParty": {"name": "X", "role": "FUND"},
        "createApiToken": {"name": "x", "role": "AUDITOR"},
        "revokeApiToken": {"tokenId": G("ApiToken", 999_999)},  # not a caller's own token
        "createFund": {"name": "F", "managerId": manager, "currency": "SEK"},
        "depositCapital": {"fundId": G("Fund", w["fund"].id), "amount": money, "effectiveDate": "2026-01-01", "reference": "r"},
        "createContract": {"title": "T", "fundId": G("Fund", w["fund"].id), "municipalityId": muni, "providerId": prov,
                           "policyArea": "p", "startDate": "2026-01-01", "endDate": "2026-12-31", "maxValue": money,
                           "payerShares": [{"partyId": muni, "percent": "100"}],
                           "metrics": [{"code": "M", "name": "m", "kind": "RATE_CARD", "direction": "HIGHER_IS_BETTER",
                                        "unitPrice": money}]},
        "activateContract": {"contractId": c},
        "amendContract": {"contractId": c, "effectiveDate": "2026-06-01", "reason": "r"},
        "terminateContract": {"contractId": c, "reason": "r"},
        "completeContract": {"contractId": c, "reason": "r"},
        "issueSanction": {"contractId": c, "level": "WARNING", "reason": "r"},
        "liftSuspension": {"contractId": c, "reason": "r"},
        "enrollParticipant": {"contractId": c, "externalRef": "new", "enrolledOn": "2026-02-01"},
        "submitEvidence": {"contractId": c, "participantId": p, "metricCode": "ATTENDANCE", "achievedOn": "2026-05-01"},
        "submitEvidenceBatch": {"contractId": c, "items": [{"participantId": p, "metricCode": "ATTENDANCE",
                                                           "achievedOn": "2026-05-01"}]},
        "verifyEvidence": {"evidenceId": e},
        "rejectEvidence": {"evidenceId": e, "reason": "r"},
        "invalidateEvidence": {"evidenceId": e, "reason": "r"},
        "recordMeasurement": {"contractId": c, "metricCode": "ATTENDANCE", "periodStart": "2026-01-01",
                              "periodEnd": "2026-06-30", "observedValue": "1"},
        "calculatePayout": {"contractId": c, "periodStart": "2026-01-01", "periodEnd": "2026-06-30"},
        "approvePayout": {"payoutId": G("Payout", 1)},
        "recordPayment": {"debtorId": muni, "creditorId": prov, "contractId": c, "amount": money,
                          "paidOn": "2026-07-01", "reference": "r"},
        "reverseTransaction": {"transactionId": G("LedgerTransaction", 1), "reason": "r"},
        "setIndigoFieldStatus": {"contractId": c, "path": "outcome_payments", "status": "PRIVATE"},
        "createInvestment": {"contractId": c, "investorId": prov, "tranche": "SENIOR", "principal": money,
                             "returnCap": "0.1"},
        "recordDrawdown": {"investmentId": G("Investment", 999_999), "amount": money, "paidOn": "2026-02-01",
                           "reference": "r"},
        "distributeReceipts": {"contractId": c, "upTo": "2026-12-31"},
        "closeInvestments": {"contractId": c},
        "grantLateClaim": {"contractId": c, "reason": "r", "until": "2099-01-01"},
        "correctMeasurement": {"measurementId": G("Measurement", 999_999), "observedValue": "1", "reason": "r"},
        "voidMeasurement": {"measurementId": G("Measurement", 999_999), "reason": "r"},
        "openDispute": {"subjectId": e, "reason": "r"},
        "resolveDispute": {"disputeId": G("Dispute", 999_999), "outcome": "DISMISSED", "reason": "r"},
        "approveChangeRequest": {"changeRequestId": G("ChangeRequest", 999_999)},
        "rejectChangeRequest": {"changeRequestId": G("ChangeRequest", 999_999), "reason": "r"},
    }


def test_an_auditor_is_refused_every_mutation_and_nothing_changes(api, db, case_a):
    # given every mutation the schema has, each with a well-formed input
    inputs = mutations_with_inputs(case_a)
    names = set(schema._schema.mutation_type.fields)
    assert names == set(inputs), f"add the new mutations to this table: {names ^ set(inputs)}"
    auditor = api.token("AUDITOR")
    before = table_counts(db)
    for name, inp in inputs.items():
        type_name = name[0].upper() + name[1:] + "Input"
        body = api.post(f"mutation($i: {type_name}!) {{ {name}(input: $i) {{ userErrors {{ code }} }} }}", {"i": inp}, auditor)
        assert "errors" not in body, (name, body)
        assert [e["code"] for e in body["data"][name]["userErrors"]] == ["READ_ONLY_ROLE"], name
    assert table_counts(db) == before


def test_an_amount_traces_to_the_evidence_behind_it(api, db, case_a):
    approve(db, calc(db, case_a))
    trace = api.ok("""{ ledgerTransactions(first: 50) { nodes { sequence kind payout {
        inputsHash recomputed { matches }
        lines { metricCode net { amount } }
        items(metricCode: "SCHOOL_PASS") { net { amount } evidence { achievedOn submittedBy decidedBy decidedAt
             documents { sha256 } participant { externalRef area } } } } } } }""", token=api.token("AUDITOR"))
    payout_tx = [n for n in trace["ledgerTransactions"]["nodes"] if n["kind"] == "PAYOUT"]
    assert len(payout_tx) == 1
    p = payout_tx[0]["payout"]
    assert p["recomputed"]["matches"]
    items = p["items"]
    assert sorted(i["net"]["amount"] for i in items) == ["40000.00", "46000.00"]
    assert {i["evidence"]["participant"]["externalRef"] for i in items} == {"P1", "P2"}
    assert all(i["evidence"]["submittedBy"].startswith("pia") and i["evidence"]["decidedBy"].startswith("vera")
               for i in items)


def test_the_ledger_as_of_a_time_is_consistent(api, db, case_a):
    first = approve(db, calc(db, case_a, end=date(2026, 3, 3)))
    with db.reading() as s:
        cut = journal.digest(s)
        tx = s.get(journal.Transaction, first.transaction_sequence)
        at = tx.posted_at
    approve(db, calc(db, case_a, start=date(2026, 3, 4), end=date(2026, 6, 30)))
    auditor = api.token("AUDITOR")
    data = api.ok("""query($at: DateTime) { ledgerAccounts(asOf: $at) { id code balance { amount } }
                     ledgerTransactions(asOf: $at, first: 100) { nodes { sequence entries { amount { amount } account { id } } } } }""",
                  {"at": at.isoformat()}, auditor)
    seqs = [n["sequence"] for n in data["ledgerTransactions"]["nodes"]]
    assert seqs[-1] == cut.sequence
    from collections import defaultdict
    from decimal import Decimal
    sums = defaultdict(Decimal)
    for n in data["ledgerTransactions"]["nodes"]:
        for e in n["entries"]:
            sums[e["account"]["id"]] += Decimal(e["amount"]["amount"])
    for acc in data["ledgerAccounts"]:
        assert Decimal(acc["balance"]["amount"]) == sums.get(acc["id"], Decimal(0)), acc
    # obligations as of yesterday: none yet; today: both payouts
    yesterday = (utcnow().date() - timedelta(days=1)).isoformat()
    assert api.ok("query($d: Date) { obligations(asOf: $d) { outstanding { amount } } }", {"d": yesterday}, auditor)["obligations"] == []


def test_the_public_sees_aggregates_with_small_counts_suppressed(api, db, case_a):
    cid = G("OutcomeContract", case_a["contract"].id)
    q = """query($c: ID!) { publicResults(contractId: $c) { title provider ownership participants
             metrics { code participants achieved rate } } }"""
    # no token: three participants, two outcomes each metric: all under 5, so null
    res = api.ok(q, {"c": cid})["publicResults"]
    assert res["ownership"] == "PRIVATE" and res["participants"] is None
    assert all(m["participants"] is None and m["achieved"] is None and m["rate"] is None for m in res["metrics"])
    # everything else still needs a token; the evaluation report without one is the published,
    # suppressed aggregate (a party's token sees its own contracts only: test_authorization)
    assert api.post("{ contracts { nodes { title } } }")["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    report = api.ok("{ evaluationReport { byOwnership { label contracts amountPaid { amount } costPerOutcome { amount } } } }")
    assert report["evaluationReport"]["byOwnership"][0]["label"] == "PRIVATE"


def test_published_rates_once_counts_are_large_enough(api, db, case_a):
    from ledger import evidence as ev
    w = case_a
    with db.uow() as uow:
        for i in range(6):
            p = ev.enroll_participant(uow, actor=w["provider"], secret=b"s" * 16, contract_id=w["contract"].id,
                                      personal_identity_number=None, external_ref=f"X{i}", area=None,
                                      enrolled_on=date(2026, 1, 10), today=date(2026, 11, 23))
            e = ev.submit_evidence(uow, actor=w["provider"], contract_id=w["contract"].id, today=date(2026, 11, 23),
                                   claim=ev.Claim(p.id, "SCHOOL_PASS", achieved_on=date(2026, 5, 1)))
            ev.verify_evidence(uow, actor=w["verifier"], evidence_id=e.id, note=None)
        uow.commit()
    q = "query($c: ID!) { publicResults(contractId: $c) { participants metrics { code achieved rate } } }"
    res = api.ok(q, {"c": G("OutcomeContract", w["contract"].id)})["publicResults"]
    school = next(m for m in res["metrics"] if m["code"] == "SCHOOL_PASS")
    # 8 of 9 would identify the one who did not achieve it: suppressed, and so is the rate
    assert res["participants"] == 9 and school == {"code": "SCHOOL_PASS", "achieved": None, "rate": None}
    with db.uow() as uow:
        for i in range(4):
            ev.enroll_participant(uow, actor=w["provider"], secret=b"s" * 16, contract_id=w["contract"].id,
                                  personal_identity_number=None, external_ref=f"Y{i}", area=None,
                                  enrolled_on=date(2026, 1, 10), today=date(2026, 11, 23))
        uow.commit()
    res = api.ok(q, {"c": G("OutcomeContract", w["contract"].id)})["publicResults"]
    school = next(m for m in res["metrics"] if m["code"] == "SCHOOL_PASS")
    assert res["participants"] == 13 and school == {"code": "SCHOOL_PASS", "achieved": 8, "rate": "0.6154"}
