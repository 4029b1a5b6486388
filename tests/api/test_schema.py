"""The exported SDL is the contract clients read: it must match the code."""
from pathlib import Path

from graphql import build_ast_schema, parse
from strawberry.printer import print_schema

from api.graphql.schema import schema

SDL = Path(__file__).resolve().parents[2] / "schemas" / "schema.graphql"


def test_exported_sdl_matches_the_code():
    assert SDL.read_text(encoding="utf-8") == print_schema(schema) + "\n", (
        "schemas/schema.graphql is stale: run `utfall schema export`"
    )


def test_the_public_names_of_api_md_are_in_the_schema():
    # read from the SDL as a client does (arguments with descriptions print on lines of their own)
    exported = build_ast_schema(parse(print_schema(schema)))
    query, mutation = exported.query_type.fields, exported.mutation_type.fields
    for name in ["viewer", "parties", "ledgerAccounts", "ledgerTransactions", "balance", "ledgerDigest",
                 "verifyLedger", "auditEvents"]:
        assert name in query, name
    assert str(query["node"].args["id"].type) == "ID!"
    for name in ["createParty", "createApiToken", "reverseTransaction"]:
        assert str(mutation[name].args["input"].type) == f"{name[0].upper()}{name[1:]}Input!", name


def test_every_mutation_follows_the_input_and_payload_convention():
    # API.md: `name(input: NameInput!): NamePayload!`, every input has idempotencyKey, every
    # payload has userErrors
    for name, field in schema._schema.mutation_type.fields.items():
        cap = name[0].upper() + name[1:]
        assert list(field.args) == ["input"], name
        assert str(field.args["input"].type) == f"{cap}Input!", name
        assert str(field.type) == f"{cap}Payload!", name
        assert "idempotencyKey" in field.args["input"].type.of_type.fields, name
        assert "userErrors" in field.type.of_type.fields, name
