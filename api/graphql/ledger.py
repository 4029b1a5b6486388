"""The ledger: accounts, transactions, balances, digests, verification and reversal."""
from __future__ import annotations

import asyncio
import enum
from datetime import date, datetime
from typing import Annotated

import strawberry
from sqlalchemy import exists, select
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from api.graphql.base import (
    BEFORE, LAST, LIST_AFTER, LIST_FIRST, MAX_LIST, Connection, Currency, Money, Node, UserError, Window, audited,
    aware, ctx, from_global_id, keyset_page, mutate, page_size, query_error, require_actor,
)
from api.graphql.change_requests import CHANGE_REQUEST_FIELD, ChangeRequest, is_request, request_fields
from api.graphql.parties import Party, load_party
from api.graphql.proofs import RECEIPT_DESCRIPTION, Receipt, SignedTreeHeadInput, receipt_for
from ledger import journal, models, proofs
from ledger.corrections import change_requests
from ledger.errors import DomainError, NotFound
from ledger.reads import may_see_account, visible_accounts, visible_transactions


@strawberry.enum(description="What a ledger transaction records.")
class TransactionKind(enum.Enum):
    CAPITAL_DEPOSIT = strawberry.enum_value("CAPITAL_DEPOSIT", description="Capital paid in to a fund.")
    COMMITMENT = strawberry.enum_value("COMMITMENT", description="Money committed to a contract when it is activated: "
                                                                 "the fund's and each payer's share of its maximum.")
    COMMITMENT_CHANGE = strawberry.enum_value("COMMITMENT_CHANGE", description="Commitments brought to what an "
                                                                               "amendment of the terms needs.")
    COMMITMENT_RELEASE = strawberry.enum_value("COMMITMENT_RELEASE", description="What was committed and not paid, "
                                                                                 "released when a contract ends.")
    PAYOUT = strawberry.enum_value("PAYOUT", description="An approved payout: what each payer owes the provider.")
    PAYMENT = strawberry.enum_value("PAYMENT", description="A payer paying what it owes.")
    PENALTY = strawberry.enum_value("PENALTY", description="A sanction's penalty (vite) charged to a provider.")
    REVERSAL = strawberry.enum_value("REVERSAL", description="A correction: the exact opposite of an earlier "
                                                             "transaction, which stays in the journal.")
    DRAWDOWN = strawberry.enum_value("DRAWDOWN", description="An investor's money paid to the provider (impact bond).")
    DISTRIBUTION = strawberry.enum_value("DISTRIBUTION", description="Receipts shared out to investors by the "
                                                                     "waterfall (impact bond).")
    INVESTMENT_WRITE_OFF = strawberry.enum_value("INVESTMENT_WRITE_OFF", description="What investors did not get back "
                                                                                     "when a bond closed: their loss.")
    COMMITMENT_MIGRATION = strawberry.enum_value(
        "COMMITMENT_MIGRATION", description="Commitments moved to each payer's share of the contract's maximum "
                                            "by the upgrade that introduced commitments by share (migration 0012a).")


@strawberry.type
class LedgerAccount(Node):
    pk: strawberry.Private[int]
    code: str
    name: str
    currency: Currency
    party_id: strawberry.Private[int]
    counterparty_id: strawberry.Private[int | None]
    contract_pk: strawberry.Private[int | None]
    balance_minor: strawberry.Private[int]
    closed_at: datetime | None

    @strawberry.field(description="The running balance now: debits positive, credits negative.")
    def balance(self) -> Money:
        return Money.minor(self.balance_minor, self.currency)

    @strawberry.field
    async def party(self, info: Info) -> Party | None:
        return await load_party(info, self.party_id)

    @strawberry.field
    async def counterparty(self, info: Info) -> Party | None:
        return await load_party(info, self.counterparty_id)

    @classmethod
    def from_row(cls, a: models.Account) -> "LedgerAccount":
        return cls(pk=a.id, code=a.code, name=a.name, currency=Currency(a.currency), party_id=a.party_id,
                   counterparty_id=a.counterparty_id, contract_pk=a.contract_id, balance_minor=a.balance_minor,
                   closed_at=a.closed_at)


@strawberry.type
class LedgerEntry:
    line: int
    account_id: strawberry.Private[int]
    amount_minor: strawberry.Private[int]
    balance_after_minor: strawberry.Private[int]
    currency: Currency

    @strawberry.field
    def amount(self) -> Money:
        return Money.minor(self.amount_minor, self.currency)

    @strawberry.field(description="The account's running balance right after this entry.")
    def balance_after(self) -> Money:
        return Money.minor(self.balance_after_minor, self.currency)

    @strawberry.field
    async def account(self, info: Info) -> LedgerAccount | None:
        return await load_account(info, self.account_id)


@strawberry.type
class LedgerTransaction(Node):
    pk: strawberry.Private[int]
    sequence: int
    posted_at: datetime
    effective_date: date
    kind: TransactionKind
    description: str
    actor: str
    hash: str
    previous_hash: str
    reverses_sequence: strawberry.Private[int | None]
    all_entries: strawberry.Private[list[LedgerEntry]]

    @strawberry.field(description="The transaction's lines on accounts the caller may see: all of them for admins, "
                                  "fund managers and auditors; a party's lines (and those held against it) for the "
                                  "others, so no other party's amounts or balances show.")
    async def entries(self, info: Info) -> list[LedgerEntry]:
        actor = ctx(info).actor
        if actor is not None and actor.sees_everything:
            return self.all_entries
        if actor is None:
            return []
        seen = await asyncio.gather(*(load_account(info, e.account_id) for e in self.all_entries))
        return [e for e, account in zip(self.all_entries, seen) if account is not None]

    @strawberry.field(description="The transaction this one reverses, if it is a reversal.")
    async def reverses(self, info: Info) -> LedgerTransaction | None:
        if self.reverses_sequence is None:
            return None
        return await load_transaction(info, self.reverses_sequence)

    @strawberry.field(description="The payout this transaction posted, if it is a PAYOUT: the start of a trace.")
    async def payout(self, info: Info) -> Annotated["Payout", strawberry.lazy("api.graphql.payouts")] | None:  # noqa: F821
        if self.kind is not TransactionKind.PAYOUT:
            return None
        from api.graphql.payouts import payout_by_transaction
        return await payout_by_transaction(info, self.sequence)

    @classmethod
    def from_row(cls, t: models.Transaction) -> "LedgerTransaction":
        return cls(pk=t.sequence, sequence=t.sequence, posted_at=t.posted_at, effective_date=t.effective_date,
                   kind=TransactionKind(t.kind), description=t.description, actor=t.actor, hash=t.hash, previous_hash=t.previous_hash,
                   reverses_sequence=t.reverses,
                   all_entries=[LedgerEntry(line=e.line, account_id=e.account_id, amount_minor=e.amount_minor,
                                        balance_after_minor=e.balance_after_minor, currency=Currency(e.currency))
                            for e in t.entries])


@strawberry.type
class LedgerDigest:
    sequence: int
    hash: str


@strawberry.input
class LedgerDigestInput:
    sequence: int
    hash: str


@strawberry.type
class LedgerVerification:
    ok: bool
    checked_transactions: int
    first_invalid_sequence: int | None
    reason: str | None


async def load_account(info: Info, account_id: int | None) -> LedgerAccount | None:
    """An account through the request's DataLoader; null when the caller may not see it."""
    if account_id is None:
        return None
    c = ctx(info)
    actor = require_actor(info)

    async def batch(keys: list[int]) -> list[LedgerAccount | None]:
        rows = await c.db.read(lambda s: {a.id: a for a in s.execute(
            select(models.Account).where(models.Account.id.in_(keys))).scalars()})
        return [LedgerAccount.from_row(rows[k]) if k in rows and may_see_account(actor, rows[k]) else None for k in keys]

    return await c.loader("account", lambda: DataLoader(batch)).load(account_id)


async def load_transaction(info: Info, sequence: int) -> LedgerTransaction | None:
    c = ctx(info)
    actor = require_actor(info)

    async def batch(keys: list[int]) -> list[LedgerTransaction | None]:
        def q(s):
            stmt = select(models.Transaction).where(models.Transaction.sequence.in_(keys))
            clause = visible_transactions(actor)
            if clause is not None:
                stmt = stmt.where(clause)
            return {t.sequence: LedgerTransaction.from_row(t) for t in s.execute(stmt).scalars()}
        rows = await c.db.read(q)
        return [rows.get(k) for k in keys]

    return await c.loader("transaction", lambda: DataLoader(batch)).load(sequence)


def _opt_id(gid: strawberry.ID | None, type_name: str | list[str], field: str) -> int | None:
    return None if gid is None else from_global_id(gid, type_name, field=field)


@strawberry.input
class ReverseTransactionInput:
    transaction_id: strawberry.ID
    reason: str
    effective_date: date | None = None
    idempotency_key: str | None = None


@strawberry.type
class ReverseTransactionPayload:
    transaction: LedgerTransaction | None
    user_errors: list[UserError]
    posted_sequence: strawberry.Private[int | None] = None

    @strawberry.field(description=RECEIPT_DESCRIPTION)
    async def receipt(self, info: Info) -> Receipt | None:
        return await receipt_for(info, self.posted_sequence)
    change_request: ChangeRequest | None = CHANGE_REQUEST_FIELD


AccountPartyArg = Annotated[strawberry.ID | None, strawberry.argument(description="Only this party's accounts.")]
AccountContractArg = Annotated[strawberry.ID | None, strawberry.argument(description="Only accounts of this contract.")]
AccountAsOfArg = Annotated[datetime | None, strawberry.argument(
    description="The balances as the ledger held them at this moment (with an offset).")]


def _account_filter(info: Info, party_id: strawberry.ID | None, contract_id: strawberry.ID | None,
                    as_of: datetime | None) -> tuple:
    """The accounts the caller may see with the filters asked for (a SELECT builder), and asOf in UTC."""
    actor = require_actor(info)
    try:
        party = _opt_id(party_id, "Party", "partyId")
        contract = _opt_id(contract_id, "OutcomeContract", "contractId")
        at = aware(as_of, "asOf")
    except DomainError as err:
        raise query_error(err) from None
    A = models.Account

    def build(s):
        stmt = select(A)
        if party is not None:
            stmt = stmt.where(A.party_id == party)
        if contract is not None:
            stmt = stmt.where(A.contract_id == contract)
        clause = visible_accounts(actor)
        return stmt if clause is None else stmt.where(clause)
    return build, at


def _balanced(s, accounts: list["LedgerAccount"], at: datetime | None,
              effective_on: date | None) -> list["LedgerAccount"]:
    """The accounts with their balance as of `at` and on `effective_on` instead of now (both may be None)."""
    if at is None and effective_on is None:
        return accounts
    upto = journal.sequence_at(s, at) if at is not None else None
    for acc in accounts:
        acc.balance_minor = journal.balance_minor(s, s.get(models.Account, acc.pk), as_of_sequence=upto,
                                                  effective_on=effective_on)
    return accounts


EFFECTIVE_ON = strawberry.argument(description=(
    "The business date: count only transactions effective on or before it. With asOf: what the ledger held at "
    "that moment about the position on that day."))


@strawberry.type
class LedgerQueries:
    @strawberry.field(description="Accounts with their balance now, or as of a time (asOf) for a consistent past "
                                  "position; with effectiveOn, the balance on that business date. "
                                  "`ledgerAccountsConnection` is the paged form, with totalCount and paging both ways.")
    async def ledger_accounts(self, info: Info, party_id: AccountPartyArg = None,
                              contract_id: AccountContractArg = None, as_of: AccountAsOfArg = None,
                              effective_on: Annotated[date | None, EFFECTIVE_ON] = None,
                              first: Annotated[int | None, LIST_FIRST] = None,
                              after: Annotated[strawberry.ID | None, LIST_AFTER] = None) -> list[LedgerAccount]:
        require_actor(info)  # a token first: without one, nothing else is checked
        size = MAX_LIST if first is None else page_size(first)
        try:
            start = _opt_id(after, "LedgerAccount", "after")
        except DomainError as err:
            raise query_error(err) from None
        build, at = _account_filter(info, party_id, contract_id, as_of)
        A = models.Account

        def q(s):
            stmt = build(s).order_by(A.id)
            if start is not None:
                stmt = stmt.where(A.id > start)
            accounts = [LedgerAccount.from_row(a) for a in s.execute(stmt.limit(size)).scalars()]
            return _balanced(s, accounts, at, effective_on)
        return await ctx(info).db.read(q)

    @strawberry.field(description="Accounts a page at a time, in the order they were opened: the same accounts as "
                                  "`ledgerAccounts` with the same filters, with their balance now, as of a time "
                                  "(asOf) or on a business date (effectiveOn).")
    async def ledger_accounts_connection(
        self, info: Info, party_id: AccountPartyArg = None, contract_id: AccountContractArg = None,
        as_of: AccountAsOfArg = None, effective_on: Annotated[date | None, EFFECTIVE_ON] = None,
        first: int | None = None, after: str | None = None, last: Annotated[int | None, LAST] = None,
        before: Annotated[str | None, BEFORE] = None,
    ) -> Connection[LedgerAccount]:
        window = Window.of(first, after, last, before)
        build, at = _account_filter(info, party_id, contract_id, as_of)
        page = await keyset_page(info, build, models.Account.id, LedgerAccount.from_row, window)
        if at is not None or effective_on is not None:
            accounts = page.node_list
            await ctx(info).db.read(lambda s: _balanced(s, accounts, at, effective_on))
        return page

    @strawberry.field
    async def ledger_transactions(
        self, info: Info, party_id: strawberry.ID | None = None, contract_id: strawberry.ID | None = None,
        account_id: strawberry.ID | None = None, from_sequence: int | None = None, first: int | None = None,
        after: str | None = None, as_of: datetime | None = None,
        last: Annotated[int | None, LAST] = None,
        before: Annotated[str | None, BEFORE] = None,
    ) -> Connection[LedgerTransaction]:
        actor = require_actor(info)
        window = Window.of(first, after, last, before)
        try:
            party = _opt_id(party_id, "Party", "partyId")
            contract = _opt_id(contract_id, "OutcomeContract", "contractId")
            account = _opt_id(account_id, "LedgerAccount", "accountId")
            at = aware(as_of, "asOf")
        except DomainError as err:
            raise query_error(err) from None
        T, E, A = models.Transaction, models.Entry, models.Account

        def build(s):
            stmt = select(T)
            if from_sequence is not None:
                stmt = stmt.where(T.sequence >= from_sequence)
            if contract is not None:
                stmt = stmt.where(T.contract_id == contract)
            if at is not None:
                stmt = stmt.where(T.sequence <= journal.sequence_at(s, at))
            if account is not None:
                stmt = stmt.where(exists(select(E.sequence).where(E.sequence == T.sequence, E.account_id == account)))
            if party is not None:
                stmt = stmt.where(exists(select(E.sequence).join(A, A.id == E.account_id)
                                         .where(E.sequence == T.sequence, A.party_id == party)))
            clause = visible_transactions(actor)
            if clause is not None:
                stmt = stmt.where(clause)
            return stmt
        return await keyset_page(info, build, T.sequence, LedgerTransaction.from_row, window)

    @strawberry.field(description="An account's balance now, as of a time, or as of a sequence number; with "
                                  "effectiveOn, the balance on that business date as the ledger held it then.")
    async def balance(self, info: Info, account_id: strawberry.ID, as_of: datetime | None = None,
                      as_of_sequence: int | None = None,
                      effective_on: Annotated[date | None, EFFECTIVE_ON] = None) -> Money:
        actor = require_actor(info)
        try:
            pk = from_global_id(account_id, "LedgerAccount", field="accountId")
            at = aware(as_of, "asOf")
        except DomainError as err:
            raise query_error(err) from None

        def q(s):
            acc = s.get(models.Account, pk)
            if acc is None or not may_see_account(actor, acc):
                raise NotFound("no such account", code="UNKNOWN_ACCOUNT", field=["accountId"])
            return Money.of(journal.balance(s, pk, as_of=at, as_of_sequence=as_of_sequence, effective_on=effective_on))
        try:
            return await ctx(info).db.read(q)
        except DomainError as err:
            raise query_error(err) from None

    @strawberry.field
    async def ledger_digest(self, info: Info) -> LedgerDigest:
        require_actor(info)
        d = await ctx(info).db.read(journal.digest)
        return LedgerDigest(sequence=d.sequence, hash=d.hash)

    @strawberry.field(description="Recompute the chain and every running balance; with a digest, prove it is still held.")
    async def verify_ledger(
        self, info: Info, digest: LedgerDigestInput | None = None,
        tree_head: Annotated[SignedTreeHeadInput | None, strawberry.argument(description=(
            "A signed tree head kept earlier: also check that this ledger signed it and that its transactions "
            "still make its root hash."))] = None,
    ) -> LedgerVerification:
        require_actor(info)
        d = journal.Digest(digest.sequence, digest.hash.lower()) if digest else None
        signer = ctx(info).signer
        try:
            head = tree_head.parse() if tree_head is not None else None
        except DomainError as err:
            raise query_error(err) from None

        def q(s):
            v = journal.verify(s, d)
            if v.ok and head is not None:
                check = proofs.check_tree_head(s, signer=signer, head=head)
                if not check.ok:
                    return journal.Verification(False, v.checked_transactions, None, check.reason)
            return v
        try:
            v = await ctx(info).db.read(q)
        except DomainError as err:
            raise query_error(err) from None
        return LedgerVerification(ok=v.ok, checked_transactions=v.checked_transactions,
                                  first_invalid_sequence=v.first_invalid_sequence, reason=v.reason)


@strawberry.type
class LedgerMutations:
    @strawberry.mutation(description="Post a new transaction that reverses an earlier one, with a reason. "
                                     "Reversing a payout's transaction makes the payout REVERSED: what it paid is payable again.")
    async def reverse_transaction(self, info: Info, input: ReverseTransactionInput) -> ReverseTransactionPayload:
        def run(uow, actor):
            seq = from_global_id(input.transaction_id, "LedgerTransaction", field="transactionId")
            return audited(uow, actor, "reverseTransaction", input, lambda: change_requests.submit(
                uow, actor=actor, kind="REVERSE_TRANSACTION", transaction_id=seq, reason=input.reason,
                effective_date=input.effective_date))
        return await mutate(info, ReverseTransactionPayload, run, lambda t: request_fields(t) if is_request(t) else
                            {"transaction": LedgerTransaction.from_row(t), "change_request": None,
                             "posted_sequence": t.sequence})
