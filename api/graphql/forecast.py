"""`forecast`: what each payer may still have to pay, per contract and scheduled period."""
from __future__ import annotations

from datetime import date
from typing import Annotated

import strawberry
from strawberry.types import Info

from api.graphql.base import (
    BEFORE, LAST, Connection, Money, Window, ctx, decode_key_cursor, from_global_id, list_page, query_error,
    require_actor,
)
from api.graphql.parties import Party, load_party
from ledger import forecast as fc
from ledger.errors import DomainError
from ledger.models import utcnow
from ledger.reads import visible_contracts


@strawberry.type(description="What one payer may still pay on one contract for one scheduled period.")
class ForecastLine:
    contract_pk: strawberry.Private[int]
    party_id: strawberry.Private[int]
    period_start: date = strawberry.field(description="First day of the period.")
    period_end: date = strawberry.field(description="Last day of the period.")
    claim_deadline: date | None = strawberry.field(description="Claims for the period close after this day (null: no schedule).")
    certain: Money = strawberry.field(description="Verified outcomes not yet paid: due in the period's next payout.")
    probable: Money = strawberry.field(description="Outcomes submitted and not yet decided by the verifier.")
    maximum: Money = strawberry.field(description="The most the caps still allow for this period.")

    @strawberry.field(description="The contract.")
    async def contract(self, info: Info) -> "OutcomeContract | None":
        from api.graphql.contracts import load_contract
        return await load_contract(info, self.contract_pk)

    @strawberry.field(description="The payer.")
    async def party(self, info: Info) -> Party | None:
        return await load_party(info, self.party_id)


FundFilterArg = Annotated[strawberry.ID | None, strawberry.argument(description="Only this fund's contracts.")]
ContractFilterArg = Annotated[strawberry.ID | None, strawberry.argument(description="Only this contract.")]


async def _forecast(info: Info, fund_id: strawberry.ID | None, contract_id: strawberry.ID | None) -> list:
    """The forecast lines the caller may see, as the ledger computes them."""
    actor = require_actor(info)
    if actor.role == "VERIFIER":  # a verifier decides on evidence; money to come is not its business
        return []
    try:
        fid = None if fund_id is None else from_global_id(fund_id, "Fund", field="fundId")
        cid = None if contract_id is None else from_global_id(contract_id, "OutcomeContract", field="contractId")
    except DomainError as err:
        raise query_error(err) from None
    lines = await ctx(info).db.read(lambda s: fc.forecast(s, fund_id=fid, contract_id=cid,
                                                          scope=visible_contracts(actor), today=utcnow().date()))
    if actor.role == "MUNICIPALITY":  # a payer sees its own obligations to come, not the other payers'
        lines = [x for x in lines if x.party_id == actor.party_id]
    return lines


def _line(x) -> ForecastLine:
    return ForecastLine(contract_pk=x.contract_id, party_id=x.party_id, period_start=x.period_start,
                        period_end=x.period_end, claim_deadline=x.claim_deadline,
                        certain=Money.minor(x.certain_minor, x.currency),
                        probable=Money.minor(x.probable_minor, x.currency),
                        maximum=Money.minor(x.maximum_minor, x.currency))


def _line_key(x) -> tuple:
    # one line per contract, payer and period: the key names a line for good while the amounts move
    return (x.contract_id, x.party_id, x.period_start.isoformat(), x.period_end.isoformat())


@strawberry.type
class ForecastQueries:
    @strawberry.field(description="What the fund (or one contract) may still have to pay, and when: per contract, payer "
                                  "and scheduled period, certain, probable and maximum. A municipality sees its own "
                                  "part. `forecastConnection` is the paged form, with totalCount and paging both ways.")
    async def forecast(self, info: Info, fund_id: FundFilterArg = None,
                       contract_id: ContractFilterArg = None) -> list[ForecastLine]:
        return [_line(x) for x in await _forecast(info, fund_id, contract_id)]

    @strawberry.field(description="The forecast a page at a time: the same lines as `forecast` with the same filters, "
                                  "in the order of contract, payer and period.")
    async def forecast_connection(
        self, info: Info, fund_id: FundFilterArg = None, contract_id: ContractFilterArg = None,
        first: int | None = None, after: str | None = None, last: Annotated[int | None, LAST] = None,
        before: Annotated[str | None, BEFORE] = None,
    ) -> Connection[ForecastLine]:
        window = Window.of(first, after, last, before, decode=decode_key_cursor)
        return list_page("forecast", await _forecast(info, fund_id, contract_id), _line_key, _line, window)


from api.graphql.contracts import OutcomeContract  # noqa: E402  (resolves the forward reference)
