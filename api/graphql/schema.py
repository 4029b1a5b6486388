"""The schema: every area's queries and mutations merged, `node(id:)`, limits and error masking."""
from __future__ import annotations

import json
import logging

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules, MaskErrors, MaxTokensLimiter, ParserCache, ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as alias_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import Info

from api.graphql import audit, change_requests, contracts, corrections, evidence, ledger, parties, payouts, reports
from api.graphql.limits import CostLimitRule
from api.graphql.base import SCALAR_MAP, Node, UserErrorCode, ctx, split_global_id
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


Query = merge_types("Query", (NodeQueries, parties.PartyQueries, contracts.ContractQueries, evidence.EvidenceQueries,
                              payouts.PayoutQueries, reports.ReportQueries,
                              ledger.LedgerQueries,
                              audit.AuditQueries, corrections.DisputeQueries,
                              change_requests.ChangeRequestQueries))
Mutation = merge_types("Mutation", (parties.PartyMutations, contracts.ContractMutations,
                                    evidence.EvidenceMutations, payouts.PayoutMutations,
                                    ledger.LedgerMutations, corrections.CorrectionMutations,
                                    corrections.DisputeMutations, change_requests.ChangeRequestMutations))


def _unexpected(error: GraphQLError) -> bool:
    # mask only errors that come from an exception we did not raise on purpose
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


class UtfallSchema(strawberry.Schema):
    """Logs unexpected errors with their traceback and the request id; expected ones briefly."""

    def process_errors(self, errors, execution_context=None) -> None:
        context = getattr(execution_context, "context", None)
        request_id = getattr(context, "request_id", "")
        for error in errors:
            if _unexpected(error):
                log.error(json.dumps({"event": "unexpected_error", "request_id": request_id,
                                      "path": error.path, "error": type(error.original_error).__name__}),
                          exc_info=error.original_error)
            else:
                log.info(json.dumps({"event": "graphql_error", "request_id": request_id, "message": error.message,
                                     "code": (error.extensions or {}).get("code")}))


VALIDATION_RULES = [CostLimitRule, depth_validator(max_depth=12, should_ignore=None),
                    alias_validator(max_alias_count=30)]


def build_schema(*, production: bool = False) -> strawberry.Schema:
    extensions = [
        # parsing and validating a document is most of the cost of a small query: cache both
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
        # the same rule classes every request, so ValidationCache can hit (a limiter built per
        # request makes a new class each time, and the cache never hits)
        lambda: AddValidationRules(VALIDATION_RULES),
        lambda: MaxTokensLimiter(max_token_count=4000),
        lambda: MaskErrors(should_mask_error=_unexpected, error_message="Unexpected error"),
    ]
    if production:
        from strawberry.extensions import DisableIntrospection
        extensions.append(DisableIntrospection)
    return UtfallSchema(
        query=Query, mutation=Mutation, types=[parties.Party, parties.ApiToken, ledger.LedgerAccount,
                                               ledger.LedgerTransaction, audit.AuditEvent,
                                               contracts.Fund, contracts.OutcomeContract, contracts.Sanction,
                                               evidence.Participant, evidence.Evidence, evidence.Measurement,
                                               payouts.Payout, payouts.Payment, corrections.Dispute,
                                               change_requests.ChangeRequest,
                                               UserErrorCode],
        config=StrawberryConfig(scalar_map=SCALAR_MAP), extensions=extensions,
    )


schema = build_schema()
