"""The journal's Merkle tree (RFC 9162 §2.1): tree hashes, inclusion and consistency proofs.

Pure: no database, no clock. The tree is over the transactions in sequence order; leaf i
(from 0) is transaction i + 1, and its leaf is the 32 bytes of that transaction's chain hash:

    leaf hash  = SHA-256(0x00 || leaf)
    node hash  = SHA-256(0x01 || left || right)
    MTH({})    = SHA-256()                       (the empty tree)
    MTH(D[n])  = MTH(D[0:k]) joined with MTH(D[k:n]), k the largest power of two below n

A tree of any size is made of *perfect* subtrees: node (level, position) is the hash of the
2**level leaves from position * 2**level. Those are what the database stores as the
journal grows (they never change once complete), and every hash a proof needs is the
hash of a range [start, end) that the recursion above produces, which is a few perfect
subtrees joined right to left (`perfect_cover`). So proof generation here only *plans*
which perfect nodes it needs; the caller fetches those (O(log n) of them) however it
stores them and hands them back as a mapping.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

Node = tuple[int, int]  # (level, position): the perfect subtree of leaves [position·2^level, (position+1)·2^level)
Lookup = Callable[[Sequence[Node]], Mapping[Node, bytes]]

EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof was asked for sizes or an index that do not make one (the caller maps it)."""


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


# --- planning: which perfect nodes a hash or a proof needs -----------------------------------

def perfect_cover(start: int, end: int) -> list[Node]:
    """The perfect subtrees that make up [start, end), left to right, largest first.

    Valid for the ranges RFC 9162's recursion produces (start a multiple of a power of two at
    least end - start), which are the only ones proofs ask for.
    """
    nodes: list[Node] = []
    while start < end:
        level = (end - start).bit_length() - 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def range_hash(start: int, end: int, nodes: Mapping[Node, bytes]) -> bytes:
    """MTH(D[start:end]) from the perfect nodes of its cover (the rightmost joined first)."""
    cover = perfect_cover(start, end)
    if not cover:
        return EMPTY_ROOT
    h = nodes[cover[-1]]
    for node in reversed(cover[:-1]):
        h = node_hash(nodes[node], h)
    return h


def _inclusion_ranges(index: int, start: int, end: int) -> list[tuple[int, int]]:
    """The ranges whose hashes form PATH(index, D[start:end]), leaf to root."""
    out: list[tuple[int, int]] = []
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
    out.reverse()
    return out


def _consistency_ranges(m: int, start: int, end: int, complete: bool) -> list[tuple[int, int]]:
    """The ranges whose hashes form SUBPROOF(m, D[start:end], complete), in proof order."""
    out: list[tuple[int, int]] = []
    while True:
        n = end - start
        if m == n:
            if not complete:
                out.append((start, end))
            break
        k = _split(n)
        if m <= k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
            m -= k
            complete = False
    out.reverse()
    return out


def check_inclusion_args(index: int, size: int) -> None:
    if size < 1:
        raise ProofError("a tree size must be at least 1")
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")


def check_consistency_args(old_size: int, new_size: int) -> None:
    if old_size < 1 or new_size < 1:
        raise ProofError("a tree size must be at least 1")
    if old_size > new_size:
        raise ProofError(f"the first size ({old_size}) is larger than the second ({new_size})")


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    check_inclusion_args(index, size)
    return _inclusion_ranges(index, 0, size)


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    check_consistency_args(old_size, new_size)
    if old_size == new_size:
        return []
    return _consistency_ranges(old_size, 0, new_size, True)


def nodes_for(ranges: Iterable[tuple[int, int]]) -> list[Node]:
    """Every perfect node the hashes of `ranges` need, without repeats."""
    seen: dict[Node, None] = {}
    for start, end in ranges:
        for node in perfect_cover(start, end):
            seen[node] = None
    return list(seen)


def root_nodes(size: int) -> list[Node]:
    return perfect_cover(0, size)


# --- generating proofs from stored perfect nodes ---------------------------------------------

def root(size: int, lookup: Lookup) -> bytes:
    """MTH of the first `size` leaves."""
    return range_hash(0, size, lookup(root_nodes(size)))


def inclusion_proof(index: int, size: int, lookup: Lookup) -> list[bytes]:
    """The audit path of leaf `index` in the tree of `size` leaves (RFC 9162 §2.1.3.1)."""
    ranges = inclusion_ranges(index, size)
    nodes = lookup(nodes_for(ranges))
    return [range_hash(a, b, nodes) for a, b in ranges]


def consistency_proof(old_size: int, new_size: int, lookup: Lookup) -> list[bytes]:
    """The proof that the tree of `old_size` leaves is a prefix of the one of `new_size` (§2.1.4.1)."""
    ranges = consistency_ranges(old_size, new_size)
    nodes = lookup(nodes_for(ranges))
    return [range_hash(a, b, nodes) for a, b in ranges]


# --- verifying (§2.1.3.2 and §2.1.4.2) -------------------------------------------------------

def root_from_inclusion(index: int, size: int, leaf_hash_: bytes, path: Sequence[bytes]) -> bytes:
    """The root that `path` leads to from `leaf_hash_`; ProofError if the path cannot fit."""
    check_inclusion_args(index, size)
    fn, sn = index, size - 1
    r = leaf_hash_
    for p in path:
        if sn == 0:
            raise ProofError("the audit path is longer than the tree is high")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the audit path is shorter than the tree is high")
    return r


def verify_inclusion(index: int, size: int, leaf_hash_: bytes, path: Sequence[bytes], root_: bytes) -> bool:
    try:
        return root_from_inclusion(index, size, leaf_hash_, path) == root_
    except ProofError:
        return False


def roots_from_consistency(old_size: int, new_size: int, old_root: bytes,
                           proof: Sequence[bytes]) -> tuple[bytes, bytes]:
    """(old root, new root) that `proof` proves, starting from `old_root`; ProofError if it cannot fit."""
    check_consistency_args(old_size, new_size)
    if old_size == new_size:
        if proof:
            raise ProofError("a proof between equal sizes is empty")
        return old_root, old_root
    if not proof:
        raise ProofError("the proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the proof is longer than the tree is high")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the tree is high")
    return fr, sr


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    try:
        fr, sr = roots_from_consistency(old_size, new_size, old_root, proof)
    except ProofError:
        return False
    return fr == old_root and sr == new_root


# --- building the stored nodes as leaves are appended ----------------------------------------

def nodes_completed_by(index: int) -> list[Node]:
    """The perfect nodes above level 0 that appending leaf `index` completes, lowest first."""
    out = []
    level, pos = 0, index
    while pos & 1:
        level, pos = level + 1, pos >> 1
        out.append((level, pos))
    return out


def left_siblings_for(index: int) -> list[Node]:
    """The stored nodes (above level 0) that appending leaf `index` combines with: the left
    halves of the nodes it completes, except level 0's (the previous leaf)."""
    return [(level - 1, 2 * pos) for level, pos in nodes_completed_by(index) if level > 1]


def append(index: int, leaf_hash_: bytes, previous_leaf_hash: bytes | None,
           siblings: Mapping[Node, bytes]) -> list[tuple[Node, bytes]]:
    """The nodes (above level 0) that appending leaf `index` completes, with their hashes.

    `previous_leaf_hash` is leaf index-1's hash (needed when index is odd), `siblings` holds
    the nodes `left_siblings_for(index)` names.
    """
    out: list[tuple[Node, bytes]] = []
    h = leaf_hash_
    for level, pos in nodes_completed_by(index):
        left = previous_leaf_hash if level == 1 else siblings[(level - 1, 2 * pos)]
        h = node_hash(left, h)
        out.append(((level, pos), h))
    return out


class MemoryTree:
    """A tree held in memory, built the way the database builds it (for tests and tools)."""

    def __init__(self, leaves: Iterable[bytes] = ()):
        self.leaf_hashes: list[bytes] = []
        self.nodes: dict[Node, bytes] = {}
        for leaf in leaves:
            self.add(leaf)

    @property
    def size(self) -> int:
        return len(self.leaf_hashes)

    def add(self, leaf: bytes) -> None:
        index = self.size
        h = leaf_hash(leaf)
        previous = self.leaf_hashes[-1] if index else None
        siblings = {n: self.nodes[n] for n in left_siblings_for(index)}
        self.leaf_hashes.append(h)
        self.nodes[(0, index)] = h
        for node, value in append(index, h, previous, siblings):
            self.nodes[node] = value

    def lookup(self, wanted: Sequence[Node]) -> dict[Node, bytes]:
        return {n: self.nodes[n] for n in wanted}

    def root(self, size: int | None = None) -> bytes:
        return root(self.size if size is None else size, self.lookup)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self.size if size is None else size, self.lookup)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return consistency_proof(old_size, self.size if new_size is None else new_size, self.lookup)
