"""The Merkle tree engine against RFC 9162 §2.1, written out naively, and against tampering."""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings, strategies as st

from ledger import merkle

# --- the RFC's definitions, recursively and without any cleverness ---------------------------


def naive_mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + naive_mth(leaves[:k]) + naive_mth(leaves[k:])).digest()


def naive_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return naive_path(m, leaves[:k]) + [naive_mth(leaves[k:])]
    return naive_path(m - k, leaves[k:]) + [naive_mth(leaves[:k])]


def naive_subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [naive_mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return naive_subproof(m, leaves[:k], complete) + [naive_mth(leaves[k:])]
    return naive_subproof(m - k, leaves[k:], False) + [naive_mth(leaves[:k])]


def leaves_of(n: int, salt: bytes = b"") -> list[bytes]:
    return [hashlib.sha256(salt + i.to_bytes(8, "big")).digest() for i in range(n)]


MAX = 70
LEAVES = leaves_of(MAX)
TREE = merkle.MemoryTree(LEAVES)


# --- the tree hash --------------------------------------------------------------------------

def test_the_empty_tree_and_a_single_leaf_hash_as_the_rfc_defines():
    assert merkle.MemoryTree().root() == hashlib.sha256(b"").digest()
    one = merkle.MemoryTree([b"leaf"])
    assert one.root() == hashlib.sha256(b"\x00leaf").digest()
    two = merkle.MemoryTree([b"a", b"b"])
    assert two.root() == hashlib.sha256(b"\x01" + hashlib.sha256(b"\x00a").digest()
                                        + hashlib.sha256(b"\x00b").digest()).digest()


def test_every_prefix_root_matches_the_recursive_definition():
    for n in range(1, MAX + 1):
        assert TREE.root(n) == naive_mth(LEAVES[:n]), n


# --- inclusion ------------------------------------------------------------------------------

def test_every_index_and_size_up_to_70_gives_the_rfc_audit_path_and_verifies():
    for n in range(1, MAX + 1):
        root = naive_mth(LEAVES[:n])
        for m in range(n):
            path = TREE.inclusion_proof(m, n)
            assert path == naive_path(m, LEAVES[:n]), (m, n)
            assert merkle.verify_inclusion(m, n, merkle.leaf_hash(LEAVES[m]), path, root), (m, n)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65])
def test_edge_sizes_powers_of_two_and_one_past_them(n):
    root = TREE.root(n)
    for m in (0, n // 2, n - 1):
        path = TREE.inclusion_proof(m, n)
        assert len(path) <= (n - 1).bit_length()
        assert merkle.verify_inclusion(m, n, merkle.leaf_hash(LEAVES[m]), path, root)
        # the same path does not prove another leaf, another index or another size
        assert not merkle.verify_inclusion(m, n, merkle.leaf_hash(b"other"), path, root)
        if n > 1:
            assert not merkle.verify_inclusion((m + 1) % n, n, merkle.leaf_hash(LEAVES[m]), path, root)
        assert not merkle.verify_inclusion(m, n + 1, merkle.leaf_hash(LEAVES[m]), path, TREE.root(n + 1))
        # a path one hash too long or too short does not fit
        assert not merkle.verify_inclusion(m, n, merkle.leaf_hash(LEAVES[m]), path + [b"\x00" * 32], root)
        if path:
            assert not merkle.verify_inclusion(m, n, merkle.leaf_hash(LEAVES[m]), path[:-1], root)


@pytest.mark.parametrize("index,size", [(0, 0), (-1, 5), (5, 5), (6, 5), (0, -1)])
def test_an_index_outside_the_tree_or_an_empty_tree_has_no_proof(index, size):
    with pytest.raises(merkle.ProofError):
        merkle.inclusion_proof(index, size, TREE.lookup)
    assert not merkle.verify_inclusion(index, size, merkle.leaf_hash(LEAVES[0]), [], TREE.root(1))


# --- consistency ----------------------------------------------------------------------------

def test_every_pair_of_sizes_up_to_70_gives_the_rfc_consistency_proof_and_verifies():
    for n in range(1, MAX + 1):
        new_root = naive_mth(LEAVES[:n])
        for m in range(1, n + 1):
            proof = TREE.consistency_proof(m, n)
            expected = [] if m == n else naive_subproof(m, LEAVES[:n], True)
            assert proof == expected, (m, n)
            old_root = naive_mth(LEAVES[:m])
            assert merkle.verify_consistency(m, n, old_root, new_root, proof), (m, n)
            if m < n:
                assert not merkle.verify_consistency(m, n, new_root, new_root, proof), (m, n)
                assert not merkle.verify_consistency(m, n, old_root, old_root, proof), (m, n)


@pytest.mark.parametrize("old,new", [(0, 5), (5, 0), (6, 5), (0, 0), (-1, 3)])
def test_sizes_that_make_no_consistency_proof_are_refused(old, new):
    with pytest.raises(merkle.ProofError):
        merkle.consistency_proof(old, new, TREE.lookup)
    assert not merkle.verify_consistency(old, new, TREE.root(1), TREE.root(1), [TREE.root(1)])


def test_equal_sizes_prove_with_an_empty_proof_only():
    r = TREE.root(9)
    assert merkle.verify_consistency(9, 9, r, r, [])
    assert not merkle.verify_consistency(9, 9, r, r, [r])
    assert not merkle.verify_consistency(9, 9, r, TREE.root(10), [])


# --- tampering ------------------------------------------------------------------------------

def _tampered(kind: str, at: int, n: int) -> list[bytes]:
    leaves = list(LEAVES[:n])
    if kind == "changed":
        leaves[at] = hashlib.sha256(b"forged").digest()
    elif kind == "removed":
        del leaves[at]
        leaves.append(LEAVES[n])  # the same size, so only the content differs
    else:  # "reordered": swapped with a neighbour
        other = at + 1 if at + 1 < n else at - 1
        leaves[at], leaves[other] = leaves[other], leaves[at]
    return leaves


@pytest.mark.parametrize("kind", ["changed", "removed", "reordered"])
@pytest.mark.parametrize("n", [2, 3, 8, 9, 33])
def test_a_changed_removed_or_reordered_leaf_breaks_every_proof_that_covers_it(kind, n):
    honest_root = TREE.root(n)
    for at in range(n):
        forged = merkle.MemoryTree(_tampered(kind, at, n))
        assert forged.root() != honest_root
        # every inclusion proof from the forged tree fails against the honest signed root
        for m in range(n):
            assert not merkle.verify_inclusion(m, n, forged.leaf_hashes[m], forged.inclusion_proof(m), honest_root)
        # an honest tree head of any size covering the leaf is not consistent with the forged tree
        for m in range(at + 1, n + 1):
            assert not merkle.verify_consistency(m, n, TREE.root(m), forged.root(), forged.consistency_proof(m, n))
        # and a forged later tree is not consistent with the honest earlier heads that cover it
        for m in range(at + 1, n):
            assert not merkle.verify_consistency(m, n, TREE.root(m), forged.root(), TREE.consistency_proof(m, n))


def test_a_forged_leaf_cannot_be_proven_with_the_honest_path():
    n = 33
    root = TREE.root(n)
    for m in range(n):
        assert not merkle.verify_inclusion(m, n, merkle.leaf_hash(b"forged"), TREE.inclusion_proof(m, n), root)


# --- properties -----------------------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=600)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=sizes)
def test_property_any_inclusion_proof_verifies_and_any_changed_path_hash_fails(data, n):
    leaves = leaves_of(n, b"p")
    tree = merkle.MemoryTree(leaves)
    m = data.draw(st.integers(0, n - 1))
    path = tree.inclusion_proof(m)
    assert merkle.verify_inclusion(m, n, tree.leaf_hashes[m], path, tree.root())
    if path:
        i = data.draw(st.integers(0, len(path) - 1))
        bad = list(path)
        bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
        assert not merkle.verify_inclusion(m, n, tree.leaf_hashes[m], bad, tree.root())


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=sizes)
def test_property_any_consistency_proof_verifies_and_any_changed_hash_fails(data, n):
    tree = merkle.MemoryTree(leaves_of(n, b"q"))
    m = data.draw(st.integers(1, n))
    proof = tree.consistency_proof(m)
    assert merkle.verify_consistency(m, n, tree.root(m), tree.root(), proof)
    assert len(proof) <= 2 * n.bit_length()
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
        assert not merkle.verify_consistency(m, n, tree.root(m), tree.root(), bad)


@settings(max_examples=100, deadline=None)
@given(n=sizes)
def test_property_stored_nodes_are_the_perfect_subtrees_and_cover_few(n):
    leaves = leaves_of(n, b"r")
    tree = merkle.MemoryTree(leaves)
    for (level, pos), h in tree.nodes.items():
        assert h == naive_mth(leaves[pos << level:(pos + 1) << level])
    assert len(tree.nodes) == 2 * n - bin(n).count("1")  # every complete node, nothing else
    assert len(merkle.root_nodes(n)) == bin(n).count("1")
