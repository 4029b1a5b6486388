#!/usr/bin/env python3
"""Check an Utfall receipt, inclusion proof or consistency proof against a signed tree head.

    python verify_proof.py --public-key KEY.pem PROOF.json [--tree-head HEAD.json] [--from-tree-head OLD.json]

Standalone on purpose: the Python standard library and the `cryptography` package, no
database, nothing imported from Utfall. KEY.pem is the ledger's public key (GET
/ledger/public-key). PROOF.json (or - for standard input) is one of:

- a receipt, as a posting returned it: {"receipt": {"sequence", "transactionHash", "leafHash",
  "auditPath", "treeHead"}} (also inside a GraphQL response or a mutation payload);
- an inclusion proof, as `utfall ledger prove` prints it: {"inclusionProof": {"sequence",
  "leafIndex", "treeSize", "transactionHash", "leafHash", "auditPath"}, "signedTreeHead": {...}};
- a consistency proof: {"consistencyProof": {"fromSize", "toSize", "proof"}, "fromTreeHead":
  {...}, "toTreeHead": {...}}.

--tree-head supplies the signed tree head to check against (a file holding one, or a
GraphQL response with `signedTreeHead`); --from-tree-head the older head of a consistency
proof (a file holding one, or a receipt: its tree head). A signed tree head is
{"treeSize", "rootHash" (hex), "timestamp" (ISO 8601), "signature" (base64), "keyId" (hex)}.

The definitions (README, "Proofs"): RFC 9162 §2.1 with leaf = the 32 bytes of a
transaction's chain hash, leaf hash SHA-256(0x00 || leaf), node SHA-256(0x01 || left ||
right); the signature is Ed25519 over b"utfall tree head v1\\n" || tree size (8 bytes,
big-endian) || root hash (32 bytes) || timestamp in milliseconds since the Unix epoch (8
bytes, big-endian); keyId is the hex SHA-256 of the raw 32-byte public key.

Exit 0 and `ok: ...` when everything checks; 1 and `FAILED: ...` when the proof, the
signature or the key does not; 2 and `error: ...` when the input cannot be read or is
malformed (never a wrong "ok").
"""
from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import re
import sys
from datetime import datetime, timedelta, timezone

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:  # pragma: no cover - reported as a usage error
    print("error: this needs the `cryptography` package (pip install cryptography)", file=sys.stderr)
    sys.exit(2)

PREFIX = b"utfall tree head v1\n"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class Malformed(Exception):
    """The input is not a well-formed proof document: exit 2."""


class Failed(Exception):
    """The input is well formed and does not verify: exit 1."""


# --- reading the input, strictly -------------------------------------------------------------

def _int(doc: dict, key: str, where: str, minimum: int = 0) -> int:
    value = doc.get(key)
    if type(value) is not int or value < minimum:
        raise Malformed(f"{where}.{key} must be an integer of at least {minimum}, not {value!r}")
    return value


def _hash(value, where: str) -> bytes:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise Malformed(f"{where} must be 64 hexadecimal digits, not {value!r}")
    return bytes.fromhex(value)


def _hashes(value, where: str) -> list[bytes]:
    if not isinstance(value, list):
        raise Malformed(f"{where} must be a list of hashes")
    if len(value) > 64:
        raise Malformed(f"{where} has {len(value)} hashes; no tree of 2^63 leaves needs more than 64")
    return [_hash(v, f"{where}[{i}]") for i, v in enumerate(value)]


def _obj(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise Malformed(f"{where} must be a JSON object")
    return value


class TreeHead:
    def __init__(self, doc, where: str):
        doc = _obj(doc, where)
        self.where = where
        self.tree_size = _int(doc, "treeSize", where)
        self.root_hash = _hash(doc.get("rootHash"), f"{where}.rootHash")
        ts = doc.get("timestamp")
        try:
            self.timestamp = datetime.fromisoformat(ts) if isinstance(ts, str) else None
        except ValueError:
            self.timestamp = None
        if self.timestamp is None or self.timestamp.tzinfo is None:
            raise Malformed(f"{where}.timestamp must be an ISO 8601 time with an offset, not {ts!r}")
        sig = doc.get("signature")
        try:
            self.signature = base64.b64decode(sig, validate=True) if isinstance(sig, str) else b""
        except (binascii.Error, ValueError):
            self.signature = b""
        if len(self.signature) != 64:
            raise Malformed(f"{where}.signature must be a base64 Ed25519 signature (64 bytes)")
        key_id = doc.get("keyId")
        if not isinstance(key_id, str) or not _HEX64.fullmatch(key_id):
            raise Malformed(f"{where}.keyId must be 64 hexadecimal digits")
        self.key_id = key_id.lower()

    def signed_bytes(self) -> bytes:
        ms = (self.timestamp - EPOCH) // timedelta(milliseconds=1)
        if not 0 <= ms < 2 ** 64 or self.tree_size >= 2 ** 64:
            raise Failed(f"{self.where} holds a time or size no tree head can have")
        return PREFIX + self.tree_size.to_bytes(8, "big") + self.root_hash + ms.to_bytes(8, "big")

    def check(self, key: Ed25519PublicKey, key_id: str) -> None:
        if self.key_id != key_id:
            raise Failed(f"{self.where} was signed by key {self.key_id[:16]}…, not by the key given ({key_id[:16]}…)")
        try:
            key.verify(self.signature, self.signed_bytes())
        except InvalidSignature:
            raise Failed(f"{self.where}: the signature does not match its tree size, root hash and time") from None

    def describe(self) -> str:
        return f"the tree of {self.tree_size} transactions signed at {self.timestamp.isoformat()}"


def _find(doc, key: str):
    """`doc[key]`, also inside a GraphQL response's data or one payload level down."""
    if not isinstance(doc, dict):
        return None
    if key in doc:
        return doc[key]
    for inner in (doc.get("data"), *[v for v in doc.values() if isinstance(v, dict)]):
        if isinstance(inner, dict):
            if key in inner:
                return inner[key]
            for v in inner.values():
                if isinstance(v, dict) and key in v:
                    return v[key]
    return None


def read_json(path: str):
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as exc:
        raise Malformed(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise Malformed(f"{path} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Malformed(f"{path} is not JSON: {exc.msg} at line {exc.lineno}") from None


def read_key(path: str) -> tuple[Ed25519PublicKey, str]:
    try:
        data = open(path, "rb").read()
    except OSError as exc:
        raise Malformed(f"cannot read the public key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise Malformed(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise Malformed(f"{path} is not an Ed25519 public key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key, hashlib.sha256(raw).hexdigest()


# --- RFC 9162 §2.1.3.2 and §2.1.4.2 ----------------------------------------------------------

def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(index: int, size: int, leaf_hash: bytes, path: list[bytes]) -> bytes:
    if not 0 <= index < size:
        raise Failed(f"leaf {index} cannot be in a tree of {size}")
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            raise Failed("the audit path is longer than the tree is high")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise Failed("the audit path is shorter than the tree is high")
    return r


def roots_from_consistency(m: int, n: int, old_root: bytes, proof: list[bytes]) -> tuple[bytes, bytes]:
    if not 0 < m <= n:
        raise Failed(f"no consistency proof goes from a tree of {m} to one of {n}")
    if m == n:
        if proof:
            raise Failed("a proof between equal sizes must be empty")
        return old_root, old_root
    if not proof:
        raise Failed("the consistency proof is empty")
    path = ([old_root] if m & (m - 1) == 0 else []) + proof
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise Failed("the consistency proof is longer than the trees are high")
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise Failed("the consistency proof is shorter than the trees are high")
    return fr, sr


# --- the three checks ------------------------------------------------------------------------

def _leaf_hash(doc: dict, where: str) -> bytes:
    tx = doc.get("transactionHash")
    given = doc.get("leafHash")
    if tx is None and given is None:
        raise Malformed(f"{where} needs transactionHash (the transaction's chain hash) or leafHash")
    if tx is None:
        return _hash(given, f"{where}.leafHash")
    computed = hashlib.sha256(b"\x00" + _hash(tx, f"{where}.transactionHash")).digest()
    if given is not None and _hash(given, f"{where}.leafHash") != computed:
        raise Failed(f"{where}.leafHash is not SHA-256(0x00 || transactionHash)")
    return computed


def parse_inclusion(proof, where: str, default_size: int | None = None) -> tuple[int, int | None, bytes, list[bytes]]:
    """(leaf index, tree size or None, leaf hash, audit path) of a well-formed proof."""
    proof = _obj(proof, where)
    size = _int(proof, "treeSize", where, 1) if "treeSize" in proof else default_size
    if "leafIndex" in proof:
        index = _int(proof, "leafIndex", where)
    elif "sequence" in proof:
        index = _int(proof, "sequence", where, 1) - 1
    else:
        raise Malformed(f"{where} needs leafIndex or sequence")
    sequence = _int(proof, "sequence", where, 1) if "sequence" in proof else index + 1
    leaf = _leaf_hash(proof, where)
    path = _hashes(proof.get("auditPath"), f"{where}.auditPath")
    if sequence != index + 1:
        raise Failed(f"{where}: sequence and leafIndex disagree (leaf i is sequence i + 1)")
    return index, size, leaf, path


def check_inclusion(proof: dict, head: TreeHead, key, key_id: str, where: str) -> str:
    index, size, leaf, path = parse_inclusion(proof, where, head.tree_size)
    head.check(key, key_id)
    if size != head.tree_size:
        raise Failed(f"{where} is for a tree of {size}, the signed tree head is of {head.tree_size}")
    if root_from_inclusion(index, size, leaf, path) != head.root_hash:
        raise Failed(f"{where}: the audit path does not lead to the signed root hash")
    return f"transaction {index + 1} (leaf {index}) is in {head.describe()}"


def check_consistency(proof: dict, old: TreeHead, new: TreeHead, key, key_id: str) -> str:
    proof = _obj(proof, "consistencyProof")
    m = _int(proof, "fromSize", "consistencyProof", 1)
    n = _int(proof, "toSize", "consistencyProof", 1)
    hashes = _hashes(proof.get("proof"), "consistencyProof.proof")
    old.check(key, key_id)
    new.check(key, key_id)
    if (m, n) != (old.tree_size, new.tree_size):
        raise Failed(f"the proof goes from {m} to {n}, the signed tree heads are of {old.tree_size} "
                     f"and {new.tree_size}")
    fr, sr = roots_from_consistency(m, n, old.root_hash, hashes)
    if fr != old.root_hash or sr != new.root_hash:
        raise Failed("the consistency proof does not join the two signed root hashes: the older tree is not "
                     "the start of the newer one")
    return f"{old.describe()} is the start of {new.describe()}"


def verify(doc, key, key_id: str, tree_head_doc=None, from_head_doc=None) -> str:
    if not isinstance(doc, dict):
        raise Malformed("the proof document must be a JSON object")
    receipt = _find(doc, "receipt")
    if receipt is not None:
        receipt = _obj(receipt, "receipt")
        head = TreeHead(receipt.get("treeHead"), "receipt.treeHead")
        if "sequence" not in receipt:
            raise Malformed("receipt needs sequence")
        message = check_inclusion({**receipt, "treeSize": head.tree_size}, head, key, key_id, "receipt")
        if _int(receipt, "sequence", "receipt", 1) != head.tree_size:
            raise Failed("a receipt's tree head ends with its transaction: treeSize must equal sequence")
        if tree_head_doc is not None:  # and that head is the start of a newer one? that needs a consistency proof
            raise Malformed("a receipt carries its own tree head; check a newer one with a consistency proof")
        return "receipt: " + message
    inclusion = _find(doc, "inclusionProof")
    if inclusion is not None:
        head_doc = _find(tree_head_doc, "signedTreeHead") or tree_head_doc if tree_head_doc is not None \
            else _find(doc, "signedTreeHead")
        parse_inclusion(inclusion, "inclusionProof")  # its own faults first
        if head_doc is None:
            raise Malformed("an inclusion proof needs a signedTreeHead (in the document or --tree-head)")
        return check_inclusion(inclusion, TreeHead(head_doc, "signedTreeHead"), key, key_id, "inclusionProof")
    consistency = _find(doc, "consistencyProof")
    if consistency is not None:
        new_doc = (_find(tree_head_doc, "signedTreeHead") or tree_head_doc) if tree_head_doc is not None \
            else _find(doc, "toTreeHead") or _find(doc, "signedTreeHead")
        if from_head_doc is not None:
            r = _find(from_head_doc, "receipt")
            old_doc = r.get("treeHead") if isinstance(r, dict) else (
                _find(from_head_doc, "signedTreeHead") or from_head_doc)
        else:
            old_doc = _find(doc, "fromTreeHead")
        if new_doc is None or old_doc is None:
            raise Malformed("a consistency proof needs fromTreeHead and toTreeHead (or --from-tree-head/--tree-head)")
        return check_consistency(consistency, TreeHead(old_doc, "fromTreeHead"), TreeHead(new_doc, "toTreeHead"),
                                 key, key_id)
    raise Malformed("the document holds no receipt, inclusionProof or consistencyProof")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="verify_proof.py", description=__doc__.splitlines()[0])
    p.add_argument("proof", help="the proof document (JSON), or - for standard input")
    p.add_argument("--public-key", required=True, help="the ledger's public key (PEM), from GET /ledger/public-key")
    p.add_argument("--tree-head", help="a signed tree head to check against (JSON)")
    p.add_argument("--from-tree-head", help="the older signed tree head of a consistency proof, or a receipt (JSON)")
    args = p.parse_args(argv)
    try:
        key, key_id = read_key(args.public_key)
        doc = read_json(args.proof)
        head = read_json(args.tree_head) if args.tree_head else None
        old = read_json(args.from_tree_head) if args.from_tree_head else None
        message = verify(doc, key, key_id, head, old)
    except Malformed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Failed as exc:
        print(f"FAILED: {exc}")
        return 1
    except RecursionError:
        print("error: the document is nested too deeply", file=sys.stderr)
        return 2
    print(f"ok: {message} (key {key_id[:16]}…)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
