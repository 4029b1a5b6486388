"""A cost limit for GraphQL documents: every field counts once per row it can be asked for.

Depth, token and alias limits come with strawberry; there is no cost limit, so this rule
walks the document with the schema: a field that takes `first` multiplies everything below
it by `first` or `last` (the default page size when not given; the maximum page when it
comes from a variable, whose value validation cannot see), and `nodes(ids:)` by the number
of ids. A document whose cost exceeds MAX_COST is refused before anything runs.
"""
from __future__ import annotations

from graphql import (
    FieldNode, FragmentSpreadNode, GraphQLError, InlineFragmentNode, IntValueNode, ListValueNode,
    OperationDefinitionNode, ValidationRule, get_named_type,
)

from api.graphql.base import DEFAULT_PAGE, MAX_NODES, MAX_PAGE

MAX_COST = 20_000


def _multiplier(field_def, node: FieldNode) -> int:
    if "ids" in field_def.args:  # nodes(ids:): one object per id
        for arg in node.arguments or ():
            if arg.name.value == "ids":
                return len(arg.value.values) if isinstance(arg.value, ListValueNode) else MAX_NODES
        return 1
    if "first" not in field_def.args:
        return 1
    for arg in node.arguments or ():
        if arg.name.value in ("first", "last"):
            return int(arg.value.value) if isinstance(arg.value, IntValueNode) else MAX_PAGE
    return DEFAULT_PAGE


class CostLimitRule(ValidationRule):
    """Refuse operations whose estimated cost (rows × fields) is above MAX_COST."""

    def enter_operation_definition(self, node: OperationDefinitionNode, *_args) -> None:
        schema = self.context.schema
        root = {"query": schema.query_type, "mutation": schema.mutation_type,
                "subscription": schema.subscription_type}[node.operation.value]
        cost = self._cost(node.selection_set, root, 1, set())
        if cost > MAX_COST:
            self.report_error(GraphQLError(
                f"this query could touch {cost} fields (rows × fields); the limit is {MAX_COST}: ask for smaller pages",
                node, extensions={"code": "QUERY_TOO_COSTLY", "cost": cost, "limit": MAX_COST}))

    def _cost(self, selection_set, parent, factor: int, fragments: set[str]) -> int:
        if selection_set is None or parent is None:
            return 0
        total = 0
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                fields = getattr(parent, "fields", {})
                field_def = fields.get(sel.name.value)
                if field_def is None:
                    continue  # unknown fields are reported by the standard rules
                here = factor * _multiplier(field_def, sel)
                total += here
                total += self._cost(sel.selection_set, get_named_type(field_def.type), here, fragments)
            elif isinstance(sel, InlineFragmentNode):
                target = self.context.schema.get_type(sel.type_condition.name.value) if sel.type_condition else parent
                total += self._cost(sel.selection_set, target, factor, fragments)
            elif isinstance(sel, FragmentSpreadNode):
                name = sel.name.value
                fragment = self.context.get_fragment(name)
                if fragment is None or name in fragments:
                    continue  # cycles and unknown fragments are reported by the standard rules
                target = self.context.schema.get_type(fragment.type_condition.name.value)
                total += self._cost(fragment.selection_set, target, factor, fragments | {name})
            if total > MAX_COST * 10:
                return total  # far over the limit already; stop walking
        return total

