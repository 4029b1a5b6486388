"""The HTTP benchmark's reference: strawberry answering the benchmark's contract query from memory.

    python -m ops.bench.strawberry_reference PAYLOAD.json PORT

It serves the same response shape as `utfall serve` (the same field names, nesting and
values, read from a response the real server gave), through strawberry's ASGI app with the
same parser and validation caches, mounted in Starlette under uvicorn with one worker — the
service's own process model. What it leaves out is exactly what the benchmark measures: the
database, authentication, and the service's own resolvers. A bare Starlette endpoint
returning the bytes is a floor beneath that, not a reference for GraphQL.
"""
from __future__ import annotations

import json
import sys
from typing import Optional

import strawberry
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache


@strawberry.type
class Document:
    sha256: Optional[str]
    filename: Optional[str]


@strawberry.type
class Participant:
    external_ref: Optional[str]
    area: Optional[str]


@strawberry.type
class Evidence:
    id: strawberry.ID
    metric_code: Optional[str]
    status: Optional[str]
    achieved_on: Optional[str]
    submitted_by: Optional[str]
    decided_by: Optional[str]
    participant: Optional[Participant]
    documents: list[Document]


@strawberry.type
class EvidenceConnection:
    nodes: list[Evidence]


def _evidence(node: dict) -> Evidence:
    p = node.get("participant")
    return Evidence(
        id=node["id"], metric_code=node.get("metricCode"), status=node.get("status"),
        achieved_on=node.get("achievedOn"), submitted_by=node.get("submittedBy"), decided_by=node.get("decidedBy"),
        participant=Participant(external_ref=p.get("externalRef"), area=p.get("area")) if p else None,
        documents=[Document(sha256=d.get("sha256"), filename=d.get("filename")) for d in node.get("documents") or []],
    )


CONTRACT: dict = {}


@strawberry.type
class Contract:
    title: Optional[str]
    status: Optional[str]

    @strawberry.field
    def evidence(self, first: int = 100) -> EvidenceConnection:
        # objects built per request, as resolvers reading any source would build them
        return EvidenceConnection(nodes=[_evidence(n) for n in CONTRACT["evidence"]["nodes"][:first]])


@strawberry.type
class Query:
    @strawberry.field
    def contract(self, id: strawberry.ID) -> Optional[Contract]:
        return Contract(title=CONTRACT.get("title"), status=CONTRACT.get("status"))


def app(payload: dict) -> Starlette:
    CONTRACT.clear()
    CONTRACT.update(payload["data"]["contract"])
    schema = strawberry.Schema(query=Query, extensions=[lambda: ParserCache(maxsize=256),
                                                        lambda: ValidationCache(maxsize=256)])
    gql = GraphQL(schema, graphql_ide=None, allow_queries_via_get=False)
    return Starlette(routes=[Route("/graphql", gql, methods=["POST"])])


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        served = json.load(f)
    uvicorn.run(app(served), host="127.0.0.1", port=int(sys.argv[2]), log_config=None, access_log=False)
