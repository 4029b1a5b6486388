"""Proofs an auditor or a counterparty checks alone: signed tree heads, inclusion, consistency.

Who may see what: a signed tree head is public (it says how many transactions the ledger
holds and commits to all of them, and reveals nothing else). Inclusion proofs go to those
who may see the transaction: ADMIN, FUND_MANAGER and AUDITOR for any, a party-bound token
for the transactions touching its accounts; any other sequence answers exactly like a
missing one. Consistency proofs (hashes of hashes) go to every token holder: a
counterparty needs them to hold a newer tree head against its receipt.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import merkle, signing, tree
from ledger.access import Actor, require_reader
from ledger.errors import DomainError, NotFound, ValidationError
from ledger.models import LedgerHead, Transaction
from ledger.reads import visible_transactions


@dataclass(frozen=True)
class InclusionProof:
    sequence: int
    leaf_index: int
    tree_size: int
    transaction_hash: str  # the leaf: the transaction's chain hash, hex
    leaf_hash: str
    audit_path: list[str]


@dataclass(frozen=True)
class ConsistencyProof:
    from_size: int
    to_size: int
    proof: list[str]


@dataclass(frozen=True)
class Receipt:
    """What the counterparty of a posting keeps: its transaction, and a signed head of the tree
    it closes with the proof that the transaction is in it."""

    sequence: int
    transaction_hash: str
    leaf_hash: str
    audit_path: list[str]
    tree_head: signing.SignedTreeHead


@dataclass(frozen=True)
class TreeHeadCheck:
    ok: bool
    reason: str | None = None


class SigningUnavailable(DomainError):
    code = "SIGNING_KEY_MISSING"


def _signer(signer: signing.Signer | None) -> signing.Signer:
    if signer is None:
        raise SigningUnavailable("this ledger has no signing key (UTFALL_SIGNING_KEY): it signs no tree heads")
    return signer


_HEAD_SEQUENCE = select(LedgerHead.__table__.c.sequence).where(LedgerHead.__table__.c.id == 1)


def ledger_size(s: Session) -> int:
    return s.execute(_HEAD_SEQUENCE).scalar() or 0


def _tree_size(s: Session, tree_size: int | None, field: str) -> tuple[int, int]:
    """(the asked tree size or the ledger's, the ledger's size), checked."""
    size = ledger_size(s)
    if tree_size is None:
        return size, size
    if tree_size < 1:
        raise ValidationError("a tree size is at least 1", code="INVALID_TREE_SIZE", field=[field])
    if tree_size > size:
        raise ValidationError(f"the ledger holds {size} transactions, not {tree_size}",
                              code="TREE_SIZE_BEYOND_LEDGER", field=[field])
    return tree_size, size


def signed_tree_head(s: Session, *, signer: signing.Signer | None, now: datetime,
                     tree_size: int | None = None) -> signing.SignedTreeHead:
    """The tree head of the ledger now (or of its first `tree_size` transactions), signed now."""
    key = _signer(signer)
    size, _ = _tree_size(s, tree_size, "treeSize")
    root = tree.root(s.connection(), size) if size else merkle.EMPTY_ROOT
    return key.sign(size, root, now)


def inclusion_proof(s: Session, *, actor: Actor, sequence: int, tree_size: int | None = None) -> InclusionProof:
    """The audit path proving transaction `sequence` is in the tree of `tree_size` (default: now)."""
    require_reader(actor)
    if sequence < 1:
        raise ValidationError("a sequence is at least 1", code="INVALID_SEQUENCE", field=["sequence"])
    size, _ = _tree_size(s, tree_size, "treeSize")
    if sequence > size:
        raise ValidationError(f"transaction {sequence} is not in a tree of {size}", code="SEQUENCE_BEYOND_TREE",
                              field=["sequence"])
    clause = visible_transactions(actor)
    if clause is not None and s.execute(select(Transaction.sequence).where(
            Transaction.sequence == sequence, clause)).scalar_one_or_none() is None:
        raise NotFound(f"transaction {sequence} does not exist", code="UNKNOWN_TRANSACTION", field=["sequence"])
    # the leaf is read with the audit path's nodes, in the same statement
    conn = s.connection()
    leaf = (0, sequence - 1)
    ranges = merkle.inclusion_ranges(sequence - 1, size)
    nodes, chain = tree.read_nodes(conn, [leaf, *merkle.nodes_for(ranges)])
    path = [merkle.range_hash(a, b, nodes) for a, b in ranges]
    return InclusionProof(sequence, sequence - 1, size, chain[sequence], nodes[leaf].hex(), [h.hex() for h in path])


def consistency_proof(s: Session, *, actor: Actor, from_size: int, to_size: int | None = None) -> ConsistencyProof:
    """The proof that the tree of `from_size` is the start of the tree of `to_size` (default: now)."""
    require_reader(actor)
    if from_size < 1:
        raise ValidationError("a tree size is at least 1", code="INVALID_TREE_SIZE", field=["fromSize"])
    size, ledger = _tree_size(s, to_size, "toSize")
    if from_size > size:
        if to_size is None and from_size > ledger:
            raise ValidationError(f"the ledger holds {ledger} transactions, not {from_size}",
                                  code="TREE_SIZE_BEYOND_LEDGER", field=["fromSize"])
        raise ValidationError(f"fromSize {from_size} is larger than toSize {size}", code="FROM_SIZE_AFTER_TO_SIZE",
                              field=["fromSize"])
    proof = tree.consistency_proof(s.connection(), from_size, size)
    return ConsistencyProof(from_size, size, [h.hex() for h in proof])


def receipt(s: Session, *, signer: signing.Signer | None, now: datetime, sequence: int) -> Receipt:
    """A posting's receipt: the tree head right after `sequence`, signed now, and the proof."""
    key = _signer(signer)
    chain_hash = s.execute(select(Transaction.hash).where(Transaction.sequence == sequence)).scalar_one()
    conn = s.connection()
    path = tree.inclusion_proof(conn, sequence - 1, sequence)
    head = key.sign(sequence, tree.root(conn, sequence), now)
    return Receipt(sequence, chain_hash, merkle.leaf_hash(bytes.fromhex(chain_hash)).hex(), [h.hex() for h in path],
                   head)


def check_tree_head(s: Session, *, signer: signing.Signer | None, head: signing.SignedTreeHead) -> TreeHeadCheck:
    """Does this ledger's key sign `head`, and does the journal still make its root?

    The root is rebuilt from the transactions' chain hashes (not from the stored nodes), and
    the stored nodes must give the same one.
    """
    key = _signer(signer)
    if head.key_id.lower() != key.key_id:
        return TreeHeadCheck(False, "the tree head was signed with another key")
    if not key.verify(head):
        return TreeHeadCheck(False, "the tree head's signature does not verify")
    size = ledger_size(s)
    if head.tree_size > size:
        return TreeHeadCheck(False, f"the tree head covers {head.tree_size} transactions; the ledger holds {size}")
    conn = s.connection()
    if tree.rebuilt_root(conn, head.tree_size) != head.root_hash:
        return TreeHeadCheck(False, "the journal no longer makes the tree head's root hash")
    try:
        stored = tree.root(conn, head.tree_size) if head.tree_size else merkle.EMPTY_ROOT
    except tree.TreeDamaged as err:
        return TreeHeadCheck(False, str(err))
    if stored != head.root_hash:
        return TreeHeadCheck(False, "the stored tree nodes do not make the tree head's root hash")
    return TreeHeadCheck(True)
