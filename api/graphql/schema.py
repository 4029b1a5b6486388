"""The schema: every area's queries and mutations merged, `node(id:)`, limits and error masking."""
from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Annotated

import strawberry
from graphql import GraphQLError
from graphql.language import SKIP
from graphql.utilities.validate_input_value import validate_input_literal
from graphql.validation.rules.values_of_correct_type import ValuesOfCorrectTypeRule
from strawberry.extensions import (
    AddValidationRules, MaskErrors, MaxTokensLimiter, ParserCache, ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import Info

from api.graphql import (audit, change_requests, contracts, corrections, evidence, forecast, investments, ledger,
                         parties, payouts, proofs, publishing, reports)
from api.graphql.execution import PlainFieldsExecutionContext
from api.graphql.limits import CostLimitRule
from api.graphql.manual import describe
from api.logs import redact
from api.graphql.base import MAX_NODES, SCALAR_MAP, Node, ScalarError, UserErrorCode, ctx, split_global_id
from ledger import models

log = logging.getLogger("utfall")

# Node types by GraphQL name: how `node(id:)` finds an object, within what the caller may see.


async def _resolve_node(info: Info, type_name: str, pk: int):
    actor = ctx(info).actor
    if actor is None:
        return None
    if type_name == "Party":
        return await parties.load_party(info, pk)
    if type_name == "LedgerAccount":
        return await ledger.load_account(info, pk)
    if type_name == "LedgerTransaction":
        return await ledger.load_transaction(info, pk)
    if type_name == "OutcomeContract":
        return await contracts.load_contract(info, pk)
    if type_name in ("Evidence", "Participant", "Measurement"):
        return await evidence.load_node(info, type_name, pk)
    if type_name == "Payout":
        return await payouts.load_payout(info, pk)
    if type_name == "Fund":
        return await contracts.load_fund(info, pk)
    if type_name in investments.NODE_LOADERS:
        return await investments.NODE_LOADERS[type_name](info, pk)
    if type_name == "Dispute":
        return await corrections.load_dispute(info, pk)
    if type_name == "ChangeRequest" and actor.sees_everything:
        row = await ctx(info).db.read(lambda s: s.get(models.ChangeRequest, pk))
        return change_requests.ChangeRequest.from_row(row) if row else None
    if type_name == "ApiToken" and actor.role == "ADMIN":
        row = await ctx(info).db.read(lambda s: s.get(models.ApiToken, pk))
        return parties.ApiToken.from_row(row) if row else None
    if type_name == "AuditEvent" and actor.sees_everything:
        row = await ctx(info).db.read(lambda s: s.get(models.AuditEvent, pk))
        return audit.AuditEvent.from_row(row) if row else None
    return None


@strawberry.type
class NodeQueries:
    @strawberry.field(description="Any object by its global ID; null if it does not exist or is not yours to see.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        parsed = split_global_id(id)
        if parsed is None:
            raise GraphQLError(f"{id!r} is not a valid ID", extensions={"code": "INVALID_ID"})
        return await _resolve_node(info, *parsed)

    @strawberry.field(description=f"Several objects by their global IDs (at most {MAX_NODES}), in the order asked; "
                                  "each is null if it does not exist or is not yours to see, exactly as with node.")
    async def nodes(self, info: Info, ids: Annotated[list[strawberry.ID], strawberry.argument(
            description="The global IDs, e.g. from edges you already have.")]) -> list[Node | None]:
        if len(ids) > MAX_NODES:
            raise GraphQLError(f"ask for at most {MAX_NODES} ids at a time", extensions={"code": "PAGE_SIZE"})
        parsed = [split_global_id(i) for i in ids]
        bad = next((i for i, p in zip(ids, parsed) if p is None), None)
        if bad is not None:
            raise GraphQLError(f"{bad!r} is not a valid ID", extensions={"code": "INVALID_ID"})
        return list(await asyncio.gather(*(_resolve_node(info, *p) for p in parsed)))


Query = merge_types("Query", (NodeQueries, parties.PartyQueries, contracts.ContractQueries, evidence.EvidenceQueries,
                              payouts.PayoutQueries, reports.ReportQueries, investments.InvestmentQueries,
                              ledger.LedgerQueries, proofs.ProofQueries,
                              audit.AuditQueries, publishing.PublishingQueries, forecast.ForecastQueries,
                              corrections.DisputeQueries, change_requests.ChangeRequestQueries))
Mutation = merge_types("Mutation", (parties.PartyMutations, contracts.ContractMutations,
                                    evidence.EvidenceMutations, payouts.PayoutMutations, investments.InvestmentMutations,
                                    ledger.LedgerMutations, publishing.PublishingMutations,
                                    corrections.CorrectionMutations, corrections.DisputeMutations,
                                    change_requests.ChangeRequestMutations))


def _unexpected(error: GraphQLError) -> bool:
    # mask only errors that come from an exception we did not raise on purpose
    original = error.original_error
    return original is not None and not isinstance(original, (GraphQLError, ScalarError))


class NamedValuesRule(ValuesOfCorrectTypeRule):
    """The standard check of literal values, naming the argument and input field at fault.

    graphql-core reports a custom scalar's refusal of a literal (`amount: 18750`, `"NaN"`,
    a Date "2025-13-01") with the scalar's exception as the original error, which would be
    masked as "Unexpected error"; here it is a plain validation error: "input.amount: Expected
    value of type 'Decimal!', found 18750; Decimal values are strings ...".
    """

    def __init__(self, context):
        super().__init__(context)
        self._argument: str | None = None

    def enter_argument(self, node, *_args):
        self._argument = node.name.value

    def leave_argument(self, _node, *_args):
        self._argument = None

    def is_valid_value_node(self, node, input_type):
        if input_type:
            def on_error(error: GraphQLError, path: list) -> None:
                field = [p for p in ([self._argument] if self._argument else []) + list(path) if isinstance(p, str)]
                where = ".".join(str(p) for p in ([self._argument] if self._argument else []) + list(path))
                self.report_error(GraphQLError(f"{where}: {error.message}" if where else error.message, node,
                                               extensions={"code": "INVALID_VALUE", "field": field or None}))
            validate_input_literal(node, input_type, on_error, None, None, self.context.hide_suggestions)
        return SKIP


class UtfallRules(AddValidationRules):
    """Our rules after the standard ones, with NamedValuesRule in place of ValuesOfCorrectTypeRule."""

    def on_operation(self):
        self.execution_context.validation_rules = tuple(
            NamedValuesRule if rule is ValuesOfCorrectTypeRule else rule
            for rule in self.execution_context.validation_rules) + tuple(self.validation_rules)
        yield


SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


class UtfallMaskErrors(MaskErrors):
    """Masks unexpected errors; in production also drops graphql-core's "Did you mean …" hints,
    which would spell out the schema that introspection keeps closed there."""

    def __init__(self, *, production: bool, **kw):
        super().__init__(**kw)
        self.production = production

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        processed = super()._process_errors(errors)
        if not self.production:
            return processed
        return [e if not SUGGESTION.search(e.message) else
                GraphQLError(SUGGESTION.sub("", e.message), nodes=e.nodes, source=e.source, positions=e.positions,
                             path=e.path, extensions=e.extensions) for e in processed]


class UtfallSchema(strawberry.Schema):
    """Logs unexpected errors with their traceback and the request id; expected ones briefly."""

    def process_errors(self, errors, execution_context=None) -> None:
        from api.app import database_unavailable
        context = getattr(execution_context, "context", None)
        request_id = getattr(context, "request_id", "")
        for error in errors:
            if _unexpected(error) and database_unavailable(error.original_error):
                if context is not None and getattr(context, "unavailable", None) is None:
                    context.unavailable = error.original_error  # the HTTP view answers 503
                log.error(json.dumps({"event": "database_unavailable", "request_id": request_id,
                                      "path": error.path, "error": type(error.original_error).__name__}))
            elif _unexpected(error):
                log.error(json.dumps({"event": "unexpected_error", "request_id": request_id,
                                      "path": error.path, "error": type(error.original_error).__name__}),
                          exc_info=error.original_error)
            else:
                log.info(json.dumps({"event": "graphql_error", "request_id": request_id,
                                     "message": redact(error.message), "code": (error.extensions or {}).get("code")}))


VALIDATION_RULES = [CostLimitRule, depth_validator(max_depth=12, should_ignore=None),
                    alias_validator(max_alias_count=30)]


def build_schema(*, production: bool = False) -> strawberry.Schema:
    extensions = [
        # parsing and validating a document is most of the cost of a small query: cache both
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
        # the same rule classes every request, so ValidationCache can hit (a limiter built per
        # request makes a new class each time, and the cache never hits)
        lambda: UtfallRules(VALIDATION_RULES),
        lambda: MaxTokensLimiter(max_token_count=4000),
        lambda: UtfallMaskErrors(production=production, should_mask_error=_unexpected, error_message="Unexpected error"),
    ]
    if production:
        from strawberry.extensions import DisableIntrospection
        extensions.append(DisableIntrospection)
    built = UtfallSchema(
        query=Query, mutation=Mutation, types=[parties.Party, parties.ApiToken, ledger.LedgerAccount,
                                               ledger.LedgerTransaction, audit.AuditEvent,
                                               contracts.Fund, contracts.OutcomeContract, contracts.Sanction,
                                               evidence.Participant, evidence.Evidence, evidence.Measurement,
                                               payouts.Payout, payouts.Payment, UserErrorCode,
                                               investments.Investment, investments.Drawdown, investments.Distribution,
                                               corrections.Dispute, change_requests.ChangeRequest],
        config=StrawberryConfig(scalar_map=SCALAR_MAP), extensions=extensions,
        # plain-data objects (a page of evidence) completed in one step, not field by field
        execution_context_class=PlainFieldsExecutionContext,
    )
    describe(built._schema)  # the manual: GraphiQL's documentation pane and the exported SDL read these
    return built


schema = build_schema()
