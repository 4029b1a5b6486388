"""Plain-data objects completed by a compiled plan answer exactly as graphql-core's field-by-field execution,
errors included: a client cannot tell which path served it."""
from __future__ import annotations

import asyncio
import enum
import json
from datetime import date
from typing import Optional

import pytest
import strawberry
from strawberry.types import Info

from api.graphql.execution import PlainFieldsExecutionContext


@strawberry.type
class Doc:
    name: str
    size: Optional[int]

    @strawberry.field
    def label(self) -> str:
        if self.name == "boom":
            raise ValueError("label failed")
        return f"{self.name}:{self.size}"


@strawberry.type
class Item:
    code: str
    day: Optional[date]
    docs: list[Doc]
    maybe_docs: Optional[list[Optional[Doc]]]
    owner: Optional[Doc]

    @strawberry.field
    def shout(self, info: Info) -> str:  # takes info: not plain, executed field by field
        return self.code.upper()


@strawberry.type
class Query:
    items: list[Item]


def _items(broken: bool = False, boom: bool = False) -> list[Item]:
    docs = [Doc(name="a", size=1), Doc(name="boom" if boom else "b", size=None)]
    return [Item(code="x", day=date(2026, 1, 2), docs=docs, maybe_docs=[None, docs[0]], owner=docs[1]),
            Item(code=None if broken else "y", day=None, docs=[], maybe_docs=None, owner=None)]  # type: ignore[arg-type]


QUERIES = [
    "{ items { code day docs { name size label } maybeDocs { name } owner { size } } }",
    "{ items { __typename c: code d: docs { n: name __typename } code } }",
    "query($no: Boolean!) { items { code @include(if: $no) docs @skip(if: $no) { name } } }",
    "{ items { code shout docs { label } } }",
    "{ items { ...F } } fragment F on Item { code owner { name label } }",
]


def _run(context_class, query: str, items: list[Item]) -> str:
    schema = strawberry.Schema(query=Query, execution_context_class=context_class)
    result = asyncio.run(schema.execute(query, root_value=Query(items=items), variable_values={"no": False}))
    errors = [{"message": e.message, "path": e.path} for e in result.errors or []]
    return json.dumps({"data": result.data, "errors": errors})


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("broken,boom", [(False, False), (True, False), (False, True)])
def test_a_plan_answers_like_field_by_field_execution(query, broken, boom):
    items = _items(broken, boom)
    assert _run(PlainFieldsExecutionContext, query, items) == _run(None, query, items)


def test_a_null_in_a_non_null_field_is_reported_where_it_is():
    answer = json.loads(_run(PlainFieldsExecutionContext, "{ items { code } }", _items(broken=True)))
    assert answer["data"] is None
    assert answer["errors"] == [{"message": "Cannot return null for non-nullable field Item.code.",
                                 "path": ["items", 1, "code"]}]


def _cached_schema(context_class):
    from strawberry.extensions import ParserCache
    # ParserCache hands every request with the same query text the same parsed document, as the service's does
    return strawberry.Schema(query=Query, execution_context_class=context_class,
                             extensions=[lambda: ParserCache(maxsize=16)])


def _run_on(schema, query: str, items: list[Item], variables: dict) -> str:
    result = asyncio.run(schema.execute(query, root_value=Query(items=items), variable_values=variables))
    errors = [{"message": e.message, "path": e.path} for e in result.errors or []]
    return json.dumps({"data": result.data, "errors": errors})


def test_a_plan_is_compiled_once_for_every_request_of_a_query(monkeypatch):
    schema, reference = _cached_schema(PlainFieldsExecutionContext), _cached_schema(None)
    compiled = []
    original = PlainFieldsExecutionContext._compile
    monkeypatch.setattr(PlainFieldsExecutionContext, "_compile",
                        lambda self, *a: compiled.append(a[0].name) or original(self, *a))
    query = "{ items { code day docs { name size label } owner { size } } }"
    for items in (_items(), _items(boom=True), _items(broken=True), _items()):
        assert _run_on(schema, query, items, {}) == _run_on(reference, query, items, {})
    assert sorted(compiled) == ["Doc", "Doc", "Item"]  # the first request's plans serve the others


@pytest.mark.parametrize("query", [
    "query($no: Boolean!) { items { code @include(if: $no) docs @skip(if: $no) { name } } }",
    "query($no: Boolean!) { items { ...F } } fragment F on Item { code docs { name @include(if: $no) } }",
    "query($no: Boolean!) { items { ... @include(if: $no) { code } owner { size } } }",
])
def test_selections_that_depend_on_variables_are_planned_per_request(query):
    schema, reference = _cached_schema(PlainFieldsExecutionContext), _cached_schema(None)
    for no in (False, True, False):
        assert _run_on(schema, query, _items(), {"no": no}) == _run_on(reference, query, _items(), {"no": no})


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    DARK_RED = "red"  # an alias: the same member
    BLUE = "blue"


@strawberry.type
class Thing:
    id: strawberry.ID
    colour: Colour
    maybe: Optional[Colour]
    names: list[str]


@strawberry.type
class Things:
    things: list[Thing]


def test_enum_id_and_string_list_fields_answer_like_field_by_field_execution():
    query = "{ things { id colour maybe names } }"
    things = [Thing(id=strawberry.ID("a"), colour=Colour.RED, maybe=None, names=["x", "y"]),
              Thing(id=7, colour=Colour.BLUE, maybe=Colour.DARK_RED, names=[]),  # type: ignore[arg-type]
              Thing(id=strawberry.ID("c"), colour="blue", maybe=Colour.BLUE, names=[1]),  # type: ignore[arg-type]
              ]
    planned = strawberry.Schema(query=Things, execution_context_class=PlainFieldsExecutionContext)
    standard = strawberry.Schema(query=Things)
    for given in (things, things[:2], things[2:]):
        a = asyncio.run(planned.execute(query, root_value=Things(things=given)))
        b = asyncio.run(standard.execute(query, root_value=Things(things=given)))
        assert json.dumps([a.data, [e.message for e in a.errors or []]]) == \
            json.dumps([b.data, [e.message for e in b.errors or []]])
