"""Payouts (calculate, four-eyes approve, recompute), obligations and payments."""
from __future__ import annotations

import enum
from bisect import bisect_left, bisect_right
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

import strawberry
from sqlalchemy import select
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from api.graphql.base import (
    BEFORE, LAST, MAX_LIST, Connection, Money, MoneyInput, Node, UserError, Window, audited, ctx,
    decode_cursor, decode_key_cursor, edges_of, encode_cursor, from_global_id, keyset_page, list_page, load_rows, mutate,
    page_size, query_error, require_actor,
)
from api.graphql.ledger import LedgerTransaction, load_transaction
from api.graphql.parties import Party, load_party
from api.graphql.proofs import RECEIPT_DESCRIPTION, Receipt, receipt_for
from ledger import calculations, models, payout_items, settlement
from ledger import money as m
from ledger.errors import DomainError
from ledger.reads import visible_accounts, visible_contracts

ContractRef = Annotated["OutcomeContract", strawberry.lazy("api.graphql.contracts")]  # noqa: F821
EvidenceRef = Annotated["Evidence", strawberry.lazy("api.graphql.evidence")]  # noqa: F821
MeasurementRef = Annotated["Measurement", strawberry.lazy("api.graphql.evidence")]  # noqa: F821
MetricCodeArg = Annotated[str | None, strawberry.argument(description="Only the items of this metric.")]


@strawberry.enum
class PayoutStatus(enum.Enum):
    CALCULATED = "CALCULATED"
    APPROVED = "APPROVED"
    POSTED = "POSTED"
    SUPERSEDED = "SUPERSEDED"
    REVERSED = strawberry.enum_value("REVERSED", description="Its ledger transaction was reversed: what it paid is "
                                                             "payable again in a new payout of the period.")


@strawberry.enum(description="What a payout line or item is.")
class PayoutLineKind(enum.Enum):
    OUTCOME = strawberry.enum_value("OUTCOME", description="Outcomes achieved in the period, paid at the terms' prices.")
    CLAWBACK = strawberry.enum_value("CLAWBACK", description="Money given back for evidence invalidated after it was "
                                                             "paid; a negative amount.")
    ADJUSTMENT = strawberry.enum_value("ADJUSTMENT", description="A paid measurement corrected or voided: its new "
                                                                 "amount less what was paid for it.")


@strawberry.enum(description="A cap (tak) that reduced what a payout line pays, in the order caps apply.")
class CapKind(enum.Enum):
    ONCE_ONLY = strawberry.enum_value("ONCE_ONLY", description="The metric pays once per participant; a second "
                                                               "outcome for the same participant pays nothing.")
    METRIC_CAP_PER_PARTICIPANT = strawberry.enum_value(
        "METRIC_CAP_PER_PARTICIPANT", description="The metric's most per participant, counting what was paid before.")
    PARTICIPANT_CAP = strawberry.enum_value(
        "PARTICIPANT_CAP", description="The contract's most per participant across all metrics.")
    METRIC_CAP_PER_PERIOD = strawberry.enum_value(
        "METRIC_CAP_PER_PERIOD", description="The metric's most in one payout period.")
    METRIC_CAP_TOTAL = strawberry.enum_value(
        "METRIC_CAP_TOTAL", description="The metric's most over the whole contract, counting what was paid before.")
    MAX_VALUE = strawberry.enum_value(
        "MAX_VALUE", description="The contract's maximum value, counting what was paid before.")
    PAYER_CAP = strawberry.enum_value(
        "PAYER_CAP", description="A payer's committed maximum amount (maxAmount) for the contract.")


@strawberry.type(description="One cap that reduced a payout line, and by how much.")
class CapApplied:
    kind: CapKind = strawberry.field(description="Which cap.")
    reduction: Money = strawberry.field(description="How much this cap removed from the line.")


def caps_applied(text: str, currency: str) -> list[CapApplied]:
    """The stored "CAP_NAME=amount;..." of a payout line as structured caps, in the order they applied."""
    out = []
    for part in filter(None, text.split(";")):
        name, _, amount = part.partition("=")
        out.append(CapApplied(kind=CapKind(name), reduction=Money.of(m.money(amount, currency))))
    return out


@strawberry.type
class PayoutLine:
    metric_code: str
    kind: PayoutLineKind = strawberry.field(
        description="OUTCOME; CLAWBACK for what an invalidated item gives back; ADJUSTMENT for a paid measurement "
                    "corrected or voided (the new amount less what was paid).")
    quantity: Decimal
    unit_price: Money
    gross: Money
    capped: Money = strawberry.field(description="The amount removed by caps.")
    net: Money
    caps: list[CapApplied] = strawberry.field(description="Which caps removed how much, in the order they apply.")


@strawberry.type
class PayerAmount:
    party_id: strawberry.Private[int]
    amount: Money

    @strawberry.field
    async def party(self, info: Info) -> Party | None:
        return await load_party(info, self.party_id)


@strawberry.type
class Recomputed:
    matches: bool
    inputs_hash: str
    total: Money
    differences: list[str]


async def load_items(info: Info, payout_id: int) -> payout_items.ItemColumns:
    """A payout's items in id order (the order recorded), rows and packed blocks together
    (ledger/payout_items.py); the payouts of one request are read together."""
    c = ctx(info)

    async def batch(keys: list[int]) -> list[payout_items.ItemColumns]:
        found = await c.db.read(lambda s: payout_items.columns_of(s, keys))
        return [found[k] for k in keys]
    return await c.loader("payout_items", lambda: DataLoader(batch)).load(payout_id)


def item_page(items: payout_items.ItemColumns, metric_code: str | None, window: Window, to_node) -> Connection:
    """A page of a payout's items by keyset on the item id, as child_page makes one from SQL
    (the same cursors, page info and totalCount); ItemRows are made for the page only."""
    at = range(len(items)) if metric_code is None else [i for i, c in enumerate(items.metric_code) if c == metric_code]
    ids = items.id if metric_code is None else [items.id[i] for i in at]
    lo = 0 if window.after is None else bisect_right(ids, window.after)
    hi = len(ids) if window.before is None else bisect_left(ids, window.before)
    taken = range(hi - 1, max(lo, hi - window.size - 1) - 1, -1) if window.backward else \
        range(lo, min(hi, lo + window.size + 1))
    beyond_start = window.after is not None and not window.backward and lo > 0
    beyond_end = window.before is not None and window.backward and hi < len(ids)
    total = len(ids)

    async def count() -> int:
        return total
    return edges_of([items.row(at[k]) for k in taken], lambda x: x.id, to_node, window, beyond_start, beyond_end,
                    counter=count)


@strawberry.type(description="What one evidence item or measurement earned in a payout, or gave back (CLAWBACK).")
class PayoutItem:
    kind: PayoutLineKind
    metric_code: str
    gross: Money
    capped: Money
    net: Money
    evidence_id: strawberry.Private[int | None]
    measurement_id: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, x: payout_items.ItemRow, currency: str) -> "PayoutItem":
        return cls(kind=PayoutLineKind(x.kind), metric_code=x.metric_code, gross=Money.minor(x.gross_minor, currency),
                   capped=Money.minor(x.capped_minor, currency), net=Money.minor(x.net_minor, currency),
                   evidence_id=x.evidence_id, measurement_id=x.measurement_id)

    @strawberry.field(description="The evidence behind this amount: documents, who submitted and who verified.")
    async def evidence(self, info: Info) -> EvidenceRef | None:
        if self.evidence_id is None:
            return None
        from api.graphql.evidence import Evidence
        return await load_rows(info, "evidence_by_id", models.Evidence, models.Evidence.id, self.evidence_id,
                               Evidence.from_row)

    @strawberry.field
    async def measurement(self, info: Info) -> MeasurementRef | None:
        if self.measurement_id is None:
            return None
        from api.graphql.evidence import Measurement
        return await load_rows(info, "measurement_by_id", models.Measurement, models.Measurement.id,
                               self.measurement_id, Measurement.from_row)


@strawberry.type
class Payout(Node):
    pk: strawberry.Private[int]
    contract_pk: strawberry.Private[int]
    status: PayoutStatus
    period_start: date
    period_end: date
    terms_version: int
    inputs_hash: str
    inputs: str = strawberry.field(description="The canonical JSON of every input; its SHA-256 is inputsHash.")
    lines: list[PayoutLine]
    shares: list[PayerAmount]
    total: Money
    calculated_by: str
    calculated_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    transaction_sequence: strawberry.Private[int | None]

    @strawberry.field
    async def contract(self, info: Info) -> ContractRef | None:
        from api.graphql.contracts import load_contract
        return await load_contract(info, self.contract_pk)

    @strawberry.field(description="Every evidence item and measurement the payout paid or clawed back. "
                                  "`itemsConnection` is the paged form, with totalCount and paging both ways.")
    async def items(self, info: Info, metric_code: MetricCodeArg = None) -> list[PayoutItem]:
        items = await load_items(info, self.pk)
        return [PayoutItem.from_row(x, self.total.code) for x in items.rows()
                if metric_code is None or x.metric_code == metric_code]

    @strawberry.field(description="The payout's evidence items and measurements a page at a time, in the order they "
                                  "were recorded: the same ones as `items`.")
    async def items_connection(self, info: Info, metric_code: MetricCodeArg = None, first: int | None = None,
                               after: str | None = None, last: Annotated[int | None, LAST] = None,
                               before: Annotated[str | None, BEFORE] = None) -> Connection[PayoutItem]:
        window = Window.of(first, after, last, before)
        return item_page(await load_items(info, self.pk), metric_code, window,
                         lambda x: PayoutItem.from_row(x, self.total.code))

    @strawberry.field(description="The ledger transaction that posted this payout.")
    async def transaction(self, info: Info) -> LedgerTransaction | None:
        return None if self.transaction_sequence is None else await load_transaction(info, self.transaction_sequence)

    @strawberry.field(description="The engine run again on the recorded inputs, compared figure by figure.")
    async def recomputed(self, info: Info) -> Recomputed:
        def q(s):
            r = calculations.recompute(s, calculations.get_payout(s, self.pk))
            return Recomputed(matches=r.matches, inputs_hash=r.inputs_hash, total=Money.minor(r.total_minor, self.total.code),
                              differences=list(r.differences))
        return await ctx(info).db.read(q)

    @classmethod
    def from_row(cls, p: models.PayoutCalculation) -> "Payout":
        cur = p.currency
        return cls(
            pk=p.id, contract_pk=p.contract_id, status=PayoutStatus(p.status), period_start=p.period_start,
            period_end=p.period_end, terms_version=p.terms_version, inputs_hash=p.inputs_hash, inputs=p.inputs,
            lines=[PayoutLine(metric_code=x.metric_code, kind=PayoutLineKind(x.kind), quantity=x.quantity,
                              unit_price=Money.minor(x.unit_price_minor, cur), gross=Money.minor(x.gross_minor, cur),
                              capped=Money.minor(x.capped_minor, cur), net=Money.minor(x.net_minor, cur),
                              caps=caps_applied(x.caps, cur))
                   for x in p.lines],
            shares=[PayerAmount(party_id=x.party_id, amount=Money.minor(x.amount_minor, cur)) for x in p.shares],
            total=Money.minor(p.total_minor, cur), calculated_by=p.calculated_by, calculated_at=p.calculated_at,
            approved_by=p.approved_by, approved_at=p.approved_at, transaction_sequence=p.transaction_sequence)


@strawberry.type
class Obligation:
    debtor_id: strawberry.Private[int]
    creditor_id: strawberry.Private[int]
    contract_pk: strawberry.Private[int]
    outstanding: Money
    position: strawberry.Private[int | None] = None

    @strawberry.field(description="In the list of `obligations`: pass it as `after` for the ones after this one "
                                  "(with the same filters). Null where obligations are listed under a contract or "
                                  "in a connection (there, each edge has its cursor).")
    def cursor(self) -> str | None:
        return None if self.position is None else encode_cursor(self.position)

    @strawberry.field
    async def debtor(self, info: Info) -> Party | None:
        return await load_party(info, self.debtor_id)

    @strawberry.field
    async def creditor(self, info: Info) -> Party | None:
        return await load_party(info, self.creditor_id)

    @strawberry.field
    async def contract(self, info: Info) -> ContractRef | None:
        from api.graphql.contracts import load_contract
        return await load_contract(info, self.contract_pk)


@strawberry.type
class Payment(Node):
    pk: strawberry.Private[int]
    debtor_id: strawberry.Private[int]
    creditor_id: strawberry.Private[int]
    amount: Money
    paid_on: date
    reference: str
    recorded_by: str
    transaction_sequence: strawberry.Private[int]

    @strawberry.field
    async def debtor(self, info: Info) -> Party | None:
        return await load_party(info, self.debtor_id)

    @strawberry.field
    async def creditor(self, info: Info) -> Party | None:
        return await load_party(info, self.creditor_id)

    @strawberry.field
    async def transaction(self, info: Info) -> LedgerTransaction | None:
        return await load_transaction(info, self.transaction_sequence)

    @classmethod
    def from_row(cls, p: models.Payment) -> "Payment":
        return cls(pk=p.id, debtor_id=p.debtor_id, creditor_id=p.creditor_id, amount=Money.minor(p.amount_minor, p.currency),
                   paid_on=p.paid_on, reference=p.reference, recorded_by=p.recorded_by,
                   transaction_sequence=p.transaction_sequence)


def _scoped(info: Info, stmt):
    clause = visible_contracts(require_actor(info))
    if clause is None:
        return stmt
    return stmt.join(models.OutcomeContract, models.OutcomeContract.id == models.PayoutCalculation.contract_id).where(clause)


async def payout_page(info: Info, *, contract_id: int | None, status: PayoutStatus | None,
                      window: Window) -> Connection[Payout]:
    P = models.PayoutCalculation

    def build(s):
        stmt = _scoped(info, select(P))
        if contract_id is not None:
            stmt = stmt.where(P.contract_id == contract_id)
        if status is not None:
            stmt = stmt.where(P.status == status.value)
        return stmt
    return await keyset_page(info, build, P.id, Payout.from_row, window)


async def payout_by_transaction(info: Info, sequence: int) -> Payout | None:
    P = models.PayoutCalculation
    clause = visible_contracts(require_actor(info))
    return await load_rows(info, "payout_by_tx", P, P.transaction_sequence, sequence, Payout.from_row,
                           where=None if clause is None else
                           (lambda: P.contract_id.in_(select(models.OutcomeContract.id).where(clause))))


async def load_payout(info: Info, pk: int) -> Payout | None:
    P = models.PayoutCalculation
    row = await ctx(info).db.read(lambda s: s.execute(_scoped(info, select(P)).where(P.id == pk)).scalar_one_or_none())
    return Payout.from_row(row) if row else None


def _obligation(o: settlement.Obligation, position: int | None = None) -> Obligation:
    return Obligation(debtor_id=o.debtor_id, creditor_id=o.creditor_id, contract_pk=o.contract_id,
                      outstanding=Money.minor(o.outstanding_minor, o.currency), position=position)


def _obligation_key(o: settlement.Obligation) -> tuple:
    # one payable account per contract, debtor, creditor and currency: the key names one obligation for good
    return (o.contract_id, o.debtor_id, o.creditor_id, o.currency)


async def _obligations(info: Info, *, debtor_id: int | None, creditor_id: int | None, contract_id: int | None,
                       as_of: date | None, effective_on: date | None) -> list[settlement.Obligation]:
    actor = require_actor(info)
    at = settlement.end_of(as_of) if as_of else None
    return await ctx(info).db.read(lambda s: settlement.obligations(
        s, debtor_id=debtor_id, creditor_id=creditor_id, contract_id=contract_id, as_of=at,
        scope=visible_accounts(actor), effective_on=effective_on))


async def obligation_list(info: Info, *, debtor_id: int | None = None, creditor_id: int | None = None,
                          contract_id: int | None = None, as_of: date | None = None,
                          effective_on: date | None = None, first: int | None = None,
                          after: str | None = None) -> list[Obligation]:
    size, start = MAX_LIST if first is None else page_size(first), decode_cursor(after) or 0
    rows = await _obligations(info, debtor_id=debtor_id, creditor_id=creditor_id, contract_id=contract_id,
                              as_of=as_of, effective_on=effective_on)
    # a position in the (deterministically ordered) list: obligations are sums, not rows with a key
    return [_obligation(o, start + i + 1) for i, o in enumerate(rows[start:start + size])]


async def obligation_page(info: Info, *, debtor_id: int | None = None, creditor_id: int | None = None,
                          contract_id: int | None = None, as_of: date | None = None,
                          effective_on: date | None = None, window: Window) -> Connection[Obligation]:
    rows = await _obligations(info, debtor_id=debtor_id, creditor_id=creditor_id, contract_id=contract_id,
                              as_of=as_of, effective_on=effective_on)
    return list_page("obligation", rows, _obligation_key, _obligation, window)


async def _contract_obligations(info: Info, contract_id: int) -> list[settlement.Obligation]:
    c = ctx(info)
    actor = require_actor(info)

    async def batch(keys: list[int]) -> list[list[settlement.Obligation]]:
        def q(s):
            found: dict[int, list] = {k: [] for k in keys}
            for o in settlement.obligations(s, contract_ids=keys, scope=visible_accounts(actor)):
                found[o.contract_id].append(o)
            return found
        found = await c.db.read(q)
        return [found[k] for k in keys]
    return await c.loader("contract_obligations", lambda: DataLoader(batch)).load(contract_id)


async def obligations_of_contract(info: Info, contract_id: int) -> list[Obligation]:
    """A contract's obligations now, all contracts of a query in one SELECT."""
    return [_obligation(o) for o in await _contract_obligations(info, contract_id)]


async def obligation_page_of_contract(info: Info, contract_id: int, window: Window) -> Connection[Obligation]:
    """A page of a contract's obligations now; the obligations of all contracts of a query come from one SELECT."""
    rows = await _contract_obligations(info, contract_id)
    return list_page("obligation", rows, _obligation_key, _obligation, window)


DebtorArg = Annotated[strawberry.ID | None, strawberry.argument(description="Only what this party owes.")]
CreditorArg = Annotated[strawberry.ID | None, strawberry.argument(description="Only what is owed to this party.")]
ContractFilterArg = Annotated[strawberry.ID | None,
                              strawberry.argument(description="Only this contract's obligations.")]
AsOfDayArg = Annotated[date | None, strawberry.argument(
    description="As the ledger stood at the end of this day (UTC): what was known then.")]
EffectiveOnDayArg = Annotated[date | None, strawberry.argument(description=(
    "The business date: what was owed on that day, counting transactions effective on or before it."))]


def _id(gid, type_name: str, field: str) -> int | None:
    return None if gid is None else from_global_id(gid, type_name, field=field)


@strawberry.input
class CalculatePayoutInput:
    contract_id: strawberry.ID
    period_start: date
    period_end: date
    idempotency_key: str | None = None


@strawberry.input
class ApprovePayoutInput:
    payout_id: strawberry.ID
    idempotency_key: str | None = None


@strawberry.type
class PayoutPayload:
    payout: Payout | None
    user_errors: list[UserError]


@strawberry.type
class CalculatePayoutPayload(PayoutPayload):
    pass


@strawberry.type
class ApprovePayoutPayload(PayoutPayload):
    posted_sequence: strawberry.Private[int | None] = None

    @strawberry.field(description=RECEIPT_DESCRIPTION)
    async def receipt(self, info: Info) -> Receipt | None:
        return await receipt_for(info, self.posted_sequence)


@strawberry.input
class RecordPaymentInput:
    debtor_id: strawberry.ID
    creditor_id: strawberry.ID
    contract_id: strawberry.ID
    amount: MoneyInput
    paid_on: date
    reference: str
    idempotency_key: str | None = None


@strawberry.type
class RecordPaymentPayload:
    payment: Payment | None
    user_errors: list[UserError]
    posted_sequence: strawberry.Private[int | None] = None

    @strawberry.field(description=RECEIPT_DESCRIPTION)
    async def receipt(self, info: Info) -> Receipt | None:
        return await receipt_for(info, self.posted_sequence)


@strawberry.type
class PayoutQueries:
    @strawberry.field
    async def payouts(self, info: Info, contract_id: strawberry.ID | None = None, status: PayoutStatus | None = None,
                      first: int | None = None, after: str | None = None, last: Annotated[int | None, LAST] = None,
                      before: Annotated[str | None, BEFORE] = None) -> Connection[Payout]:
        try:
            cid = _id(contract_id, "OutcomeContract", "contractId")
        except DomainError as err:
            raise query_error(err) from None
        return await payout_page(info, contract_id=cid, status=status, window=Window.of(first, after, last, before))

    @strawberry.field
    async def payout(self, info: Info, id: strawberry.ID) -> Payout | None:
        try:
            return await load_payout(info, from_global_id(id, "Payout"))
        except DomainError as err:
            raise query_error(err) from None

    @strawberry.field(description="Who owes whom on which contract, now or as recorded at the end of a date (asOf), "
                                  "on a business date (effectiveOn); only non-zero. `obligationsConnection` is the "
                                  "paged form, with totalCount and paging both ways.")
    async def obligations(self, info: Info, debtor_id: DebtorArg = None, creditor_id: CreditorArg = None,
                          contract_id: ContractFilterArg = None, as_of: AsOfDayArg = None,
                          effective_on: EffectiveOnDayArg = None,
                          first: Annotated[int | None, strawberry.argument(description=(
                              f"At most this many (up to 100); without it, at most {MAX_LIST}."))] = None,
                          after: Annotated[str | None, strawberry.argument(description=(
                              "Only those after this one: the `cursor` of the last obligation you have."))] = None,
                          ) -> list[Obligation]:
        try:
            return await obligation_list(info, debtor_id=_id(debtor_id, "Party", "debtorId"),
                                         creditor_id=_id(creditor_id, "Party", "creditorId"),
                                         contract_id=_id(contract_id, "OutcomeContract", "contractId"), as_of=as_of,
                                         effective_on=effective_on, first=first, after=after)
        except DomainError as err:
            raise query_error(err) from None

    @strawberry.field(description="Who owes whom on which contract, a page at a time: the same obligations as "
                                  "`obligations` with the same filters, in the order of contract, debtor, creditor "
                                  "and currency.")
    async def obligations_connection(
        self, info: Info, debtor_id: DebtorArg = None, creditor_id: CreditorArg = None,
        contract_id: ContractFilterArg = None, as_of: AsOfDayArg = None, effective_on: EffectiveOnDayArg = None,
        first: int | None = None, after: str | None = None,
        last: Annotated[int | None, LAST] = None, before: Annotated[str | None, BEFORE] = None,
    ) -> Connection[Obligation]:
        window = Window.of(first, after, last, before, decode=decode_key_cursor)
        try:
            return await obligation_page(info, debtor_id=_id(debtor_id, "Party", "debtorId"),
                                         creditor_id=_id(creditor_id, "Party", "creditorId"),
                                         contract_id=_id(contract_id, "OutcomeContract", "contractId"), as_of=as_of,
                                         effective_on=effective_on, window=window)
        except DomainError as err:
            raise query_error(err) from None


@strawberry.type
class PayoutMutations:
    @strawberry.mutation(description="A CALCULATED payout for the period; recalculating supersedes an unapproved one.")
    async def calculate_payout(self, info: Info, input: CalculatePayoutInput) -> CalculatePayoutPayload:
        def run(uow, actor):
            cid = from_global_id(input.contract_id, "OutcomeContract", field="contractId")
            return audited(uow, actor, "calculatePayout", input, lambda: calculations.calculate_payout(
                uow, actor=actor, contract_id=cid, period_start=input.period_start, period_end=input.period_end))
        return await mutate(info, CalculatePayoutPayload, run, lambda p: {"payout": Payout.from_row(p)})

    @strawberry.mutation(description="Approval by a second fund manager (FOUR_EYES_REQUIRED otherwise); posts to the ledger.")
    async def approve_payout(self, info: Info, input: ApprovePayoutInput) -> ApprovePayoutPayload:
        def run(uow, actor):
            pid = from_global_id(input.payout_id, "Payout", field="payoutId")
            return audited(uow, actor, "approvePayout", input,
                           lambda: calculations.approve_payout(uow, actor=actor, payout_id=pid))
        return await mutate(info, ApprovePayoutPayload, run, lambda p: {"payout": Payout.from_row(p),
                                                                        "posted_sequence": p.transaction_sequence})

    @strawberry.mutation(description="A payment that settles (part of) an obligation; more than is owed is OVERPAYMENT.")
    async def record_payment(self, info: Info, input: RecordPaymentInput) -> RecordPaymentPayload:
        def run(uow, actor):
            return audited(uow, actor, "recordPayment", input, lambda: settlement.record_payment(
                uow, actor=actor, debtor_id=from_global_id(input.debtor_id, "Party", field="debtorId"),
                creditor_id=from_global_id(input.creditor_id, "Party", field="creditorId"),
                contract_id=from_global_id(input.contract_id, "OutcomeContract", field="contractId"),
                amount=input.amount.to_money(), paid_on=input.paid_on, reference=input.reference))
        return await mutate(info, RecordPaymentPayload, run, lambda p: {"payment": Payment.from_row(p),
                                                                        "posted_sequence": p.transaction_sequence})
