"""Proofs through GraphQL: signed tree heads, inclusion and consistency proofs, receipts, access, bad input."""
from __future__ import annotations

import base64
import hashlib
from datetime import datetime

import pytest
from cryptography.hazmat.primitives import serialization
from starlette.testclient import TestClient

from api.app import create_app
from api.graphql.base import to_global_id as G
from ledger import merkle, signing
from ledger.access import Actor
from ledger.config import Settings
from tests.factories import accounts, funded, party, post
from tests.ledger.test_calculations import case_a  # noqa: F401  (the Case A world as a fixture)

STH = "query($n: Int) { signedTreeHead(treeSize: $n) { treeSize rootHash timestamp signature keyId } }"
INCLUSION = """query($s: Int!, $n: Int) { inclusionProof(sequence: $s, treeSize: $n) {
  sequence leafIndex treeSize transactionHash leafHash auditPath } }"""
CONSISTENCY = "query($m: Int!, $n: Int) { consistencyProof(fromSize: $m, toSize: $n) { fromSize toSize proof } }"
TX_HASHES = "{ ledgerTransactions(first: 100) { nodes { sequence hash } } }"
DEPOSIT = """mutation($i: DepositCapitalInput!) { depositCapital(input: $i) {
  transaction { sequence hash } userErrors { code }
  receipt { sequence transactionHash leafHash auditPath treeHead { treeSize rootHash timestamp signature keyId } } } }"""
VERIFY = """query($h: SignedTreeHeadInput) { verifyLedger(treeHead: $h) { ok reason checkedTransactions } }"""

FM = Actor(name="frida", role="FUND_MANAGER")


def public_key(api):
    r = api.client.get("/ledger/public-key")
    assert r.status_code == 200
    key = serialization.load_pem_public_key(r.content)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert r.headers["x-key-id"] == hashlib.sha256(raw).hexdigest()
    return key


def head_verifies(key, h: dict) -> bool:
    """The signature check as an outsider does it, from the documented bytes."""
    ms = int(datetime.fromisoformat(h["timestamp"]).timestamp() * 1000 + 0.5)
    message = (b"utfall tree head v1\n" + h["treeSize"].to_bytes(8, "big") + bytes.fromhex(h["rootHash"])
               + ms.to_bytes(8, "big"))
    try:
        key.verify(base64.b64decode(h["signature"]), message)
    except Exception:
        return False
    return True


def ledger_of(db, n: int):
    a, b = accounts(db, 2)
    for i in range(n):
        post(db, [(a, f"{i + 1}.00"), (b, f"-{i + 1}.00")], kind="PAYMENT")
    return a, b


def test_anyone_gets_the_signed_tree_head_and_can_check_it_with_the_public_key(api, db):
    # given a ledger of 11 transactions
    ledger_of(db, 11)
    # when someone without a token asks
    head = api.ok(STH)["signedTreeHead"]
    # then it covers all of them, is signed by the published key, and its root is the tree's
    assert head["treeSize"] == 11
    assert head_verifies(public_key(api), head)
    hashes = [n["hash"] for n in api.ok(TX_HASHES, token=api.token("AUDITOR"))["ledgerTransactions"]["nodes"]]
    assert head["rootHash"] == merkle.MemoryTree(bytes.fromhex(h) for h in hashes).root().hex()
    # a changed size or root does not verify
    assert not head_verifies(public_key(api), {**head, "treeSize": 10})
    assert not head_verifies(public_key(api), {**head, "rootHash": "00" * 32})


def test_the_empty_ledger_has_a_signed_head_of_the_empty_tree(api):
    head = api.ok(STH)["signedTreeHead"]
    assert head["treeSize"] == 0 and head["rootHash"] == hashlib.sha256(b"").hexdigest()


def test_inclusion_and_consistency_proofs_verify_against_signed_heads(api, db):
    ledger_of(db, 9)
    auditor = api.token("AUDITOR")
    key = public_key(api)
    for n in (1, 2, 5, 8, 9):
        head = api.ok(STH, {"n": n})["signedTreeHead"]
        assert head_verifies(key, head)
        root = bytes.fromhex(head["rootHash"])
        for seq in range(1, n + 1):
            p = api.ok(INCLUSION, {"s": seq, "n": n}, auditor)["inclusionProof"]
            assert (p["leafIndex"], p["treeSize"]) == (seq - 1, n)
            assert p["leafHash"] == merkle.leaf_hash(bytes.fromhex(p["transactionHash"])).hex()
            assert merkle.verify_inclusion(seq - 1, n, bytes.fromhex(p["leafHash"]),
                                           [bytes.fromhex(h) for h in p["auditPath"]], root)
        for m in range(1, n + 1):
            c = api.ok(CONSISTENCY, {"m": m, "n": n}, auditor)["consistencyProof"]
            old = bytes.fromhex(api.ok(STH, {"n": m})["signedTreeHead"]["rootHash"])
            assert merkle.verify_consistency(m, n, old, root, [bytes.fromhex(h) for h in c["proof"]])
    # without treeSize: the ledger now
    assert api.ok(INCLUSION, {"s": 3}, auditor)["inclusionProof"]["treeSize"] == 9
    assert api.ok(CONSISTENCY, {"m": 3}, auditor)["consistencyProof"]["toSize"] == 9


@pytest.mark.parametrize("doc,variables,code", [
    (INCLUSION, {"s": 0}, "INVALID_SEQUENCE"),
    (INCLUSION, {"s": 5}, "SEQUENCE_BEYOND_TREE"),
    (INCLUSION, {"s": 3, "n": 2}, "SEQUENCE_BEYOND_TREE"),
    (INCLUSION, {"s": 1, "n": 0}, "INVALID_TREE_SIZE"),
    (INCLUSION, {"s": 1, "n": 5}, "TREE_SIZE_BEYOND_LEDGER"),
    (CONSISTENCY, {"m": 3, "n": 2}, "FROM_SIZE_AFTER_TO_SIZE"),
    (CONSISTENCY, {"m": 0}, "INVALID_TREE_SIZE"),
    (CONSISTENCY, {"m": 1, "n": 0}, "INVALID_TREE_SIZE"),
    (CONSISTENCY, {"m": 5}, "TREE_SIZE_BEYOND_LEDGER"),
    (CONSISTENCY, {"m": 1, "n": 5}, "TREE_SIZE_BEYOND_LEDGER"),
    (STH, {"n": 0}, "INVALID_TREE_SIZE"),
    (STH, {"n": 5}, "TREE_SIZE_BEYOND_LEDGER"),
])
def test_bad_sizes_and_sequences_get_stable_error_codes(api, db, doc, variables, code):
    ledger_of(db, 4)
    body = api.post(doc, variables, api.token("AUDITOR"))
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == [code]


def test_parties_get_proofs_only_for_transactions_they_may_see(api, db):
    # given a municipality's transaction (2) between others' (1 and 3)
    muni = party(db, role="MUNICIPALITY")
    a, b = accounts(db, 2)
    mine, theirs = accounts(db, 2, owner=muni)
    post(db, [(a, "1.00"), (b, "-1.00")], kind="PAYMENT")
    post(db, [(mine, "1.00"), (theirs, "-1.00")], kind="PAYMENT")
    post(db, [(a, "1.00"), (b, "-1.00")], kind="PAYMENT")
    own = api.token("MUNICIPALITY", party_id=muni.id)
    # then it gets the proof of its own, and the others' answer as a missing one would
    assert api.ok(INCLUSION, {"s": 2}, own)["inclusionProof"]["sequence"] == 2
    for seq in (1, 3):
        body = api.post(INCLUSION, {"s": seq}, own)
        assert body["errors"][0]["extensions"]["code"] == "UNKNOWN_TRANSACTION"
        assert body["errors"][0]["message"] == f"transaction {seq} does not exist"
    # consistency proofs (hashes only) go to every token; nothing but the tree head to the public
    assert api.ok(CONSISTENCY, {"m": 1}, own)["consistencyProof"]["proof"]
    for doc, v in ((INCLUSION, {"s": 2}), (CONSISTENCY, {"m": 1})):
        assert api.post(doc, v)["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_a_deposit_returns_a_receipt_its_counterparty_can_check_alone(api, db):
    # given a fund, with a deposit already in the ledger
    fund, *_ = funded(db, FM)
    fm = api.token("FUND_MANAGER")
    ledger_of(db, 3)
    # when
    out = api.ok(DEPOSIT, {"i": {"fundId": G("Fund", fund.id), "amount": {"amount": "100.00", "currency": "SEK"},
                                 "effectiveDate": "2026-02-01", "reference": "more"}}, fm)["depositCapital"]
    # then the receipt names the transaction and a signed head of the tree ending with it
    r, tx = out["receipt"], out["transaction"]
    assert (r["sequence"], r["transactionHash"]) == (tx["sequence"], tx["hash"])
    head = r["treeHead"]
    assert head["treeSize"] == tx["sequence"]
    assert head_verifies(public_key(api), head)
    assert merkle.verify_inclusion(tx["sequence"] - 1, head["treeSize"], bytes.fromhex(r["leafHash"]),
                                   [bytes.fromhex(h) for h in r["auditPath"]], bytes.fromhex(head["rootHash"]))
    # and a refused deposit has none
    bad = api.ok(DEPOSIT, {"i": {"fundId": G("Fund", fund.id), "amount": {"amount": "-1.00", "currency": "SEK"},
                                 "effectiveDate": "2026-02-01", "reference": "bad"}}, fm)["depositCapital"]
    assert bad["userErrors"] and bad["receipt"] is None


def test_verify_ledger_holds_the_fund_to_a_tree_head_it_signed(api, db):
    a, b = ledger_of(db, 6)
    auditor = api.token("AUDITOR")
    head = api.ok(STH)["signedTreeHead"]
    # a head kept earlier still verifies after more postings
    post(db, [(a, "1.00"), (b, "-1.00")], kind="PAYMENT")
    assert api.ok(VERIFY, {"h": head}, auditor)["verifyLedger"]["ok"]
    # old clients without the argument keep working
    assert api.ok("{ verifyLedger { ok } }", token=auditor)["verifyLedger"]["ok"]
    # a changed root, size or time breaks the signature
    for changed in ({"rootHash": "ab" * 32}, {"treeSize": 5}, {"timestamp": "2020-01-01T00:00:00+00:00"}):
        v = api.ok(VERIFY, {"h": {**head, **changed}}, auditor)["verifyLedger"]
        assert not v["ok"] and "signature" in v["reason"]
    # a head signed by another key is not this ledger's
    other = signing.Signer.generate().sign(head["treeSize"], bytes.fromhex(head["rootHash"]),
                                           datetime.fromisoformat(head["timestamp"]))
    forged = {**head, "signature": base64.b64encode(other.signature).decode(), "keyId": other.key_id}
    v = api.ok(VERIFY, {"h": forged}, auditor)["verifyLedger"]
    assert not v["ok"] and "another key" in v["reason"]
    # malformed input is an error with a code, not a verdict
    body = api.post(VERIFY, {"h": {**head, "rootHash": "xyz"}}, auditor)
    assert body["errors"][0]["extensions"]["code"] == "INVALID_TREE_HEAD"


def test_verify_ledger_finds_a_head_the_journal_no_longer_makes(api, db, backend):
    from sqlalchemy import text
    from tests.ledger.test_journal import _without_triggers
    ledger_of(db, 5)
    auditor = api.token("AUDITOR")
    head = api.ok(STH)["signedTreeHead"]
    # when the newest transaction is removed and the head moved back (a rewritten tail)
    with db.uow() as uow:
        _without_triggers(uow.session, backend, "ledger_transactions")
        _without_triggers(uow.session, backend, "ledger_entries")
        uow.session.execute(text("DELETE FROM ledger_entries WHERE sequence = 5"))
        uow.session.execute(text("DELETE FROM ledger_transactions WHERE sequence = 5"))
        prev = uow.session.execute(text("SELECT hash FROM ledger_transactions WHERE sequence = 4")).scalar_one()
        uow.session.execute(text("UPDATE ledger_head SET sequence = 4, hash = :h"), {"h": prev})
        uow.commit()
    # then the signed head of 5 is not held (whatever the chain check says)
    v = api.ok(VERIFY, {"h": head}, auditor)["verifyLedger"]
    assert not v["ok"]


def test_without_a_signing_key_production_refuses_tree_heads_with_a_code(db):
    settings = Settings(database_url="unused", env="production", secret=b"production-test-secret-0123456789")
    with TestClient(create_app(settings, db, workers=2)) as c:
        body = c.post("/graphql", json={"query": STH}).json()
        assert body["errors"][0]["extensions"]["code"] == "SIGNING_KEY_MISSING"
        r = c.get("/ledger/public-key")
        assert r.status_code == 404 and r.json()["errors"][0]["extensions"]["code"] == "SIGNING_KEY_MISSING"


def test_a_configured_key_file_signs_and_its_public_key_is_served(db, tmp_path):
    path = tmp_path / "key.pem"
    made = signing.create_key_file(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(signing.SigningKeyError):
        signing.create_key_file(path)  # never overwritten
    settings = Settings(database_url="unused", env="production", secret=b"production-test-secret-0123456789",
                        signing_key=str(path))
    with TestClient(create_app(settings, db, workers=2)) as c:
        head = c.post("/graphql", json={"query": STH}).json()["data"]["signedTreeHead"]
        assert head["keyId"] == made.key_id
        assert c.get("/ledger/public-key").text == made.public_key_pem()


def test_the_public_results_page_shows_the_newest_signed_tree_head_in_full(api, db):
    import re
    # given 4 transactions
    ledger_of(db, 4)
    # when anyone opens the page
    page = api.client.get("/results").text
    # then it shows the signed head of all 4, which verifies with the public key
    fields = dict(re.findall(r'data-field="(\w+)"[^>]*>(?:<time[^>]*>)?([^<]+)<', page))
    head = {"treeSize": int(fields["treeSize"]), "rootHash": fields["rootHash"], "timestamp": fields["timestamp"],
            "signature": fields["signature"], "keyId": fields["keyId"]}
    assert head["treeSize"] == 4
    assert head_verifies(public_key(api), head)
    assert head["rootHash"] == api.ok(STH)["signedTreeHead"]["rootHash"]


RECEIPT = "receipt { sequence transactionHash leafHash auditPath treeHead { treeSize rootHash timestamp signature keyId } }"


def receipt_holds(api, r: dict, sequence: int) -> bool:
    head = r["treeHead"]
    return (r["sequence"] == head["treeSize"] == sequence and head_verifies(public_key(api), head)
            and merkle.verify_inclusion(sequence - 1, sequence, bytes.fromhex(r["leafHash"]),
                                        [bytes.fromhex(h) for h in r["auditPath"]], bytes.fromhex(head["rootHash"])))


def test_approving_a_payout_paying_and_reversing_each_return_a_receipt(api, db, case_a):
    w = case_a
    cid = G("OutcomeContract", w["contract"].id)
    frida, gustav = api.token("FUND_MANAGER", name="frida"), api.token("FUND_MANAGER", name="gustav")
    calc = api.ok("""mutation($i: CalculatePayoutInput!) { calculatePayout(input: $i) { payout { id } } }""",
                  {"i": {"contractId": cid, "periodStart": "2026-01-01", "periodEnd": "2026-06-30"}}, frida)
    # the payout's approval
    approve = f"""mutation($i: ApprovePayoutInput!) {{ approvePayout(input: $i) {{
      payout {{ transaction {{ sequence }} }} userErrors {{ code }} {RECEIPT} }} }}"""
    done = api.ok(approve, {"i": {"payoutId": calc["calculatePayout"]["payout"]["id"], "idempotencyKey": "ap-1"}},
                  gustav)["approvePayout"]
    seq = done["payout"]["transaction"]["sequence"]
    assert receipt_holds(api, done["receipt"], seq)
    # a replay with the same key returns the receipt of the same transaction
    again = api.ok(approve, {"i": {"payoutId": calc["calculatePayout"]["payout"]["id"], "idempotencyKey": "ap-1"}},
                   gustav)["approvePayout"]
    assert again["receipt"]["sequence"] == seq and again["receipt"]["transactionHash"] == done["receipt"]["transactionHash"]
    # the municipality's payment: its receipt is its own to keep
    pay = f"""mutation($i: RecordPaymentInput!) {{ recordPayment(input: $i) {{ userErrors {{ code }} {RECEIPT} }} }}"""
    muni = api.token("MUNICIPALITY", party_id=w["muni"].id)
    paid = api.ok(pay, {"i": {"debtorId": G("Party", w["muni"].id), "creditorId": G("Party", w["prov"].id),
                              "contractId": cid, "amount": {"amount": "100.00", "currency": "SEK"},
                              "paidOn": "2026-07-10", "reference": "Faktura 17"}}, muni)["recordPayment"]
    assert paid["userErrors"] == [] and receipt_holds(api, paid["receipt"], seq + 1)
    assert api.ok(INCLUSION, {"s": seq + 1}, muni)["inclusionProof"]["transactionHash"] == \
        paid["receipt"]["transactionHash"]
    # a reversal
    rev = f"""mutation($i: ReverseTransactionInput!) {{ reverseTransaction(input: $i) {{
      transaction {{ sequence }} userErrors {{ code }} {RECEIPT} }} }}"""
    out = api.ok(rev, {"i": {"transactionId": G("LedgerTransaction", seq + 1), "reason": "wrong amount"}},
                 frida)["reverseTransaction"]
    assert receipt_holds(api, out["receipt"], out["transaction"]["sequence"])
    # and the older receipts stay consistent with the tree now
    now = api.ok(STH)["signedTreeHead"]
    c = api.ok(CONSISTENCY, {"m": seq}, api.token("AUDITOR"))["consistencyProof"]
    assert merkle.verify_consistency(seq, now["treeSize"], bytes.fromhex(done["receipt"]["treeHead"]["rootHash"]),
                                     bytes.fromhex(now["rootHash"]), [bytes.fromhex(h) for h in c["proof"]])
