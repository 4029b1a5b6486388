"""Tokens, parties, the ledger's queries and reversal through GraphQL."""
from __future__ import annotations

from datetime import timedelta

from api.graphql.base import to_global_id
from ledger.models import utcnow
from tests.conftest import table_counts
from tests.factories import accounts, party, post

CREATE_PARTY = """
mutation($input: CreatePartyInput!) {
  createParty(input: $input) { party { id name role ownership orgNumber } userErrors { field message code } }
}"""

CREATE_TOKEN = """
mutation($input: CreateApiTokenInput!) {
  createApiToken(input: $input) { token apiToken { id name role party { name } } userErrors { field code message } }
}"""

VIEWER = "{ viewer { name role party { name } } }"

LEDGER = """
query($account: ID!, $seq: Int) {
  ledgerDigest { sequence hash }
  verifyLedger { ok checkedTransactions firstInvalidSequence }
  balance(accountId: $account) { amount currency }
  before: balance(accountId: $account, asOfSequence: $seq) { amount currency }
  ledgerTransactions(first: 1) {
    edges { cursor node { id sequence kind hash previousHash entries { amount { amount currency } account { id code } } } }
    pageInfo { hasNextPage endCursor }
  }
}"""

REVERSE = """
mutation($input: ReverseTransactionInput!) {
  reverseTransaction(input: $input) {
    transaction { sequence kind reverses { sequence } entries { amount { amount } } }
    userErrors { field code message }
  }
}"""


def test_requests_without_a_valid_token_are_refused(api):
    # no token: nothing but public data
    body = api.post("{ parties { nodes { name } } }")
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # a wrong or malformed token is refused outright
    assert api.post(VIEWER, token="utf_nonsense", expect_status=401)["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    r = api.client.post("/graphql", json={"query": VIEWER}, headers={"Authorization": "Basic abc"})
    assert r.status_code == 401


def test_a_revoked_or_expired_token_is_refused(api, db):
    # given
    admin = api.token("ADMIN")
    other = api.post(CREATE_TOKEN, {"input": {"name": "eve", "role": "AUDITOR"}}, admin)["data"]["createApiToken"]
    assert api.ok(VIEWER, token=other["token"])["viewer"]["role"] == "AUDITOR"
    # when
    revoked = api.ok("mutation($id: ID!) { revokeApiToken(input: {tokenId: $id}) { apiToken { revokedAt } userErrors { code } } }",
                     {"id": other["apiToken"]["id"]}, admin)
    # then
    assert revoked["revokeApiToken"]["apiToken"]["revokedAt"]
    assert api.post(VIEWER, token=other["token"], expect_status=401)
    expired = api.post(CREATE_TOKEN, {"input": {"name": "old", "role": "AUDITOR",
                                                "expiresAt": (utcnow() - timedelta(minutes=1)).isoformat()}}, admin)
    assert api.post(VIEWER, token=expired["data"]["createApiToken"]["token"], expect_status=401)


def test_a_token_revoked_after_use_is_refused_before_anything_is_read_or_written(api, db):
    # given a token this server has already let in (its actor remembered; the token checked with the first read)
    admin = api.token("ADMIN")
    other = api.post(CREATE_TOKEN, {"input": {"name": "eve", "role": "ADMIN"}}, admin)["data"]["createApiToken"]
    assert api.ok(VIEWER, token=other["token"])["viewer"]["role"] == "ADMIN"
    first_use = api.post("{ viewer { name } }", token="utf_never_issued", expect_status=401)
    api.ok("mutation($id: ID!) { revokeApiToken(input: {tokenId: $id}) { apiToken { revokedAt } } }",
           {"id": other["apiToken"]["id"]}, admin)
    before = table_counts(db)
    # when it reads, writes or asks nothing of the database
    answers = [api.post(query, variables, token=other["token"], expect_status=401) for query, variables in (
        ("{ funds { nodes { id } } }", None), (CREATE_PARTY, {"input": {"name": "Eves AB", "role": "PROVIDER", "ownership": "PRIVATE",
                                                               "orgNumber": "5560360793"}}), (VIEWER, None))]
    # then each is answered like a token checked before the query, and nothing was written
    assert all(a["errors"][0]["extensions"] == first_use["errors"][0]["extensions"] for a in answers)
    assert all(a["errors"][0]["message"] == "this token has been revoked" and "data" not in a for a in answers)
    assert table_counts(db) == before


def test_tokens_are_stored_hashed_and_bound_to_a_role_and_party(api, db):
    # given
    admin = api.token("ADMIN")
    p = api.ok(CREATE_PARTY, {"input": {"name": "Skolbolaget AB", "role": "PROVIDER", "ownership": "PRIVATE",
                                        "orgNumber": "5560360793"}}, admin)["createParty"]["party"]
    # when
    created = api.ok(CREATE_TOKEN, {"input": {"name": "pia", "role": "PROVIDER", "partyId": p["id"]}}, admin)["createApiToken"]
    # then
    assert created["userErrors"] == [] and created["token"].startswith("utf_")
    assert api.ok(VIEWER, token=created["token"])["viewer"] == {"name": "pia", "role": "PROVIDER", "party": {"name": "Skolbolaget AB"}}
    from sqlalchemy import text
    with db.reading() as s:
        stored = s.execute(text("SELECT secret_hash FROM api_tokens")).scalars().all()
    assert created["token"] not in stored and all(len(h) == 64 for h in stored)
    # a provider token must name a provider party
    bad = api.ok(CREATE_TOKEN, {"input": {"name": "x", "role": "PROVIDER"}}, admin)["createApiToken"]
    assert bad["userErrors"][0]["code"] == "PARTY_REQUIRED" and bad["token"] is None
    # only admins create tokens
    denied = api.ok(CREATE_TOKEN, {"input": {"name": "x", "role": "ADMIN"}}, created["token"])["createApiToken"]
    assert denied["userErrors"][0]["code"] == "PERMISSION_DENIED"


def test_create_party_validates_and_writes_nothing_on_bad_input(api, db):
    fm = api.token("FUND_MANAGER")
    before = table_counts(db)
    cases = [
        ({"name": "X", "role": "MUNICIPALITY", "orgNumber": "212000-0143"}, "INVALID_ORG_NUMBER"),
        ({"name": "X", "role": "MUNICIPALITY", "orgNumber": "12345"}, "INVALID_ORG_NUMBER"),
        ({"name": "X", "role": "PROVIDER"}, "OWNERSHIP_REQUIRED"),
        ({"name": "X", "role": "FUND", "ownership": "PRIVATE"}, "OWNERSHIP_NOT_ALLOWED"),
        ({"name": "  ", "role": "FUND"}, "REQUIRED"),
        ({"name": "A\x00B", "role": "FUND"}, "INVALID_TEXT"),
    ]
    for inp, code in cases:
        errs = api.ok(CREATE_PARTY, {"input": inp}, fm)["createParty"]["userErrors"]
        assert [e["code"] for e in errs] == [code], inp
    assert table_counts(db) == before
    auditor = api.token("AUDITOR")
    errs = api.ok(CREATE_PARTY, {"input": {"name": "X", "role": "FUND"}}, auditor)["createParty"]["userErrors"]
    assert errs[0]["code"] == "READ_ONLY_ROLE"


def test_idempotency_key_returns_the_first_result_and_refuses_other_input(api, db):
    fm = api.token("FUND_MANAGER")
    inp = {"name": "Region Norr", "role": "MUNICIPALITY", "idempotencyKey": "abc-1"}
    first = api.ok(CREATE_PARTY, {"input": inp}, fm)["createParty"]
    again = api.ok(CREATE_PARTY, {"input": inp}, fm)["createParty"]
    assert first["party"]["id"] == again["party"]["id"]
    before = table_counts(db)
    other = api.ok(CREATE_PARTY, {"input": {**inp, "name": "Region Syd"}}, fm)["createParty"]
    assert other["userErrors"][0]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert table_counts(db) == before
    assert before["parties"] == 1


def test_ledger_queries_balances_digest_and_reversal(api, db):
    # given two postings
    a, b = accounts(db, 2)
    t1 = post(db, [(a, "100.00"), (b, "-100.00")], kind="PAYMENT")
    post(db, [(a, "20.00"), (b, "-20.00")], kind="PAYMENT")
    auditor, fm = api.token("AUDITOR"), api.token("FUND_MANAGER")
    acc = to_global_id("LedgerAccount", a.id)
    # when
    data = api.ok(LEDGER, {"account": acc, "seq": t1.sequence}, auditor)
    # then
    assert data["ledgerDigest"]["sequence"] == 2
    assert data["verifyLedger"] == {"ok": True, "checkedTransactions": 2, "firstInvalidSequence": None}
    assert data["balance"] == {"amount": "120.00", "currency": "SEK"}
    assert data["before"] == {"amount": "100.00", "currency": "SEK"}
    page = data["ledgerTransactions"]
    assert page["pageInfo"]["hasNextPage"] and page["edges"][0]["node"]["sequence"] == 1
    nxt = api.ok("query($after: String) { ledgerTransactions(first: 5, after: $after) { nodes { sequence previousHash } } }",
                 {"after": page["pageInfo"]["endCursor"]}, auditor)
    assert [n["sequence"] for n in nxt["ledgerTransactions"]["nodes"]] == [2]
    # the auditor cannot reverse; the fund manager can, once
    tx_id = page["edges"][0]["node"]["id"]
    denied = api.ok(REVERSE, {"input": {"transactionId": tx_id, "reason": "typo"}}, auditor)["reverseTransaction"]
    assert denied["userErrors"][0]["code"] == "READ_ONLY_ROLE"
    done = api.ok(REVERSE, {"input": {"transactionId": tx_id, "reason": "typo"}}, fm)["reverseTransaction"]
    assert done["transaction"]["reverses"]["sequence"] == 1
    assert [e["amount"]["amount"] for e in done["transaction"]["entries"]] == ["-100.00", "100.00"]
    twice = api.ok(REVERSE, {"input": {"transactionId": tx_id, "reason": "typo"}}, fm)["reverseTransaction"]
    assert twice["userErrors"][0]["code"] == "ALREADY_REVERSED"
    bad = api.ok(REVERSE, {"input": {"transactionId": "not-an-id", "reason": "typo"}}, fm)["reverseTransaction"]
    assert bad["userErrors"] == [{"field": ["transactionId"], "code": "INVALID_ID", "message": bad["userErrors"][0]["message"]}]
    # a digest taken now verifies later
    d = api.ok("{ ledgerDigest { sequence hash } }", token=auditor)["ledgerDigest"]
    post(db, [(a, "1.00"), (b, "-1.00")], kind="PAYMENT")
    v = api.ok("query($d: LedgerDigestInput) { verifyLedger(digest: $d) { ok } }", {"d": d}, auditor)
    assert v["verifyLedger"]["ok"]


def test_party_bound_tokens_see_only_their_own_accounts_and_transactions(api, db):
    mine, theirs = party(db, role="PROVIDER"), party(db, role="PROVIDER")
    a1, a2 = accounts(db, 2, owner=mine)
    b1, b2 = accounts(db, 2, owner=theirs)
    post(db, [(a1, "5.00"), (a2, "-5.00")], kind="PAYMENT")
    post(db, [(b1, "7.00"), (b2, "-7.00")], kind="PAYMENT")
    tok = api.token("PROVIDER", party_id=mine.id)
    data = api.ok("{ ledgerAccounts { id } ledgerTransactions { nodes { sequence } } }", token=tok)
    assert {x["id"] for x in data["ledgerAccounts"]} == {to_global_id("LedgerAccount", a.id) for a in (a1, a2)}
    assert [n["sequence"] for n in data["ledgerTransactions"]["nodes"]] == [1]
    other = api.ok("query($id: ID!) { node(id: $id) { id } }", {"id": to_global_id("LedgerAccount", b1.id)}, tok)
    assert other["node"] is None
    body = api.post("query($id: ID!) { balance(accountId: $id) { amount } }", {"id": to_global_id("LedgerAccount", b1.id)}, tok)
    assert body["errors"][0]["extensions"]["code"] == "UNKNOWN_ACCOUNT"
    assert api.post("{ auditEvents { nodes { id } } }", token=tok)["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"


def test_every_mutation_leaves_an_audit_event(api):
    admin = api.token("ADMIN", name="ada")
    api.ok(CREATE_PARTY, {"input": {"name": "Fonden", "role": "FUND"}}, admin)
    events = api.ok("{ auditEvents { nodes { actor operation input resultType } } }", token=admin)["auditEvents"]["nodes"]
    assert events[-1]["actor"] == "ada" and events[-1]["operation"] == "createParty"
    assert '"name":"Fonden"' in events[-1]["input"] and events[-1]["resultType"] == "Party"


def test_health_and_readiness(api):
    assert api.client.get("/healthz").json() == {"status": "ok"}
    r = api.client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_unexpected_errors_are_masked(api, monkeypatch):
    from ledger import journal
    monkeypatch.setattr(journal, "digest", lambda s: 1 / 0)
    body = api.post("{ ledgerDigest { sequence } }", token=api.token("AUDITOR"))
    assert body["errors"][0]["message"] == "Unexpected error"
    assert "division" not in str(body)


def test_a_token_records_when_it_was_last_used_and_its_secret_is_shown_once(api, db):
    from sqlalchemy import select
    from ledger.models import ApiToken
    admin = api.token("ADMIN")
    inp = {"name": "olle", "role": "AUDITOR", "idempotencyKey": "tok-1"}
    first = api.ok(CREATE_TOKEN, {"input": inp}, admin)["createApiToken"]
    retry = api.ok(CREATE_TOKEN, {"input": inp}, admin)["createApiToken"]
    # a retry gets the same token record, never the secret again: only its hash is kept
    assert first["token"] and retry["token"] is None and retry["apiToken"]["id"] == first["apiToken"]["id"]
    with db.reading() as s:
        assert s.execute(select(ApiToken.last_used_at).where(ApiToken.name == "olle")).scalar_one() is None
    api.ok(VIEWER, token=first["token"])
    with db.reading() as s:
        assert s.execute(select(ApiToken.last_used_at).where(ApiToken.name == "olle")).scalar_one() is not None
