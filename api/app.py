"""The HTTP app: GraphQL at /graphql (GraphiQL in development), /healthz, /readyz, /results and uploads
(/documents, /contracts/{id}/evidence-imports, /upload: api/uploads.py)."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import re
import time
import uuid
import weakref
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import cache
from pathlib import Path

from cross_web import HTTPException  # strawberry's own (it answers it with plain text)
from graphql import GraphQLError
from sqlalchemy import exc as sa_exc, text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from strawberry.asgi import GraphQL
from strawberry.types.unset import UNSET

from api import finance_exports, forwarded_mutations, results_page, uploads
from api.graphql.base import Context, RequestDB
from api.graphql.schema import build_schema
from api.loop_reads import LoopReads
from api.logs import IDENTITY_NUMBER
from ledger import signing, tokens
from ledger.config import Settings
from ledger.db import Database, make_engine
from ledger.shared_writer import NoWriter, WriterLost, WriterRefused
from ledger.errors import DomainError, PermissionDenied
from ledger.models import utcnow
from ledger import schema as db_schema

log = logging.getLogger("utfall")
# last-used times are written at most this often per token, so reads stay reads
TOUCH_EVERY = timedelta(minutes=1)
# a known token is checked inline (SQLite: on the event loop) only while its last recorded use is this much
# younger than TOUCH_EVERY, so the check finds no use to record (a write) even on a slow request
TOUCH_MARGIN = timedelta(seconds=5)
STATIC_DIR = Path(__file__).parent / "static"
BODY_TIMEOUT = 10.0  # seconds for a whole request body to arrive; slow clients get 408
KNOWN_ACTORS = 10_000  # tokens whose actor the process remembers (see UtfallGraphQL.known_actors)
MAX_JSON_DEPTH = 64  # nesting of a GraphQL request's JSON (variables are never deeper than the inputs)


@cache
def _graphiql_html() -> str:
    return (STATIC_DIR / "graphiql" / "graphiql.html").read_text(encoding="utf-8")


class UtfallGraphQL(GraphQL):
    """Reads the body, authenticates the bearer token and builds a fresh context per request.

    The order matters under load: the whole body is read first (within BODY_TIMEOUT), so a
    client that trickles its body never reaches the database; then the request waits for a
    database slot (`DbGate`) without holding anything; then the token is checked in one
    thread hop that opens and closes its own session, and the query runs. A request holds at
    most one pooled connection, and only while it has a slot, so a pool as large as the slots
    never makes a thread wait for a connection that another request holds.
    """

    def __init__(self, schema, db: Database, executor: ThreadPoolExecutor, secret: bytes, gate: "DbGate",
                 signer=None, body_timeout: float = BODY_TIMEOUT, **kw):
        super().__init__(schema, **kw)
        self.db = db
        self.executor = executor
        self.secret = secret
        self.gate = gate
        self.body_timeout = body_timeout
        self.signer = signer
        self.loop_reads: LoopReads | None = None  # PostgreSQL: set by the app's lifespan (api.loop_reads)
        # the actor of each token this process has authenticated, by the secret's hash: a request with a
        # known token runs its query as that actor and checks the token (the same SELECT) in the thread
        # hop of its first read, before that read; only an unknown token costs a hop of its own
        self.known_actors: dict[str, object] = {}
        # the latest recorded use of each known token this process has seen (the database's is never older):
        # while it is recent, checking the token only reads (see RequestDB.check_first's `inline`)
        self.last_use_seen: dict[str, object] = {}

    @property
    def graphql_ide_html(self) -> str:
        # strawberry's page loads GraphiQL from a CDN; ours loads the copies in api/static/graphiql
        return _graphiql_html()

    def decode_json(self, data: str | bytes) -> object:
        return decode_json(data)

    async def get_context(self, request: Request, response) -> Context:
        rdb = request.state.rdb  # the session the token was checked in
        if rdb is None:
            rdb = request.state.rdb = RequestDB(self.db, self.executor, self.loop_reads)
        context = Context(db=rdb, actor=request.state.actor, request=request, request_id=request.state.request_id,
                          secret=self.secret, signer=self.signer)
        request.state.context = context
        return context

    async def run(self, request, context=UNSET, root_value=UNSET):  # type: ignore[override]
        if not isinstance(request, Request):
            return await super().run(request, context, root_value)
        request.state.request_id = request_id_of(request)
        request.state.rdb = None
        request.state.context = None
        request.state.actor = None
        request.state.touch_due = None
        request.state.forwarded = False
        started = time.perf_counter()
        response = None
        try:
            response = await self._run(request, context, root_value)
        except HTTPException as exc:
            response = error_response(exc.status_code, exc.reason, "BAD_REQUEST", request.state.request_id)
        except _TooLarge:
            response = error_response(413, f"the request body is over {MAX_BODY} bytes", "REQUEST_TOO_LARGE",
                                      request.state.request_id)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON answer with the request id
            response = failure_response(exc, request.state.request_id)
        finally:
            if request.state.rdb is not None:
                try:
                    await request.state.rdb.close()
                except Exception as exc:  # noqa: BLE001
                    log.warning(json.dumps({"event": "session_close_failed", "request_id": request.state.request_id,
                                            "error": type(exc).__name__}))
            status = response.status_code if response is not None else 500
            log.log(logging.ERROR if status >= 500 else logging.INFO, json.dumps({
                "event": "request", "path": "/graphql", "method": request.method, "status": status,
                "request_id": request.state.request_id, "ms": round((time.perf_counter() - started) * 1000, 1),
                "actor": getattr(request.state.actor, "name", None),
                **({"forwarded": True} if request.state.forwarded else {})}))
        response.headers["x-request-id"] = request.state.request_id
        return response

    async def _run(self, request: Request, context, root_value):
        if request.method == "POST":
            try:
                await asyncio.wait_for(request.body(), self.body_timeout)
            except (TimeoutError, asyncio.TimeoutError):
                return error_response(408, f"the request body did not arrive within {self.body_timeout:g} s",
                                      "REQUEST_TIMEOUT", request.state.request_id, headers={"Connection": "close"})
            except ClientDisconnect:
                return error_response(400, "the client went away before sending the body", "BAD_REQUEST",
                                      request.state.request_id)
            shared = self.db.shared_writer
            if shared is not None and not shared.is_writer:
                answered = await self._forward(request, shared)
                if answered is not None:
                    return answered
        header = request.headers.get("authorization")
        secret = None
        if header:
            scheme, _, secret = header.partition(" ")
            secret = secret.strip()
            if scheme.lower() != "bearer" or not secret:
                return _unauthorized("the Authorization header must be 'Bearer <token>'")
        async with self.gate.slot():
            for attempt in (1, 2):
                dropped = False
                try:
                    if secret is not None:
                        request.state.rdb = rdb = RequestDB(self.db, self.executor, self.loop_reads)
                        request.state.touch_due = None
                        hashed = tokens.secret_hash(secret)
                        known = self.known_actors.get(hashed) if attempt == 1 else None
                        if known is not None:
                            # checked in the thread hop of the query's first read, before that read; only a
                            # read (SQLite: possibly on the event loop) while its last use is recent
                            seen = self.last_use_seen.get(hashed)
                            reads_only = seen is not None and utcnow() - seen < TOUCH_EVERY - TOUCH_MARGIN
                            rdb.check_first(lambda rdb=rdb, known=known, reads_only=reads_only, request=request:
                                            self._recheck(secret, hashed, known, rdb, request if reads_only else None),
                                            inline=reads_only)
                            request.state.actor = known
                        else:
                            try:
                                request.state.actor = await self._authenticate(secret, rdb)
                            except PermissionDenied as err:
                                return _unauthorized(err.message)
                    response = await super().run(request, context, root_value)
                    rdb = request.state.rdb
                    if rdb is not None and rdb.pending:
                        # a query that read nothing: the token still counts
                        with contextlib.suppress(PermissionDenied, _ActorChanged):  # answered below
                            await rdb.in_thread(lambda: None)
                    if request.state.touch_due is not None and rdb is not None and rdb.refused is None:
                        # a use the check left to record (it was run as a read only): in a thread, after the query
                        await rdb.in_thread(request.state.touch_due)
                except sa_exc.DBAPIError as err:
                    # the token's check (or its first use) met a dropped connection: see _met_dropped_connection
                    if attempt == 2 or not err.connection_invalidated or request.state.rdb is None \
                            or request.state.rdb.wrote:
                        raise
                    dropped = True
                finally:
                    # the read session gives its connection back before the slot is free again
                    if request.state.rdb is not None:
                        await request.state.rdb.close()
                refused = request.state.rdb.refused if request.state.rdb is not None else None
                if isinstance(refused, _ActorChanged) and attempt == 1:
                    request.state.context = None
                    continue  # nothing was read or written as the old actor: answer as the token's actor now
                if attempt == 1 and (dropped or self._met_dropped_connection(request)):
                    # the pool has replaced its connections (SQLAlchemy invalidates them all on a disconnect);
                    # a request that wrote nothing runs again on a fresh one, as pool_pre_ping would have made it
                    request.state.context = request.state.rdb = None
                    continue
                if isinstance(refused, PermissionDenied):
                    request.state.actor = None
                    return _unauthorized(refused.message)  # exactly the answer of a token checked first
                break
            ctx_ = request.state.context
            if ctx_ is not None and ctx_.unavailable is not None:
                # the database went away while the query ran: say so, not "Unexpected error"
                return failure_response(ctx_.unavailable, request.state.request_id)
            return response

    async def _forward(self, request: Request, shared) -> Response | None:
        """A mutation answered by the machine's shared writer (api.forwarded_mutations), or None when
        this process answers the request itself (not a mutation, or no writer to send it to)."""
        body = await request.body()
        if not forwarded_mutations.is_mutation(request, body):
            return None
        request_id = request.state.request_id
        sent = forwarded_mutations.message(request, body, request_id)
        async with self.gate.slot():  # (a thread of the pool waits for the answer)
            try:
                reply = await asyncio.get_running_loop().run_in_executor(self.executor, shared.send, "graphql", sent)
            except NoWriter:
                return None
            except (WriterLost, WriterRefused):
                return error_response(503, "the process that makes mutations went away before answering: the "
                                      "mutation may or may not have been made; send it again with the same "
                                      "idempotency key", "WRITER_UNAVAILABLE", request_id)
        request.state.forwarded = True
        return forwarded_mutations.response(reply)

    @staticmethod
    def _met_dropped_connection(request: Request) -> bool:
        """Whether the request failed only because the database had dropped a pooled connection (a restart,
        an idle timeout) and wrote nothing: then it may run again, once."""
        rdb, context = request.state.rdb, request.state.context
        failed = context.unavailable if context is not None else None
        return (rdb is not None and not rdb.wrote and isinstance(failed, sa_exc.DBAPIError)
                and failed.connection_invalidated)

    async def _authenticate(self, secret: str, rdb: RequestDB):
        """The actor for a bearer secret: one thread hop, one SELECT, in the session the query then reads in
        (one pooled connection per request, checked out once). Its first use in this process."""
        now = utcnow()
        actor, last_used = await rdb.read(lambda s: tokens.authenticate_with_last_use(s, secret, now))
        if last_used is None or now - last_used > TOUCH_EVERY:
            await rdb.in_thread(lambda: self._touch(rdb, actor, now))
            last_used = now
        self._remember(secret, actor, last_used)
        return actor

    def _recheck(self, secret: str, hashed: str, known, rdb: RequestDB, read_only_for: Request | None = None) -> None:
        """(Before the request's first database work) the same check as _authenticate, of a token this
        process has seen: unknown, revoked or expired raise PermissionDenied, as on first use.

        With `read_only_for` (the request) it never writes: a use due to be recorded is left to the
        request (request.state.touch_due), which records it in a thread after the query."""
        now = utcnow()
        try:
            actor, last_used = tokens.authenticate_with_last_use(rdb.session(), secret, now)
        except PermissionDenied:
            self.known_actors.pop(hashed, None)
            raise
        if actor != known:
            self.known_actors.pop(hashed, None)
            raise _ActorChanged()
        if last_used is None or now - last_used > TOUCH_EVERY:
            if read_only_for is not None:
                read_only_for.state.touch_due = lambda: self._touch(rdb, actor, now, hashed)
                return
            self._touch(rdb, actor, now)
            last_used = now
        self.last_use_seen[hashed] = last_used

    def _touch(self, rdb: RequestDB, actor, now, hashed: str | None = None) -> None:
        # at most once a minute per token; the read session gives its connection back first, so
        # the request never holds two
        rdb.end_reads()
        with self.db.uow() as uow:
            tokens.touch(uow, actor.token_id, now)
            uow.commit()
        if hashed is not None:
            self.last_use_seen[hashed] = now

    def _remember(self, secret: str, actor, last_used) -> None:
        if len(self.known_actors) >= KNOWN_ACTORS:
            self.known_actors.clear()  # a bound on memory; a forgotten token is checked in a hop of its own again
            self.last_use_seen.clear()
        hashed = tokens.secret_hash(secret)
        self.known_actors[hashed] = actor
        if last_used is not None:
            self.last_use_seen[hashed] = last_used


def decode_json(data: str | bytes) -> object:
    """json.loads that answers deep nesting with a 400, never a RecursionError (a 500)."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise HTTPException(400, f"the request JSON is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(400, "Unable to parse request body as JSON") from None
    if not isinstance(value, (dict, list)):
        raise HTTPException(400, "the request body must be a JSON object with a query")
    if isinstance(value, list) and not all(isinstance(item, dict) for item in value):
        raise HTTPException(400, "every operation of a batch must be a JSON object with a query")
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise HTTPException(400, f"the request JSON is nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return value


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")


def request_id_of(request: Request) -> str:
    """The caller's X-Request-Id if it is a plain token, otherwise a new one."""
    given = request.headers.get("x-request-id") or ""
    # never one shaped like an identity number: request ids are logged as they are
    return given if _REQUEST_ID.fullmatch(given) and not IDENTITY_NUMBER.search(given) else uuid.uuid4().hex


def error_response(status: int, message: str, code: str, request_id: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code, "requestId": request_id}}]},
                        status_code=status, headers={"x-request-id": request_id, **(headers or {})})


def failure_response(exc: BaseException, request_id: str) -> JSONResponse:
    """503 while the database is unreachable, 500 for anything else; both logged with the request id."""
    if database_unavailable(exc):
        log.error(json.dumps({"event": "database_unavailable", "request_id": request_id,
                              "error": type(exc).__name__}))
        return error_response(503, "the database is unavailable; try again shortly", "SERVICE_UNAVAILABLE",
                              request_id, headers={"Retry-After": "5"})
    log.error(json.dumps({"event": "unexpected_error", "request_id": request_id, "error": type(exc).__name__}),
              exc_info=exc)
    return error_response(500, "Unexpected error", "INTERNAL_ERROR", request_id)


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot be reached (down, restarting, pool exhausted)."""
    from sqlalchemy import exc as sa_exc
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    # OperationalError: refused or dropped connections, a server shutting down, SQLite busy for
    # longer than its timeout; all of them pass, and the caller should try again
    return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError))


def quiet_expected_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Keep asyncio from logging an expected error nobody awaited as an ERROR.

    When one field of a query fails, graphql-core stops waiting for its siblings; a DataLoader
    future that then fails with a GraphQLError or a DomainError (say "this needs a bearer
    token") is never retrieved, and asyncio would log it at garbage collection as an error.
    The answer already carries the error that counts; anything else is still logged.
    """
    previous = loop.get_exception_handler()

    def handler(loop_, context):
        exc = context.get("exception")
        if isinstance(exc, (GraphQLError, DomainError)) and "never retrieved" in context.get("message", ""):
            return
        if previous is not None:
            previous(loop_, context)
        else:
            loop_.default_exception_handler(context)

    loop.set_exception_handler(handler)


class DbGate:
    """At most `slots` requests hold database sessions at once; the others wait here, holding nothing.

    The slots equal the pool's connections, so a worker thread never waits for a connection
    that a request waiting for a thread holds (the deadlock of issue 14). One semaphore per
    event loop: TestClient starts a loop per client.
    """

    def __init__(self, slots: int):
        self.slots = slots
        self._semaphores: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores[loop] = asyncio.Semaphore(self.slots)
        return sem

    @contextlib.asynccontextmanager
    async def slot(self):
        async with self._semaphore():
            yield


MAX_BODY = 1024 * 1024  # bytes of one request; a batch of 1 000 evidence items is well below


class BodyLimit:
    """Refuses request bodies over `limit` bytes (413), by Content-Length or while streaming."""

    def __init__(self, app, limit: int = MAX_BODY):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or uploads.OWN_BODY_LIMIT.match(scope.get("path", "")):
            return await self.app(scope, receive, send)  # uploads stream to disk under their own limits
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope, receive, send):
        response = JSONResponse({"errors": [{"message": f"the request body is over {self.limit} bytes",
                                             "extensions": {"code": "REQUEST_TOO_LARGE"}}]}, status_code=413)
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


class _ActorChanged(Exception):
    """A known token now names another actor than the one remembered: the request starts again."""


def _unauthorized(message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]},
                        status_code=401, headers={"WWW-Authenticate": "Bearer"})


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
# JSON answers and everything else: nothing to load, nothing to frame
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def graphiql_csp() -> str:
    """GraphiQL's page: its vendored scripts from /static, its one inline script by hash, inline styles
    (GraphiQL and CodeMirror set them), fetches to this origin only, and never in a frame."""
    import base64
    import hashlib
    html = _graphiql_html()
    hashes = []
    for match in re.finditer(r"<script>(.*?)</script>", html, re.S):
        digest = base64.b64encode(hashlib.sha256(match.group(1).encode("utf-8")).digest()).decode()
        hashes.append(f"'sha256-{digest}'")
    return ("default-src 'self'; script-src 'self' " + " ".join(hashes) + "; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class Guard:
    """Outermost: security headers on every response, and a JSON 500/503 with a request id (logged)
    for anything that escapes the app, instead of Starlette's plain-text 500."""

    def __init__(self, app, csp_for_html: str):
        self.app = app
        self.csp_for_html = csp_for_html.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False
        path = scope.get("path", "")

        async def secured(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", [])]
                present = {k.lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS:
                    if name not in present:
                        headers.append((name, value))
                if b"content-security-policy" not in present:
                    html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)
                    headers.append((b"content-security-policy",
                                    self.csp_for_html if html and path == "/graphql" else DEFAULT_CSP.encode()))
                if path == "/graphql":
                    headers = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, secured)
        except Exception as exc:  # noqa: BLE001
            request_id = uuid.uuid4().hex
            response = failure_response(exc, request_id)
            log.error(json.dumps({"event": "request", "path": path, "method": scope.get("method"),
                                  "status": response.status_code, "request_id": request_id}))
            if not started:
                await response(scope, receive, secured)


def settle_heap() -> None:
    """(Once, in the serving process, after the app is built) put every object made so far out of the
    cyclic garbage collector's reach: modules, the schema, SQLAlchemy's metadata and caches.

    They live as long as the process, yet each full collection walks all of them (~250 000;
    about 100 ms every thousand requests or so, ~0.5 ms a request of the contract query). Objects
    made while serving are collected as before."""
    gc.collect()
    gc.freeze()


def pool_options(url: str, workers: int) -> dict:
    """The service's pool: as many connections as worker threads (and DbGate slots).

    No pool_pre_ping (a SELECT 1 round trip per request): make_engine pings only a connection
    that sat idle (ledger/db.py), and a request that meets a connection the database dropped
    while it was in use, and wrote nothing, runs again on a fresh one (UtfallGraphQL._run).
    """
    if url.startswith("sqlite") and (":memory:" in url or url in ("sqlite://", "sqlite:///")):
        return {}
    return {"pool_size": workers, "max_overflow": 0, "pool_timeout": 10}


def create_app(settings: Settings, db: Database | None = None, *, workers: int = 8,
               body_timeout: float = BODY_TIMEOUT) -> Starlette:
    """The ASGI app for `settings`; tests pass their own `db`."""
    if db is None:
        options = pool_options(settings.database_url, workers)
        if settings.group_commit and "pool_size" in options:
            options["pool_size"] += 1  # the writer's own connection, never waiting behind the slots
        db = Database(make_engine(settings.database_url, **options), group_commit=settings.group_commit,
                      shared_writer=settings.shared_writer)
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="utfall-db")
    gate = DbGate(workers)
    schema = build_schema(production=settings.production)
    signer = signing.signer_for(settings)
    gql = UtfallGraphQL(schema, db, executor, settings.secret, gate, signer, body_timeout=body_timeout,
                        graphql_ide=None if settings.production else "graphiql", allow_queries_via_get=False)

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> JSONResponse:
        def check():
            with db.reading() as s:
                s.execute(text("SELECT 1"))
                return db_schema.current_revision(s.connection())
        try:
            async with gate.slot():
                current = await asyncio.get_running_loop().run_in_executor(executor, check)
        except Exception as exc:  # the database is down or unreachable
            return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, status_code=503)
        head = db_schema.head_revision()
        if current != head:
            return JSONResponse({"status": "migrations pending", "current": current, "head": head}, status_code=503)
        return JSONResponse({"status": "ready", "revision": current})

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        quiet_expected_errors(asyncio.get_running_loop())
        gql.loop_reads = LoopReads.for_database(db, workers, enabled=settings.reads_on_loop)
        if db.shared_writer is not None:
            # answer other processes' mutations once this one holds the writer seat; take it, or find its
            # holder, now rather than at the first mutation
            loop = asyncio.get_running_loop()
            db.shared_writer.handlers["graphql"] = forwarded_mutations.serving(app, loop)
            await loop.run_in_executor(executor, db.shared_writer.writer_address)
        try:
            yield
        finally:
            if db.shared_writer is not None:
                # off the loop: the mutations other processes sent are answered on it meanwhile
                await asyncio.get_running_loop().run_in_executor(None, db.shared_writer.close)
            loop_reads, gql.loop_reads = gql.loop_reads, None
            if loop_reads is not None:
                await loop_reads.dispose()
            executor.shutdown(wait=False)

    async def public_key(_request: Request) -> Response:
        # the key tree heads are signed with, for verifiers (ops/verify_proof.py)
        if signer is None:
            return JSONResponse({"errors": [{"message": "this ledger has no signing key",
                                             "extensions": {"code": "SIGNING_KEY_MISSING"}}]}, status_code=404)
        return Response(signer.public_key_pem(), media_type="application/x-pem-file",
                        headers={"X-Key-Id": signer.key_id})

    routes = [
        Route("/graphql", gql, methods=["GET", "POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/ledger/public-key", public_key),
        *results_page.routes(),
        *finance_exports.routes(),
        *uploads.routes(),
    ]
    if not settings.production:
        # GraphiQL's assets; production has no GraphiQL, so nothing to serve
        routes.append(Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"))
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(Guard, csp_for_html=graphiql_csp()), Middleware(BodyLimit)])
    app.state.db = db
    app.state.settings = settings
    app.state.gate = gate
    app.state.executor = executor
    app.state.signer = signer
    return app
