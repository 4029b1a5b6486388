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
from tests.ledger.test_investments import MUNI, distribute, make_bond, pay

ALL_SEEING = {"ADMIN", "FUND_MANAGER", "AUDITOR"}
REFUSED = {"PERMISSION_DENIED", "READ_ONLY_ROLE", "UNAUTHENTICATED", "UNKNOWN_CONTRACT", "UNKNOWN_EVIDENCE"}
CALLERS = ["ADMIN", "FUND_MANAGER", "AUDITOR", "MUNICIPALITY own", "MUNICIPALITY other", "PROVIDER own",
           "PROVIDER other", "VERIFIER own", "VERIFIER other", "INVESTOR own", "INVESTOR other", "no token"]

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
    "setIndigoFieldStatus": {"FUND_MANAGER"},
    "createInvestment": {"FUND_MANAGER"}, "recordDrawdown": {"FUND_MANAGER"}, "distributeReceipts": {"FUND_MANAGER"},
    "closeInvestments": {"FUND_MANAGER"},
    "grantLateClaim": {"FUND_MANAGER"},
    # the Case A world has no measurement: any verifier passes the role check and meets an unknown one
    # (another verifier's measurement answering as unknown is in tests/ledger/test_measurement_corrections.py)
    "correctMeasurement": {"VERIFIER own", "VERIFIER other"}, "voidMeasurement": {"VERIFIER own", "VERIFIER other"},
    "openDispute": {"PROVIDER own"}, "resolveDispute": {"FUND_MANAGER"},
    "approveChangeRequest": {"FUND_MANAGER"}, "rejectChangeRequest": {"FUND_MANAGER"},
}

# each query field: a document, and who sees the Case A world's object through it
OWN_CONTRACT = ALL_SEEING | {"MUNICIPALITY own", "PROVIDER own", "VERIFIER own"}
MONEY_PARTIES = ALL_SEEING | {"MUNICIPALITY own", "PROVIDER own", "INVESTOR own"}  # the investor is owed its lines
BOND_PARTIES = ALL_SEEING | {"PROVIDER own", "INVESTOR own"}
QUERIES = {
    "viewer": ("{ viewer { role } }", lambda d: d["viewer"] is not None, set(CALLERS) - {"no token"}),
    "node": ("query($c: ID!) { node(id: $c) { id } }", lambda d: d["node"] is not None, OWN_CONTRACT),
    "nodes": ("query($c: ID!) { nodes(ids: [$c]) { id } }", lambda d: d["nodes"] == [{"id": d["nodes"][0]["id"]}]
              if d["nodes"][0] else False, OWN_CONTRACT),
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
    "ledgerAccountsConnection": ("{ ledgerAccountsConnection { totalCount nodes { id } } }",
                                 lambda d: d["ledgerAccountsConnection"]["nodes"], MONEY_PARTIES),
    "balance": ("query($a: ID!) { balance(accountId: $a) { amount } }", lambda d: d and d.get("balance"),
                ALL_SEEING | {"PROVIDER own"}),  # the account is the provider's
    "obligations": ("{ obligations { outstanding { amount } } }", lambda d: d["obligations"], MONEY_PARTIES),
    "obligationsConnection": ("{ obligationsConnection { totalCount nodes { outstanding { amount } } } }",
                              lambda d: d["obligationsConnection"]["nodes"], MONEY_PARTIES),
    "ledgerDigest": ("{ ledgerDigest { sequence } }", lambda d: d["ledgerDigest"], set(CALLERS) - {"no token"}),
    "verifyLedger": ("{ verifyLedger { ok } }", lambda d: d["verifyLedger"]["ok"], set(CALLERS) - {"no token"}),
    "publicResults": ("query($c: ID!) { publicResults(contractId: $c) { title } }", lambda d: d["publicResults"],
                      set(CALLERS)),
    "evaluationReport": ("{ evaluationReport { byContract { label } } }", lambda d: d["evaluationReport"]["byContract"],
                         OWN_CONTRACT | {"INVESTOR own", "INVESTOR other", "no token"}),
    # a contract's party sees only its contracts; an investor and the public see the published aggregate
    "auditEvents": ("{ auditEvents { nodes { id } } }", lambda d: d["auditEvents"]["nodes"], ALL_SEEING),
    "indigoProject": ("query($c: ID!) { indigoProject(contractId: $c) }", lambda d: d["indigoProject"], set(CALLERS)),
    "indigoProject private": ("query($c: ID!) { indigoProject(contractId: $c, public: false) }",
                              lambda d: d["indigoProject"], OWN_CONTRACT),
    "investments": ("query($c: ID!) { investments(contractId: $c) { id } }", lambda d: d["investments"], BOND_PARTIES),
    "distributions": ("query($c: ID!) { distributions(contractId: $c) { id } }", lambda d: d["distributions"],
                      BOND_PARTIES),
    "distributionsConnection": ("query($c: ID!) { distributionsConnection(contractId: $c) { totalCount nodes { id } } }",
                                lambda d: d["distributionsConnection"]["nodes"], BOND_PARTIES),
    "distribution": ("query($d: ID!) { distribution(id: $d) { id } }", lambda d: d["distribution"], BOND_PARTIES),
    "signedTreeHead": ("{ signedTreeHead { treeSize } }", lambda d: d["signedTreeHead"]["treeSize"], set(CALLERS)),
    "inclusionProof": ("query($s: Int!) { inclusionProof(sequence: $s) { leafIndex } }",  # the payout's posting
                       lambda d: d["inclusionProof"], MONEY_PARTIES - {"INVESTOR own"}),  # not the bond's
    "consistencyProof": ("{ consistencyProof(fromSize: 1) { proof } }", lambda d: d["consistencyProof"],
                         set(CALLERS) - {"no token"}),
    "forecast": ("{ forecast { certain { amount } party { id } } }", lambda d: d["forecast"],
                 MONEY_PARTIES - {"INVESTOR own"}),  # what payers may still pay: an investor pays nothing
    "forecastConnection": ("{ forecastConnection { totalCount nodes { certain { amount } party { id } } } }",
                           lambda d: d["forecastConnection"]["nodes"], MONEY_PARTIES - {"INVESTOR own"}),
    # lists that are empty in the Case A world: answered (scoped) for every token
    "disputes": ("{ disputes { nodes { id } } }", lambda d: d["disputes"] is not None, set(CALLERS) - {"no token"}),
    "changeRequests": ("{ changeRequests { nodes { id } } }", lambda d: d["changeRequests"] is not None,
                       set(CALLERS) - {"no token"}),
}


def tokens_for(api, db, w) -> dict[str, str | None]:
    others = {r: party(db, role=r) for r in ("MUNICIPALITY", "PROVIDER", "VERIFIER", "INVESTOR")}
    own = {"MUNICIPALITY": w["muni"], "PROVIDER": w["prov"], "VERIFIER": w["ver"],
           "INVESTOR": w.get("investor") or party(db, role="INVESTOR")}
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
    # the contract is an impact bond, and a distribution made its provider owe the investor
    make_bond(db, case_a)
    pay(db, case_a, case_a["muni"], case_a["prov"], "30000.00", actor=MUNI(case_a))
    distribution = distribute(db, case_a)
    api.ok('mutation { createParty(input: {name: "Revisionsbyrån", role: INVESTOR}) { userErrors { code } } }',
           token=api.token("FUND_MANAGER"))  # so the audit trail has an event
    token = tokens_for(api, db, case_a)[caller]
    from ledger.models import Account, PayoutCalculation
    from sqlalchemy import or_, select
    with db.reading() as s:
        payout_id, payout_sequence = s.execute(select(PayoutCalculation.id,
                                                      PayoutCalculation.transaction_sequence)).one()
        # the provider's account that is not held against the municipality (ordered: PostgreSQL's
        # heap order after many rolled-back tests is not insertion order)
        account_id = s.execute(select(Account.id).where(
            Account.party_id == case_a["prov"].id,
            or_(Account.counterparty_id.is_(None), Account.counterparty_id != case_a["muni"].id))
            .order_by(Account.id)).scalars().first()
    variables = {"c": G("OutcomeContract", case_a["contract"].id), "f": G("Fund", case_a["fund"].id),
                 "p": G("Payout", payout_id), "a": G("LedgerAccount", account_id),
                 "d": G("Distribution", distribution.id), "s": payout_sequence}
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


# --- leaks (issue 14): what an existing-but-forbidden object looks like -----------------------

ENTRIES = """{ ledgerTransactions(first: 100) { nodes { sequence entries { account { id party { id } counterparty { id } }
  amount { amount } balanceAfter { amount } } } } }"""


@pytest.mark.parametrize("caller", CALLERS[:-1])
def test_ledger_entries_on_accounts_the_caller_may_not_see_are_left_out(api, db, case_a, caller):
    approve(db, calc(db, case_a))
    fm = api.token("FUND_MANAGER")
    muni, prov, c = G("Party", case_a["muni"].id), G("Party", case_a["prov"].id), G("OutcomeContract", case_a["contract"].id)
    owed = api.ok("{ obligations { debtor { id } creditor { id } contract { id } outstanding { amount } } }", token=fm)
    debt = next(o for o in owed["obligations"] if o["debtor"]["id"] == muni and o["creditor"]["id"] == prov)
    paid = api.ok("""mutation($i: RecordPaymentInput!) { recordPayment(input: $i) { userErrors { code } } }""",
                  {"i": {"debtorId": muni, "creditorId": prov, "contractId": c, "paidOn": "2026-07-01", "reference": "r",
                         "amount": {"amount": debt["outstanding"]["amount"], "currency": "SEK"}}}, token=fm)
    assert paid["recordPayment"]["userErrors"] == []
    token = tokens_for(api, db, case_a)[caller]
    nodes = api.ok(ENTRIES, token=token)["ledgerTransactions"]["nodes"]
    entries = [e for t in nodes for e in t["entries"]]
    if caller.split()[0] in ALL_SEEING:
        assert entries and all(e["account"] is not None for e in entries)
        return
    # every entry shown is on an account the caller may see (its party's, or one held against
    # it): an account it may not see would resolve to null
    assert all(e["account"] is not None for e in entries), [e for e in entries if e["account"] is None][:2]
    if caller in ("MUNICIPALITY own", "PROVIDER own"):
        assert entries
    if caller.endswith("other"):
        assert not entries, entries[:2]


def test_record_payment_on_another_partys_contract_answers_like_a_missing_one(api, db, case_a):
    approve(db, calc(db, case_a))
    other_muni = party(db, role="MUNICIPALITY")
    token = api.token("MUNICIPALITY", party_id=other_muni.id)
    doc = "mutation($i: RecordPaymentInput!) { recordPayment(input: $i) { userErrors { code field message } } }"

    def pay(contract_gid: str) -> list:
        return api.ok(doc, {"i": {"debtorId": G("Party", other_muni.id), "creditorId": G("Party", case_a["prov"].id),
                                  "contractId": contract_gid, "amount": {"amount": "100.00", "currency": "SEK"},
                                  "paidOn": "2026-07-01", "reference": "r"}}, token=token)["recordPayment"]["userErrors"]

    existing, missing_id = case_a["contract"].id, 999_999
    forbidden = pay(G("OutcomeContract", existing))
    missing = pay(G("OutcomeContract", missing_id))
    assert [e["code"] for e in forbidden] == ["UNKNOWN_CONTRACT"]
    assert forbidden[0]["message"].replace(str(existing), "N") == missing[0]["message"].replace(str(missing_id), "N")
    assert forbidden[0]["field"] == missing[0]["field"]


def test_evaluation_report_without_a_token_is_the_suppressed_public_aggregate(api, db, case_a):
    approve(db, calc(db, case_a))
    public = api.ok("{ evaluationReport { full byContract { label } } }")["evaluationReport"]
    assert public["full"] is False


@pytest.mark.parametrize("role,party_key,sees", [("PROVIDER", "prov", True), ("MUNICIPALITY", "muni", True),
                                                  ("PROVIDER", None, False), ("AUDITOR", None, True)])
def test_evaluation_report_is_scoped_to_the_callers_party(api, db, case_a, role, party_key, sees):
    approve(db, calc(db, case_a))
    party_id = case_a[party_key].id if party_key else (party(db, role=role).id if role != "AUDITOR" else None)
    token = api.token(role, party_id=party_id)
    report = api.ok("{ evaluationReport { byContract { label } byProvider { label } byOwnership { label amountPaid { amount } } } }",
                    token=token)["evaluationReport"]
    assert bool(report["byContract"]) == sees and bool(report["byProvider"]) == sees and bool(report["byOwnership"]) == sees


def test_production_errors_do_not_suggest_field_names(db):
    from starlette.testclient import TestClient
    from api.app import create_app
    from ledger.config import Settings
    docs = ["{ viewr { role } }", "{ contracts(frist: 1) { nodes { id } } }", "{ parties(role: PROVIDR) { nodes { id } } }",
            'mutation { createParty(input: {nme: "x", role: PROVIDER}) { userErrors { code } } }']
    for env, suggests in (("production", False), ("development", True)):
        app = create_app(Settings(database_url="unused", env=env, secret=b"matrix-secret-0123456789"), db, workers=2)
        with TestClient(app) as client:
            for doc in docs:
                messages = " ".join(e["message"] for e in client.post("/graphql", json={"query": doc}).json()["errors"])
                assert ("Did you mean" in messages) == suggests, (env, doc, messages)
