"""`utfall keys create PATH` and `utfall ledger prove SEQUENCE [--tree-size N]`, `utfall ledger tree-head`."""
from __future__ import annotations

import base64
import json
import sys

from ledger import proofs, signing
from ledger.access import SYSTEM
from ledger.db import Database, make_engine
from ledger.models import utcnow


def head_json(h: signing.SignedTreeHead) -> dict:
    """A signed tree head as GraphQL shows it (and ops/verify_proof.py reads it)."""
    return {"treeSize": h.tree_size, "rootHash": h.root_hash.hex(), "timestamp": h.timestamp.isoformat(),
            "signature": base64.b64encode(h.signature).decode("ascii"), "keyId": h.key_id}


def cmd_keys_create(args, settings) -> int:
    signer = signing.create_key_file(args.path)
    print(f"wrote a new Ed25519 signing key to {args.path} (readable by you only); keyId {signer.key_id}")
    print(f"serve with UTFALL_SIGNING_KEY={args.path}; keep a copy safe: heads signed with it can only be "
          "checked against its public key")
    return 0


def cmd_ledger_prove(args, settings) -> int:
    signer = signing.signer_for(settings)
    db = Database(make_engine(settings.database_url))
    with db.reading() as s:
        proof = proofs.inclusion_proof(s, actor=SYSTEM, sequence=args.sequence, tree_size=args.tree_size)
        head = proofs.signed_tree_head(s, signer=signer, now=utcnow(), tree_size=proof.tree_size)
    json.dump({"inclusionProof": {"sequence": proof.sequence, "leafIndex": proof.leaf_index,
                                  "treeSize": proof.tree_size, "transactionHash": proof.transaction_hash,
                                  "leafHash": proof.leaf_hash, "auditPath": proof.audit_path},
               "signedTreeHead": head_json(head)}, sys.stdout, indent=2)
    print()
    return 0


def cmd_ledger_tree_head(args, settings) -> int:
    signer = signing.signer_for(settings)
    db = Database(make_engine(settings.database_url))
    with db.reading() as s:
        head = proofs.signed_tree_head(s, signer=signer, now=utcnow(), tree_size=args.tree_size)
    json.dump({"signedTreeHead": head_json(head)}, sys.stdout, indent=2)
    print()
    return 0


def cmd_ledger_public_key(args, settings) -> int:
    signer = signing.signer_for(settings)
    if signer is None:
        raise proofs.SigningUnavailable("this ledger has no signing key (UTFALL_SIGNING_KEY)")
    sys.stdout.write(signer.public_key_pem())
    return 0


def register(sub, ledger_sub) -> None:
    keys = sub.add_parser("keys", help="the key that signs tree heads").add_subparsers(dest="keys_command",
                                                                                          required=True)
    create = keys.add_parser("create", help="write a new Ed25519 signing key file (for UTFALL_SIGNING_KEY)")
    create.add_argument("path")
    create.set_defaults(func=cmd_keys_create, needs_settings=False)

    prove = ledger_sub.add_parser("prove", help="print a transaction's inclusion proof and a signed tree head (JSON)")
    prove.add_argument("sequence", type=int)
    prove.add_argument("--tree-size", type=int, help="prove against the tree of this many transactions (default: now)")
    prove.set_defaults(func=cmd_ledger_prove)

    head = ledger_sub.add_parser("tree-head", help="print the ledger's signed tree head (JSON)")
    head.add_argument("--tree-size", type=int)
    head.set_defaults(func=cmd_ledger_tree_head)

    key = ledger_sub.add_parser("public-key", help="print the public key tree heads are signed with (PEM)")
    key.set_defaults(func=cmd_ledger_public_key)
