"""GraphQL mutations sent to the machine's shared writer (ledger.shared_writer; ops/SCALING.md §3).

With several worker processes (`uvicorn --factory api.asgi:create --workers N`), one holds the
writer seat. Another process that receives a mutation sends the request itself — its body and
headers, bearer token included — to that process, which answers it through its whole app as if it
had received it (the token checked there, the use case run in its group commit's batches beside its
own callers'), and hands the answer back byte for byte. Queries and everything else stay where they
arrive. A request is never sent on twice (`FORWARDED`), and whenever there is no writer to send to
the process answers the mutation itself, as a single process does.
"""
from __future__ import annotations

import asyncio
import json
from functools import lru_cache

from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse
from starlette.requests import Request
from starlette.responses import Response

from ledger.shared_writer import NoWriter

# set on a request the writer receives from another process: answered there, never sent on again
FORWARDED = "x-utfall-forwarded"
ANSWER_WITHIN = 300.0  # seconds the writer gives a forwarded request (a payout over 100 000 items: ~0.3 s)
_NOT_SENT = {"content-length", "connection", "transfer-encoding", "keep-alive", "upgrade", FORWARDED}


@lru_cache(maxsize=512)
def _operation(query: str, operation_name: str | None) -> OperationType | None:
    """The type of the operation a request runs, or None when that is not plain (a document that does
    not parse, several operations and no name): the process that received it answers it, errors included."""
    try:
        document = parse(query)
    except GraphQLError:
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name is not None and o.name.value == operation_name]
    return operations[0].operation if len(operations) == 1 else None


def is_mutation(request: Request, body: bytes) -> bool:
    """Whether a POSTed GraphQL request runs a mutation (JSON bodies only)."""
    if request.headers.get(FORWARDED) is not None:
        return False
    if not request.headers.get("content-type", "").startswith("application/json"):
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False
    if not isinstance(data, dict) or not isinstance(data.get("query"), str):
        return False
    name = data.get("operationName")
    return _operation(data["query"], name if isinstance(name, str) else None) is OperationType.MUTATION


def message(request: Request, body: bytes, request_id: str) -> dict:
    """The request as the writer is sent it: its headers (the request id this process gave it among
    them) and its body, bytes kept as Latin-1 text (JSON has no bytes)."""
    headers = [[k, v] for k, v in request.headers.items() if k not in _NOT_SENT and k != "x-request-id"]
    headers.append(["x-request-id", request_id])
    return {"path": request.url.path, "headers": headers, "body": body.decode("latin-1")}


def response(reply: dict) -> Response:
    """The writer's answer, as it gave it."""
    answer = Response(content=reply["body"].encode("latin-1"), status_code=reply["status"])
    answer.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply["headers"]]
    return answer


def serving(app, loop: asyncio.AbstractEventLoop):
    """The writer's handler of forwarded requests (run in a thread of ledger.shared_writer): each goes
    through `app` on the server's event loop, as a request it received."""
    def handle(body: dict) -> dict:
        if loop.is_closed():
            raise NoWriter()  # this process has stopped serving: its sender answers the request itself
        future = asyncio.run_coroutine_threadsafe(_answer(app, body), loop)
        return future.result(ANSWER_WITHIN)
    return handle


async def _answer(app, forwarded: dict) -> dict:
    data = forwarded["body"].encode("latin-1")
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in forwarded["headers"]]
    headers += [(b"content-length", str(len(data)).encode()), (FORWARDED.encode(), b"1")]
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": forwarded["path"], "raw_path": forwarded["path"].encode(),
             "root_path": "", "query_string": b"", "headers": headers, "client": None, "server": None}
    given = False
    never = asyncio.Event()
    status, out_headers, chunks = 500, [], []

    async def receive():
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": data, "more_body": False}
        await never.wait()  # the sender is the other process, which waits for the whole answer
        return {"type": "http.disconnect"}

    async def send(msg):
        nonlocal status, out_headers
        if msg["type"] == "http.response.start":
            status = msg["status"]
            out_headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in msg.get("headers", [])]
        elif msg["type"] == "http.response.body":
            chunks.append(msg.get("body", b""))

    try:
        await app(scope, receive, send)
    finally:
        never.set()  # anything still listening for the client's disconnect hears it now
    return {"status": status, "headers": out_headers, "body": b"".join(chunks).decode("latin-1")}
