"""Proofs: the signed tree head, inclusion and consistency proofs, and posting receipts."""
from __future__ import annotations

import base64
import binascii
from datetime import datetime

import strawberry
from strawberry.types import Info

from api.graphql.base import aware, ctx, query_error, require_actor
from ledger import proofs, signing
from ledger.errors import DomainError, ValidationError
from ledger.models import utcnow

HEX = "lower-case hexadecimal"


@strawberry.type(description=(
    "A signed statement of how many transactions the ledger held and of the Merkle tree hash over "
    "them (RFC 9162). Keep it: the fund can later be held to it, since any change to those "
    "transactions changes the hash, and the signature shows the fund issued it."))
class SignedTreeHead:
    tree_size: int = strawberry.field(description="How many transactions the tree covers: sequences 1 to treeSize.")
    root_hash: str = strawberry.field(description=f"The Merkle tree hash over those transactions, {HEX}.")
    timestamp: datetime = strawberry.field(description="When the ledger signed this head (UTC, whole milliseconds).")
    signature: str = strawberry.field(description="The Ed25519 signature over treeSize, rootHash and timestamp, "
                                                  "base64 (README: \"Proofs\" gives the exact bytes).")
    key_id: str = strawberry.field(description="Which key signed: the SHA-256 of the raw public key, "
                                               "as served at GET /ledger/public-key.")

    @classmethod
    def of(cls, h: signing.SignedTreeHead) -> "SignedTreeHead":
        return cls(tree_size=h.tree_size, root_hash=h.root_hash.hex(), timestamp=h.timestamp,
                   signature=base64.b64encode(h.signature).decode("ascii"), key_id=h.key_id)


@strawberry.input(description="A signed tree head handed out earlier, to check against the ledger now.")
class SignedTreeHeadInput:
    tree_size: int
    root_hash: str
    timestamp: datetime
    signature: str
    key_id: str

    def parse(self) -> signing.SignedTreeHead:
        try:
            root = bytes.fromhex(self.root_hash)
            signature = base64.b64decode(self.signature, validate=True)
            if len(root) != 32 or self.tree_size < 0:
                raise ValueError
            at = aware(self.timestamp, "treeHead.timestamp")
        except (ValueError, binascii.Error):
            raise ValidationError("the tree head is malformed: rootHash is 64 hex digits, signature base64, "
                                  "treeSize not negative", code="INVALID_TREE_HEAD", field=["treeHead"]) from None
        return signing.SignedTreeHead(self.tree_size, root, at, signature, self.key_id)


@strawberry.type(description="The proof that one transaction is in the tree of a signed tree head of that size.")
class InclusionProof:
    sequence: int = strawberry.field(description="The transaction's sequence number.")
    leaf_index: int = strawberry.field(description="Its place in the tree, counted from 0 (sequence − 1).")
    tree_size: int = strawberry.field(description="The size of the tree this proof is for.")
    transaction_hash: str = strawberry.field(description="The transaction's chain hash: the tree's leaf.")
    leaf_hash: str = strawberry.field(description=f"SHA-256 of 0x00 and the leaf, {HEX}.")
    audit_path: list[str] = strawberry.field(description=(
        f"The sibling hashes from the leaf up to the root, {HEX} (RFC 9162 §2.1.3)."))

    @classmethod
    def of(cls, p: proofs.InclusionProof) -> "InclusionProof":
        return cls(sequence=p.sequence, leaf_index=p.leaf_index, tree_size=p.tree_size,
                   transaction_hash=p.transaction_hash, leaf_hash=p.leaf_hash, audit_path=p.audit_path)


@strawberry.type(description="The proof that the tree of fromSize transactions is the start of the tree of toSize: "
                             "nothing signed earlier was changed or removed since.")
class ConsistencyProof:
    from_size: int
    to_size: int
    proof: list[str] = strawberry.field(description=f"The hashes of the proof, {HEX} (RFC 9162 §2.1.4).")


@strawberry.type(description=(
    "What the counterparty of a posting keeps: the transaction, a signed tree head ending with it "
    "and the proof that it is in that tree. Check it with ops/verify_proof.py, without the service."))
class Receipt:
    sequence: int
    transaction_hash: str = strawberry.field(description="The transaction's chain hash: its leaf in the tree.")
    leaf_hash: str = strawberry.field(description=f"SHA-256 of 0x00 and the leaf, {HEX}.")
    audit_path: list[str] = strawberry.field(description="The proof that the leaf is in treeHead's tree.")
    tree_head: SignedTreeHead = strawberry.field(description="The signed tree head of the ledger right after it.")


RECEIPT_DESCRIPTION = ("A receipt for the transaction this posted: keep it to prove later that the ledger held it. "
                       "Null when nothing was posted.")


async def receipt_for(info: Info, sequence: int | None) -> Receipt | None:
    """The receipt of a posting, read after its unit of work committed."""
    if sequence is None:
        return None
    signer = ctx(info).signer
    try:
        r = await ctx(info).db.read(lambda s: proofs.receipt(s, signer=signer, now=utcnow(), sequence=sequence))
    except DomainError as err:
        raise query_error(err) from None
    return Receipt(sequence=r.sequence, transaction_hash=r.transaction_hash, leaf_hash=r.leaf_hash,
                   audit_path=r.audit_path, tree_head=SignedTreeHead.of(r.tree_head))


@strawberry.type
class ProofQueries:
    @strawberry.field(description=(
        "The ledger's Merkle tree head, signed now: public, so anyone can keep it and later hold the fund to it. "
        "With treeSize, the head of the tree of the first treeSize transactions."))
    async def signed_tree_head(self, info: Info, tree_size: int | None = None) -> SignedTreeHead:
        signer = ctx(info).signer
        try:
            h = await ctx(info).db.read(lambda s: proofs.signed_tree_head(s, signer=signer, now=utcnow(),
                                                                          tree_size=tree_size))
        except DomainError as err:
            raise query_error(err) from None
        return SignedTreeHead.of(h)

    @strawberry.field(description=(
        "The proof that transaction `sequence` is in the tree of treeSize transactions (default: the ledger now). "
        "Fund managers and auditors may ask for any transaction, a party for those it may see."))
    async def inclusion_proof(self, info: Info, sequence: int, tree_size: int | None = None) -> InclusionProof:
        actor = require_actor(info)
        try:
            p = await ctx(info).db.read(lambda s: proofs.inclusion_proof(s, actor=actor, sequence=sequence,
                                                                         tree_size=tree_size))
        except DomainError as err:
            raise query_error(err) from None
        return InclusionProof.of(p)

    @strawberry.field(description=(
        "The proof that the tree of fromSize transactions is the start of the tree of toSize (default: the "
        "ledger now): hold a tree head kept earlier, e.g. a receipt's, against a newer one."))
    async def consistency_proof(self, info: Info, from_size: int, to_size: int | None = None) -> ConsistencyProof:
        actor = require_actor(info)
        try:
            p = await ctx(info).db.read(lambda s: proofs.consistency_proof(s, actor=actor, from_size=from_size,
                                                                           to_size=to_size))
        except DomainError as err:
            raise query_error(err) from None
        return ConsistencyProof(from_size=p.from_size, to_size=p.to_size, proof=p.proof)

