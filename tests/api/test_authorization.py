"""The authorization matrix: every query field and every mutation against every role and no token.

Party-bound roles are tried twice: as the party in the contract ("own") and as another party
of the same role ("other"), including reads through node(id:) and through nested fields.
"""
from __future__ import annotations

import pytest

from api.graphql.base import to_global_id as G
from api.graphql.schema import schema
from tests.api.test_audit import mutations_with_inputs
from tests.factories import party
from tests.ledger.test_calculations import approve, calc, case_a  # noqa: F401

ALL_SEEING = {"ADMIN", "FUND_MANAGER", "AUDITOR"}
REFUSED = {"PERMISSION_DENIED", "READ_ONLY_ROLE", "UNAUTHENTICATED", "UNKNOWN_CONTRACT", "UNKNOWN_EVIDENCE"}
CALLERS = ["ADMIN", "FUND_MANAGER", "AUDITOR", "MUNICIPALITY own", "MUNICIPALITY other", "PROVIDER own",
           "PROVIDER other", "VERIFIER own", "VERIFIER other", "no token"]

# who may run each mutation (party-bound roles only for their own contract or debts)
MUTATIONS = {
    "createParty": {"ADMIN", "FUND_MANAGER"}, "createApiToken": {"ADMIN"}, "revokeApiToken": {"ADMIN"},
    "createFund": {"FUND_MANAGER"}, "depositCapital": {"FUND_MANAGER"}, "createContract": {"FUND_MANAGER"},
    "activateContract": {"FUND_MANAGER"}, "amendContract": {"FUND_MANAGER"}, "terminateContract": {"FUND_MANAGER"},
    "completeContract": {"FUND_MANAGER"}, "issueSanction": {"FUND_MANAGER"}, "liftSuspension": {"FUND_MANAGER"},
    "enrollParticipant": {"PROVIDER own"}, "submitEvidence": {"PROVIDER own"}, "submitEvidenceBatch": {"PROVIDER own"},
    "verifyEvidence": {"VERIFIER own"}, "rejectEvidence": {"VERIFIER own"},
    "invalidateEvidence": {"VERIFIER own", "FUND_MANAGER"}, "recordMeasurement": {"VERIFIER own"},
    "calculatePayout": {"FUND_MANAGER"}, "approvePayout": {"FUND_MANAGER"},
    "recordPayment": {"FUND_MANAGER", "MUNICIPALITY own"}, "reverseTransaction": {"FUND_MANAGER"},
    # the Case A world has no measurement: any verifier passes the role check and meets an unknown one
    # (another verifier's measurement answering as unknown is in tests/ledger/test_measurement_corrections.py)
    "correctMeasurement": {"VERIFIER own", "VERIFIER other"}, "voidMeasurement": {"VERIFIER own", "VERIFIER other"},
    "openDispute": {"PROVIDER own"}, "resolveDispute": {"FUND_MANAGER"},
    "approveChangeRequest": {"FUND_MANAGER"}, "rejectChangeRequest": {"FUND_MANAGER"},
}

# each query field: a document, and who sees the Case A world's object through it
OWN_CONTRACT = ALL_SEEING | {"MUNICIPALITY own", "PROVIDER own", "VERIFIER own"}
MONEY_PARTIES = ALL_SEEING | {"MUNICIPALITY own", "PROVIDER own"}
QUERIES = {
    "viewer": ("{ viewer { role } }", lambda d: d["viewer"] is not None, set(CALLERS) - {"no token"}),
    "node": ("query($c: ID!) { node(id: $c) { id } }", lambda d: d["node"] is not None, OWN_CONTRACT),
    "node nested": ("query($c: ID!) { node(id: $c) { ... on OutcomeContract { evidence { nodes { id } } } } }",
                    lambda d: d["node"] is not None and d["node"]["evidence"]["nodes"], OWN_CONTRACT),
    "parties": ("{ parties { nodes { id } } }", lambda d: d["parties"]["nodes"], set(CALLERS) - {"no token"}),
    "funds": ("{ funds { nodes { id } } }", lambda d: d["funds"]["nodes"], OWN_CONTRACT),
    "fund": ("query($f: ID!) { fund(id: $f) { capital { amount } } }", lambda d: d["fund"], OWN_CONTRACT),
    "contracts": ("{ contracts { nodes { id } } }", lambda d: d["contracts"]["nodes"], OWN_CONTRACT),
    "contract": ("query($c: ID!) { contract(id: $c) { title } }", lambda d: d["contract"], OWN_CONTRACT),
    "evidence": ("{ evidence { nodes { id participant { id } } } }", lambda d: d["evidence"]["nodes"], OWN_CONTRACT),
    "payouts": ("{ payouts { nodes { id } } }", lambda d: d["payouts"]["nodes"], OWN_CONTRACT),
    "payout": ("query($p: ID!) { payout(id: $p) { total { amount } } }", lambda d: d["payout"], OWN_CONTRACT),
    "ledgerTransactions": ("{ ledgerTransactions { nodes { sequence } } }",
                           lambda d: d["ledgerTransactions"]["nodes"], MONEY_PARTIES),
    "ledgerAccounts": ("{ ledgerAccounts { id } }", lambda d: d["ledgerAccounts"], MONEY_PARTIES),
    "balance": ("query($a: ID!) { balance(accountId: $a) { amount } }", lambda d: d and d.get("balance"),
                ALL_SEEING | {"PROVIDER own"}),  # the account is the provider's
    "obligations": ("{ obligations { outstanding { amount } } }", lambda d: d["obligations"], MONEY_PARTIES),
    "ledgerDigest": ("{ ledgerDigest { sequence } }", lambda d: d["ledgerDigest"], set(CALLERS) - {"no token"}),
    "verifyLedger": ("{ verifyLedger { ok } }", lambda d: d["verifyLedger"]["ok"], set(CALLERS) - {"no token"}),
    "publicResults": ("query($c: ID!) { publicResults(contractId: $c) { title } }", lambda d: d["publicResults"],
                      set(CALLERS)),
    "evaluationReport": ("{ evaluationReport { byContract { label } } }", lambda d: d["evaluationReport"]["byContract"],
                         set(CALLERS)),
    "auditEvents": ("{ auditEvents { nodes { id } } }", lambda d: d["auditEvents"]["nodes"], ALL_SEEING),
    # lists that are empty in the Case A world: answered (scoped) for every token
    "disputes": ("{ disputes { nodes { id } } }", lambda d: d["disputes"] is not None, set(CALLERS) - {"no token"}),
    "changeRequests": ("{ changeRequests { nodes { id } } }", lambda d: d["changeRequests"] is not None,
                       set(CALLERS) - {"no token"}),
}


def tokens_for(api, db, w) -> dict[str, str | None]:
    others = {r: party(db, role=r) for r in ("MUNICIPALITY", "PROVIDER", "VERIFIER")}
    own = {"MUNICIPALITY": w["muni"], "PROVIDER": w["prov"], "VERIFIER": w["ver"]}
    out = {r: api.token(r, name=f"{r.lower()}-caller") for r in sorted(ALL_SEEING)}
    for r in own:
        out[f"{r} own"] = api.token(r, name=f"{r.lower()}-own", party_id=own[r].id)
        out[f"{r} other"] = api.token(r, name=f"{r.lower()}-other", party_id=others[r].id)
    out["no token"] = None
    return out


def test_the_tables_cover_every_field_of_the_schema():
    assert set(MUTATIONS) == set(schema._schema.mutation_type.fields)
    assert {k.split()[0] for k in QUERIES} == set(schema._schema.query_type.fields)


@pytest.mark.parametrize("caller", CALLERS)
def test_each_caller_sees_exactly_what_its_role_and_party_allow(api, db, case_a, caller):
    approve(db, calc(db, case_a))
    api.ok('mutation { createParty(input: {name: "Revisionsbyrån", role: INVESTOR}) { userErrors { code } } }',
           token=api.token("FUND_MANAGER"))  # so the audit trail has an event
    token = tokens_for(api, db, case_a)[caller]
    from ledger.models import Account, PayoutCalculation
    from sqlalchemy import select
    with db.reading() as s:
        payout_id = s.execute(select(PayoutCalculation.id)).scalar_one()
        account_id = s.execute(select(Account.id).where(Account.party_id == case_a["prov"].id)).scalars().first()
    variables = {"c": G("OutcomeContract", case_a["contract"].id), "f": G("Fund", case_a["fund"].id),
                 "p": G("Payout", payout_id), "a": G("LedgerAccount", account_id)}
    wrong = []
    for name, (doc, saw, allowed) in QUERIES.items():
        used = {k: v for k, v in variables.items() if f"${k}" in doc}
        body = api.post(doc, used, token)
        seen = bool(body.get("data") and not body.get("errors") and saw(body["data"]))
        if seen != (caller in allowed):
            wrong.append((name, "saw it" if seen else "did not see it", body.get("errors")))
    assert not wrong, wrong


@pytest.mark.parametrize("caller", CALLERS)
def test_each_caller_may_run_exactly_the_mutations_of_its_role(api, db, case_a, caller):
    token = tokens_for(api, db, case_a)[caller]
    wrong = []
    for name, inp in mutations_with_inputs(case_a).items():
        type_name = name[0].upper() + name[1:] + "Input"
        body = api.post(f"mutation($i: {type_name}!) {{ {name}(input: $i) {{ userErrors {{ code }} }} }}", {"i": inp}, token)
        codes = {e["code"] for e in body["data"][name]["userErrors"]}
        refused = bool(codes & REFUSED)
        if refused == (caller in MUTATIONS[name]):
            wrong.append((name, codes))
    assert not wrong, wrong
