"""Descriptions that follow from a convention of the whole API, the same wherever it applies.

Relay connections and edges, global IDs, mutation inputs and payloads (`idempotencyKey`,
`userErrors`), paging arguments, and input types that mirror an output type field for field.
An inline description or a catalogue entry always wins over these.
"""
from __future__ import annotations

from graphql import GraphQLSchema, get_named_type

from api.graphql.base import DEFAULT_PAGE, MAX_PAGE

# Input fields (and a few output types) that mean exactly what the same-named field of
# another type means: the text is taken from there.
MIRRORS = {
    "MoneyInput": "Money",
    "MetricInput": "Metric",
    "AreaSupplementInput": "AreaSupplement",
    "DocumentInput": "Document",
    "PayerShareInput": "PayerShare",
    "EvidenceItemInput": "SubmitEvidenceInput",
    "SignedTreeHeadInput": "SignedTreeHead",
    "LedgerDigestInput": "LedgerDigest",
    "Recomputed": "DistributionRecomputed",
}

PAGING_ARGUMENTS = {
    "first": f"How many items to return from the start (or from `after`), 0 to {MAX_PAGE}; default {DEFAULT_PAGE}.",
    "after": "Return the items after this cursor: pass the previous page's `pageInfo.endCursor`.",
    "last": f"How many items to return from the end (or before `before`), 0 to {MAX_PAGE}.",
    "before": "Return the items before this cursor: pass the next page's `pageInfo.startCursor`.",
}

IDEMPOTENCY_KEY = ("Any string of 1 to 200 characters that you choose for this request. Sending the same key "
                   "with the same input again returns the first result instead of doing it twice (safe retries); "
                   "the same key with a different input is IDEMPOTENCY_KEY_REUSED.")
USER_ERRORS = ("Empty on success. Otherwise why nothing was done, one entry per problem, each with a stable "
               "`code` (see UserErrorCode) and the input field at fault; the result fields are then null.")


def _mutation_of(schema: GraphQLSchema, type_name: str, suffix: str) -> str | None:
    if schema.mutation_type is None or not type_name.endswith(suffix):
        return None
    stem = type_name[: -len(suffix)]
    name = stem[:1].lower() + stem[1:]
    return name if name in schema.mutation_type.fields else None


def _connection_node(schema: GraphQLSchema, type_name: str, suffix: str) -> str | None:
    type_ = schema.type_map.get(type_name)
    if type_ is None or not type_name.endswith(suffix) or "node" not in getattr(type_, "fields", {}) and \
            "edges" not in getattr(type_, "fields", {}):
        return None
    field = type_.fields.get("node") or type_.fields["edges"]
    node = get_named_type(field.type)
    return node.name if suffix == "Edge" else get_named_type(node.fields["node"].type).name


def description(schema: GraphQLSchema, coordinate: str) -> str | None:
    """The convention's text for an element, or None where no convention applies."""
    type_name, _, rest = coordinate.partition(".")
    field, _, arg = rest.partition("(")
    arg = arg.rstrip(":)")

    if not rest:
        return _type_description(schema, type_name)
    if arg:
        return _argument_description(schema, type_name, field, arg)

    if type_name in MIRRORS:
        mirror = schema.type_map.get(MIRRORS[type_name])
        if mirror is not None and field in mirror.fields and mirror.fields[field].description:
            return mirror.fields[field].description
    if node := _connection_node(schema, type_name, "Connection"):
        return {
            "edges": f"The {node} items of this page, each with its cursor.",
            "nodes": f"The {node} items of this page without their cursors (the same as edges' nodes).",
            "pageInfo": "Where this page lies: whether there are more items before or after it, and the cursors to fetch them.",
            "totalCount": f"How many {node} items match in all pages together.",
        }.get(field)
    if node := _connection_node(schema, type_name, "Edge"):
        return {
            "cursor": "This item's place in the list: pass it as `after` (or `before`) to continue from here.",
            "node": f"The {node}.",
        }.get(field)
    if field == "id":
        type_ = schema.type_map.get(type_name)
        if type_ is not None and any(i.name == "Node" for i in getattr(type_, "interfaces", ())) or type_name == "Node":
            return "The global ID: stable, opaque, and accepted wherever an ID is asked for, and by `node(id:)`."
    if field == "userErrors" and _mutation_of(schema, type_name, "Payload"):
        return USER_ERRORS
    if field == "idempotencyKey" and _mutation_of(schema, type_name, "Input"):
        return IDEMPOTENCY_KEY
    return None


def _type_description(schema: GraphQLSchema, type_name: str) -> str | None:
    if mutation := _mutation_of(schema, type_name, "Input"):
        return f"What `{mutation}` takes; see that mutation for what it does and who may call it."
    if mutation := _mutation_of(schema, type_name, "Payload"):
        return (f"What `{mutation}` answers: the result, with an empty `userErrors`, on success; null results "
                "and the userErrors saying why when nothing was done.")
    if node := _connection_node(schema, type_name, "Connection"):
        return (f"A page of {node} items. Ask for the next page with `after: pageInfo.endCursor` "
                "while `pageInfo.hasNextPage` is true.")
    if node := _connection_node(schema, type_name, "Edge"):
        return f"One {node} in a page, with the cursor that marks its place."
    return None


def _argument_description(schema: GraphQLSchema, type_name: str, field: str, arg: str) -> str | None:
    if arg in PAGING_ARGUMENTS:
        return PAGING_ARGUMENTS[arg]
    if type_name == "Mutation" and arg == "input":
        return "The request. Include an idempotencyKey so that a retry cannot do it twice."
    return None
