"""The journal's Merkle tree in the database: nodes written as postings append, proofs read back.

`completed_nodes` runs inside `journal.post`, under the chain head lock, and the posting inserts
the rows it returns in its own database transaction: the nodes a transaction completes commit or roll back with it, and
postings are serialised, so the nodes never race. Appending leaf i writes nothing when i
is even (the leaf's hash is derived from the transaction row), and otherwise one INSERT of
the nodes it completes, after reading at most log2(i) left siblings (one SELECT, only when
i+1 is a multiple of 4: the level-0 sibling is the previous transaction, whose hash the
posting already holds).

Proofs and roots read O(log n) rows by primary key (`lookup`), never the journal.
"""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, bindparam, insert, literal, or_, select, union_all
from sqlalchemy.engine import Connection

from ledger import merkle
from ledger.models import MerkleNode, Transaction

_N, _T = MerkleNode.__table__, Transaction.__table__
_INSERT_NODES = insert(_N)


class TreeDamaged(RuntimeError):
    """A node the tree needs is missing: the stored tree does not match the journal."""


def _leaf(chain_hash_hex: str) -> bytes:
    return merkle.leaf_hash(bytes.fromhex(chain_hash_hex))


# One round trip for leaves (level 0: the transactions' chain hashes) and stored nodes
# together. The nodes are an OR of (level, position) pairs: both databases answer that with
# one index probe a pair (SQLite does not for a row-value IN list). One statement object per
# number of pairs, built once, so SQLAlchemy compiles each shape once and a posting or a proof
# only binds values.
_LEAVES = (select(literal(0).label("level"), (_T.c.sequence - 1).label("position"), _T.c.hash)
           .where(_T.c.sequence.in_(bindparam("sequences", expanding=True))))
_STATEMENTS: dict[int, object] = {}


def _select_nodes(pairs: int):
    stmt = _STATEMENTS.get(pairs)
    if stmt is None and not pairs:
        stmt = _STATEMENTS[0] = _LEAVES
    elif stmt is None:
        inner = select(_N.c.level, _N.c.position, _N.c.hash).where(or_(*(
            and_(_N.c.level == bindparam(f"l{i}"), _N.c.position == bindparam(f"p{i}")) for i in range(pairs))))
        stmt = _STATEMENTS[pairs] = union_all(_LEAVES, inner)
    return stmt


def read_nodes(conn: Connection, wanted: Sequence[merkle.Node]) -> tuple[dict[merkle.Node, bytes], dict[int, str]]:
    """The hashes of `wanted` perfect nodes (level 0 from the transactions, the rest stored),
    and the chain hashes of the transactions read for level 0, by sequence."""
    leaves = [pos + 1 for level, pos in wanted if level == 0]
    inner = [n for n in wanted if n[0] > 0]
    found: dict[merkle.Node, bytes] = {}
    chain: dict[int, str] = {}
    params: dict = {"sequences": leaves}
    for i, (level, pos) in enumerate(inner):
        params[f"l{i}"], params[f"p{i}"] = level, pos
    for level, pos, h in conn.execute(_select_nodes(len(inner)), params):
        if level == 0:
            chain[pos + 1] = h
            found[(0, pos)] = _leaf(h)
        else:
            found[(level, pos)] = bytes.fromhex(h)
    if len(found) < len(set(wanted)):
        missing = [n for n in wanted if n not in found]
        raise TreeDamaged(f"the stored tree lacks node(s) {missing[:3]}: it does not match the journal")
    return found, chain


def lookup(conn: Connection, wanted: Sequence[merkle.Node]) -> dict[merkle.Node, bytes]:
    """The hashes of `wanted` perfect nodes, in one statement."""
    return read_nodes(conn, wanted)[0]


def append_leaf(conn: Connection, *, sequence: int, chain_hash: str, previous_chain_hash: str) -> None:
    """Store the nodes that transaction `sequence` completes (call under the head lock)."""
    rows = completed_nodes(conn, sequence=sequence, chain_hash=chain_hash, previous_chain_hash=previous_chain_hash)
    if rows:
        conn.execute(_INSERT_NODES, rows)


def completed_nodes(conn: Connection, *, sequence: int, chain_hash: str, previous_chain_hash: str,
                    known: dict[merkle.Node, bytes] | None = None) -> list[dict]:
    """The node rows (level, position, hash) that transaction `sequence` completes, for the caller
    to insert in its own transaction (call under the head lock). `known`: nodes the caller knows
    are stored (the chain memory's frontier, ledger.journal.ChainMemory); the left siblings are read only if some
    are not among them, and then added to it."""
    index = sequence - 1
    if not index & 1:
        return []
    wanted = merkle.left_siblings_for(index)
    if known is not None and all(n in known for n in wanted):
        siblings = {n: known[n] for n in wanted}
    else:
        siblings = lookup(conn, wanted) if wanted else {}
        if known is not None:
            known.update(siblings)
    nodes = merkle.append(index, _leaf(chain_hash), _leaf(previous_chain_hash), siblings)
    return [{"level": level, "position": pos, "hash": h.hex()} for (level, pos), h in nodes]


def root(conn: Connection, size: int) -> bytes:
    """The tree hash of the first `size` transactions (the caller checks size <= the ledger)."""
    return merkle.root(size, lambda wanted: lookup(conn, wanted))


def inclusion_proof(conn: Connection, index: int, size: int) -> list[bytes]:
    return merkle.inclusion_proof(index, size, lambda wanted: lookup(conn, wanted))


def consistency_proof(conn: Connection, old_size: int, new_size: int) -> list[bytes]:
    return merkle.consistency_proof(old_size, new_size, lambda wanted: lookup(conn, wanted))


def rebuilt_root(conn: Connection, size: int, batch: int = 5000) -> bytes:
    """The tree hash of the first `size` transactions recomputed from their chain hashes alone,
    not from the stored nodes (what an auditor holding the journal would compute)."""
    edge: list[tuple[int, bytes]] = []  # complete subtrees not yet joined, left to right
    last = 0
    stmt = (select(_T.c.sequence, _T.c.hash).where(_T.c.sequence > bindparam("last"), _T.c.sequence <= size)
            .order_by(_T.c.sequence).limit(batch))
    while last < size:
        rows = conn.execute(stmt, {"last": last}).all()
        if not rows:
            break
        for _, chain_hash in rows:
            h, level = _leaf(chain_hash), 0
            while edge and edge[-1][0] == level:
                h = merkle.node_hash(edge.pop()[1], h)
                level += 1
            edge.append((level, h))
        last = rows[-1][0]
    if not edge:
        return merkle.EMPTY_ROOT
    h = edge[-1][1]
    for _, left in reversed(edge[:-1]):
        h = merkle.node_hash(left, h)
    return h


def extend(conn: Connection, from_size: int, to_size: int, batch: int = 5000) -> int:
    """Store the nodes of transactions from_size+1..to_size that were written without them
    (a bulk load, e.g. a benchmark's journal); the nodes of the first `from_size` must be
    there. Returns the number of nodes written."""
    edge: list[tuple[int, bytes]] = []  # the right edge: complete subtrees not yet joined
    if from_size:
        known = lookup(conn, merkle.root_nodes(from_size))
        edge = [(level, known[(level, pos)]) for level, pos in merkle.root_nodes(from_size)]
    index, written = from_size, 0
    stmt = (select(_T.c.sequence, _T.c.hash).where(_T.c.sequence > bindparam("last"), _T.c.sequence <= to_size)
            .order_by(_T.c.sequence).limit(batch))
    while index < to_size:
        rows = conn.execute(stmt, {"last": index}).all()
        if not rows:
            raise TreeDamaged(f"transaction {index + 1} is missing")
        pending = []
        for sequence, chain_hash in rows:
            if sequence != index + 1:
                raise TreeDamaged(f"transaction {index + 1} is missing")
            h, level = _leaf(chain_hash), 0
            while edge and edge[-1][0] == level:
                h = merkle.node_hash(edge.pop()[1], h)
                level += 1
                pending.append({"level": level, "position": index >> level, "hash": h.hex()})
            edge.append((level, h))
            index += 1
        if pending:
            conn.execute(_INSERT_NODES, pending)
            written += len(pending)
    return written
