"""Outcomes funds and outcome contracts: terms, metrics, lifecycle, amendments, sanctions."""
from __future__ import annotations

import enum
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal

from typing import Annotated

import strawberry
from sqlalchemy import select
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from api.graphql.base import (
    BEFORE, LAST, Connection, Currency, Money, MoneyInput, Node, UserError, Window, audited, child_page, child_pages, ctx,
    decode_key_cursor, from_global_id, keyset_page, load_rows, mutate, query_error, require_actor,
)
from api.graphql.change_requests import CHANGE_REQUEST_FIELD, ChangeRequest, is_request, request_fields
from api.graphql.evidence import EVIDENCE_CONVERTED_ON_READ, Evidence, EvidenceStatus, Measurement, Participant
from api.graphql.ledger import LedgerTransaction
from api.graphql.payouts import (
    Obligation, Payout, PayoutStatus, obligation_page_of_contract, obligations_of_contract,
)
from api.graphql.parties import Party, load_party
from api.graphql.proofs import RECEIPT_DESCRIPTION, Receipt, receipt_for
from ledger import chart, contracts, funds, models, sanctions
from ledger.corrections import change_requests
from ledger.errors import DomainError
from ledger.reads import visible_contract_row, visible_contracts, visible_funds


@strawberry.enum
class ContractStatus(enum.Enum):
    DRAFT = "DRAFT"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    COMPLETED = "COMPLETED"
    TERMINATED = "TERMINATED"


@strawberry.enum(description="How often a scheduled contract pays: one payout period per step, counted from startDate.")
class PaymentFrequency(enum.Enum):
    MONTHLY = "MONTHLY"
    QUARTERLY = "QUARTERLY"
    HALF_YEARLY = "HALF_YEARLY"
    YEARLY = "YEARLY"


@strawberry.type(description="One scheduled payout period and the last day its outcomes can be claimed.")
class SchedulePeriod:
    period_start: date = strawberry.field(description="First day of the period.")
    period_end: date = strawberry.field(description="Last day of the period (the last period may be shorter).")
    claim_deadline: date = strawberry.field(
        description="Evidence and measurements for this period are accepted until this day (periodEnd + claimWindowDays).")


@strawberry.type(description="What one payer has promised this contract, paid on it, and still holds committed.")
class PayerCommitment:
    party_id: strawberry.Private[int]
    percent: Decimal = strawberry.field(description="The payer's share of every payout, in percent.")
    max_amount: Money | None = strawberry.field(description="The most this payer pays over the contract, if capped.")
    committed: Money = strawberry.field(description="Still committed: its share of maxValue (or its maxAmount) less what it paid; zero once the contract is closed.")
    paid: Money = strawberry.field(description="Its shares of the payouts posted so far, net of clawbacks.")

    @strawberry.field(description="The payer.")
    async def party(self, info: Info) -> Party | None:
        return await load_party(info, self.party_id)


@strawberry.enum
class MetricKind(enum.Enum):
    RATE_CARD = "RATE_CARD"
    BASELINE_IMPROVEMENT = "BASELINE_IMPROVEMENT"
    COMPARISON_THRESHOLD = "COMPARISON_THRESHOLD"


@strawberry.enum
class Direction(enum.Enum):
    HIGHER_IS_BETTER = "HIGHER_IS_BETTER"
    LOWER_IS_BETTER = "LOWER_IS_BETTER"


@strawberry.enum
class SanctionLevel(enum.Enum):
    WARNING = "WARNING"
    PENALTY = "PENALTY"
    SUSPENSION = "SUSPENSION"
    DEAUTHORISATION = "DEAUTHORISATION"


def _money(units: int | None, currency: str) -> Money | None:
    return None if units is None else Money.minor(units, currency)


@strawberry.type
class AreaSupplement:
    area: str
    percent: Decimal


@strawberry.type
class Metric:
    code: str
    name: str
    kind: MetricKind
    direction: Direction
    unit_price: Money
    baseline: Decimal | None
    baseline_source: str | None
    baseline_method: str | None
    threshold: Decimal | None
    cap_per_participant: Money | None
    cap_per_period: Money | None
    cap_total: Money | None
    once_only: bool
    area_supplements: list[AreaSupplement]

    @classmethod
    def from_row(cls, x: models.Metric, currency: str) -> "Metric":
        return cls(code=x.code, name=x.name, kind=MetricKind(x.kind), direction=Direction(x.direction),
                   unit_price=Money.minor(x.unit_price_minor, currency), baseline=x.baseline,
                   baseline_source=x.baseline_source, baseline_method=x.baseline_method, threshold=x.threshold,
                   cap_per_participant=_money(x.cap_per_participant_minor, currency),
                   cap_per_period=_money(x.cap_per_period_minor, currency),
                   cap_total=_money(x.cap_total_minor, currency), once_only=x.once_only,
                   area_supplements=[AreaSupplement(area=s.area, percent=s.percent) for s in x.supplements])


@strawberry.type
class PayerShare:
    party_id: strawberry.Private[int]
    percent: Decimal
    max_amount: Money | None = strawberry.field(default=None, description="The most this payer pays over the contract (PAYER_CAP), if capped.")

    @strawberry.field
    async def party(self, info: Info) -> Party | None:
        return await load_party(info, self.party_id)


@strawberry.type
class ContractTerms:
    version: int
    effective_from: date
    reason: str
    max_value: Money
    participant_cap: Money | None
    payer_shares: list[PayerShare]
    metrics: list[Metric]
    created_by: str
    created_at: datetime

    @classmethod
    def from_row(cls, t: models.ContractTerms, currency: str) -> "ContractTerms":
        return cls(version=t.version, effective_from=t.effective_from, reason=t.reason,
                   max_value=Money.minor(t.max_value_minor, currency),
                   participant_cap=_money(t.participant_cap_minor, currency),
                   payer_shares=[PayerShare(party_id=p.party_id, percent=p.percent,
                                            max_amount=_money(p.max_amount_minor, currency)) for p in t.payer_shares],
                   metrics=[Metric.from_row(x, currency) for x in t.metrics], created_by=t.created_by,
                   created_at=t.created_at)


@strawberry.type
class Sanction(Node):
    pk: strawberry.Private[int]
    level: SanctionLevel
    reason: str
    penalty: Money | None
    issued_by: str
    issued_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None
    transaction_sequence: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, x: models.Sanction, currency: str) -> "Sanction":
        return cls(pk=x.id, level=SanctionLevel(x.level), reason=x.reason, penalty=_money(x.penalty_minor, currency),
                   issued_by=x.issued_by, issued_at=x.issued_at, lifted_at=x.lifted_at, lifted_by=x.lifted_by,
                   transaction_sequence=x.transaction_sequence)


@strawberry.type
class OutcomeContract(Node):
    pk: strawberry.Private[int]
    title: str
    status: ContractStatus
    policy_area: str
    currency: Currency
    start_date: date
    end_date: date
    created_at: datetime
    activated_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    fund_id: strawberry.Private[int]
    party_ids: strawberry.Private[dict]
    row: strawberry.Private[models.OutcomeContract]
    dispute_window_days: int = strawberry.field(default=30, description=(
        "Days the provider has to dispute a rejection, an invalidation or a payout, counted from the decision; "
        "the fund has as many days from the opening to resolve the dispute."))
    payment_frequency: PaymentFrequency | None = strawberry.field(
        description="How often it pays; null for a contract with free payout periods (made before schedules).")
    service_end_date: date = strawberry.field(description="Delivery ends: no participant is enrolled after this day.")
    outcomes_end_date: date = strawberry.field(description="The last day on which an outcome counts (the run-off ends).")
    claim_window_days: int | None = strawberry.field(description="Days after a period's end during which it can still be claimed.")
    terminated_on: date | None = strawberry.field(description="The day a termination took effect: nothing after it counts.")
    closed_at: datetime | None = strawberry.field(
        description="When the last claim window had closed and the remaining commitments were released.")

    @strawberry.field(description="The scheduled payout periods with their claim deadlines; empty for free periods.")
    def schedule(self) -> list[SchedulePeriod]:
        from ledger import schedule
        return [SchedulePeriod(period_start=p.start, period_end=p.end, claim_deadline=p.claim_deadline)
                for p in schedule.of(self.row)]

    @strawberry.field(description="Each payer's commitment to this contract and what it has paid, from the ledger.")
    async def commitments(self, info: Info) -> list[PayerCommitment]:
        from ledger import commitments as cm
        terms = await self.terms(info)

        def q(s):
            return cm.current(s, self.pk), cm.paid_by_payer(s, self.pk)
        held, paid = await ctx(info).db.read(q)
        shares = {p.party_id: p for p in terms.payer_shares}
        parties = list(shares) + sorted(set(held) - set(shares))
        return [PayerCommitment(party_id=p, percent=shares[p].percent if p in shares else Decimal(0),
                                max_amount=shares[p].max_amount if p in shares else None,
                                committed=Money.minor(held.get(p, 0), self.currency),
                                paid=Money.minor(paid.get(p, 0), self.currency)) for p in parties]

    @strawberry.field
    async def fund(self, info: Info) -> "Fund | None":
        return await load_fund(info, self.fund_id)

    @strawberry.field
    async def municipality(self, info: Info) -> Party | None:
        return await load_party(info, self.party_ids["municipality"])

    @strawberry.field
    async def provider(self, info: Info) -> Party | None:
        return await load_party(info, self.party_ids["provider"])

    @strawberry.field
    async def verifier(self, info: Info) -> Party | None:
        return await load_party(info, self.party_ids["verifier"])

    @strawberry.field
    async def investor(self, info: Info) -> Party | None:
        return await load_party(info, self.party_ids["investor"])

    @strawberry.field(description="The terms in force now (the newest version already effective).")
    async def terms(self, info: Info) -> ContractTerms:
        history = await load_terms(info, self.pk)
        today = date.today()
        effective = [t for t in history if t.effective_from <= today] or history[:1]
        return max(effective, key=lambda t: (t.effective_from, t.version))

    @strawberry.field(description="Every terms version, oldest first; amendments never overwrite.")
    async def terms_history(self, info: Info) -> list[ContractTerms]:
        return await load_terms(info, self.pk)

    @strawberry.field(description="The metrics of the terms in force now.")
    async def metrics(self, info: Info) -> list[Metric]:
        return (await self.terms(info)).metrics

    @strawberry.field
    async def sanctions(self, info: Info) -> list[Sanction]:
        c = ctx(info)

        async def batch(keys: list[int]) -> list[list[Sanction]]:
            def q(s):
                out = defaultdict(list)
                rows = s.execute(select(models.Sanction, models.OutcomeContract.currency)
                                 .join(models.OutcomeContract, models.OutcomeContract.id == models.Sanction.contract_id)
                                 .where(models.Sanction.contract_id.in_(keys)).order_by(models.Sanction.id)).all()
                for row, currency in rows:
                    out[row.contract_id].append(Sanction.from_row(row, currency))
                return out
            found = await c.db.read(q)
            return [found.get(k, []) for k in keys]
        return await c.loader("sanctions", lambda: DataLoader(batch)).load(self.pk)

    @strawberry.field(description="Every sanction issued on the contract a page at a time, oldest first: the same "
                                  "ones as `sanctions`.")
    async def sanctions_connection(self, info: Info, first: int | None = None, after: str | None = None,
                                   last: Annotated[int | None, LAST] = None,
                                   before: Annotated[str | None, BEFORE] = None) -> Connection[Sanction]:
        # the rows of all contracts' pages come in one SELECT; each contract gives its sanctions its own currency
        rows = await child_page(info, "sanctions", models.Sanction, models.Sanction.contract_id, self.pk, first=first,
                                after=after, last=last, before=before, to_node=lambda row: row)
        return rows.mapped(lambda row: Sanction.from_row(row, self.currency.value))

    @strawberry.field(description="The cohort: pseudonymous participants.")
    async def participants(self, info: Info, first: int | None = None, after: str | None = None,
                           last: Annotated[int | None, LAST] = None,
                           before: Annotated[str | None, BEFORE] = None) -> Connection[Participant]:
        return await child_page(info, "participants", models.Participant, models.Participant.contract_id, self.pk,
                                first=first, after=after, last=last, before=before, to_node=Participant.from_row)

    @strawberry.field
    async def evidence(self, info: Info, status: EvidenceStatus | None = None, first: int | None = None,
                       after: str | None = None, last: Annotated[int | None, LAST] = None,
                       before: Annotated[str | None, BEFORE] = None) -> Connection[Evidence]:
        loader, _read = _evidence_pages(info, status, first, after, last, before)
        return await loader.load((self.pk,))

    @strawberry.field
    async def measurements(self, info: Info) -> list[Measurement]:
        return await load_rows(info, "measurements", models.Measurement, models.Measurement.contract_id, self.pk,
                               Measurement.from_row, many=True)

    @strawberry.field(description="Every measurement recorded for the contract a page at a time, oldest first: the "
                                  "same ones as `measurements`, with corrected and voided versions.")
    async def measurements_connection(self, info: Info, first: int | None = None, after: str | None = None,
                                      last: Annotated[int | None, LAST] = None,
                                      before: Annotated[str | None, BEFORE] = None) -> Connection[Measurement]:
        return await child_page(info, "measurements", models.Measurement, models.Measurement.contract_id, self.pk,
                                first=first, after=after, last=last, before=before, to_node=Measurement.from_row)

    @strawberry.field
    async def payouts(self, info: Info, status: PayoutStatus | None = None, first: int | None = None,
                      after: str | None = None, last: Annotated[int | None, LAST] = None,
                      before: Annotated[str | None, BEFORE] = None) -> Connection[Payout]:
        return await child_page(info, "payouts", models.PayoutCalculation, models.PayoutCalculation.contract_id,
                                self.pk, first=first, after=after, last=last, before=before, to_node=Payout.from_row,
                                filters={"status": status.value} if status else None)

    @strawberry.field(description="Who owes whom on this contract now; only non-zero. `obligationsConnection` is "
                                  "the paged form, with totalCount and paging both ways.")
    async def obligations(self, info: Info) -> list[Obligation]:
        return await obligations_of_contract(info, self.pk)

    @strawberry.field(description="Who owes whom on this contract now, a page at a time: the same obligations as "
                                  "`obligations`, in the order of debtor, creditor and currency.")
    async def obligations_connection(self, info: Info, first: int | None = None, after: str | None = None,
                                     last: Annotated[int | None, LAST] = None,
                                     before: Annotated[str | None, BEFORE] = None) -> Connection[Obligation]:
        return await obligation_page_of_contract(info, self.pk,
                                                 Window.of(first, after, last, before, decode=decode_key_cursor))

    @strawberry.field(description="What the fund has committed to this contract and not yet drawn down.")
    async def committed(self, info: Info) -> Money:
        units = await load_rows(info, "committed", models.Account, models.Account.contract_id, self.pk,
                                lambda a: a.balance_minor, where=lambda: models.Account.code == chart.FUND_COMMITTED)
        return Money.minor(units or 0, self.currency)

    @classmethod
    def from_row(cls, x: models.OutcomeContract) -> "OutcomeContract":
        return cls(pk=x.id, title=x.title, status=ContractStatus(x.status), policy_area=x.policy_area,
                   currency=Currency(x.currency), start_date=x.start_date, end_date=x.end_date, created_at=x.created_at,
                   activated_at=x.activated_at, ended_at=x.ended_at, end_reason=x.end_reason, fund_id=x.fund_id,
                   row=x, payment_frequency=PaymentFrequency(x.payment_frequency) if x.payment_frequency else None,
                   service_end_date=x.service_end_date or x.end_date, outcomes_end_date=x.outcomes_end_date or x.end_date,
                   claim_window_days=x.claim_window_days, terminated_on=x.terminated_on, closed_at=x.closed_at,
                   party_ids={"municipality": x.municipality_id, "provider": x.provider_id,
                              "verifier": x.verifier_id, "investor": x.investor_id},
                   dispute_window_days=x.dispute_window_days)


@strawberry.type
class Fund(Node):
    pk: strawberry.Private[int]
    name: str
    currency: Currency
    created_at: datetime
    manager_id: strawberry.Private[int]
    dual_control: bool = strawberry.field(default=False, description=(
        "Four eyes on corrections: reversals, amendments, terminations, penalties and deauthorisations become "
        "change requests that a second fund manager approves."))

    @strawberry.field
    async def manager(self, info: Info) -> Party | None:
        return await load_party(info, self.manager_id)

    async def _position(self, info: Info) -> chart.FundPosition:
        c = ctx(info)

        async def batch(keys: list[int]) -> list[chart.FundPosition]:
            found = await c.db.read(lambda s: chart.fund_positions(s, keys))
            return [found[k] for k in keys]
        return await c.loader("fund_position", lambda: DataLoader(batch)).load(self.pk)

    @strawberry.field(description="Capital paid in, from the ledger.")
    async def capital(self, info: Info) -> Money:
        return Money.minor((await self._position(info)).capital, self.currency)

    @strawberry.field(description="Committed to active contracts and not yet drawn down, from the ledger.")
    async def committed(self, info: Info) -> Money:
        return Money.minor((await self._position(info)).committed, self.currency)

    @strawberry.field(description="capital − committed − paidOut.")
    async def available(self, info: Info) -> Money:
        return Money.minor((await self._position(info)).available, self.currency)

    @strawberry.field(description="The fund's share of outcome payouts posted, from the ledger.")
    async def paid_out(self, info: Info) -> Money:
        return Money.minor((await self._position(info)).paid_out, self.currency)

    @strawberry.field
    async def contracts(self, info: Info, first: int | None = None, after: str | None = None,
                        last: Annotated[int | None, LAST] = None,
                        before: Annotated[str | None, BEFORE] = None) -> Connection[OutcomeContract]:
        clause = visible_contracts(require_actor(info))
        return await child_page(info, "fund_contracts", models.OutcomeContract, models.OutcomeContract.fund_id, self.pk,
                                first=first, after=after, last=last, before=before, to_node=OutcomeContract.from_row,
                                where=None if clause is None else (lambda _m: clause))

    @classmethod
    def from_row(cls, f: models.OutcomesFund) -> "Fund":
        return cls(pk=f.id, name=f.name, currency=Currency(f.currency), created_at=f.created_at, manager_id=f.manager_id,
                   dual_control=f.dual_control)


async def load_terms(info: Info, contract_id: int) -> list[ContractTerms]:
    c = ctx(info)

    async def batch(keys: list[int]) -> list[list[ContractTerms]]:
        def q(s):
            out = defaultdict(list)
            rows = s.execute(select(models.ContractTerms, models.OutcomeContract.currency)
                             .join(models.OutcomeContract, models.OutcomeContract.id == models.ContractTerms.contract_id)
                             .where(models.ContractTerms.contract_id.in_(keys)).order_by(models.ContractTerms.version)).all()
            for row, currency in rows:
                out[row.contract_id].append(ContractTerms.from_row(row, currency))
            return out
        found = await c.db.read(q)
        return [found.get(k, []) for k in keys]
    return await c.loader("terms", lambda: DataLoader(batch)).load(contract_id)


def _evidence_pages(info: Info, status: EvidenceStatus | None, first: int | None, after: str | None,
                    last: int | None, before: str | None):
    """The loader of contracts' evidence pages for these arguments, and the read that fills it."""
    return child_pages(info, "evidence", models.Evidence, models.Evidence.contract_id, first=first, after=after,
                       last=last, before=before, to_node=Evidence.from_row, to_nodes=Evidence.from_table_rows,
                       lazy_columns=EVIDENCE_CONVERTED_ON_READ,
                       filters={"status": status.value} if status else None)


def _selected_evidence_pages(info: Info) -> list:
    """The evidence pages the query asks of the contract being resolved, to read with it in one thread hop.

    Only fields selected directly, without directives, with their arguments coerced as graphql-core
    will coerce them for the field's resolver. Only an optimisation: arguments it cannot take as they
    are (a bad page size, a cursor not ours) leave the page to the evidence field's own resolver,
    which reports them."""
    from graphql import FieldNode
    from graphql.execution.values import VariableValues, get_argument_values
    raw = info._raw_info
    pages: dict[int, tuple] = {}
    try:
        field_def = raw.return_type.fields["evidence"]
        variables = VariableValues({}, raw.variable_values)
        for node in raw.field_nodes[0].selection_set.selections:
            if not isinstance(node, FieldNode) or node.name.value != "evidence" or node.directives:
                continue
            args = get_argument_values(field_def, node, variables)
            loader, read = _evidence_pages(info, args.get("status"), args.get("first"), args.get("after"),
                                           args.get("last"), args.get("before"))
            pages[id(loader)] = (loader, read)
    except Exception:  # noqa: BLE001 - see above
        return []
    return list(pages.values())


async def load_contract(info: Info, contract_id: int, pages: list | None = None) -> OutcomeContract | None:
    """A contract through the request's DataLoader; null when the caller may not see it.

    `pages` (loaders and reads from child_pages) are read in the same thread hop as the contract,
    only if the caller may see it, and primed into their loaders."""
    c = ctx(info)
    actor = require_actor(info)
    clause = visible_contracts(actor)  # the SQL form also lets a payer see the contracts it pays
    # plain rows of the table (the same attribute names as the model), not ORM instances
    table = models.OutcomeContract.__table__

    def read(s, keys: list[int]) -> dict:
        stmt = select(table).where(table.c.id.in_(keys))
        if clause is not None:
            stmt = stmt.where(clause)
        return {x.id: x for x in s.connection().execute(stmt)}

    async def batch(keys: list[int]) -> list[OutcomeContract | None]:
        rows = await c.db.read(lambda s: read(s, keys))
        return [OutcomeContract.from_row(rows[k]) if k in rows else None for k in keys]
    loader = c.loader("contract", lambda: DataLoader(batch))
    if not pages or loader.cache_map.get(contract_id) is not None:
        return await loader.load(contract_id)

    def read_with_pages(s):
        row = visible_contract_row(s.connection(), actor, contract_id)
        return row, ([read_pages(s, [contract_id]) for _loader, read_pages in pages] if row is not None else [])
    # the contract by its key and bounded pages: on the event loop where that is safe (RequestDB.read)
    row, found = await c.db.read(read_with_pages, inline=all(getattr(read, "inline", False) for _l, read in pages))
    contract = OutcomeContract.from_row(row) if row is not None else None
    loader.prime(contract_id, contract)
    for (page_loader, _read), page in zip(pages, found):
        page_loader.prime((contract_id,), page[contract_id])
    return contract


async def load_fund(info: Info, fund_id: int) -> Fund | None:
    c = ctx(info)
    actor = require_actor(info)

    async def batch(keys: list[int]) -> list[Fund | None]:
        def q(s):
            stmt = select(models.OutcomesFund).where(models.OutcomesFund.id.in_(keys))
            clause = visible_funds(actor)
            if clause is not None:
                stmt = stmt.where(clause)
            return {f.id: Fund.from_row(f) for f in s.execute(stmt).scalars()}
        found = await c.db.read(q)
        return [found.get(k) for k in keys]
    return await c.loader("fund", lambda: DataLoader(batch)).load(fund_id)


async def _contracts(info: Info, *, status: ContractStatus | None = None,
                     window: Window) -> Connection[OutcomeContract]:
    actor = require_actor(info)
    C = models.OutcomeContract

    def build(s):
        stmt = select(C)
        if status is not None:
            stmt = stmt.where(C.status == status.value)
        clause = visible_contracts(actor)
        if clause is not None:
            stmt = stmt.where(clause)
        return stmt
    return await keyset_page(info, build, C.id, OutcomeContract.from_row, window)


# --- inputs ---------------------------------------------------------------------------------

@strawberry.input
class AreaSupplementInput:
    area: str
    percent: Decimal


@strawberry.input
class MetricInput:
    code: str
    name: str
    kind: MetricKind
    direction: Direction
    unit_price: MoneyInput
    baseline: Decimal | None = None
    baseline_source: str | None = None
    baseline_method: str | None = None
    threshold: Decimal | None = None
    cap_per_participant: MoneyInput | None = None
    cap_per_period: MoneyInput | None = None
    cap_total: MoneyInput | None = None
    once_only: bool = False
    area_supplements: list[AreaSupplementInput] = strawberry.field(default_factory=list)

    def to_spec(self, i: int) -> contracts.MetricSpec:
        path = f"metrics.{i}"
        money = lambda x, f: x.to_money(f"{path}.{f}") if x is not None else None  # noqa: E731
        return contracts.MetricSpec(
            code=self.code, name=self.name, kind=self.kind.value, direction=self.direction.value,
            unit_price=money(self.unit_price, "unitPrice"), baseline=self.baseline, threshold=self.threshold,
            cap_per_participant=money(self.cap_per_participant, "capPerParticipant"),
            cap_per_period=money(self.cap_per_period, "capPerPeriod"), cap_total=money(self.cap_total, "capTotal"),
            once_only=self.once_only, area_supplements=tuple((a.area, a.percent) for a in self.area_supplements),
            baseline_source=self.baseline_source, baseline_method=self.baseline_method,
        )


@strawberry.input
class PayerShareInput:
    party_id: strawberry.ID
    percent: Decimal
    max_amount: MoneyInput | None = strawberry.field(
        default=None, description="The most this payer pays over the contract; its payouts stop there (PAYER_CAP).")


def _shares(items: list[PayerShareInput]) -> tuple[contracts.ShareSpec, ...]:
    return tuple(contracts.ShareSpec(from_global_id(s.party_id, "Party", field=f"payerShares.{i}.partyId"), s.percent,
                                     s.max_amount.to_money(f"payerShares.{i}.maxAmount") if s.max_amount else None)
                 for i, s in enumerate(items))


@strawberry.input
class CreateFundInput:
    name: str
    manager_id: strawberry.ID
    currency: str
    dual_control: bool = strawberry.field(default=True, description=(
        "Whether reversals, amendments, terminations, penalties and deauthorisations need a second fund manager's "
        "approval (on unless false)."))
    idempotency_key: str | None = None


@strawberry.type
class CreateFundPayload:
    fund: Fund | None
    user_errors: list[UserError]


@strawberry.input
class DepositCapitalInput:
    fund_id: strawberry.ID
    amount: MoneyInput
    effective_date: date
    reference: str
    idempotency_key: str | None = None


@strawberry.type
class DepositCapitalPayload:
    fund: Fund | None
    transaction: LedgerTransaction | None
    user_errors: list[UserError]
    posted_sequence: strawberry.Private[int | None] = None

    @strawberry.field(description=RECEIPT_DESCRIPTION)
    async def receipt(self, info: Info) -> Receipt | None:
        return await receipt_for(info, self.posted_sequence)


@strawberry.input
class CreateContractInput:
    title: str
    fund_id: strawberry.ID
    municipality_id: strawberry.ID
    provider_id: strawberry.ID
    policy_area: str
    start_date: date
    end_date: date
    max_value: MoneyInput
    payer_shares: list[PayerShareInput]
    metrics: list[MetricInput]
    verifier_id: strawberry.ID | None = None
    investor_id: strawberry.ID | None = None
    participant_cap: MoneyInput | None = None
    payment_frequency: PaymentFrequency | None = strawberry.field(
        default=None, description="Gives the contract a payment schedule; leave out for free payout periods.")
    service_end_date: date | None = strawberry.field(default=None, description="Delivery ends (default endDate).")
    outcomes_end_date: date | None = strawberry.field(
        default=None, description="The last day an outcome counts, on or after serviceEndDate (default endDate).")
    claim_window_days: int | None = strawberry.field(
        default=None, description="Days after each period's end to claim its outcomes (default 90).")
    dispute_window_days: int | None = strawberry.field(default=None, description=(
        "Days the provider has to dispute a decision (default 30)."))
    idempotency_key: str | None = None


@strawberry.type
class ContractPayload:
    contract: OutcomeContract | None
    user_errors: list[UserError]


# API.md: every mutation `name(input: NameInput!): NamePayload!` — one named pair per mutation
@strawberry.type
class CreateContractPayload(ContractPayload):
    pass


@strawberry.type
class ActivateContractPayload(ContractPayload):
    pass


@strawberry.type
class AmendContractPayload(ContractPayload):
    change_request: ChangeRequest | None = CHANGE_REQUEST_FIELD


@strawberry.type
class TerminateContractPayload(ContractPayload):
    change_request: ChangeRequest | None = CHANGE_REQUEST_FIELD


@strawberry.type
class CompleteContractPayload(ContractPayload):
    pass


@strawberry.input
class ContractIdInput:
    contract_id: strawberry.ID
    idempotency_key: str | None = None


@strawberry.input
class AmendContractInput:
    contract_id: strawberry.ID
    effective_date: date
    reason: str
    max_value: MoneyInput | None = None
    participant_cap: MoneyInput | None = None
    payer_shares: list[PayerShareInput] | None = None
    metrics: list[MetricInput] | None = None
    idempotency_key: str | None = None


@strawberry.input
class ActivateContractInput(ContractIdInput):
    pass


@strawberry.input
class EndContractInput:
    contract_id: strawberry.ID
    reason: str
    idempotency_key: str | None = None


@strawberry.input
class TerminateContractInput(EndContractInput):
    effective_date: date | None = strawberry.field(
        default=None, description="The day the termination takes effect (default today): outcomes up to it stay payable.")


@strawberry.input(description="Open a closed claim window of a contract until a new deadline.")
class GrantLateClaimInput:
    contract_id: strawberry.ID
    reason: str = strawberry.field(description="Why the claim is late; kept in the audit trail.")
    until: date = strawberry.field(description="The new deadline for claims this grant covers.")
    participant_id: strawberry.ID | None = strawberry.field(default=None, description="Only this participant (default: all).")
    metric_code: str | None = strawberry.field(default=None, description="Only this metric (default: all).")
    idempotency_key: str | None = None


@strawberry.type(description="A late claim granted by a fund manager.")
class LateClaimGrant:
    participant_id: strawberry.Private[int | None]
    metric_code: str | None
    reason: str
    until: date
    granted_by: str
    granted_at: datetime


@strawberry.type
class GrantLateClaimPayload:
    late_claim: LateClaimGrant | None
    contract: OutcomeContract | None
    user_errors: list[UserError]


@strawberry.input
class CompleteContractInput(EndContractInput):
    pass


@strawberry.input
class LiftSuspensionInput(EndContractInput):
    pass


@strawberry.input
class IssueSanctionInput:
    contract_id: strawberry.ID
    level: SanctionLevel
    reason: str
    penalty: MoneyInput | None = None
    idempotency_key: str | None = None


@strawberry.type
class SanctionPayload:
    sanction: Sanction | None
    contract: OutcomeContract | None
    user_errors: list[UserError]


@strawberry.type
class IssueSanctionPayload(SanctionPayload):
    change_request: ChangeRequest | None = CHANGE_REQUEST_FIELD


@strawberry.type
class LiftSuspensionPayload(SanctionPayload):
    pass


def _opt(gid, type_name: str, field: str) -> int | None:
    return None if gid is None else from_global_id(gid, type_name, field=field)


def _contract_fields(x: models.OutcomeContract) -> dict:
    return {"contract": OutcomeContract.from_row(x)}


def _controlled_contract_fields(x) -> dict:
    """The contract, or under dual control the change request (and a null contract)."""
    return request_fields(x) if is_request(x) else {**_contract_fields(x), "change_request": None}


@strawberry.type
class ContractQueries:
    @strawberry.field
    async def funds(self, info: Info, first: int | None = None, after: str | None = None,
                    last: Annotated[int | None, LAST] = None,
                    before: Annotated[str | None, BEFORE] = None) -> Connection[Fund]:
        actor = require_actor(info)
        F = models.OutcomesFund
        clause = visible_funds(actor)
        return await keyset_page(info, lambda s: select(F) if clause is None else select(F).where(clause), F.id,
                                 Fund.from_row, Window.of(first, after, last, before))

    @strawberry.field
    async def fund(self, info: Info, id: strawberry.ID) -> Fund | None:
        try:
            return await load_fund(info, from_global_id(id, "Fund"))
        except DomainError as err:
            raise query_error(err) from None

    @strawberry.field
    async def contracts(self, info: Info, status: ContractStatus | None = None, first: int | None = None,
                        after: str | None = None, last: Annotated[int | None, LAST] = None,
                        before: Annotated[str | None, BEFORE] = None) -> Connection[OutcomeContract]:
        return await _contracts(info, status=status, window=Window.of(first, after, last, before))

    @strawberry.field
    async def contract(self, info: Info, id: strawberry.ID) -> OutcomeContract | None:
        try:
            # the evidence pages it asks for come in the same thread hop as the contract
            return await load_contract(info, from_global_id(id, "OutcomeContract"), _selected_evidence_pages(info))
        except DomainError as err:
            raise query_error(err) from None


@strawberry.type
class ContractMutations:
    @strawberry.mutation
    async def create_fund(self, info: Info, input: CreateFundInput) -> CreateFundPayload:
        def run(uow, actor):
            manager = from_global_id(input.manager_id, "Party", field="managerId")
            return audited(uow, actor, "createFund", input, lambda: funds.create_fund(
                uow, actor=actor, name=input.name, manager_id=manager, currency=input.currency,
                dual_control=input.dual_control))
        return await mutate(info, CreateFundPayload, run, lambda f: {"fund": Fund.from_row(f)})

    @strawberry.mutation
    async def deposit_capital(self, info: Info, input: DepositCapitalInput) -> DepositCapitalPayload:
        def run(uow, actor):
            fund_id = from_global_id(input.fund_id, "Fund", field="fundId")
            tx = audited(uow, actor, "depositCapital", input, lambda: funds.deposit_capital(
                uow, actor=actor, fund_id=fund_id, amount=input.amount.to_money(), effective_date=input.effective_date,
                reference=input.reference))
            return tx, funds.get_fund(uow, fund_id)
        return await mutate(info, DepositCapitalPayload, run, lambda r: {
            "transaction": LedgerTransaction.from_row(r[0]), "fund": Fund.from_row(r[1]), "posted_sequence": r[0].sequence})

    @strawberry.mutation
    async def create_contract(self, info: Info, input: CreateContractInput) -> CreateContractPayload:
        def run(uow, actor):
            terms = contracts.TermsSpec(
                max_value=input.max_value.to_money("maxValue"),
                participant_cap=input.participant_cap.to_money("participantCap") if input.participant_cap else None,
                payer_shares=_shares(input.payer_shares),
                metrics=tuple(x.to_spec(i) for i, x in enumerate(input.metrics)),
            )
            return audited(uow, actor, "createContract", input, lambda: contracts.create_contract(
                uow, actor=actor, title=input.title, fund_id=from_global_id(input.fund_id, "Fund", field="fundId"),
                municipality_id=from_global_id(input.municipality_id, "Party", field="municipalityId"),
                provider_id=from_global_id(input.provider_id, "Party", field="providerId"),
                verifier_id=_opt(input.verifier_id, "Party", "verifierId"),
                investor_id=_opt(input.investor_id, "Party", "investorId"), policy_area=input.policy_area,
                start_date=input.start_date, end_date=input.end_date, terms=terms,
                payment_frequency=input.payment_frequency.value if input.payment_frequency else None,
                service_end_date=input.service_end_date, outcomes_end_date=input.outcomes_end_date,
                claim_window_days=input.claim_window_days,
                dispute_window_days=30 if input.dispute_window_days is None else input.dispute_window_days))
        return await mutate(info, CreateContractPayload, run, _contract_fields)

    @strawberry.mutation(description="DRAFT → ACTIVE; each payer commits its share of maxValue (or its maxAmount); the "
                                     "fund's share must be available (INSUFFICIENT_FUND_CAPITAL if short).")
    async def activate_contract(self, info: Info, input: ActivateContractInput) -> ActivateContractPayload:
        def run(uow, actor):
            cid = from_global_id(input.contract_id, "OutcomeContract", field="contractId")
            return audited(uow, actor, "activateContract", input,
                           lambda: contracts.activate_contract(uow, actor=actor, contract_id=cid))
        return await mutate(info, ActivateContractPayload, run, _contract_fields)

    @strawberry.mutation(description="A new terms version from effectiveDate; parts not given are carried over.")
    async def amend_contract(self, info: Info, input: AmendContractInput) -> AmendContractPayload:
        def run(uow, actor):
            cid = from_global_id(input.contract_id, "OutcomeContract", field="contractId")
            return audited(uow, actor, "amendContract", input, lambda: change_requests.submit(
                uow, actor=actor, kind="AMEND_CONTRACT", contract_id=cid, effective_date=input.effective_date,
                reason=input.reason,
                max_value=input.max_value.to_money("maxValue") if input.max_value else None,
                participant_cap=input.participant_cap.to_money("participantCap") if input.participant_cap else None,
                payer_shares=_shares(input.payer_shares) if input.payer_shares is not None else None,
                metrics=[x.to_spec(i) for i, x in enumerate(input.metrics)] if input.metrics is not None else None))
        return await mutate(info, AmendContractPayload, run, _controlled_contract_fields)

    @strawberry.mutation(description="Ends the contract on effectiveDate: outcomes up to then stay payable within their "
                                     "claim windows; the commitments are released when the last window has closed.")
    async def terminate_contract(self, info: Info, input: TerminateContractInput) -> TerminateContractPayload:
        def run(uow, actor):
            cid = from_global_id(input.contract_id, "OutcomeContract", field="contractId")
            return audited(uow, actor, "terminateContract", input, lambda: change_requests.submit(
                uow, actor=actor, kind="TERMINATE_CONTRACT", contract_id=cid, reason=input.reason,
                effective_date=input.effective_date))
        return await mutate(info, TerminateContractPayload, run, _controlled_contract_fields)

    @strawberry.mutation(description="A fund manager lets outcomes be claimed after their claim window closed, until a "
                                     "new deadline (refused on a closed contract).")
    async def grant_late_claim(self, info: Info, input: GrantLateClaimInput) -> GrantLateClaimPayload:
        from ledger import evidence as ev
        from ledger.models import utcnow

        def run(uow, actor):
            cid = from_global_id(input.contract_id, "OutcomeContract", field="contractId")
            pid = _opt(input.participant_id, "Participant", "participantId")
            grant = audited(uow, actor, "grantLateClaim", input, lambda: ev.grant_late_claim(
                uow, actor=actor, contract_id=cid, reason=input.reason, until=input.until, participant_id=pid,
                metric_code=input.metric_code, today=utcnow().date()))
            return grant, contracts.get_contract(uow, cid)
        return await mutate(info, GrantLateClaimPayload, run, lambda r: {
            "late_claim": LateClaimGrant(participant_id=r[0].participant_id, metric_code=r[0].metric_code,
                                         reason=r[0].reason, until=r[0].until, granted_by=r[0].granted_by,
                                         granted_at=r[0].granted_at),
            "contract": OutcomeContract.from_row(r[1])})

    @strawberry.mutation(description="Closes a contract at the end of its term; releases what is left of the commitment.")
    async def complete_contract(self, info: Info, input: CompleteContractInput) -> CompleteContractPayload:
        def run(uow, actor):
            cid = from_global_id(input.contract_id, "OutcomeContract", field="contractId")
            return audited(uow, actor, "completeContract", input,
                           lambda: contracts.complete_contract(uow, actor=actor, contract_id=cid, reason=input.reason))
        return await mutate(info, CompleteContractPayload, run, _contract_fields)

    @strawberry.mutation(description="WARNING, PENALTY (an obligation to the municipality), SUSPENSION or DEAUTHORISATION.")
    async def issue_sanction(self, info: Info, input: IssueSanctionInput) -> IssueSanctionPayload:
        def run(uow, actor):
            cid = from_global_id(input.contract_id, "OutcomeContract", field="contractId")
            sanction = audited(uow, actor, "issueSanction", input, lambda: change_requests.submit(
                uow, actor=actor, kind="ISSUE_SANCTION", contract_id=cid, level=input.level.value, reason=input.reason,
                penalty=input.penalty.to_money("penalty") if input.penalty else None))
            return sanction, contracts.get_contract(uow, cid)
        return await mutate(info, IssueSanctionPayload, run, lambda r: request_fields(r[0]) if is_request(r[0]) else {
            "sanction": Sanction.from_row(r[0], r[1].currency), "contract": OutcomeContract.from_row(r[1]),
            "change_request": None})

    @strawberry.mutation(description="SUSPENDED → ACTIVE.")
    async def lift_suspension(self, info: Info, input: LiftSuspensionInput) -> LiftSuspensionPayload:
        def run(uow, actor):
            cid = from_global_id(input.contract_id, "OutcomeContract", field="contractId")
            sanction = audited(uow, actor, "liftSuspension", input, lambda: sanctions.lift_suspension(
                uow, actor=actor, contract_id=cid, reason=input.reason))
            return sanction, contracts.get_contract(uow, cid)
        return await mutate(info, LiftSuspensionPayload, run, lambda r: {
            "sanction": Sanction.from_row(r[0], r[1].currency), "contract": OutcomeContract.from_row(r[1])})
