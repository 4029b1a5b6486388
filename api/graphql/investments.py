"""Impact bonds: investments, drawdowns, waterfall distributions and closing (WATERFALL.md).

Who sees what: ADMIN, FUND_MANAGER and AUDITOR everything; the contract's PROVIDER the
investments that pre-finance it and their distributions; an INVESTOR only its own investments,
their drawdowns and the distribution lines paid to them; nobody else anything. An id the caller
may not see answers exactly like a missing one.
"""
from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

import strawberry
from sqlalchemy import select
from sqlalchemy.orm import object_session
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from api.graphql.base import (
    BEFORE, LAST, Connection, Money, MoneyInput, Node, UserError, Window, audited, ctx, from_global_id, keyset_page,
    mutate, query_error, require_actor,
)
from api.graphql.ledger import LedgerTransaction, load_transaction
from api.graphql.parties import Party, load_party
from ledger import investments as inv
from ledger import models
from ledger.access import Actor
from ledger.errors import DomainError

ContractRef = Annotated["OutcomeContract", strawberry.lazy("api.graphql.contracts")]  # noqa: F821
I, C = models.Investment, models.OutcomeContract


@strawberry.enum(description="Who is repaid first: SENIOR investors before SUBORDINATE ones.")
class Tranche(enum.Enum):
    SENIOR = "SENIOR"
    SUBORDINATE = "SUBORDINATE"


@strawberry.enum(description="PRINCIPAL repays money lent, RETURN is the capped return on it, "
                             "RESIDUAL is what stays with the provider after every investor got its due.")
class DistributionLineKind(enum.Enum):
    PRINCIPAL = "PRINCIPAL"
    RETURN = "RETURN"
    RESIDUAL = "RESIDUAL"


# --- who sees what ---------------------------------------------------------------------------

def investment_scope(actor: Actor):
    """A WHERE clause on investments (joined to their contract) for what the actor may see; None: all."""
    if actor.sees_everything:
        return None
    if actor.role == "INVESTOR":
        return I.investor_id == actor.party_id
    if actor.role == "PROVIDER":
        return I.contract_id.in_(select(C.id).where(C.provider_id == actor.party_id))
    return I.id.is_(None)


def distribution_scope(actor: Actor):
    D = models.WaterfallDistribution
    clause = investment_scope(actor)
    if clause is None:
        return None
    return D.contract_id.in_(select(I.contract_id).where(clause))


def _visible_investment_ids(s, actor: Actor, contract_id: int) -> set[int] | None:
    clause = investment_scope(actor)
    if clause is None:
        return None
    return set(s.execute(select(I.id).where(I.contract_id == contract_id, clause)).scalars())


# --- types -------------------------------------------------------------------------------------

@strawberry.type(description="Part of an investor's principal paid to the provider, posted to the ledger.")
class Drawdown(Node):
    pk: strawberry.Private[int]
    amount: Money = strawberry.field(description="What the investor paid the provider.")
    paid_on: date = strawberry.field(description="When the investor paid the provider.")
    reference: str = strawberry.field(description="The payment's reference, e.g. a bank transfer id.")
    recorded_by: str = strawberry.field(description="Who recorded the drawdown.")
    recorded_at: datetime = strawberry.field(description="When it was recorded.")
    transaction_sequence: strawberry.Private[int]

    @strawberry.field(description="The ledger transaction of the drawdown.")
    async def transaction(self, info: Info) -> LedgerTransaction | None:
        return await load_transaction(info, self.transaction_sequence)

    @classmethod
    def from_row(cls, d: models.Drawdown) -> "Drawdown":
        return cls(pk=d.id, amount=Money.minor(d.amount_minor, d.currency), paid_on=d.paid_on, reference=d.reference,
                   recorded_by=d.recorded_by, recorded_at=d.recorded_at, transaction_sequence=d.transaction_sequence)


@strawberry.type(description="An investor's stake in a contract's impact bond: what it put in and got back.")
class Investment(Node):
    pk: strawberry.Private[int]
    contract_pk: strawberry.Private[int]
    investor_id: strawberry.Private[int]
    tranche: Tranche = strawberry.field(description="SENIOR is repaid before SUBORDINATE.")
    principal: Money = strawberry.field(description="The principal the investor committed.")
    return_cap: Decimal = strawberry.field(
        description="The most return, as a fraction of principal drawn: \"0.20\" is at most 20 % on top.")
    drawn: Money = strawberry.field(description="Principal paid to the provider so far.")
    repaid_principal: Money = strawberry.field(description="Principal repaid out of outcome receipts.")
    return_paid: Money = strawberry.field(description="Return paid out of outcome receipts, never above the cap.")
    return_percent: Decimal | None = strawberry.field(
        description="Return paid as a percent of principal drawn (two decimals); null before any drawdown.")
    multiple: Decimal | None = strawberry.field(
        description="(Principal repaid + return) / principal drawn, two decimals: 1.20 is 20 % gained, 0.30 is 70 % "
                    "lost; null before any drawdown.")
    loss: Money = strawberry.field(
        description="Principal written off when the investments were closed; zero while they are open.")
    created_by: str = strawberry.field(description="Who recorded the investment.")
    created_at: datetime = strawberry.field(description="When it was recorded.")

    @strawberry.field(description="The investor.")
    async def investor(self, info: Info) -> Party | None:
        return await load_party(info, self.investor_id)

    @strawberry.field(description="The contract, if the caller may see it (an investor sees its investments only).")
    async def contract(self, info: Info) -> ContractRef | None:
        from api.graphql.contracts import load_contract
        return await load_contract(info, self.contract_pk)

    @strawberry.field(description="The drawdowns of this investment, oldest first.")
    async def drawdowns(self, info: Info) -> list[Drawdown]:
        c = ctx(info)

        async def batch(keys: list[int]) -> list[list[Drawdown]]:
            def q(s):
                out: dict[int, list[Drawdown]] = {k: [] for k in keys}
                for d in s.execute(select(models.Drawdown).where(models.Drawdown.investment_id.in_(keys))
                                   .order_by(models.Drawdown.id)).scalars():
                    out[d.investment_id].append(Drawdown.from_row(d))
                return out
            found = await c.db.read(q)
            return [found[k] for k in keys]
        return await c.loader("investment_drawdowns", lambda: DataLoader(batch)).load(self.pk)

    @classmethod
    def from_position(cls, p: inv.InvestmentPosition) -> "Investment":
        i, cur = p.investment, p.investment.currency
        return cls(pk=i.id, contract_pk=i.contract_id, investor_id=i.investor_id, tranche=Tranche(i.tranche),
                   principal=Money.minor(i.principal_minor, cur), return_cap=i.return_cap,
                   drawn=Money.minor(p.drawn, cur), repaid_principal=Money.minor(p.repaid_principal, cur),
                   return_paid=Money.minor(p.return_paid, cur), return_percent=p.return_percent, multiple=p.multiple,
                   loss=Money.minor(p.loss, cur), created_by=i.created_by, created_at=i.created_at)


def _positions(s, actor: Actor, contract_id: int) -> list[Investment]:
    visible = _visible_investment_ids(s, actor, contract_id)
    return [Investment.from_position(p) for p in inv.positions(s, [contract_id])[contract_id]
            if visible is None or p.investment.id in visible]


async def load_investment(info: Info, pk: int) -> Investment | None:
    """An investment with its figures, through the request's DataLoader; null when not the caller's to see."""
    c = ctx(info)
    actor = require_actor(info)

    async def batch(keys: list[int]) -> list[Investment | None]:
        def q(s):
            contract_ids = sorted(set(s.execute(select(I.contract_id).where(I.id.in_(keys))).scalars()))
            found = {x.pk: x for cid in contract_ids for x in _positions(s, actor, cid)}
            return [found.get(k) for k in keys]
        return await c.db.read(q)
    return await c.loader("investment", lambda: DataLoader(batch)).load(pk)


@strawberry.type
class DistributionLine:
    investment_id: strawberry.Private[int | None]
    kind: DistributionLineKind = strawberry.field(description="PRINCIPAL, RETURN or RESIDUAL.")
    amount: Money = strawberry.field(description="What this line pays.")

    @strawberry.field(description="The investment paid; null for the RESIDUAL that stays with the provider.")
    async def investment(self, info: Info) -> Investment | None:
        return None if self.investment_id is None else await load_investment(info, self.investment_id)


@strawberry.type(description="The waterfall run again on the recorded inputs, compared figure by figure.")
class DistributionRecomputed:
    matches: bool = strawberry.field(description="True when every recomputed figure equals the stored one.")
    inputs_hash: str = strawberry.field(description="SHA-256 of the recorded inputs, recomputed.")
    total: Money = strawberry.field(description="The total, recomputed.")
    differences: list[str] = strawberry.field(description="What differs, if anything.")


@strawberry.type(description="Outcome receipts of a contract shared out by the waterfall: senior principal, senior "
                             "return, subordinate principal, subordinate return, and the residual to the provider.")
class Distribution(Node):
    pk: strawberry.Private[int]
    contract_pk: strawberry.Private[int]
    up_to: date = strawberry.field(description="Payments received up to this date were distributed.")
    lines: list[DistributionLine] = strawberry.field(
        description="In waterfall order. An investor sees only the lines paid to it.")
    total: Money = strawberry.field(description="The receipts distributed (what the provider received, less "
                                                "what it repaid, not distributed before).")
    inputs_hash: str = strawberry.field(description="SHA-256 of the canonical inputs: anyone can recompute it.")
    inputs: str = strawberry.field(description="The canonical JSON of every input; its SHA-256 is inputsHash.")
    distributed_by: str = strawberry.field(description="Who ran the distribution.")
    distributed_at: datetime = strawberry.field(description="When it was run.")
    transaction_sequence: strawberry.Private[int | None]

    @strawberry.field(description="The contract, if the caller may see it.")
    async def contract(self, info: Info) -> ContractRef | None:
        from api.graphql.contracts import load_contract
        return await load_contract(info, self.contract_pk)

    @strawberry.field(description="The ledger transaction that made the provider owe the investors their lines; "
                                  "null when everything stayed with the provider.")
    async def transaction(self, info: Info) -> LedgerTransaction | None:
        return None if self.transaction_sequence is None else await load_transaction(info, self.transaction_sequence)

    @strawberry.field(description="The waterfall run again on the recorded inputs, compared figure by figure.")
    async def recomputed(self, info: Info) -> DistributionRecomputed:
        def q(s):
            r = inv.recompute(inv.get_distribution(s, self.pk))
            return DistributionRecomputed(matches=r.matches, inputs_hash=r.inputs_hash,
                                          total=Money.minor(r.total_minor, self.total.currency),
                                          differences=list(r.differences))
        return await ctx(info).db.read(q)

    @classmethod
    def from_row(cls, d: models.WaterfallDistribution, visible: set[int] | None = None) -> "Distribution":
        cur = d.currency
        return cls(pk=d.id, contract_pk=d.contract_id, up_to=d.up_to,
                   lines=[DistributionLine(investment_id=x.investment_id, kind=DistributionLineKind(x.kind),
                                           amount=Money.minor(x.amount_minor, cur))
                          for x in d.lines if visible is None or x.investment_id in visible],
                   total=Money.minor(d.total_minor, cur), inputs_hash=d.inputs_hash, inputs=d.inputs,
                   distributed_by=d.distributed_by, distributed_at=d.distributed_at,
                   transaction_sequence=d.transaction_sequence)


def _lines_visible_to(s, actor: Actor, contract_id: int) -> set[int] | None:
    # an investor sees its own lines only; the provider every line of its contract
    if actor.role != "INVESTOR":
        return None
    return _visible_investment_ids(s, actor, contract_id)


def _distributions(s, actor: Actor, *, contract_id: int | None = None, pk: int | None = None) -> list[Distribution]:
    D = models.WaterfallDistribution
    stmt = select(D).order_by(D.id)
    if contract_id is not None:
        stmt = stmt.where(D.contract_id == contract_id)
    if pk is not None:
        stmt = stmt.where(D.id == pk)
    clause = distribution_scope(actor)
    if clause is not None:
        stmt = stmt.where(clause)
    rows = s.execute(stmt).scalars().all()
    visible = {c: _lines_visible_to(s, actor, c) for c in {d.contract_id for d in rows}}
    return [Distribution.from_row(d, visible[d.contract_id]) for d in rows]


async def load_distribution(info: Info, pk: int) -> Distribution | None:
    actor = require_actor(info)
    found = await ctx(info).db.read(lambda s: _distributions(s, actor, pk=pk))
    return found[0] if found else None


async def load_drawdown(info: Info, pk: int) -> Drawdown | None:
    actor = require_actor(info)

    def q(s):
        stmt = select(models.Drawdown).join(I, I.id == models.Drawdown.investment_id).where(models.Drawdown.id == pk)
        clause = investment_scope(actor)
        row = s.execute(stmt if clause is None else stmt.where(clause)).scalar_one_or_none()
        return Drawdown.from_row(row) if row else None
    return await ctx(info).db.read(q)


ContractArg = Annotated[strawberry.ID, strawberry.argument(description="The contract's ID.")]


# --- queries -----------------------------------------------------------------------------------

@strawberry.type
class InvestmentQueries:
    @strawberry.field(description="A contract's investments with what each investor put in and got back. An investor "
                                  "sees only its own; callers without a part in the contract see none.")
    async def investments(self, info: Info, contract_id: ContractArg) -> list[Investment]:
        actor = require_actor(info)
        try:
            cid = from_global_id(contract_id, "OutcomeContract", field="contractId")
        except DomainError as err:
            raise query_error(err) from None
        return await ctx(info).db.read(lambda s: _positions(s, actor, cid))

    @strawberry.field(description="A contract's waterfall distributions, oldest first; `distributionsConnection` is "
                                  "the paged form, with totalCount and paging both ways.")
    async def distributions(self, info: Info, contract_id: ContractArg) -> list[Distribution]:
        actor = require_actor(info)
        try:
            cid = from_global_id(contract_id, "OutcomeContract", field="contractId")
        except DomainError as err:
            raise query_error(err) from None
        return await ctx(info).db.read(lambda s: _distributions(s, actor, contract_id=cid))

    @strawberry.field(description="A contract's waterfall distributions a page at a time, oldest first: the same "
                                  "ones as `distributions`; none for a contract you have no part in.")
    async def distributions_connection(
        self, info: Info, contract_id: ContractArg, first: int | None = None, after: str | None = None,
        last: Annotated[int | None, LAST] = None, before: Annotated[str | None, BEFORE] = None,
    ) -> Connection[Distribution]:
        actor = require_actor(info)
        window = Window.of(first, after, last, before)
        try:
            cid = from_global_id(contract_id, "OutcomeContract", field="contractId")
        except DomainError as err:
            raise query_error(err) from None
        D = models.WaterfallDistribution
        lines = await ctx(info).db.read(lambda s: _lines_visible_to(s, actor, cid))

        def build(s):
            clause = distribution_scope(actor)
            stmt = select(D).where(D.contract_id == cid)
            return stmt if clause is None else stmt.where(clause)
        return await keyset_page(info, build, D.id, lambda d: Distribution.from_row(d, lines), window)

    @strawberry.field(description="One waterfall distribution; null if it does not exist or is not yours to see.")
    async def distribution(self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(
            description="The distribution's ID.")]) -> Distribution | None:
        require_actor(info)
        try:
            pk = from_global_id(id, "Distribution")
        except DomainError as err:
            raise query_error(err) from None
        return await load_distribution(info, pk)


# --- mutations ---------------------------------------------------------------------------------

@strawberry.input(description="An investor's commitment to pre-finance a contract's provider.")
class CreateInvestmentInput:
    contract_id: strawberry.ID = strawberry.field(description="The contract; it must name this investor.")
    investor_id: strawberry.ID = strawberry.field(description="A party of role INVESTOR.")
    tranche: Tranche = strawberry.field(description="SENIOR is repaid before SUBORDINATE.")
    principal: MoneyInput = strawberry.field(description="The principal committed, in the contract's currency.")
    return_cap: Decimal = strawberry.field(
        description="The most return as a fraction of principal drawn, 0 to 10: \"0.20\" is at most 20 % on top.")
    idempotency_key: str | None = None


@strawberry.type
class CreateInvestmentPayload:
    investment: Investment | None
    user_errors: list[UserError]


@strawberry.input(description="The investor pays the provider part of its committed principal.")
class RecordDrawdownInput:
    investment_id: strawberry.ID = strawberry.field(description="The investment drawn on.")
    amount: MoneyInput = strawberry.field(description="At most the principal not yet drawn.")
    paid_on: date = strawberry.field(description="When the investor paid the provider.")
    reference: str = strawberry.field(description="The payment's reference, e.g. a bank transfer id.")
    idempotency_key: str | None = None


@strawberry.type
class RecordDrawdownPayload:
    drawdown: Drawdown | None
    user_errors: list[UserError]


@strawberry.input(description="Share out what the provider has received for the contract and not yet distributed.")
class DistributeReceiptsInput:
    contract_id: strawberry.ID = strawberry.field(description="The contract whose receipts are distributed.")
    up_to: date = strawberry.field(description="Count payments received (and repaid) up to this date.")
    idempotency_key: str | None = None


@strawberry.type
class DistributeReceiptsPayload:
    distribution: Distribution | None
    user_errors: list[UserError]


@strawberry.input(description="End a contract's investments: principal not repaid is written off as the "
                              "investors' loss. The contract must have ended.")
class CloseInvestmentsInput:
    contract_id: strawberry.ID = strawberry.field(description="An ended contract with investments.")
    idempotency_key: str | None = None


@strawberry.type
class CloseInvestmentsPayload:
    investments: list[Investment] | None = strawberry.field(description="The investments as closed, with their loss.")
    user_errors: list[UserError]


def _positions_of(row) -> list[Investment]:
    """The figures of the investments of `row`'s contract, read in the unit of work that made `row`."""
    return [Investment.from_position(p) for p in inv.positions(object_session(row), [row.contract_id])[row.contract_id]]


@strawberry.type
class InvestmentMutations:
    @strawberry.mutation(description="An investor's stake in a contract's impact bond (FUND_MANAGER).")
    async def create_investment(self, info: Info, input: CreateInvestmentInput) -> CreateInvestmentPayload:
        def run(uow, actor):
            return audited(uow, actor, "createInvestment", input, lambda: inv.create_investment(
                uow, actor=actor, contract_id=from_global_id(input.contract_id, "OutcomeContract", field="contractId"),
                investor_id=from_global_id(input.investor_id, "Party", field="investorId"),
                tranche=input.tranche.value, principal=input.principal.to_money("principal"),
                return_cap=input.return_cap))

        return await mutate(info, CreateInvestmentPayload, run,
                            lambda row: {"investment": next(x for x in _positions_of(row) if x.pk == row.id)})

    @strawberry.mutation(description="Record that an investor paid the provider part of its principal; posted to the "
                                     "ledger (FUND_MANAGER). More than is left to draw is DRAWDOWN_EXCEEDS_PRINCIPAL.")
    async def record_drawdown(self, info: Info, input: RecordDrawdownInput) -> RecordDrawdownPayload:
        def run(uow, actor):
            return audited(uow, actor, "recordDrawdown", input, lambda: inv.record_drawdown(
                uow, actor=actor, investment_id=from_global_id(input.investment_id, "Investment", field="investmentId"),
                amount=input.amount.to_money(), paid_on=input.paid_on, reference=input.reference))
        return await mutate(info, RecordDrawdownPayload, run, lambda d: {"drawdown": Drawdown.from_row(d)})

    @strawberry.mutation(description="Run the waterfall over the receipts not yet distributed and post what the "
                                     "provider now owes each investor (FUND_MANAGER). Nothing received is "
                                     "NOTHING_RECEIVED.")
    async def distribute_receipts(self, info: Info, input: DistributeReceiptsInput) -> DistributeReceiptsPayload:
        def run(uow, actor):
            return audited(uow, actor, "distributeReceipts", input, lambda: inv.distribute_receipts(
                uow, actor=actor, contract_id=from_global_id(input.contract_id, "OutcomeContract", field="contractId"),
                up_to=input.up_to))
        return await mutate(info, DistributeReceiptsPayload, run, lambda d: {"distribution": Distribution.from_row(d)})

    @strawberry.mutation(description="Close an ended contract's investments: principal not repaid is written off as "
                                     "the investors' loss, and the provider owes nothing more of it (FUND_MANAGER).")
    async def close_investments(self, info: Info, input: CloseInvestmentsInput) -> CloseInvestmentsPayload:
        def run(uow, actor):
            return audited(uow, actor, "closeInvestments", input, lambda: inv.close_investments(
                uow, actor=actor, contract_id=from_global_id(input.contract_id, "OutcomeContract", field="contractId")))

        return await mutate(info, CloseInvestmentsPayload, run, lambda row: {"investments": _positions_of(row)})


@strawberry.type(description="What the investors in a contract's impact bond put in and got back: all of them "
                             "together, or one tranche. The figures the debate on profits in welfare asks for.")
class InvestorReturns:
    contract: str = strawberry.field(description="The contract's title.")
    tranche: Tranche | None = strawberry.field(description="Null for all the contract's investments together.")
    investments: int = strawberry.field(description="How many investments the row covers.")
    put_in: Money = strawberry.field(description="Principal drawn: what the investors paid the provider.")
    got_back: Money = strawberry.field(description="Principal repaid plus return.")
    return_paid: Money = strawberry.field(description="The return on top of the principal repaid.")
    return_percent: Decimal | None = strawberry.field(description="Return as a percent of what was put in.")
    multiple: Decimal | None = strawberry.field(description="Got back / put in: above 1.00 a gain, below a loss.")
    loss: Money = strawberry.field(description="Principal written off when the investments were closed.")

    @classmethod
    def of(cls, title: str, r: inv.InvestorReturns) -> "InvestorReturns":
        cur = r.currency
        return cls(contract=title, tranche=None if r.tranche is None else Tranche(r.tranche), investments=r.investments,
                   put_in=Money.minor(r.drawn_minor, cur), got_back=Money.minor(r.returned_minor, cur),
                   return_paid=Money.minor(r.return_minor, cur), return_percent=r.return_percent,
                   multiple=r.multiple, loss=Money.minor(r.loss_minor, cur))


# how `node(id:)` finds these types, within what the caller may see
NODE_LOADERS = {"Investment": load_investment, "Drawdown": load_drawdown, "Distribution": load_distribution}
