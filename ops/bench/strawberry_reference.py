"""The HTTP benchmark's reference: strawberry answering the benchmark's contract query and its
`depositCapital` mutation from memory.

    python -m ops.bench.strawberry_reference PAYLOAD.json PORT

It serves the same response shape as `utfall serve` (the same field names, nesting and
values, read from a response the real server gave), through strawberry's ASGI app with the
same parser and validation caches, mounted in Starlette under uvicorn with one worker — the
service's own process model. What it leaves out is exactly what the benchmark measures: the
database, authentication, and the service's own resolvers. A bare Starlette endpoint
returning the bytes is a floor beneath that, not a reference for GraphQL.

The mutation appends to a ledger in memory: a key already answered gets its result again, a new
one a sequence and a SHA-256 chained to the one before, and the same payload shape as the
service's (`transaction { sequence hash } userErrors`). It leaves out what the mutation
benchmark measures: the database and its durability, authentication, the audit trail and the
use case's checks.
"""
from __future__ import annotations

import hashlib
import json
import sys
import threading
from datetime import date
from decimal import Decimal
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


@strawberry.input
class MoneyInput:
    amount: Decimal
    currency: str


@strawberry.input
class DepositCapitalInput:
    fund_id: strawberry.ID
    amount: MoneyInput
    effective_date: date
    reference: Optional[str] = None
    idempotency_key: Optional[str] = None


@strawberry.type
class LedgerTransaction:
    sequence: int
    hash: str


@strawberry.type
class UserError:
    code: str
    field: Optional[list[str]]
    message: str


@strawberry.type
class DepositCapitalPayload:
    transaction: Optional[LedgerTransaction]
    user_errors: list[UserError]


class _Ledger:
    """Postings in memory: a chain of SHA-256 hashes, and each idempotency key's answer."""

    def __init__(self):
        self.lock = threading.Lock()
        self.head = (0, "0" * 64)
        self.answered: dict[str, LedgerTransaction] = {}
        self.postings: list[tuple] = []

    def post(self, key: Optional[str], what: tuple) -> LedgerTransaction:
        with self.lock:
            if key is not None and key in self.answered:
                return self.answered[key]
            sequence = self.head[0] + 1
            digest = hashlib.sha256(f"{self.head[1]}|{sequence}|{what}".encode()).hexdigest()
            self.head = (sequence, digest)
            self.postings.append((sequence, what))
            done = LedgerTransaction(sequence=sequence, hash=digest)
            if key is not None:
                self.answered[key] = done
            return done


LEDGER = _Ledger()


@strawberry.type
class Mutation:
    @strawberry.mutation
    def deposit_capital(self, input: DepositCapitalInput) -> DepositCapitalPayload:
        if input.amount.amount <= 0:
            return DepositCapitalPayload(transaction=None, user_errors=[
                UserError(code="INVALID_AMOUNT", field=["input", "amount"], message="must be positive")])
        what = (input.fund_id, str(input.amount.amount), input.amount.currency, input.effective_date.isoformat(), input.reference)
        return DepositCapitalPayload(transaction=LEDGER.post(input.idempotency_key, what), user_errors=[])


def app(payload: dict) -> Starlette:
    CONTRACT.clear()
    CONTRACT.update(payload["data"]["contract"])
    schema = strawberry.Schema(query=Query, mutation=Mutation, extensions=[lambda: ParserCache(maxsize=256),
                                                        lambda: ValidationCache(maxsize=256)])
    gql = GraphQL(schema, graphql_ide=None, allow_queries_via_get=False)
    return Starlette(routes=[Route("/graphql", gql, methods=["POST"])])


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as f:
        served = json.load(f)
    uvicorn.run(app(served), host="127.0.0.1", port=int(sys.argv[2]), log_config=None, access_log=False)
