"""Double-entry posting, the hash chain, running balances, reversal and verification.

Correctness of concurrent postings
----------------------------------
Every posting first locks the single `ledger_head` row (`SELECT ... FOR UPDATE` on
PostgreSQL; on SQLite the unit of work opened with BEGIN IMMEDIATE, which holds the one
writer lock). While it holds that lock no other posting can read the head, so:
- the sequence is head+1: no gap (the head moves only when the posting commits; a rollback
  leaves it as it was) and no duplicate (the primary key would refuse one anyway);
- `previous_hash` is the hash of the transaction just before it: the chain stays linear;
- account running balances are read and written under the same lock: no lost update.
The lock is released by the commit, so the price is one posting at a time per database.

The posting path's concurrency design (ops/SCALING.md, "What serialises")
-----------------------------------------------------------------------
- Fewer round trips under the lock: on PostgreSQL a posting takes the head, the balances and
  the Merkle frontier this process last wrote from its chain memory (`ChainMemory`, across
  transactions) and sends every write in ONE statement, which takes the head lock first and
  moves the head only from the remembered one, and moves each balance only from the one the
  posting computed from; then the unit of work's commit. Anything the memory missed (another
  process, a rollback, a closing) makes that statement fail. Then either the posting's writes
  roll back to a savepoint of their own, sent in the same round trip, and it is made again as
  without memory — the head lock and the accounts in one round trip (PostgreSQL runs them in
  order, each with its own READ COMMITTED snapshot, so the accounts are read after the lock is
  granted), every write in one more (`_PipelinedStatements`); or, in a unit of work its runner
  reruns whole (`UnitOfWork.may_rerun`: `Database.write`, the group commit), no savepoint is
  spent on that chance: the transaction fails, and the unit of work runs again from the start.
  There the statement is not even waited for (`ledger.db.queue_statement`): through
  `Database.write` it is held back and goes with the unit of work's BEGIN and COMMIT in one
  write to the server and one wait (`UnitOfWork.commit`, `ledger.db._Held`).
- Group commit (`ledger.db.GroupCommit`, on by default on PostgreSQL): units of work of one process
  run one after another in one database transaction and commit together (one that raises
  rolls the batch back and the others run again without it); the head lock is taken once and
  one flush serves the batch; each posting of the batch takes the head its predecessor wrote
  from the chain memory, as above; their rows are gathered and sent as ONE statement for the
  batch (`_BatchedPostings`: the head moved once, each table written once), before anything else
  the batch sends and before its commit.
- Several processes: each has its own writer; while they post at once, one at a time holds
  the writer lease (an advisory lock) for a few batches, its chain memory caught up with the
  others' postings when it takes it (`ChainMemory.catch_up`); ops/SCALING.md.

Canonical bytes (what the hash covers)
--------------------------------------
`hash = hex(SHA-256(UTF-8(previous_hash_hex + canonical_json)))` where `canonical_json` is
the JSON object below with keys sorted, no whitespace (separators "," and ":"), non-ASCII
characters written as themselves, integers as JSON integers:

  {"actor": str, "contractId": int|null, "description": str, "effectiveDate": "YYYY-MM-DD",
   "entries": [{"account": int, "amount": int, "balanceAfter": int, "currency": str,
                "line": int}, ...in line order],
   "kind": str, "postedAt": "YYYY-MM-DDTHH:MM:SS.ffffffZ", "reverses": int|null,
   "sequence": int}

Amounts are integer minor units (öre); debits are positive, credits negative. The first
transaction's previous hash is 64 zeros.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import weakref
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from itertools import chain
from json.encoder import encode_basestring

from sqlalchemy import bindparam, exc as sa_exc, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, configure_mappers
from sqlalchemy.orm.attributes import instance_state, set_committed_value

from ledger import effective_balances
from ledger import money as m
from ledger import chain_ranges, tree
from ledger.db import StaleChainMemory, UnitOfWork, buffered, queue_statement, reading_ahead, send_buffered
from ledger.errors import Conflict, NotFound, ValidationError
from ledger.models import GENESIS_HASH, Account, Entry, LedgerHead, Transaction, utcnow


@dataclass(frozen=True)
class Posting:
    """One side of a transaction: `amount` is signed, debit positive, credit negative."""

    account_id: int
    amount: m.Money


@dataclass(frozen=True)
class Digest:
    sequence: int
    hash: str


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked_transactions: int
    first_invalid_sequence: int | None
    reason: str | None = None


# --- canonical form -------------------------------------------------------------------------

def format_posted_at(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(tx: dict, entries: Sequence[dict]) -> bytes:
    """The bytes a transaction's hash covers; see the module docstring for the format."""
    doc = {
        "actor": tx["actor"],
        "contractId": tx["contract_id"],
        "description": tx["description"],
        "effectiveDate": tx["effective_date"].isoformat(),
        "entries": [
            {
                "account": e["account_id"],
                "amount": e["amount_minor"],
                "balanceAfter": e["balance_after_minor"],
                "currency": e["currency"],
                "line": e["line"],
            }
            for e in entries
        ],
        "kind": tx["kind"],
        "postedAt": format_posted_at(tx["posted_at"]),
        "reverses": tx["reverses"],
        "sequence": tx["sequence"],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def chain_hash(previous_hash: str, canonical: bytes) -> str:
    return hashlib.sha256(previous_hash.encode("ascii") + canonical).hexdigest()


# The same bytes as `canonical_bytes`, built with one %-format instead of a dict, a sort and
# a fresh JSONEncoder per call: posting and verification spend much of their Python time
# here. It is byte-identical by construction, and tests/ledger/test_journal_speed_guards.py
# checks it against `canonical_bytes` on random transactions:
# - the keys are written in sorted order, with the "," and ":" separators and no whitespace;
# - strings go through `encode_basestring`, the very function `json.dumps(ensure_ascii=False)`
#   encodes str values with; ints are exact `int`s, which %d writes as JSON does (int repr);
#   None is null;
# - an aware UTC datetime with a four-digit year gives the same text from isoformat as
#   `format_posted_at`'s strftime; a `date`'s isoformat is what `canonical_bytes` encodes.
# Any value outside those types (a bool, an int or str subclass, a float from a tampered
# SQLite column, a datetime in another zone, a date subclass, a year before 1000) takes
# `canonical_bytes` itself, so the output never differs, only the speed.
_ENTRY_COLUMNS = ("sequence", "line", "account_id", "currency", "amount_minor", "balance_after_minor")
_TX_JSON = ('{"actor":%s,"contractId":%s,"description":%s,"effectiveDate":"%s","entries":[%s],"kind":%s,'
            '"postedAt":"%sZ","reverses":%s,"sequence":%d}')
_ENTRY_JSON = '{"account":%d,"amount":%d,"balanceAfter":%d,"currency":%s,"line":%d}'


def _canonical(sequence: int, posted_at: datetime, effective_date: date, kind: str, description: str, actor: str,
               reverses: int | None, contract_id: int | None, entries: Sequence[Sequence]) -> bytes:
    """`canonical_bytes` of one transaction, byte for byte; `entries` are tuples in the order
    of `_ENTRY_COLUMNS` (sequence, line, account_id, currency, amount_minor, balance_after_minor)."""
    if (type(sequence) is int and type(posted_at) is datetime and posted_at.tzinfo is timezone.utc
            and posted_at.year >= 1000 and type(effective_date) is date and isinstance(kind, str)
            and isinstance(description, str) and isinstance(actor, str)
            and (reverses is None or type(reverses) is int) and (contract_id is None or type(contract_id) is int)):
        parts = []
        for _, line, account_id, currency, amount, balance_after in entries:
            if not (type(line) is int and type(account_id) is int and type(amount) is int
                    and type(balance_after) is int and isinstance(currency, str)):
                break
            parts.append(_ENTRY_JSON % (account_id, amount, balance_after, encode_basestring(currency), line))
        else:
            return (_TX_JSON % (
                encode_basestring(actor), "null" if contract_id is None else contract_id,
                encode_basestring(description), effective_date.isoformat(), ",".join(parts),
                encode_basestring(kind), posted_at.isoformat(timespec="microseconds")[:26],
                "null" if reverses is None else reverses, sequence,
            )).encode("utf-8")
    tx = {"sequence": sequence, "posted_at": posted_at, "effective_date": effective_date, "kind": kind,
          "description": description, "actor": actor, "reverses": reverses, "contract_id": contract_id}
    return canonical_bytes(tx, [dict(zip(_ENTRY_COLUMNS, e)) for e in entries])


# --- accounts -------------------------------------------------------------------------------

def account_key(code: str, party_id: int, currency: str, contract_id: int | None, counterparty_id: int | None,
                fund_id: int | None = None) -> str:
    key = f"{code}:{party_id}:{contract_id or '-'}:{counterparty_id or '-'}:{currency}"
    return key if fund_id is None else f"{key}:f{fund_id}"


def open_account(
    uow: UnitOfWork, *, code: str, name: str, party_id: int, currency: str,
    contract_id: int | None = None, counterparty_id: int | None = None, fund_id: int | None = None,
) -> Account:
    """The account for (code, party, contract, counterparty, currency, fund), opened if new."""
    return open_accounts(uow, [dict(code=code, name=name, party_id=party_id, currency=currency,
                                    contract_id=contract_id, counterparty_id=counterparty_id, fund_id=fund_id)])[0]


def open_accounts(uow: UnitOfWork, wanted: Sequence[dict]) -> list[Account]:
    """The accounts `open_account` would give for each of `wanted` (its keyword arguments), in that
    order, read in ONE statement: a use case posting to two accounts waited for two round trips."""
    keyed = []
    for spec in wanted:
        m.currency(spec["currency"])
        keyed.append((account_key(spec["code"], spec["party_id"], spec["currency"], spec.get("contract_id"),
                                  spec.get("counterparty_id"), spec.get("fund_id")), spec))
    s = uow.session
    keys = sorted({key for key, _ in keyed})
    found = {a.key: a for a in s.execute(select(Account).where(Account.key.in_(keys))).scalars()}
    opened = False
    for key, spec in keyed:
        if key not in found:
            found[key] = Account(
                key=key, code=spec["code"], name=spec["name"], party_id=spec["party_id"], currency=spec["currency"],
                contract_id=spec.get("contract_id"), counterparty_id=spec.get("counterparty_id"),
                fund_id=spec.get("fund_id"), balance_minor=0, last_sequence=0,
            )
            s.add(found[key])
            opened = True
    if opened:
        s.flush()
    return [found[key] for key, _ in keyed]


def close_account(uow: UnitOfWork, account_id: int) -> Account:
    """Close an account with a zero balance; later postings to it are refused."""
    s = uow.session
    _lock_head(s)
    acc = s.get(Account, account_id)
    if acc is None:
        raise NotFound(f"account {account_id} does not exist", code="UNKNOWN_ACCOUNT", field=["accountId"])
    if acc.balance_minor != 0:
        raise Conflict("an account with a balance cannot be closed", code="ACCOUNT_NOT_EMPTY")
    acc.closed_at = acc.closed_at or utcnow()
    s.flush()
    # the chain memory holds it open: a posting from it would be refused by the database and
    # made again (the balance update checks closed_at), but forgetting spares that round trip
    chain_memory(s.connection()).forget()
    return acc


# --- posting --------------------------------------------------------------------------------

def _lock_head(s: Session) -> LedgerHead:
    head = s.execute(select(LedgerHead).where(LedgerHead.id == 1).with_for_update()).scalar_one_or_none()
    if head is None:
        head = LedgerHead(id=1, sequence=0, hash=GENESIS_HASH, posted_at=None)
        s.add(head)
        s.flush()
    return head


def lock(uow: UnitOfWork) -> None:
    """Serialise with every posting: take the chain head lock now, for a check-then-post use case.

    A use case that reads balances to decide (is the fund's capital available?) takes this
    first, so no other posting can change those balances before its own posting commits.
    """
    _lock_head(uow.session)


def _validate(postings: Sequence[Posting], accounts: dict[int, Account]) -> list[tuple[int, str, int]]:
    if len(postings) < 2:
        raise ValidationError("a transaction needs at least two entries", code="TOO_FEW_ENTRIES", field=["entries"])
    rows: list[tuple[int, str, int]] = []
    sums: dict[str, int] = defaultdict(int)
    for i, p in enumerate(postings):
        acc = accounts.get(p.account_id)
        where = ["entries", str(i)]
        if acc is None:
            raise NotFound(f"account {p.account_id} does not exist", code="UNKNOWN_ACCOUNT", field=where)
        if acc.closed_at is not None:
            raise Conflict(f"account {acc.id} is closed", code="ACCOUNT_CLOSED", field=where)
        code = p.amount.currency.code
        m.currency(code)
        if code != acc.currency:
            raise ValidationError(
                f"account {acc.id} holds {acc.currency}, not {code}", code="CURRENCY_MISMATCH", field=where
            )
        units = m.minor_units(p.amount)
        if units == 0:
            raise ValidationError("an entry of zero is not an entry", code="ZERO_AMOUNT", field=where)
        sums[code] += units
        rows.append((acc.id, code, units))
    for code, total in sums.items():
        if total != 0:
            off = m.from_minor(total, code).amount
            raise ValidationError(
                f"the transaction does not balance in {code} by {off}", code="UNBALANCED_TRANSACTION", field=["entries"]
            )
    return rows


# Postings go through SQLAlchemy Core on the session's own connection, with statements built
# once: the ORM's unit of work and bulk paths cost several times the round trips themselves
# (a posting is client-CPU bound). Six statements: lock the head, read the accounts, insert
# the transaction, insert its entries, update the accounts' balances (one executemany) and
# advance the head.
_T, _E, _A, _H = Transaction.__table__, Entry.__table__, Account.__table__, LedgerHead.__table__
_LOCK_HEAD = select(_H.c.sequence, _H.c.hash, _H.c.posted_at).where(_H.c.id == 1).with_for_update()
_READ_ACCOUNTS = (select(_A.c.id, _A.c.currency, _A.c.closed_at, _A.c.balance_minor)
                  .where(_A.c.id.in_(bindparam("account_ids", expanding=True))))
_INSERT_TRANSACTION = insert(_T)
_INSERT_ENTRIES = insert(_E)
_SET_BALANCE = (update(_A).where(_A.c.id == bindparam("account_id"))
                .values(balance_minor=bindparam("new_balance"), last_sequence=bindparam("new_sequence")))
_ADVANCE_HEAD = (update(_H).where(_H.c.id == 1)
                 .values(sequence=bindparam("head_sequence"), hash=bindparam("head_hash"),
                         posted_at=bindparam("head_posted_at")))


class _CoreStatements:
    """A posting's reads and writes through SQLAlchemy Core, one round trip a statement (SQLite,
    where a round trip is a function call)."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def lock_and_read(self, ids: list[int]) -> tuple[tuple | None, dict[int, tuple]]:
        head = self.conn.execute(_LOCK_HEAD).first()
        if head is None:
            return None, {}
        accounts = {a.id: a for a in self.conn.execute(_READ_ACCOUNTS, {"account_ids": ids})} if ids else {}
        return tuple(head), accounts

    def write(self, tx: dict, entry_rows: list[dict], nodes: list[dict], balances: list[dict], head: dict) -> None:
        self.conn.execute(_INSERT_TRANSACTION, tx)
        self.conn.execute(_INSERT_ENTRIES, entry_rows)
        if nodes:
            self.conn.execute(tree._INSERT_NODES, nodes)
        self.conn.execute(_SET_BALANCE, balances)
        self.conn.execute(_ADVANCE_HEAD, head)


def _writes_statements(head: str, nodes: str, buckets: str, balances: str, most_listed: int) -> dict:
    """`_PipelinedStatements.WRITES`: by (completes Merkle nodes?, moves business-date totals?,
    accounts listed one parameter each: 0 when more than `most_listed`)."""
    return {(with_nodes, with_buckets, listed):
            head + (nodes if with_nodes else "") + (buckets if with_buckets else "")
            + balances.format(listed=f" AND a.id IN ({', '.join(f'%(id{i})s' for i in range(listed))})"
                              if listed else "")
            for with_nodes in (False, True) for with_buckets in (False, True) for listed in range(most_listed + 1)}


class _PipelinedStatements(_CoreStatements):
    """The same writes on PostgreSQL, sent through psycopg's pipeline mode on the session's own
    connection and transaction, as driver SQL (SQLAlchemy's execute path costs more Python than
    the round trip). A posting from the chain memory (`ChainMemory`) sends every write in ONE
    round trip and one statement (`WRITES`), the head lock taken first; a posting that reads the
    head sends the head lock and the accounts in one round trip and that statement in one more
    (a pipeline only where psycopg must begin the transaction, so its BEGIN goes along). The commit is
    the unit of work's. The head lock is held for a posting's round trips and its commit, so
    fewer of them is more postings per second for every client at once.

    Safe to pipeline: PostgreSQL runs the queued statements one after another in order, each
    READ COMMITTED statement with its own snapshot, so the accounts are read only once the head
    lock is granted — exactly as when sent one by one. (One statement locking the head and
    reading the accounts together would read them in a snapshot taken before the lock wait; the
    writing statement's own reads are safe there, see `WRITES`.)
    A failed statement in the pipeline raises on sync as the DBAPI error SQLAlchemy would have
    wrapped; it is wrapped the same way here, so the unit of work maps it as before."""

    LOCK_HEAD = "SELECT sequence, hash, posted_at FROM ledger_head WHERE id = 1 FOR UPDATE"
    READ_ACCOUNTS = "SELECT id, currency, closed_at, balance_minor FROM ledger_accounts WHERE id = ANY(%s)"
    # Every write of a posting in ONE statement (a statement costs psycopg more Python than its
    # rows do, and a pipeline of several more than one statement): the head moved, the
    # transaction, its entries, the Merkle nodes it completes, the business-date totals and the
    # accounts' balances. Each part takes the new sequence from the one before it (`FROM head`,
    # `FROM t`), so the head lock is taken first, and nothing is written unless the head moved:
    # - the head moves only from `expected` (sequence, hash): for a posting from the chain memory
    #   the remembered head, for one that read the head under its lock that head. Once the lock is
    #   granted PostgreSQL checks the WHERE against the head as the last commit left it;
    # - each account's balance moves only from the balance the posting computed from, and only
    #   if the account is open (the UPDATE re-checks a row another commit changed meanwhile);
    # - if either moved nothing, the statement fails (a division by zero), and so does
    #   everything after it in the transaction.
    # The statement's reads (a bucket's latest total) see a snapshot taken before the head lock
    # was granted; the rows they read are written only by postings, and a posting committed in
    # between would have moved the head, failing the statement. Arrays go as text literals
    # (`_array`): psycopg's list dumpers cost more than the statement's other parameters together.
    # A transaction that completes no Merkle node (every other one) names no merkle_nodes.
    WRITE_HEAD = ("WITH head AS (UPDATE ledger_head SET sequence = %(sequence)s, hash = %(hash)s, "
                  "posted_at = %(posted_at)s WHERE id = 1 AND sequence = %(expected_sequence)s "
                  "AND hash = %(previous_hash)s RETURNING sequence), "
                  "t AS (INSERT INTO ledger_transactions (sequence, posted_at, effective_date, kind, description, "
                  "actor, reverses, contract_id, previous_hash, hash) "
                  "SELECT head.sequence, %(posted_at)s::timestamptz, %(effective_date)s::date, %(kind)s::text, "
                  "%(description)s::text, %(actor)s::text, %(reverses)s::bigint, %(contract_id)s::integer, "
                  "%(previous_hash)s::text, %(hash)s::text FROM head RETURNING sequence), "
                  "e AS (INSERT INTO ledger_entries (sequence, line, account_id, currency, amount_minor, "
                  "balance_after_minor) SELECT t.sequence, v.* FROM t, unnest(%(lines)s::integer[], "
                  "%(accounts)s::integer[], %(currencies)s::varchar[], %(amounts)s::bigint[], "
                  "%(balances_after)s::bigint[]) AS v), ")
    WRITE_NODES = ("n AS (INSERT INTO merkle_nodes (level, position, hash) SELECT v.* FROM t, "
                   "unnest(%(levels)s::integer[], %(positions)s::bigint[], %(node_hashes)s::varchar[]) AS v), ")
    WRITE_BUCKETS = "k AS (" + effective_balances.RECORD_POSTGRESQL + "), "
    # The accounts are also named one parameter each (`ACCOUNTS_LISTED` or fewer): the statement is
    # prepared, and its generic plan knows an array parameter's length no better than "10 rows", so
    # it scanned the whole accounts table (a seq scan, each account compared with each entry) where
    # the table is small; a list of k parameters is k rows to the planner, found by primary key.
    WRITE_BALANCES = ("moved AS (UPDATE ledger_accounts AS a SET balance_minor = v.new_balance, "
                      "last_sequence = t.sequence FROM t, unnest(%(ids)s::integer[], %(old)s::bigint[], "
                      "%(new)s::bigint[]) AS v(id, old_balance, new_balance) "
                      "WHERE a.id = v.id AND a.balance_minor = v.old_balance AND a.closed_at IS NULL{listed} "
                      "RETURNING 1) SELECT 1 / (count(*) = %(n)s)::integer FROM moved")
    ACCOUNTS_LISTED = 8
    WRITES = _writes_statements(WRITE_HEAD, WRITE_NODES, WRITE_BUCKETS, WRITE_BALANCES, ACCOUNTS_LISTED)
    SAVEPOINT = "SAVEPOINT utfall_posting_from_memory"
    RELEASE = "RELEASE SAVEPOINT utfall_posting_from_memory"
    ROLLBACK = "ROLLBACK TO SAVEPOINT utfall_posting_from_memory"

    def __init__(self, conn: Connection):
        super().__init__(conn)
        self.raw = conn.connection.driver_connection

    def _run(self, statement: str, work):
        import psycopg
        try:
            return work()
        except psycopg.Error as err:
            raise sa_exc.DBAPIError.instance(statement, None, err, psycopg.Error) from err

    def lock_and_read(self, ids: list[int]) -> tuple[tuple | None, dict[int, tuple]]:
        send_buffered(self.conn)  # a batch's postings buffered before it go first
        def work():
            with self.raw.pipeline(), self.raw.cursor() as head_cur, self.raw.cursor() as acc_cur:
                head_cur.execute(self.LOCK_HEAD)
                acc_cur.execute(self.READ_ACCOUNTS, (ids,))
                head = head_cur.fetchone()
                return head, acc_cur.fetchall()
        head, rows = self._run(self.LOCK_HEAD, work)
        if head is None:
            return None, {}
        sequence, hash_, posted_at = head
        posted_at = None if posted_at is None else posted_at.astimezone(timezone.utc)  # as UTCDateTime reads it
        return (sequence, hash_, posted_at), {row[0]: _AccountRow(*row) for row in rows}

    def read_accounts(self, ids: list[int]) -> dict[int, "_AccountRow"]:
        """The accounts, without the head lock (the posting's writes check what it relied on)."""
        if not ids:
            return {}
        # (a batch's buffered postings need not go first: the accounts they move are in the chain
        # memory, so not read here; if they were, `_BatchedPostings.add` sends the buffer first)
        def work():
            with reading_ahead(self.raw), self.raw.cursor() as cur:
                return cur.execute(self.READ_ACCOUNTS, (ids,)).fetchall()
        return {row[0]: _AccountRow(*row) for row in self._run(self.READ_ACCOUNTS, work)}

    def _statement(self, writes: "_Writes", expected_sequence: int) -> tuple[str, dict]:
        """The posting's one writing statement (`WRITES`) and its parameters."""
        tx, entries, nodes, b, k = writes.tx, writes.entry_rows, writes.nodes, writes.balances, writes.buckets
        params = {**tx, "expected_sequence": expected_sequence,
                  "lines": _array([e["line"] for e in entries]), "accounts": _array([e["account_id"] for e in entries]),
                  "currencies": _array([e["currency"] for e in entries]),
                  "amounts": _array([e["amount_minor"] for e in entries]),
                  "balances_after": _array([e["balance_after_minor"] for e in entries]),
                  "ids": _array(b["ids"]), "old": _array(b["old"]), "new": _array(b["new"]), "n": b["n"]}
        if nodes:
            params.update(levels=_array([n["level"] for n in nodes]), positions=_array([n["position"] for n in nodes]),
                          node_hashes=_array([n["hash"] for n in nodes]))
        if k is not None:
            params.update(a=_array(k["a"]), l=_array(k["l"]), b=_array(k["b"]), m=_array(k["m"]))
        listed = b["n"] if b["n"] <= self.ACCOUNTS_LISTED else 0
        for i in range(listed):
            params[f"id{i}"] = b["ids"][i]
        return self.WRITES[bool(nodes), k is not None, listed], params

    def failed(self) -> bool:
        """Whether the connection's transaction has failed (a statement of it raised)."""
        import psycopg
        return self.raw.info.transaction_status == psycopg.pq.TransactionStatus.INERROR

    def _execute(self, sql: str, params: dict) -> None:
        """One statement; at a transaction's start in a pipeline, so psycopg's BEGIN goes in its round trip."""
        import psycopg
        send_buffered(self.conn)  # a batch's postings buffered before it go first
        if self.raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            with self.raw.pipeline(), self.raw.cursor() as cur:
                cur.execute(sql, params)
        else:
            with self.raw.cursor() as cur:
                cur.execute(sql, params)

    def write(self, writes: "_Writes") -> None:
        """The posting's writes, for a posting that read the head under its lock: one round trip."""
        sql, params = self._statement(writes, writes.tx["sequence"] - 1)
        self._run(sql, lambda: self._execute(sql, params))

    def write_remembered(self, writes: "_Writes", *, rerun: bool = False, queue: bool = False,
                         buffer: bool = False) -> bool:
        """`write` for a posting that took the head (and perhaps balances) from the chain memory,
        in one round trip: the head moves only from the remembered one, every balance only from
        the one the posting computed from. False if the memory was out of date, or any write
        failed: all of it is rolled back (a savepoint sent in the same round trip) and the
        transaction is as before, for the posting to be made again from the database.

        `rerun`: the unit of work is rerun whole if this fails (`UnitOfWork.may_rerun`), so no
        savepoint is sent; False then leaves the transaction failed, for the rerun to roll back.
        `queue`: not even waited for (`ledger.db.queue_statement`).
        `buffer`: not even sent, but added to the batch's one statement (`_BatchedPostings`, a group
        commit batch's first run), whose failure fails the run, which reruns."""
        import psycopg
        if buffer:
            buffered(self.conn, _BatchedPostings).add(self.conn, writes)
            return True
        send_buffered(self.conn)  # a batch's postings buffered before it go first
        sql, params = self._statement(writes, writes.tx["sequence"] - 1)
        if queue:
            # its failure fails the batch's run (or the unit of work's commit), which reruns
            queue_statement(self.conn, sql, params, alone=queue == QUEUED_ALONE)
            return True
        if rerun:
            try:
                self._execute(sql, params)
                return True
            except psycopg.Error:
                return False
        try:
            failed = None
            with self.raw.pipeline(), self.raw.cursor() as cur:
                try:
                    cur.execute(self.SAVEPOINT)
                    cur.execute(sql, params)
                    cur.execute(self.RELEASE)
                except psycopg.Error as err:  # raised early, as results come in: the sync raises too
                    failed = err
            if failed is not None:
                raise failed
            return True
        except psycopg.Error as err:
            # one query string, outside a pipeline: psycopg empties its prepared statement cache
            # on a ROLLBACK (TO SAVEPOINT), and must send that to the server before its next
            # statement is prepared, which it does only after a query outside a pipeline
            def undo():
                self.raw.execute(f"{self.ROLLBACK}; {self.RELEASE}")
            try:
                self._run(self.ROLLBACK, undo)
            except sa_exc.DBAPIError as failed:  # the transaction was broken before: say why
                raise failed from err
            return False


QUEUED_ALONE = "alone"  # `write_remembered(queue=...)`: queued with its unit of work's COMMIT to follow


def _array(values: Sequence[int | str]) -> str:
    """A PostgreSQL array literal of ints, or of strings of letters and digits (currency codes, hex
    hashes: nothing to quote or escape), for a parameter cast to an array type."""
    # checked and formatted element by element in C (int.__repr__ and the str methods refuse
    # anything else): the loop in Python was a twentieth of a batched posting's Python
    try:
        return "{" + ",".join(map(int.__repr__, values)) + "}"
    except TypeError:
        pass
    try:
        if all(map(str.isalnum, values)) and all(map(str.isascii, values)):
            return "{" + ",".join(values) + "}"
    except TypeError:
        pass
    raise ValueError(f"not all ints, nor all plain words: {values!r}")


def _text_array(values: Sequence[str]) -> str:
    """A PostgreSQL array literal of any texts (each quoted, its backslashes and double quotes
    escaped), for a parameter cast to text[]: psycopg's list dumper costs several times this."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def _nullable_array(values: Sequence[int | None]) -> str:
    """`_array` of ints where None is NULL."""
    return _array([v for v in values if v is not None]) if None not in values else (
        "{" + ",".join("NULL" if v is None else str(_int(v)) for v in values) + "}")


def _int(v) -> int:
    if type(v) is not int:
        raise ValueError(f"not an int: {v!r}")
    return v


def _batched_statements(head: str, nodes: str, buckets: str, balances: str) -> dict:
    """`_BatchedPostings.WRITES`: by (completes Merkle nodes?, moves business-date totals?)."""
    return {(with_nodes, with_buckets): head + (nodes if with_nodes else "") + (buckets if with_buckets else "")
            + balances for with_nodes in (False, True) for with_buckets in (False, True)}


class _BatchedPostings:
    """The postings of a group commit batch's run from the chain memory, gathered and sent as ONE
    statement (`send`, `WRITES`) rather than one each: each posting's statement cost the writer
    thread psycopg's per-statement Python and the server a statement's planning, executor start
    and CTE plumbing, several times what its rows cost.

    The statement writes exactly the rows the postings' own statements would have, in one go:
    - the head moves once, from the first posting's head (`WHERE sequence = AND hash =`, as a
      posting's own statement checks the remembered head) to the last one's; every row is
      written only if it moved (`FROM head`);
    - the transactions, their entries and the Merkle nodes they complete, one INSERT each;
    - each account's balance moves once, from the balance the first of the batch's postings
      computed from to the one the last left, and only if the account is open (the postings in
      between computed from what the one before them left, `add` checks it);
    - each business-date bucket gets its row per posting, as one posting at a time would leave
      it: the total the database held before the batch plus the batch's moves up to that posting.
    If the head or a balance check fails, the statement fails (a division by zero), nothing of it
    is written, and the batch's run fails and reruns, as when one posting's own statement failed.

    A posting that does not continue the buffered ones (another head, an account's balance not
    the one the buffer leaves) has them sent first, as anything else sent on the connection does
    (`ledger.db.send_buffered`).
    """

    HEAD = ("WITH head AS (UPDATE ledger_head SET sequence = %(head_sequence)s, hash = %(head_hash)s, "
            "posted_at = %(head_posted_at)s WHERE id = 1 AND sequence = %(expected_sequence)s "
            "AND hash = %(expected_hash)s RETURNING sequence), "
            "t AS (INSERT INTO ledger_transactions (sequence, posted_at, effective_date, kind, description, "
            "actor, reverses, contract_id, previous_hash, hash) SELECT v.* FROM head, "
            "unnest(%(sequences)s::bigint[], %(posted_ats)s::timestamptz[], %(effective_dates)s::date[], "
            "%(kinds)s::text[], %(descriptions)s::text[], %(actors)s::text[], %(reverses)s::bigint[], "
            "%(contract_ids)s::integer[], %(previous_hashes)s::text[], %(hashes)s::text[]) AS v), "
            "e AS (INSERT INTO ledger_entries (sequence, line, account_id, currency, amount_minor, "
            "balance_after_minor) SELECT v.* FROM head, unnest(%(e_sequences)s::bigint[], %(lines)s::integer[], "
            "%(accounts)s::integer[], %(currencies)s::varchar[], %(amounts)s::bigint[], "
            "%(balances_after)s::bigint[]) AS v), ")
    NODES = ("n AS (INSERT INTO merkle_nodes (level, position, hash) SELECT v.* FROM head, "
             "unnest(%(levels)s::integer[], %(positions)s::bigint[], %(node_hashes)s::varchar[]) AS v), ")
    # each row: the bucket's latest total before the batch (the statement's snapshot holds no row of
    # the batch) plus the batch's moves of that bucket up to its posting
    BUCKETS = ("k AS (INSERT INTO effective_balance_buckets (account_id, level, bucket, sequence, cumulative_minor) "
               "SELECT v.a, v.l, v.b, v.s, v.m + COALESCE((SELECT x.cumulative_minor FROM effective_balance_buckets "
               "AS x WHERE x.account_id = v.a AND x.level = v.l AND x.bucket = v.b ORDER BY x.sequence DESC "
               "LIMIT 1), 0) FROM head, unnest(%(ka)s::integer[], %(kl)s::smallint[], %(kb)s::integer[], "
               "%(ks)s::bigint[], %(km)s::bigint[]) AS v(a, l, b, s, m)), ")
    BALANCES = ("moved AS (UPDATE ledger_accounts AS a SET balance_minor = v.new_balance, "
                "last_sequence = v.last_sequence FROM head, unnest(%(ids)s::integer[], %(old)s::bigint[], "
                "%(new)s::bigint[], %(last)s::bigint[]) AS v(id, old_balance, new_balance, last_sequence) "
                "WHERE a.id = v.id AND a.balance_minor = v.old_balance AND a.closed_at IS NULL "
                "AND a.id = ANY(%(ids)s::integer[]) "
                "RETURNING 1) SELECT 1 / (count(*) = %(n)s)::integer FROM moved")
    WRITES = _batched_statements(HEAD, NODES, BUCKETS, BALANCES)  # by (completes Merkle nodes?, moves buckets?)

    __slots__ = ("txs", "entries", "nodes", "buckets", "moved", "balances", "first", "last")

    def __init__(self):
        self.txs: list[dict] = []
        self.entries: list[dict] = []
        self.nodes: list[dict] = []
        self.buckets: list[tuple] = []  # (account, level, bucket, sequence, batch's moves up to it)
        self.moved: dict[tuple, int] = {}  # a bucket's moves in the batch so far
        self.balances: dict[int, list] = {}  # account → [old, new, last sequence]
        self.first: dict | None = None
        self.last: dict | None = None

    def add(self, conn, writes: "_Writes") -> None:
        tx, b = writes.tx, writes.balances
        if self.last is not None and (self.last["hash"] != tx["previous_hash"] or any(
                i in self.balances and self.balances[i][1] != old for i, old in zip(b["ids"], b["old"]))):
            send_buffered(conn)  # it does not continue them: they go as they are, it starts anew
            buffered(conn, _BatchedPostings).add(conn, writes)
            return
        sequence = tx["sequence"]
        if self.first is None:
            self.first = tx
        self.last = tx
        self.txs.append(tx)
        self.entries += writes.entry_rows
        self.nodes += writes.nodes
        balances = self.balances
        for i, old, new in zip(b["ids"], b["old"], b["new"]):
            row = balances.get(i)
            if row is None:
                balances[i] = [old, new, sequence]
            else:
                row[1], row[2] = new, sequence
        k = writes.buckets
        if k is not None:
            moved = self.moved
            for key in zip(k["a"], k["l"], k["b"], k["m"]):
                total = moved[key[:3]] = moved.get(key[:3], 0) + key[3]
                self.buckets.append((key[0], key[1], key[2], sequence, total))

    def send(self, conn) -> None:
        """The buffered postings' one statement, queued on `conn` (`ledger.db.queue_statement`)."""
        if self.first is None:
            return
        queue_statement(conn, *self.statement())

    def statement(self) -> tuple[str, dict]:
        txs, entries, nodes, buckets, balances = self.txs, self.entries, self.nodes, self.buckets, self.balances
        first, last = self.first, self.last
        params = {
            "head_sequence": last["sequence"], "head_hash": last["hash"], "head_posted_at": last["posted_at"],
            "expected_sequence": first["sequence"] - 1, "expected_hash": first["previous_hash"],
            "sequences": _array([t["sequence"] for t in txs]),
            "posted_ats": "{" + ",".join(t["posted_at"].isoformat() for t in txs) + "}",
            "effective_dates": "{" + ",".join(t["effective_date"].isoformat() for t in txs) + "}",
            "kinds": _text_array([t["kind"] for t in txs]),
            "descriptions": _text_array([t["description"] for t in txs]),
            "actors": _text_array([t["actor"] for t in txs]),
            "reverses": _nullable_array([t["reverses"] for t in txs]),
            "contract_ids": _nullable_array([t["contract_id"] for t in txs]),
            "previous_hashes": _array([t["previous_hash"] for t in txs]), "hashes": _array([t["hash"] for t in txs]),
            "e_sequences": _array([e["sequence"] for e in entries]), "lines": _array([e["line"] for e in entries]),
            "accounts": _array([e["account_id"] for e in entries]),
            "currencies": _array([e["currency"] for e in entries]),
            "amounts": _array([e["amount_minor"] for e in entries]),
            "balances_after": _array([e["balance_after_minor"] for e in entries]),
            "ids": _array(list(balances)), "old": _array([v[0] for v in balances.values()]),
            "new": _array([v[1] for v in balances.values()]), "last": _array([v[2] for v in balances.values()]),
            "n": len(balances),
        }
        if nodes:
            params.update(levels=_array([n["level"] for n in nodes]), positions=_array([n["position"] for n in nodes]),
                          node_hashes=_array([n["hash"] for n in nodes]))
        if buckets:
            ka, kl, kb, ks, km = zip(*buckets)
            params.update(ka=_array(ka), kl=_array(kl), kb=_array(kb), ks=_array(ks), km=_array(km))
        return self.WRITES[bool(nodes), bool(buckets)], params


@dataclass(frozen=True)
class _Writes:
    """A posting's rows, as the driver takes them (`_PipelinedStatements`)."""

    tx: dict
    entry_rows: list[dict]
    nodes: list[dict]
    balances: dict  # SET_BALANCES' parameters
    buckets: dict | None  # effective_balances.RECORD_POSTGRESQL's parameters, None if nothing moves
    head: dict


class ChainMemory:
    """The chain head, balances and Merkle frontier this process last wrote, so that a posting on
    PostgreSQL sends no read: its writes go in one round trip, then its commit.

    Held per connection pool (one per engine, `chain_memory`), across transactions and units of
    work. It may be out of date at any moment: another process posts, a transaction that wrote
    it rolls back, a savepoint is undone, an account is closed, a backup is restored. It is
    therefore never trusted, only checked, by the database, under the head lock, in the posting's
    own statements (`_PipelinedStatements.write_remembered`):
    - the head moves only from the remembered (sequence, hash): a hash names the whole chain
      before it, so the posting's previous hash, its sequence and the stored Merkle nodes it
      combines with are the database's;
    - each account's balance moves only from the balance the posting computed from, and only
      if the account is open: the running balances are the database's.
    If either fails, the posting's writes are rolled back (a savepoint of their own), the memory
    is forgotten, and the posting is made again as without memory: head and accounts read under
    the head lock. So a stale memory costs a round trip, never a fork, a gap or a wrong balance.

    One posting at a time per process posts from a given head (`recall` hands it to one
    caller until that caller has `learn`ed or `release`d): other threads of the process read
    the head under its lock instead of all betting on the same head, of which one would win.
    """

    MAX_ACCOUNTS = 100_000  # start afresh past this many remembered balances (memory is bounded)

    def __init__(self):
        self._lock = threading.Lock()
        self._head: tuple | None = None  # (sequence, hash, posted_at)
        self._accounts: dict[int, _AccountRow] = {}
        self._nodes: dict[tree.merkle.Node, bytes] = {}  # the stored perfect nodes of the head's frontier
        self._lent = False
        self.stale = 0  # postings that found the memory out of date and were made from the database

    def recall(self, ids: Sequence[int]) -> tuple[tuple, dict[int, "_AccountRow"], dict] | None:
        """The head, the remembered accounts among `ids` and the frontier nodes, lent to this
        caller until it `learn`s or `release`s; None if nothing is remembered or it is lent."""
        with self._lock:
            if self._head is None or self._lent:
                return None
            self._lent = True
            return self._head, {i: self._accounts[i] for i in ids if i in self._accounts}, dict(self._nodes)

    def learn(self, base: tuple, head: tuple, accounts: dict[int, "_AccountRow"],
              nodes: dict[tree.merkle.Node, bytes], *, returning: bool = False) -> None:
        """A posting made from `base` (the head it read or recalled) wrote `head`, `accounts`
        (their new balances) and knows `nodes` (those it combined with and those it completed);
        `returning`: it had recalled the memory, and gives it back."""
        with self._lock:
            if returning:
                self._lent = False
            if self._head is None or self._head[:2] != base[:2]:
                # not a continuation of what is remembered: its nodes may be of another chain (the
                # balances are kept: each is checked by the database when it is used)
                self._nodes = {}
            if len(self._accounts) > self.MAX_ACCOUNTS:
                self._accounts = {}
            self._head = head
            self._accounts.update(accounts)
            known = {**self._nodes, **nodes}
            self._nodes = {n: known[n] for n in tree.merkle.root_nodes(head[0]) if n[0] > 0 and n in known}

    def release(self) -> None:
        with self._lock:
            self._lent = False

    def forget(self) -> None:
        with self._lock:
            self._clear()

    def _clear(self) -> None:  # (under the lock)
        self._head, self._accounts, self._nodes = None, {}, {}

    # how far behind the database a memory may be caught up (`catch_up`); further, it is forgotten
    CATCH_UP_MOST = 10_000
    CATCH_UP = ("SELECT h.sequence, h.hash, h.posted_at, a.id, a.currency, a.closed_at, a.balance_minor "
                "FROM ledger_head AS h LEFT JOIN ledger_accounts AS a ON a.id IN "
                "(SELECT account_id FROM ledger_entries WHERE sequence > %(since)s AND sequence <= %(most)s) "
                "WHERE h.id = 1")

    def catch_up(self, raw) -> None:
        """Bring the memory up to the head the database holds, on the driver connection `raw`: the
        head, and the balances of the accounts posted to since the remembered head, in one
        statement; the Merkle nodes are read again as postings need them.

        Why: once other processes have posted, the memory's head is out of date, and so are the
        balances of the accounts they posted to — only those. Forgotten whole, every posting
        afterwards read its accounts in a round trip of its own under the head lock until the
        memory had learnt them all again (a thousand accounts: hundreds of postings). Called by
        a group commit writer when it takes the writer lease (`ledger.db.GroupCommit`), with
        nothing of its own in flight, so the memory holds only committed postings. Like the rest
        of the memory, what is read here is checked by the database when a posting uses it."""
        with self._lock:
            if self._head is None or self._lent:
                return
            since = self._head[0]
        rows = raw.execute(self.CATCH_UP, {"since": since, "most": since + self.CATCH_UP_MOST}).fetchall()
        with self._lock:
            if self._lent or self._head is None or self._head[0] != since:
                return  # a posting moved it meanwhile: it knows better
            if not rows or not since <= rows[0][0] <= since + self.CATCH_UP_MOST:
                self._clear()  # restored, rolled back, or far behind
                return
            sequence, hash_, posted_at = rows[0][:3]
            if (sequence, hash_) == self._head[:2]:
                return
            if sequence == since:  # the same sequence with another hash: not the chain remembered
                self._clear()
                return
            self._head = (sequence, hash_, None if posted_at is None else posted_at.astimezone(timezone.utc))
            self._nodes = {}  # (of the remembered head's frontier)
            self._accounts.update({row[3]: _AccountRow(*row[3:]) for row in rows if row[3] is not None})


_MEMORIES: "weakref.WeakKeyDictionary[object, ChainMemory]" = weakref.WeakKeyDictionary()
_MEMORIES_LOCK = threading.Lock()


def chain_memory(conn: Connection | Engine) -> ChainMemory:
    """The chain memory of the connection pool `conn` (a connection or an engine) draws from."""
    pool = conn.engine.pool
    memory = _MEMORIES.get(pool)
    if memory is None:
        with _MEMORIES_LOCK:
            memory = _MEMORIES.get(pool)
            if memory is None:
                memory = _MEMORIES[pool] = ChainMemory()
    return memory


@dataclass(frozen=True)
class _AccountRow:
    id: int
    currency: str
    closed_at: datetime | None
    balance_minor: int


def _statements(conn: Connection) -> _CoreStatements:
    return _PipelinedStatements(conn) if conn.dialect.name == "postgresql" else _CoreStatements(conn)


def _set_loaded(s: Session, cls: type, pk, **values) -> None:
    """If the session already holds the row `pk` of `cls`, give it `values` as loaded values
    (no pending change, nothing to flush, no reload): the rows were just written with them."""
    obj = s.identity_map.get(s.identity_key(cls, pk))
    if obj is not None:
        for name, value in values.items():
            set_committed_value(obj, name, value)


def _detached_instance(cls: type, values: dict, primary_key: tuple):
    """A new instance of the mapped `cls` holding `values` as its columns, set in its dict as a
    load sets them, and detached with the identity `primary_key`: the constructor's per-attribute
    change tracking costs more than the posting's own Python, and the values are the row just
    written. (What make_transient_to_detached does, less its bookkeeping for changes and attributes
    left unloaded: there are none, every column is set, and a relationship left unloaded on a
    detached instance refuses to load either way.)"""
    obj = cls._sa_class_manager.new_instance()
    obj.__dict__.update(values)
    instance_state(obj).key = cls.__mapper__.identity_key_from_primary_key(primary_key)
    return obj


def post(
    uow: UnitOfWork, *, actor: str, kind: str, description: str, effective_date: date,
    postings: Sequence[Posting], contract_id: int | None = None, reverses: int | None = None,
) -> Transaction:
    """Append one balanced transaction to the journal, chained and with running balances."""
    s = uow.session
    if "\x00" in description or "\x00" in kind:
        raise ValidationError("text may not contain NUL characters", code="INVALID_TEXT")
    # Core statements do not autoflush; ORM queries did: the caller's pending rows go first
    if s.autoflush:
        s.flush()
    conn = s.connection()
    io = _statements(conn)
    ids = sorted({p.account_id for p in postings})
    what = {"effective_date": effective_date, "kind": kind, "description": description, "actor": actor,
            "reverses": reverses, "contract_id": contract_id}
    made = None
    if isinstance(io, _PipelinedStatements):
        # PostgreSQL: from the chain memory if this thread may, with no read under the head lock
        memory = chain_memory(conn)
        recalled = memory.recall(ids)
        if recalled is not None:
            try:
                made = _post_from_memory(io, conn, recalled, ids, postings, what, rerun=uow.may_rerun,
                                         queue=QUEUED_ALONE if uow.commits_queued and uow.queued_on is None
                                         else uow.queue_postings, buffer=uow.buffer_postings)
            except Exception:  # noqa: BLE001 - anything the memory made go wrong is decided afresh below
                made = None
            except BaseException:
                memory.forget()
                memory.release()
                raise
            if made is None:
                memory.stale += 1
                memory.forget()
                memory.release()
                if uow.may_rerun and io.failed():
                    # no savepoint was sent and the writes failed, so the transaction has: the unit
                    # of work is rerun whole, from the database, by whoever runs it
                    uow.chain_memory_failed = True
                    raise StaleChainMemory("the chain memory was out of date: the unit of work is rerun")
            else:
                # a posting queued with its unit of work's COMMIT behind it (`UnitOfWork.commits_queued`)
                # keeps the memory lent until that round trip is back: another thread posting from it
                # meanwhile could reach the server first, and fail
                keep_lent = uow.commits_queued and uow.lent_memory is None
                memory.learn(recalled[0], made.head, made.accounts, made.nodes, returning=not keep_lent)
                if keep_lent:
                    uow.lent_memory = memory
                if uow.queue_postings:
                    uow.queued_on = conn  # its statement waits in the connection's pipeline
        if made is None:
            # read under the head lock, always from the database: an Account object the caller
            # loaded before the lock may hold a balance another posting has since changed
            head, accounts = io.lock_and_read(ids)
            if head is None:  # a database without the migration's head row
                _lock_head(s)
                head, accounts = io.lock_and_read(ids)
            made = _prepared(conn, head, accounts, postings, what, known={})
            io.write(made.writes)
            memory.learn(head, made.head, made.accounts, made.nodes)
    else:
        head, accounts = io.lock_and_read(ids)
        if head is None:
            _lock_head(s)
            head, accounts = io.lock_and_read(ids)
        made = _prepared(conn, head, accounts, postings, what, known=None)
        w = made.writes
        io.write(w.tx, w.entry_rows, w.nodes, [{"account_id": i, "new_balance": b, "new_sequence": made.head[0]}
                                               for i, b in zip(w.balances["ids"], w.balances["new"])], w.head)
        # the accounts' totals by business date, so `effectiveOn` reads never sum entries
        effective_balances.record(conn, made.head[0], effective_date, made.entries)

    tx = made.writes.tx
    sequence, posted_at = tx["sequence"], tx["posted_at"]
    if len(s.identity_map):  # (a unit of work that only posts holds none: nothing to look up)
        # objects the session already holds now show the rows as written
        _set_loaded(s, LedgerHead, 1, sequence=sequence, hash=tx["hash"], posted_at=posted_at)
        for account_id, row in made.accounts.items():
            _set_loaded(s, Account, account_id, balance_minor=row.balance_minor, last_sequence=sequence)
    # the transaction as posted with its entries, built from the values just inserted instead of
    # reading them back (a SELECT and a selectin load); detached: every column is set, nothing
    # relates to a Transaction but by its sequence (its entries are view-only), and adding it to
    # the session would cost a quarter of a posting's Python for nothing a caller reads
    if not Transaction.__mapper__.configured:  # a process's first posting may come before any query
        configure_mappers()
    result = _detached_instance(Transaction, tx, (sequence,))
    set_committed_value(result, "entries", [_detached_instance(Entry, row, (sequence, row["line"]))
                                            for row in made.writes.entry_rows])
    return result


def _post_from_memory(io: _PipelinedStatements, conn: Connection, recalled: tuple, ids: list[int],
                      postings: Sequence[Posting], what: dict, *, rerun: bool, queue: bool,
                      buffer: bool = False) -> "_Made | None":
    """The posting made from the chain memory's head, balances and nodes (accounts it does not
    hold read without the head lock), written in one round trip; None if the database found the
    memory out of date (nothing of it written; with `rerun`, the transaction failed)."""
    head, accounts, nodes = recalled
    missing = [i for i in ids if i not in accounts]
    if missing:
        accounts.update(io.read_accounts(missing))
    made = _prepared(conn, head, accounts, postings, what, known=nodes)
    return made if io.write_remembered(made.writes, rerun=rerun, queue=queue, buffer=buffer) else None


@dataclass(frozen=True)
class _Made:
    """A posting ready to write: its rows, the head it makes, its accounts' new rows and the
    Merkle nodes it knows (combined with or completed), for the chain memory."""

    writes: _Writes
    entries: list[tuple]
    head: tuple
    accounts: dict[int, "_AccountRow"]
    nodes: dict


def _prepared(conn: Connection, head: tuple, accounts: dict[int, "_AccountRow"], postings: Sequence[Posting],
              what: dict, known: dict | None) -> _Made:
    """Validate the postings against `accounts` and build the transaction after `head`: its
    entries with running balances, its hash, the Merkle nodes it completes (left siblings from
    `known` where it holds them, else read; those read are added to it), the balance updates."""
    head_sequence, head_hash, head_posted_at = head
    rows = _validate(postings, accounts)
    ids = sorted(accounts.keys() & {p.account_id for p in postings})
    sequence = head_sequence + 1
    now = utcnow()
    # keep posted_at monotonic with the sequence even if the clock steps back, so "as of a
    # time" is "as of the last sequence posted by then"
    posted_at = now if head_posted_at is None or now > head_posted_at else head_posted_at
    balances = {account_id: accounts[account_id].balance_minor for account_id in ids}
    entries = []
    for line, (account_id, code, units) in enumerate(rows, start=1):
        balances[account_id] += units
        if abs(balances[account_id]) > m.MAX_MINOR:  # a running balance past a BIGINT
            raise ValidationError(m.TOO_LARGE, code="AMOUNT_TOO_LARGE")
        entries.append((sequence, line, account_id, code, units, balances[account_id]))
    effective_date = what["effective_date"]
    tx = {"sequence": sequence, "posted_at": posted_at, **what, "previous_hash": head_hash}
    tx["hash"] = chain_hash(head_hash, _canonical(sequence, posted_at, effective_date, what["kind"],
                                                  what["description"], what["actor"], what["reverses"],
                                                  what["contract_id"], entries))
    entry_rows = [dict(zip(_ENTRY_COLUMNS, e)) for e in entries]
    # the Merkle tree's nodes this transaction completes, in the same database transaction
    nodes = tree.completed_nodes(conn, sequence=sequence, chain_hash=tx["hash"], previous_chain_hash=head_hash,
                                 known=known)
    if known is not None:
        known.update(((n["level"], n["position"]), bytes.fromhex(n["hash"])) for n in nodes)
    writes = _Writes(
        tx=tx, entry_rows=entry_rows, nodes=nodes,
        balances={"sequence": sequence, "ids": ids, "old": [accounts[i].balance_minor for i in ids],
                  "new": [balances[i] for i in ids], "n": len(ids)},
        buckets=effective_balances.record_parameters(sequence, effective_date, entries),
        head={"head_sequence": sequence, "head_hash": tx["hash"], "head_posted_at": posted_at},
    )
    new_accounts = {i: _AccountRow(i, accounts[i].currency, accounts[i].closed_at, balances[i]) for i in ids}
    return _Made(writes, entries, (sequence, tx["hash"], posted_at), new_accounts, known or {})


def reverse(uow: UnitOfWork, *, actor: str, sequence: int, reason: str, effective_date: date | None = None) -> Transaction:
    """Post a transaction that undoes `sequence`, naming it, with a reason."""
    s = uow.session
    if not reason or not reason.strip():
        raise ValidationError("a reversal needs a reason", code="REASON_REQUIRED", field=["reason"])
    _lock_head(s)
    original = s.get(Transaction, sequence)
    if original is None:
        raise NotFound(f"transaction {sequence} does not exist", code="UNKNOWN_TRANSACTION", field=["transactionId"])
    if original.reverses is not None:
        raise Conflict(
            f"transaction {sequence} is itself a reversal; post a new transaction instead",
            code="REVERSAL_OF_REVERSAL", field=["transactionId"],
        )
    if s.execute(select(Transaction.sequence).where(Transaction.reverses == sequence)).first():
        raise Conflict(f"transaction {sequence} is already reversed", code="ALREADY_REVERSED", field=["transactionId"])
    postings = [Posting(e.account_id, m.from_minor(-e.amount_minor, e.currency)) for e in original.entries]
    return post(
        uow, actor=actor, kind="REVERSAL", description=f"Reversal of transaction {sequence}: {reason.strip()}",
        effective_date=effective_date or original.effective_date, postings=postings,
        contract_id=original.contract_id, reverses=sequence,
    )


# --- reading --------------------------------------------------------------------------------

def digest(s: Session) -> Digest:
    head = s.execute(select(LedgerHead).where(LedgerHead.id == 1)).scalar_one_or_none()
    if head is None:
        return Digest(0, GENESIS_HASH)
    return Digest(head.sequence, head.hash)


def sequence_at(s: Session, at: datetime) -> int:
    """The last sequence posted at or before `at` (0 if none): one indexed lookup."""
    found = s.execute(
        select(Transaction.sequence).where(Transaction.posted_at <= at)
        .order_by(Transaction.posted_at.desc(), Transaction.sequence.desc()).limit(1)
    ).scalar_one_or_none()
    return found or 0


def balance_minor(s: Session, account: Account, *, as_of: datetime | None = None, as_of_sequence: int | None = None,
                  effective_on: date | None = None) -> int:
    """An account's balance now (one row) or as of a time or sequence (one indexed lookup).

    With `effective_on`, the balance on that business date: the entries whose transaction's
    effective date is on or before it, among those recorded up to the time or sequence
    ("what did we know then about the position on that day"), read from the account's
    totals by day, month and year (ledger/effective_balances.py): a bounded number of
    indexed lookups, however many entries the account or the ledger holds.
    """
    if effective_on is not None:
        limit = account.last_sequence if as_of_sequence is None else as_of_sequence
        if as_of is not None:
            limit = min(limit, sequence_at(s, as_of))
        return effective_balances.balance_minor(s.connection(), account.id, upto=limit, on=effective_on)
    if as_of is None and as_of_sequence is None:
        return account.balance_minor
    limit = as_of_sequence if as_of_sequence is not None else sequence_at(s, as_of)
    if as_of is not None and as_of_sequence is not None:
        limit = min(limit, sequence_at(s, as_of))
    if limit >= account.last_sequence:
        return account.balance_minor
    found = s.execute(
        select(Entry.balance_after_minor).where(Entry.account_id == account.id, Entry.sequence <= limit)
        .order_by(Entry.sequence.desc(), Entry.line.desc()).limit(1)
    ).scalar_one_or_none()
    return found or 0


def balance(s: Session, account_id: int, *, as_of: datetime | None = None, as_of_sequence: int | None = None,
            effective_on: date | None = None) -> m.Money:
    acc = s.get(Account, account_id)
    if acc is None:
        raise NotFound(f"account {account_id} does not exist", code="UNKNOWN_ACCOUNT", field=["accountId"])
    if as_of_sequence is not None and as_of_sequence < 0:
        raise ValidationError("asOfSequence must not be negative", code="INVALID_SEQUENCE", field=["asOfSequence"])
    return m.from_minor(balance_minor(s, acc, as_of=as_of, as_of_sequence=as_of_sequence, effective_on=effective_on),
                        acc.currency)


# --- verification ---------------------------------------------------------------------------

_TX_COLUMNS = (_T.c.sequence, _T.c.posted_at, _T.c.effective_date, _T.c.kind, _T.c.description, _T.c.actor,
               _T.c.reverses, _T.c.contract_id, _T.c.previous_hash, _T.c.hash)
# Rows are turned into Python objects this many at a time. A whole batch at once (15 000 rows)
# keeps the cycle collector busy: it runs whenever live container objects grow by 700, and
# then moves the batch's rows to the oldest generation, whose full collections walk the whole
# heap (a third of verification's time). A few hundred rows at a time are freed as fast as
# they are made, and it stays idle.
_CHUNK = 200


def _walk(s: Session, batch: int = 5000) -> Iterator[tuple[Sequence, Sequence[Sequence]]]:
    """Transactions in sequence order with their entries, streamed in batches.

    Rows are tuples: a transaction in the order of `_TX_COLUMNS`, its entries in the order of
    `_ENTRY_COLUMNS` and by line. A batch is the next `batch` transactions after the last one
    read, and the entries in the same range of sequences; both are read side by side, a
    chunk of rows at a time, and by position rather than through mappings. The batch's last
    sequence is fixed first, so both queries cover the same range even when each statement
    sees its own snapshot (PostgreSQL, READ COMMITTED): transactions are appended in sequence
    order under the head lock, with their entries, and never change, so a range up to a
    sequence already seen holds the same rows in any later snapshot. As before, a batch that
    finds nothing after the last transaction read ends the walk.
    """
    entry_columns = [_E.c[name] for name in _ENTRY_COLUMNS]
    last = 0
    while True:
        window = select(_T.c.sequence).where(_T.c.sequence > last).order_by(_T.c.sequence).limit(batch).subquery()
        hi = s.execute(select(func.max(window.c.sequence))).scalar()
        if hi is None:
            return
        txs = s.execute(select(*_TX_COLUMNS).where(_T.c.sequence > last, _T.c.sequence <= hi)
                        .order_by(_T.c.sequence))
        lines = s.execute(select(*entry_columns).where(_E.c.sequence > last, _E.c.sequence <= hi)
                          .order_by(_E.c.sequence, _E.c.line))
        try:
            entries = chain.from_iterable(lines.partitions(_CHUNK))
            entry = next(entries, None)
            for tx in chain.from_iterable(txs.partitions(_CHUNK)):
                seq = tx[0]
                try:
                    while entry is not None and entry[0] < seq:  # entries of a transaction that is not there
                        entry = next(entries, None)
                except TypeError:  # a tampered SQLite row whose sequence is text: verify reports it
                    pass
                group = []
                while entry is not None and entry[0] == seq:
                    group.append(entry)
                    entry = next(entries, None)
                yield tx, group
        finally:
            lines.close()
            txs.close()
        last = hi


# Below this many transactions the sequential walk is done before the ranges' connections are open.
RANGES_FROM = 10_000


def verify(s: Session, digest_: Digest | None = None, *, workers: int | None = None,
           ranges_from: int = RANGES_FROM) -> Verification:
    """Recompute every hash and running balance; name the first sequence that does not match.

    With a digest handed out earlier, also prove that the ledger still holds that
    (sequence, hash).

    On PostgreSQL a ledger of `ranges_from` transactions or more is first checked inside the
    database, in sequence ranges on `workers` connections at once (default: one per CPU;
    ledger.chain_ranges); only when that finds anything wrong, or cannot run, does the
    sequential walk below run, and it alone names the first bad sequence.
    """
    if s.get_bind().dialect.name == "postgresql":
        verified = _verify_in_ranges(s, digest_, workers or os.cpu_count() or 1, ranges_from)
        if verified is not None:
            return verified
    previous = GENESIS_HASH
    expected_seq = 1
    running: dict[int, int] = {}
    checked = 0
    digest_seen = digest_ is None or digest_.sequence == 0
    if digest_ is not None and digest_.sequence == 0 and digest_.hash != GENESIS_HASH:
        return Verification(False, 0, 0, "the digest for sequence 0 must be the genesis hash")
    digest_sequence = None if digest_ is None else digest_.sequence
    walk = _walk(s)
    try:
        for tx, entries in walk:
            seq, posted_at, effective_date, kind, description, actor, reverses, contract_id, previous_hash, hash_ = tx
            if seq != expected_seq:
                return Verification(False, checked, expected_seq, f"transaction {expected_seq} is missing")
            if previous_hash != previous:
                return Verification(False, checked, seq, "previous hash does not match the chain")
            canonical = _canonical(seq, posted_at, effective_date, kind, description, actor, reverses, contract_id,
                                   entries)
            if chain_hash(previous, canonical) != hash_:
                return Verification(False, checked, seq, "hash does not match the transaction's contents")
            sums: dict[str, int] = {}
            for _, _, account_id, currency, amount, balance_after in entries:
                balance = running[account_id] = running.get(account_id, 0) + amount
                sums[currency] = sums.get(currency, 0) + amount
                if balance != balance_after:
                    return Verification(False, checked, seq, f"running balance of account {account_id} does not match")
            if len(entries) < 2 or any(sums.values()):
                return Verification(False, checked, seq, "transaction does not balance")
            if seq == digest_sequence:
                if hash_ != digest_.hash:
                    return Verification(False, checked, seq, "the ledger no longer holds the digest's hash")
                digest_seen = True
            previous = hash_
            expected_seq += 1
            checked += 1
    finally:
        walk.close()  # an early return leaves no result open
    head = digest(s)
    if head.sequence != checked or head.hash != previous:
        return Verification(False, checked, checked + 1 if head.sequence > checked else checked,
                            "the chain head does not match the last transaction")
    if not digest_seen:
        return Verification(False, checked, digest_.sequence, "the digest's sequence is beyond the ledger")
    for acc in s.execute(select(Account.id, Account.balance_minor)).all():
        if running.get(acc.id, 0) != acc.balance_minor:
            return Verification(False, checked, None, f"current balance of account {acc.id} does not match its entries")
    return Verification(True, checked, None)


def _verify_in_ranges(s: Session, digest_: Digest | None, workers: int, ranges_from: int) -> Verification | None:
    """Verification(ok) if the ranges' check passes; None when the sequential walk must decide."""
    conn = s.connection()
    # The ranges' connections see only what is committed: the session's transaction must have written
    # nothing, and be no savepoint (a snapshot cannot be exported from one).
    if conn.in_nested_transaction() or s.in_nested_transaction():
        return None
    if conn.exec_driver_sql("SELECT pg_current_xact_id_if_assigned()").scalar() is not None:
        return None
    if (conn.exec_driver_sql("SELECT sequence FROM ledger_head WHERE id = 1").scalar() or 0) < ranges_from:
        return None
    snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar()
    try:
        conninfo = _conninfo(conn.engine.url)
        wanted = None if digest_ is None else digest_.sequence
        end = chain_ranges.ends(conninfo, snapshot, wanted)
        n = end.head_sequence
        if n < ranges_from or end.last_sequence != n or (digest_ is not None and not 0 < digest_.sequence <= n):
            return None
        checks = chain_ranges.check_ranges(conninfo, snapshot, chain_ranges.ranges(n, max(1, workers)), _rehash)
    except Exception:  # noqa: BLE001 - a range that cannot be checked leaves the decision to the sequential walk
        return None
    balances = chain_ranges.joined(checks, GENESIS_HASH)
    if balances is None or checks[-1].last_hash != end.head_hash:
        return None
    if digest_ is not None and end.hash_at_digest != digest_.hash:
        return None
    if any(balances.get(account, 0) != stored for account, stored in end.balances.items()):
        return None
    return Verification(True, n, None)


def _rehash(tx: Sequence, entries: Sequence[Sequence]) -> str:
    """The hash of a transaction row (in the order of `_TX_COLUMNS`) and its entry rows, as the walk computes it:
    for the rows the ranges' SQL cannot write canonically."""
    seq, posted_at, effective_date, kind, description, actor, reverses, contract_id, previous_hash, _ = tx
    return chain_hash(previous_hash, _canonical(seq, posted_at, effective_date, kind, description, actor, reverses,
                                                contract_id, entries))


def _conninfo(url) -> str:
    """A libpq connection string for the engine's database (URL query items such as `options` kept)."""
    from psycopg.conninfo import make_conninfo

    params = {"host": url.host, "port": url.port, "dbname": url.database, "user": url.username,
              "password": url.password, **{k: v for k, v in url.query.items() if isinstance(v, str)}}
    return make_conninfo(**{k: v for k, v in params.items() if v is not None})
