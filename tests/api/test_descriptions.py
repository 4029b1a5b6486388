"""GraphiQL's documentation pane is the manual: every element of the schema is described there."""
from pathlib import Path

from graphql import build_ast_schema, build_client_schema, get_introspection_query, parse
from strawberry.printer import print_schema

from api.graphql.manual import CATALOGUE, elements
from api.graphql.manual.mutations import ANY_MUTATION, CODES
from api.graphql.schema import schema

SDL = Path(__file__).resolve().parents[2] / "schemas" / "schema.graphql"


def _descriptions(graphql_schema) -> dict[str, str | None]:
    return {coordinate: element.description for coordinate, element in elements(graphql_schema)}


def test_every_type_field_argument_and_enum_value_has_a_description():
    missing = [c for c, text in _descriptions(schema._schema).items() if not (text and text.strip())]
    assert not missing, (f"{len(missing)} schema elements have no description; describe them inline or in "
                         "api/graphql/manual/:\n" + "\n".join(missing))


def test_every_catalogue_entry_names_an_element_and_is_not_shadowed_by_an_inline_description():
    # an entry whose element is described inline shows a different text: the entry is a duplicate
    described = _descriptions(schema._schema)
    stale = [c for c in CATALOGUE if c not in described]
    assert not stale, "catalogue entries for no element of the schema:\n" + "\n".join(sorted(stale))
    shadowed = [c for c, text in CATALOGUE.items() if described[c] != text]
    assert not shadowed, "catalogue entries shadowed by an inline description:\n" + "\n".join(sorted(shadowed))
    empty = [c for c, text in CATALOGUE.items() if not text.strip()]
    assert not empty, "empty catalogue entries:\n" + "\n".join(empty)


def test_graphiql_reads_the_descriptions_by_introspection(api):
    # the query GraphiQL sends to fill its documentation pane, over HTTP as a fund manager
    query = get_introspection_query(descriptions=True, input_value_deprecation=True)
    seen = _descriptions(build_client_schema(api.ok(query, token=api.token("FUND_MANAGER"))))
    assert seen == _descriptions(schema._schema)
    assert "egen regi" in seen["Ownership.PUBLIC_IN_HOUSE"]
    assert "vite" in seen["SanctionLevel.PENALTY"]
    assert "glesbygd" in seen["Metric.areaSupplements"]


def test_the_exported_sdl_carries_the_descriptions():
    printed = build_ast_schema(parse(print_schema(schema)))
    assert _descriptions(printed) == _descriptions(schema._schema)
    exported = build_ast_schema(parse(SDL.read_text(encoding="utf-8")))
    assert _descriptions(exported) == _descriptions(schema._schema), "run `utfall schema export`"


def test_the_codes_each_payload_lists_are_codes_of_its_mutation():
    codes = set(schema._schema.type_map["UserErrorCode"].values)
    mutation = schema._schema.mutation_type.fields
    unknown = [f"{m}: {c}" for m, cs in CODES.items() for c in cs if c not in codes] + \
              [c for c in ANY_MUTATION if c not in codes] + [f"{m}: no such mutation" for m in CODES if m not in mutation]
    assert not unknown, "\n".join(unknown)
