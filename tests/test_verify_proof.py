"""ops/verify_proof.py: receipts and proofs checked without the service, never a wrong "ok".

The CLI commands the README shows run here as subprocesses: `utfall keys create`,
`utfall ledger prove`, `utfall ledger tree-head`, `utfall ledger public-key`, and the verifier.
"""
from __future__ import annotations

import base64
import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import proofs, schema, signing
from ledger.access import SYSTEM
from ledger.db import Database, make_engine
from ledger.models import utcnow
from tests.factories import accounts, post

ROOT = Path(__file__).resolve().parents[1]
VERIFIER = ROOT / "ops" / "verify_proof.py"


def _load_verifier():
    spec = importlib.util.spec_from_file_location("verify_proof_under_test", VERIFIER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


verifier = _load_verifier()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An SQLite ledger of 13 transactions, a signing key made by `utfall keys create`, and the files."""
    d = tmp_path_factory.mktemp("proofs")
    url = f"sqlite:///{d / 'u.db'}"
    schema.upgrade(url)
    engine = make_engine(url)
    db = Database(engine)
    a, b = accounts(db, 2)
    for i in range(13):
        post(db, [(a, f"{i + 1}.00"), (b, f"-{i + 1}.00")])
    env = {**os.environ, "DATABASE_URL": url, "UTFALL_ENV": "production", "UTFALL_SECRET": "s" * 32,
           "UTFALL_SIGNING_KEY": str(d / "signing.pem")}
    w = {"dir": d, "env": env, "db": db, "url": url}
    out = cli(w, "keys", "create", str(d / "signing.pem"))
    assert out.returncode == 0 and "keyId" in out.stdout
    assert cli(w, "ledger", "public-key", stdout=d / "key.pem").returncode == 0
    assert cli(w, "ledger", "prove", "5", "--tree-size", "11", stdout=d / "proof.json").returncode == 0
    assert cli(w, "ledger", "tree-head", stdout=d / "head.json").returncode == 0
    w["signer"] = signing.load_key_file(d / "signing.pem")
    yield w
    engine.dispose()


def cli(w, *args, stdout: Path | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=w["dir"], env=w["env"], capture_output=True,
                       text=True, timeout=120)
    if stdout is not None:
        stdout.write_text(r.stdout, encoding="utf-8")
    return r


def run_verifier(w, document, *extra: str, key: Path | None = None) -> subprocess.CompletedProcess:
    path = w["dir"] / "doc.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    return subprocess.run([sys.executable, str(VERIFIER), "--public-key", str(key or w["dir"] / "key.pem"),
                           str(path), *extra], capture_output=True, text=True, timeout=60)


def in_process(w, document, *extra: str) -> int:
    path = w["dir"] / "doc-inproc.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return verifier.main(["--public-key", str(w["dir"] / "key.pem"), str(path), *extra])


def head_json(h) -> dict:
    return {"treeSize": h.tree_size, "rootHash": h.root_hash.hex(), "timestamp": h.timestamp.isoformat(),
            "signature": base64.b64encode(h.signature).decode(), "keyId": h.key_id}


def receipt_doc(w, sequence: int) -> dict:
    with w["db"].reading() as s:
        r = proofs.receipt(s, signer=w["signer"], now=utcnow(), sequence=sequence)
    # the shape a posting's payload returns it in
    return {"data": {"depositCapital": {"receipt": {
        "sequence": r.sequence, "transactionHash": r.transaction_hash, "leafHash": r.leaf_hash,
        "auditPath": r.audit_path, "treeHead": head_json(r.tree_head)}}}}


def consistency_doc(w, m: int, n: int) -> dict:
    with w["db"].reading() as s:
        p = proofs.consistency_proof(s, actor=SYSTEM, from_size=m, to_size=n)
        old = proofs.signed_tree_head(s, signer=w["signer"], now=utcnow(), tree_size=m)
        new = proofs.signed_tree_head(s, signer=w["signer"], now=utcnow(), tree_size=n)
    return {"consistencyProof": {"fromSize": p.from_size, "toSize": p.to_size, "proof": p.proof},
            "fromTreeHead": head_json(old), "toTreeHead": head_json(new)}


def proof_doc(w) -> dict:
    return json.loads((w["dir"] / "proof.json").read_text())


# --- what the README shows ------------------------------------------------------------------

def test_a_proof_from_utfall_ledger_prove_verifies_alone(world):
    doc = proof_doc(world)
    assert doc["inclusionProof"]["treeSize"] == doc["signedTreeHead"]["treeSize"] == 11
    r = run_verifier(world, doc)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok: transaction 5 (leaf 4) is in the tree of 11 transactions")
    # the newest head, as `utfall ledger tree-head` prints it
    assert json.loads((world["dir"] / "head.json").read_text())["signedTreeHead"]["treeSize"] == 13


def test_a_receipt_and_a_consistency_proof_verify_alone(world):
    assert run_verifier(world, receipt_doc(world, 7)).returncode == 0
    r = run_verifier(world, consistency_doc(world, 6, 13))
    assert r.returncode == 0 and "is the start of the tree of 13" in r.stdout
    # a counterparty's receipt against a newer head: --from-tree-head takes the receipt
    receipt_path = world["dir"] / "receipt.json"
    receipt_path.write_text(json.dumps(receipt_doc(world, 7)))
    doc = consistency_doc(world, 7, 13)
    del doc["fromTreeHead"]
    assert run_verifier(world, doc, "--from-tree-head", str(receipt_path)).returncode == 0


def test_every_size_and_sequence_of_a_small_ledger_verifies(world):
    with world["db"].reading() as s:
        for n in range(1, 14):
            head = head_json(proofs.signed_tree_head(s, signer=world["signer"], now=utcnow(), tree_size=n))
            for seq in range(1, n + 1):
                p = proofs.inclusion_proof(s, actor=SYSTEM, sequence=seq, tree_size=n)
                doc = {"inclusionProof": {"sequence": p.sequence, "leafIndex": p.leaf_index, "treeSize": n,
                                          "transactionHash": p.transaction_hash, "auditPath": p.audit_path},
                       "signedTreeHead": head}
                assert in_process(world, doc) == 0, (seq, n)


# --- tampering: exit 1 -----------------------------------------------------------------------

def _flip(hex_: str) -> str:
    return ("1" if hex_[0] == "0" else "0") + hex_[1:]


def _leaves(doc, path=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _leaves(v, (*path, i))
    else:
        yield path, doc


def _set(doc, path, value):
    doc = copy.deepcopy(doc)
    target = doc
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    return doc


def _tampered_values(value):
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        return [value + 1, value - 1]
    if len(value) == 64:  # a hash
        return [_flip(value)]
    if value.endswith("+00:00"):  # a timestamp: a millisecond later
        from datetime import datetime, timedelta
        return [(datetime.fromisoformat(value) + timedelta(milliseconds=1)).isoformat()]
    raw = base64.b64decode(value)  # a signature
    return [base64.b64encode(bytes([raw[0] ^ 1]) + raw[1:]).decode()]


@pytest.mark.parametrize("kind", ["inclusion", "receipt", "consistency"])
def test_any_changed_value_anywhere_never_verifies(world, kind):
    doc = {"inclusion": lambda: proof_doc(world), "receipt": lambda: receipt_doc(world, 9),
           "consistency": lambda: consistency_doc(world, 5, 12)}[kind]()
    assert in_process(world, doc) == 0
    tried = 0
    for path, value in _leaves(doc):
        for bad in _tampered_values(value):
            code = in_process(world, _set(doc, path, bad))
            assert code == 1, (path, value, bad)  # well formed, so a verdict: FAILED
            tried += 1
    assert tried >= 10


def test_tampered_proofs_fail_with_exit_1_and_a_reason(world):
    doc = proof_doc(world)
    cases = {
        "path": _set(doc, ("inclusionProof", "auditPath", 0), _flip(doc["inclusionProof"]["auditPath"][0])),
        "shorter path": _set(doc, ("inclusionProof", "auditPath"), doc["inclusionProof"]["auditPath"][:-1]),
        "leaf": _set(doc, ("inclusionProof", "transactionHash"), _flip(doc["inclusionProof"]["transactionHash"])),
        "root": _set(doc, ("signedTreeHead", "rootHash"), _flip(doc["signedTreeHead"]["rootHash"])),
        "size": _set(doc, ("signedTreeHead", "treeSize"), 12),
        "other leaf": _set(_set(doc, ("inclusionProof", "leafIndex"), 5), ("inclusionProof", "sequence"), 6),
    }
    for name, bad in cases.items():
        r = run_verifier(world, bad)
        assert r.returncode == 1, (name, r.stdout, r.stderr)
        assert r.stdout.startswith("FAILED: ") and "ok" not in r.stdout.split(":")[0]


def test_a_head_signed_by_another_key_fails(world):
    other = world["dir"] / "other.pem"
    other.write_text(signing.Signer.generate().public_key_pem())
    r = run_verifier(world, proof_doc(world), key=other)
    assert r.returncode == 1 and "not by the key given" in r.stdout
    # a head re-signed by another key but claiming this key's id
    doc = proof_doc(world)
    forger = signing.Signer.generate()
    h = doc["signedTreeHead"]
    from datetime import datetime
    sig = forger.sign(h["treeSize"], bytes.fromhex(h["rootHash"]), datetime.fromisoformat(h["timestamp"])).signature
    assert run_verifier(world, _set(doc, ("signedTreeHead", "signature"),
                                    base64.b64encode(sig).decode())).returncode == 1


def test_consistency_between_heads_in_the_wrong_order_or_sizes_fails(world):
    doc = consistency_doc(world, 4, 10)
    swapped = {**doc, "fromTreeHead": doc["toTreeHead"], "toTreeHead": doc["fromTreeHead"]}
    assert run_verifier(world, swapped).returncode == 1
    other = consistency_doc(world, 5, 10)
    assert run_verifier(world, {**doc, "fromTreeHead": other["fromTreeHead"]}).returncode == 1


# --- malformed input: exit 2, a clear message ------------------------------------------------

@pytest.mark.parametrize("document,message", [
    ("not json", "is not JSON"),
    ("[]", "must be a JSON object"),
    ("{}", "no receipt, inclusionProof or consistencyProof"),
    ('{"inclusionProof": {"leafIndex": 0, "treeSize": 1, "leafHash": "00", "auditPath": []}, "signedTreeHead": {}}',
     "inclusionProof.leafHash must be 64 hexadecimal digits"),
    ('{"receipt": {"sequence": 1, "leafHash": "00", "auditPath": [], "treeHead": {"treeSize": 1, "rootHash": "'
     + "0" * 64 + '", "timestamp": "2026-01-01T00:00:00+00:00", "signature": "' + "A" * 86 + "=="
     + '", "keyId": "' + "0" * 64 + '"}}}', "receipt.leafHash must be 64 hexadecimal digits"),
    ('{"inclusionProof": {"leafIndex": -1, "treeSize": 1, "auditPath": []}}', "leafIndex"),
    ('{"inclusionProof": {"leafIndex": true, "treeSize": 1, "auditPath": []}}', "leafIndex"),
    ('{"inclusionProof": {"leafIndex": 0, "treeSize": 1, "auditPath": "x", "leafHash": "' + "0" * 64 + '"}}',
     "list of hashes"),
    ('{"inclusionProof": {"leafIndex": 0, "treeSize": 1, "auditPath": [], "leafHash": "' + "0" * 64 + '"}}',
     "needs a signedTreeHead"),
    ('{"receipt": {"sequence": 1}}', "receipt.treeHead must be a JSON object"),
    ('{"consistencyProof": {"fromSize": 1, "toSize": 2, "proof": []}}', "needs fromTreeHead and toTreeHead"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_malformed_input_exits_2_with_a_clear_message(world, document, message):
    r = run_verifier(world, document)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == "" and message in r.stderr


def test_malformed_tree_heads_and_keys_exit_2(world):
    doc = proof_doc(world)
    for field, value in (("signature", "***"), ("signature", base64.b64encode(b"short").decode()),
                         ("timestamp", "yesterday"), ("timestamp", "2026-11-29T12:00:00"), ("keyId", "abc"),
                         ("treeSize", "11"), ("rootHash", None)):
        r = run_verifier(world, _set(doc, ("signedTreeHead", field), value))
        assert r.returncode == 2, (field, value, r.stdout)
    missing = run_verifier(world, doc, key=world["dir"] / "nope.pem")
    assert missing.returncode == 2 and "cannot read the public key" in missing.stderr
    not_pem = world["dir"] / "bad.pem"
    not_pem.write_text("hello")
    assert run_verifier(world, doc, key=not_pem).returncode == 2


def test_cli_refuses_bad_sequences_and_keeps_an_existing_key(world):
    r = cli(world, "ledger", "prove", "99")
    assert r.returncode == 1 and "SEQUENCE_BEYOND_TREE" in r.stderr
    r = cli(world, "ledger", "prove", "3", "--tree-size", "0")
    assert r.returncode == 1 and "INVALID_TREE_SIZE" in r.stderr
    r = cli(world, "keys", "create", str(world["dir"] / "signing.pem"))
    assert r.returncode == 2 and "never overwritten" in r.stderr
    no_key = {**world["env"], "UTFALL_SIGNING_KEY": ""}
    r = subprocess.run([sys.executable, "-m", "api.cli", "ledger", "prove", "3"], cwd=world["dir"], env=no_key,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "SIGNING_KEY_MISSING" in r.stderr


def test_development_makes_a_key_file_beside_the_sqlite_database(tmp_path):
    from ledger.config import load
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    settings = load({"UTFALL_ENV": "development", "DATABASE_URL": url})
    first = signing.signer_for(settings)
    assert (tmp_path / "utfall-signing-key.pem").exists()
    assert signing.signer_for(settings).key_id == first.key_id  # kept, not made anew
    assert load({"UTFALL_ENV": "development", "DATABASE_URL": url, "UTFALL_KEY_DIR": "/k"}).signing_key == \
        "/k/utfall-signing-key.pem"
    assert load({"UTFALL_ENV": "production", "UTFALL_SECRET": "s" * 20}).signing_key is None
