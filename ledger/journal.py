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
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from ledger import money as m
from ledger.access import Actor, require_role
from ledger.db import UnitOfWork
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
    m.currency(currency)
    key = account_key(code, party_id, currency, contract_id, counterparty_id, fund_id)
    s = uow.session
    acc = s.execute(select(Account).where(Account.key == key)).scalar_one_or_none()
    if acc is None:
        acc = Account(
            key=key, code=code, name=name, party_id=party_id, currency=currency,
            contract_id=contract_id, counterparty_id=counterparty_id, fund_id=fund_id, balance_minor=0, last_sequence=0,
        )
        s.add(acc)
        s.flush()
    return acc


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


def post(
    uow: UnitOfWork, *, actor: str, kind: str, description: str, effective_date: date,
    postings: Sequence[Posting], contract_id: int | None = None, reverses: int | None = None,
) -> Transaction:
    """Append one balanced transaction to the journal, chained and with running balances."""
    s = uow.session
    if "\x00" in description or "\x00" in kind:
        raise ValidationError("text may not contain NUL characters", code="INVALID_TEXT")
    head = _lock_head(s)
    ids = sorted({p.account_id for p in postings})
    accounts = {a.id: a for a in s.execute(select(Account).where(Account.id.in_(ids))).scalars()} if ids else {}
    rows = _validate(postings, accounts)

    sequence = head.sequence + 1
    now = utcnow()
    # keep posted_at monotonic with the sequence even if the clock steps back, so "as of a
    # time" is "as of the last sequence posted by then"
    posted_at = now if head.posted_at is None or now > head.posted_at else head.posted_at
    balances = {a.id: a.balance_minor for a in accounts.values()}
    entries = []
    for line, (account_id, code, units) in enumerate(rows, start=1):
        balances[account_id] += units
        entries.append({
            "sequence": sequence, "line": line, "account_id": account_id, "currency": code,
            "amount_minor": units, "balance_after_minor": balances[account_id],
        })
    tx = {
        "sequence": sequence, "posted_at": posted_at, "effective_date": effective_date, "kind": kind,
        "description": description, "actor": actor, "reverses": reverses, "contract_id": contract_id,
        "previous_hash": head.hash,
    }
    tx["hash"] = chain_hash(head.hash, canonical_bytes(tx, entries))
    s.execute(insert(Transaction), [tx])
    s.execute(insert(Entry), entries)
    for account_id, balance in balances.items():
        s.execute(
            update(Account).where(Account.id == account_id).values(balance_minor=balance, last_sequence=sequence)
            .execution_options(synchronize_session=False)
        )
        acc = accounts[account_id]
        acc.balance_minor = balance
        acc.last_sequence = sequence
        s.expire(acc, ["balance_minor", "last_sequence"])
    head.sequence = sequence
    head.hash = tx["hash"]
    head.posted_at = posted_at
    s.flush()
    return s.get(Transaction, sequence)


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


def reverse_transaction(uow: UnitOfWork, *, actor: Actor, sequence: int, reason: str,
                        effective_date: date | None = None) -> Transaction:
    """The use case behind `reverseTransaction`: fund managers correct the ledger by reversal."""
    require_role(actor, "FUND_MANAGER")
    return reverse(uow, actor=actor.label, sequence=sequence, reason=reason, effective_date=effective_date)


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


def balance_minor(s: Session, account: Account, *, as_of: datetime | None = None, as_of_sequence: int | None = None) -> int:
    """An account's balance now (one row) or as of a time or sequence (one indexed lookup)."""
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


def balance(s: Session, account_id: int, *, as_of: datetime | None = None, as_of_sequence: int | None = None) -> m.Money:
    acc = s.get(Account, account_id)
    if acc is None:
        raise NotFound(f"account {account_id} does not exist", code="UNKNOWN_ACCOUNT", field=["accountId"])
    if as_of_sequence is not None and as_of_sequence < 0:
        raise ValidationError("asOfSequence must not be negative", code="INVALID_SEQUENCE", field=["asOfSequence"])
    return m.from_minor(balance_minor(s, acc, as_of=as_of, as_of_sequence=as_of_sequence), acc.currency)


# --- verification ---------------------------------------------------------------------------

def _walk(s: Session, batch: int = 5000) -> Iterator[tuple[dict, list[dict]]]:
    """Transactions in sequence order with their entries, streamed in batches."""
    t, e = Transaction.__table__, Entry.__table__
    last = 0
    while True:
        txs = s.execute(select(t).where(t.c.sequence > last).order_by(t.c.sequence).limit(batch)).mappings().all()
        if not txs:
            return
        lo, hi = txs[0]["sequence"], txs[-1]["sequence"]
        by_seq: dict[int, list[dict]] = defaultdict(list)
        for row in s.execute(
            select(e).where(e.c.sequence >= lo, e.c.sequence <= hi).order_by(e.c.sequence, e.c.line)
        ).mappings():
            by_seq[row["sequence"]].append(row)
        for tx in txs:
            yield tx, by_seq.get(tx["sequence"], [])
        last = hi


def verify(s: Session, digest_: Digest | None = None) -> Verification:
    """Recompute every hash and running balance; name the first sequence that does not match.

    With a digest handed out earlier, also prove that the ledger still holds that
    (sequence, hash).
    """
    previous = GENESIS_HASH
    expected_seq = 1
    running: dict[int, int] = defaultdict(int)
    checked = 0
    digest_seen = digest_ is None or digest_.sequence == 0
    if digest_ is not None and digest_.sequence == 0 and digest_.hash != GENESIS_HASH:
        return Verification(False, 0, 0, "the digest for sequence 0 must be the genesis hash")
    for tx, entries in _walk(s):
        seq = tx["sequence"]
        if seq != expected_seq:
            return Verification(False, checked, expected_seq, f"transaction {expected_seq} is missing")
        if tx["previous_hash"] != previous:
            return Verification(False, checked, seq, "previous hash does not match the chain")
        if chain_hash(previous, canonical_bytes(tx, entries)) != tx["hash"]:
            return Verification(False, checked, seq, "hash does not match the transaction's contents")
        sums: dict[str, int] = defaultdict(int)
        for e in entries:
            running[e["account_id"]] += e["amount_minor"]
            sums[e["currency"]] += e["amount_minor"]
            if running[e["account_id"]] != e["balance_after_minor"]:
                return Verification(False, checked, seq, f"running balance of account {e['account_id']} does not match")
        if len(entries) < 2 or any(sums.values()):
            return Verification(False, checked, seq, "transaction does not balance")
        if digest_ is not None and seq == digest_.sequence:
            if tx["hash"] != digest_.hash:
                return Verification(False, checked, seq, "the ledger no longer holds the digest's hash")
            digest_seen = True
        previous = tx["hash"]
        expected_seq += 1
        checked += 1
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
