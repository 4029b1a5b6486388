"""Plain-data objects completed by a compiled plan answer exactly as graphql-core's field-by-field execution,
errors included: a client cannot tell which path served it."""
from __future__ import annotations

import asyncio
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
