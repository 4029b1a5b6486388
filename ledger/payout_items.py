"""A payout's items as the database keeps them, written and read in one place.

Since migration 0020p a payout's evidence items are `PayoutItemBlock`s: up to `BLOCK` items a
row, as six packed columns of 64-bit integers (evidence id, participant id, an index into the
block's kind/metric names, gross, capped and net in minor units). Writing 100 000 items is
13 rows, not 100 000 rows and their index entries. Measurement items (a few per payout) and
the evidence items of payouts calculated before 0020p are `PayoutItem` rows. Every reader of
payout items reads both: `rows_of` (a payout's items in id order), `blocks_of` (the packed
columns, for sums over many payouts) and `items_of_evidence` (evidence → payout).

Each item keeps the id it would have had as a payout_items row: the block's first_item_id
onwards, taken from the same id sequence, so items sort and page (GraphQL cursors) as before.
"""
from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from ledger.db import sync_pending
from ledger.models import PayoutItem, PayoutItemBlock

BLOCK = 8192  # evidence items per block row
_COLUMNS = 6  # packed: evidence ids, participant ids, name indexes, gross, capped, net
_BIG_ENDIAN = sys.byteorder == "big"  # packed is little-endian on every machine


class ItemRow(NamedTuple):
    """One payout item, whichever way it is stored (the columns of payout_items)."""

    id: int
    payout_id: int
    kind: str
    evidence_id: int | None
    measurement_id: int | None
    participant_id: int | None
    metric_code: str
    gross_minor: int
    capped_minor: int
    net_minor: int


ROW_COLUMNS = ItemRow._fields


class Block(NamedTuple):
    """The evidence items of one block row as columns (lists of plain ints and strs)."""

    payout_id: int
    first_item_id: int
    kinds: list[str]
    metric_codes: list[str]
    evidence_ids: list[int]
    participant_ids: list[int]
    gross: list[int]
    capped: list[int]
    net: list[int]

    def rows(self) -> list[ItemRow]:
        first, payout_id = self.first_item_id, self.payout_id
        return [ItemRow(first + i, payout_id, kind, eid, None, pid, code, g, c, n)
                for i, (kind, eid, pid, code, g, c, n) in enumerate(zip(
                    self.kinds, self.evidence_ids, self.participant_ids, self.metric_codes, self.gross, self.capped,
                    self.net))]


def pack(kinds: list[str], metric_codes: list[str], evidence_ids: list[int], participant_ids: list[int],
         gross: list[int], capped: list[int], net: list[int]) -> tuple[str, bytes]:
    """(names, packed) of one block's items: every loop here runs in C (array, map, set).

    An amount or id outside a signed 64-bit integer, or a None, raises (OverflowError or
    TypeError) rather than being stored as anything else."""
    # the usual block has items of one kind (OUTCOME): its names are found by metric code alone,
    # a str whose hash is kept, not by a (kind, code) tuple made and hashed per item
    one_kind = bool(kinds) and kinds.count(kinds[0]) == len(kinds)
    pairs = sorted((kinds[0], code) for code in set(metric_codes)) if one_kind else sorted(set(zip(kinds, metric_codes)))
    for kind, code in pairs:
        if " " in kind or "\n" in kind or "\n" in code:
            raise ValueError(f"a payout item's kind and metric code are single words: {kind!r} {code!r}")
    if one_kind:
        which = list(map({code: i for i, (_, code) in enumerate(pairs)}.__getitem__, metric_codes))
    else:
        which = list(map({pair: i for i, pair in enumerate(pairs)}.__getitem__, zip(kinds, metric_codes)))
    n = len(evidence_ids)
    if not n == len(participant_ids) == len(which) == len(gross) == len(capped) == len(net):
        raise ValueError("a payout item block's columns differ in length")
    columns = (evidence_ids, participant_ids, which, gross, capped, net)
    try:
        # one struct.pack of the six columns, little-endian on every machine: 2–4× faster than
        # array("q", column) for each, which converts every int through a slower path (ops/SCALING.md,
        # session 9)
        packed = struct.pack(f"<{_COLUMNS * n}q", *evidence_ids, *participant_ids, *which, *gross, *capped, *net)
    except struct.error:
        # a value struct will not pack: array says what is wrong with it, as an OverflowError or
        # a TypeError
        packed = _packed_by_array(columns)
    return "\n".join(f"{kind} {code}" for kind, code in pairs), packed


def _packed_by_array(columns: tuple[list[int], ...]) -> bytes:
    packed = array("q")
    for column in columns:
        packed += array("q", column)  # from a list: twice as fast as extend()
    if _BIG_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def unpack(payout_id: int, first_item_id: int, item_count: int, names: str, packed: bytes) -> Block:
    values = array("q")
    values.frombytes(packed)
    if _BIG_ENDIAN:
        values.byteswap()
    n = item_count
    if len(values) != _COLUMNS * n:
        raise ValueError(f"payout {payout_id}'s item block at {first_item_id} holds {len(values)} values, "
                         f"not {_COLUMNS} × {n}")
    eids, pids, which, gross, capped, net = (values[i * n:(i + 1) * n].tolist() for i in range(_COLUMNS))
    pairs = [line.split(" ", 1) for line in names.split("\n")]
    kinds = list(map([k for k, _ in pairs].__getitem__, which))
    codes = list(map([c for _, c in pairs].__getitem__, which))
    return Block(payout_id, first_item_id, kinds, codes, eids, pids, gross, capped, net)


def _first_ids(s: Session, count: int) -> int:
    """The first of `count` consecutive item ids, taken from the payout_items id sequence.

    Every writer of payout items (calculate_payout) holds the journal's head lock, so no
    other item id is taken between reading the next value and moving the sequence past the
    `count` taken."""
    conn = s.connection()
    if conn.dialect.name == "postgresql":
        last = conn.execute(text(
            "SELECT setval(pg_get_serial_sequence('payout_items', 'id'), "
            "nextval(pg_get_serial_sequence('payout_items', 'id')) + :n - 1)"), {"n": count}).scalar_one()
        return last - count + 1
    # SQLite gives a row the largest id in the table plus one: the same, over rows and blocks
    return conn.execute(text(
        "SELECT max(coalesce((SELECT max(id) FROM payout_items), 0), "
        "coalesce((SELECT max(first_item_id + item_count - 1) FROM payout_item_blocks), 0)) + 1")).scalar_one()


_BLOCK_COLUMNS = ("payout_id", "first_item_id", "item_count", "min_evidence_id", "max_evidence_id", "names", "packed")


def pack_blocks(kinds: list[str], metric_codes: list[str], evidence_ids: list[int], participant_ids: list[int],
                gross: list[int], capped: list[int], net: list[int]) -> list[tuple[int, int, int, int, str, bytes]]:
    """A payout's evidence items (columns, in their order) packed a block at a time, before
    any id is known: (offset, item count, min and max evidence id, names, packed) per block."""
    out = []
    for start in range(0, len(evidence_ids), BLOCK):
        part = slice(start, start + BLOCK)
        eids = evidence_ids[part]
        names, packed = pack(kinds[part], metric_codes[part], eids, participant_ids[part], gross[part], capped[part],
                             net[part])
        out.append((start, len(eids), min(eids), max(eids), names, packed))
    return out


def write(s: Session, payout_id: int, kinds: list[str], evidence_ids: list[int], participant_ids: list[int],
          metric_codes: list[str], gross: list[int], capped: list[int], net: list[int],
          measured: list[tuple], *, blocks: list[tuple] | None = None) -> None:
    """A payout's evidence items (columns, in their order) as blocks, then its measurement
    items (tuples of kind, measurement id, metric code, gross, capped, net) as rows; the ids
    in that order, as rows written one by one would have had them. `blocks`: the columns'
    `pack_blocks`, when the caller has packed them already."""
    n = len(evidence_ids)
    if not n and not measured:
        return
    if blocks is None:
        blocks = pack_blocks(kinds, metric_codes, evidence_ids, participant_ids, gross, capped, net)
    first = _first_ids(s, n + len(measured))
    conn = s.connection()
    rows = [(payout_id, first + start, count, low, high, names, packed)
            for start, count, low, high, names, packed in blocks]
    if rows and conn.dialect.name == "postgresql":
        # binary COPY: the packed bytes go as they are, not as hex text
        sync_pending(conn)  # a group commit batch's postings before it, sent first
        with conn.connection.driver_connection.cursor() as cursor:
            with cursor.copy(f"COPY payout_item_blocks ({', '.join(_BLOCK_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["int4", "int8", "int4", "int8", "int8", "text", "bytea"])
                for row in rows:
                    cp.write_row(row)
    elif rows:
        conn.execute(insert(PayoutItemBlock.__table__), [dict(zip(_BLOCK_COLUMNS, row)) for row in rows])
    if measured:
        conn.execute(insert(PayoutItem.__table__), [
            dict(id=first + n + i, payout_id=payout_id, kind=kind, evidence_id=None, measurement_id=mid,
                 participant_id=None, metric_code=code, gross_minor=g, capped_minor=c, net_minor=v)
            for i, (kind, mid, code, g, c, v) in enumerate(measured)])


def blocks_of(s: Session, payout_ids) -> list[Block]:
    """The item blocks of the given payouts (a list of ids or a SELECT of them), in id order."""
    b = PayoutItemBlock
    rows = s.execute(select(b.payout_id, b.first_item_id, b.item_count, b.names, b.packed)
                     .where(b.payout_id.in_(payout_ids)).order_by(b.first_item_id)).all()
    return [unpack(*row) for row in rows]


class ItemColumns:
    """A payout's items in id order (the order recorded) as parallel columns: a page of a
    100 000-item payout makes ItemRows for its page only."""

    __slots__ = ROW_COLUMNS

    def __init__(self, payout_id: int, rows: list[ItemRow], blocks: list[Block]):
        self.payout_id = payout_id
        self.id, self.kind, self.evidence_id, self.measurement_id, self.participant_id = [], [], [], [], []
        self.metric_code, self.gross_minor, self.capped_minor, self.net_minor = [], [], [], []
        for b in blocks:
            n = len(b.evidence_ids)
            self.id += range(b.first_item_id, b.first_item_id + n)
            self.kind += b.kinds
            self.evidence_id += b.evidence_ids
            self.measurement_id += [None] * n
            self.participant_id += b.participant_ids
            self.metric_code += b.metric_codes
            self.gross_minor += b.gross
            self.capped_minor += b.capped
            self.net_minor += b.net
        for r in rows:
            for name in ROW_COLUMNS[2:]:
                getattr(self, name).append(getattr(r, name))
            self.id.append(r.id)
        ids = self.id
        if any(a > b for a, b in zip(ids, ids[1:])):  # rows among the blocks (payouts from before 0020p)
            order = sorted(range(len(ids)), key=ids.__getitem__)
            for name in ROW_COLUMNS:
                if name != "payout_id":
                    setattr(self, name, list(map(getattr(self, name).__getitem__, order)))

    def __len__(self) -> int:
        return len(self.id)

    def row(self, i: int) -> ItemRow:
        return ItemRow(self.id[i], self.payout_id, self.kind[i], self.evidence_id[i], self.measurement_id[i],
                       self.participant_id[i], self.metric_code[i], self.gross_minor[i], self.capped_minor[i],
                       self.net_minor[i])

    def rows(self) -> list[ItemRow]:
        return list(map(ItemRow, self.id, [self.payout_id] * len(self.id), self.kind, self.evidence_id,
                        self.measurement_id, self.participant_id, self.metric_code, self.gross_minor,
                        self.capped_minor, self.net_minor))


def columns_of(s: Session, payout_ids: Iterable[int]) -> dict[int, ItemColumns]:
    """Every item of each payout, rows and blocks together, in id order: two statements."""
    ids = list(payout_ids)
    if not ids:
        return {}
    table = PayoutItem.__table__
    rows: dict[int, list[ItemRow]] = {p: [] for p in ids}
    for row in s.connection().execute(select(*(table.c[c] for c in ROW_COLUMNS)).where(table.c.payout_id.in_(ids))):
        rows[row.payout_id].append(ItemRow(*row))
    blocks: dict[int, list[Block]] = {p: [] for p in ids}
    for block in blocks_of(s, ids):
        blocks[block.payout_id].append(block)
    return {p: ItemColumns(p, rows[p], blocks[p]) for p in ids}


def rows_of(s: Session, payout_ids: Iterable[int]) -> dict[int, list[ItemRow]]:
    """Every item of each payout, rows and blocks together, in id order (the order recorded)."""
    return {p: columns.rows() for p, columns in columns_of(s, payout_ids).items()}


def items_of_evidence(s: Session, evidence_id: int) -> list[ItemRow]:
    """Evidence → payout: every item, of any payout, for this evidence item, in id order.

    The blocks whose evidence id range holds it are read (ix_payout_item_blocks_evidence) and
    the item found in each; rows through their evidence index."""
    b = PayoutItemBlock
    found = [ItemRow(*row) for row in s.connection().execute(
        select(*(PayoutItem.__table__.c[c] for c in ROW_COLUMNS)).where(PayoutItem.evidence_id == evidence_id))]
    blocks = s.execute(select(b.payout_id, b.first_item_id, b.item_count, b.names, b.packed)
                       .where(b.min_evidence_id <= evidence_id, b.max_evidence_id >= evidence_id)).all()
    for row in blocks:
        found += [item for item in unpack(*row).rows() if item.evidence_id == evidence_id]
    return sorted(found)
