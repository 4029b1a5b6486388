"""The manual: descriptions of every type, field, argument and enum value of the schema.

GraphiQL's documentation pane is what fund managers read to learn the API, so every element
of the schema is described there. Descriptions written inline in the type definitions win;
for everything else this catalogue maps a schema coordinate to its text:

    "Type"                  an object, input, enum, interface, union or scalar type
    "Type.field"            a field of an object or interface type, or an input field
    "Type.field(arg:)"      an argument of a field (e.g. "Query.contracts(status:)")
    "Enum.VALUE"            an enum value

Elements that follow a convention of the whole API (connections and their edges, `id`,
`userErrors`, `idempotencyKey`, `first`/`after`) are described by rule (`conventions.py`)
unless the catalogue or an inline description says more. `describe` runs once when the
schema is built, on the graphql-core schema that both introspection and the SDL printer read.
"""
from __future__ import annotations

from collections.abc import Iterator

from graphql import (GraphQLEnumType, GraphQLInputObjectType, GraphQLInterfaceType, GraphQLObjectType,
                     GraphQLSchema)

from api.graphql.manual import (contracts, conventions, error_codes, evidence, investments, ledger, mutations,
                                parties, payouts, reports)

CATALOGUE: dict[str, str] = {}
for _area in (parties, contracts, evidence, payouts, investments, ledger, reports, mutations, error_codes):
    _overlap = CATALOGUE.keys() & _area.DESCRIPTIONS.keys()
    assert not _overlap, f"described twice: {sorted(_overlap)}"
    CATALOGUE.update(_area.DESCRIPTIONS)

# graphql-core's own types and scalars are described by the GraphQL specification
BUILT_IN = {"String", "Int", "Float", "Boolean", "ID"}


def schema_types(schema: GraphQLSchema) -> Iterator:
    """The schema's own named types: no introspection types, no built-in scalars."""
    for name, type_ in sorted(schema.type_map.items()):
        if not name.startswith("__") and name not in BUILT_IN:
            yield type_


def elements(schema: GraphQLSchema) -> Iterator[tuple[str, object]]:
    """Every describable element of the schema with its coordinate."""
    for type_ in schema_types(schema):
        yield type_.name, type_
        if isinstance(type_, (GraphQLObjectType, GraphQLInterfaceType)):
            for field_name, field in type_.fields.items():
                yield f"{type_.name}.{field_name}", field
                for arg_name, arg in field.args.items():
                    yield f"{type_.name}.{field_name}({arg_name}:)", arg
        elif isinstance(type_, GraphQLInputObjectType):
            for field_name, field in type_.fields.items():
                yield f"{type_.name}.{field_name}", field
        elif isinstance(type_, GraphQLEnumType):
            for value_name, value in type_.values.items():
                yield f"{type_.name}.{value_name}", value


def describe(schema: GraphQLSchema) -> None:
    """Give every element without an inline description its catalogue entry, or the
    convention's text. Elements shared between types (an interface's field object) are
    described once, by the first coordinate that reaches them."""
    for coordinate, element in elements(schema):
        if not element.description and coordinate in CATALOGUE:
            element.description = CATALOGUE[coordinate]
    # conventions second: an input that mirrors an output type takes the text just given to it
    for coordinate, element in elements(schema):
        if not element.description:
            element.description = conventions.description(schema, coordinate)
