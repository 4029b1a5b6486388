"""The HTTP app: GraphQL at /graphql (GraphiQL in development), /healthz, /readyz and /results."""
from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import cache
from pathlib import Path

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from strawberry.asgi import GraphQL
from strawberry.types.unset import UNSET

from api import finance_exports, results_page
from api.graphql.base import Context, RequestDB
from api.graphql.schema import build_schema
from ledger import signing, tokens
from ledger.config import Settings
from ledger.db import Database, make_engine
from ledger.errors import PermissionDenied
from ledger.models import utcnow
from ledger import schema as db_schema

log = logging.getLogger("utfall")
# last-used times are written at most this often per token, so reads stay reads
TOUCH_EVERY = timedelta(minutes=1)
STATIC_DIR = Path(__file__).parent / "static"


@cache
def _graphiql_html() -> str:
    return (STATIC_DIR / "graphiql" / "graphiql.html").read_text(encoding="utf-8")


class UtfallGraphQL(GraphQL):
    """Authenticates the bearer token and builds a fresh context (and DataLoaders) per request."""

    def __init__(self, schema, db: Database, executor: ThreadPoolExecutor, secret: bytes, signer=None, **kw):
        super().__init__(schema, **kw)
        self.db = db
        self.executor = executor
        self.secret = secret
        self.signer = signer

    @property
    def graphql_ide_html(self) -> str:
        # strawberry's page loads GraphiQL from a CDN; ours loads the copies in api/static/graphiql
        return _graphiql_html()

    async def get_context(self, request: Request, response) -> Context:
        rdb = RequestDB(self.db, self.executor)
        request.state.rdb = rdb
        return Context(db=rdb, actor=request.state.actor, request=request, request_id=request.state.request_id,
                       secret=self.secret, signer=self.signer)

    async def run(self, request, context=UNSET, root_value=UNSET):  # type: ignore[override]
        if not isinstance(request, Request):
            return await super().run(request, context, root_value)
        request.state.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.rdb = None
        header = request.headers.get("authorization")
        request.state.actor = None
        if header:
            scheme, _, secret = header.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                return _unauthorized("the Authorization header must be 'Bearer <token>'")
            rdb = RequestDB(self.db, self.executor)
            now = utcnow()
            try:
                actor = await rdb.read(lambda s: tokens.authenticate(s, secret.strip(), now))
                last = await rdb.read(lambda s: s.get(tokens.ApiToken, actor.token_id).last_used_at)
            except PermissionDenied as err:
                return _unauthorized(err.message)
            finally:
                await rdb.close()
            if last is None or now - last > TOUCH_EVERY:
                await rdb.write(lambda uow: tokens.touch(uow, actor.token_id, now))
            request.state.actor = actor
        started = time.perf_counter()
        status = 500
        try:
            response = await super().run(request, context, root_value)
            response.headers["x-request-id"] = request.state.request_id
            status = response.status_code
            return response
        finally:
            if request.state.rdb is not None:
                await request.state.rdb.close()
            log.info(json.dumps({"event": "request", "path": "/graphql", "method": request.method, "status": status,
                                 "request_id": request.state.request_id,
                                 "ms": round((time.perf_counter() - started) * 1000, 1),
                                 "actor": getattr(request.state.actor, "name", None)}))


MAX_BODY = 1024 * 1024  # bytes of one request; a batch of 1 000 evidence items is well below


class BodyLimit:
    """Refuses request bodies over `limit` bytes (413), by Content-Length or while streaming."""

    def __init__(self, app, limit: int = MAX_BODY):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
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


def _unauthorized(message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]},
                        status_code=401, headers={"WWW-Authenticate": "Bearer"})


def create_app(settings: Settings, db: Database | None = None, *, workers: int = 8) -> Starlette:
    """The ASGI app for `settings`; tests pass their own `db`."""
    db = db or Database(make_engine(settings.database_url))
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="utfall-db")
    schema = build_schema(production=settings.production)
    signer = signing.signer_for(settings)
    gql = UtfallGraphQL(schema, db, executor, settings.secret, signer,
                        graphql_ide=None if settings.production else "graphiql", allow_queries_via_get=False)

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> JSONResponse:
        def check():
            with db.reading() as s:
                s.execute(text("SELECT 1"))
                return db_schema.current_revision(s.connection())
        try:
            import asyncio
            current = await asyncio.get_running_loop().run_in_executor(executor, check)
        except Exception as exc:  # the database is down or unreachable
            return JSONResponse({"status": "unavailable", "error": type(exc).__name__}, status_code=503)
        head = db_schema.head_revision()
        if current != head:
            return JSONResponse({"status": "migrations pending", "current": current, "head": head}, status_code=503)
        return JSONResponse({"status": "ready", "revision": current})

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
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
    ]
    if not settings.production:
        # GraphiQL's assets; production has no GraphiQL, so nothing to serve
        routes.append(Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(BodyLimit)])
    app.state.db = db
    app.state.settings = settings
    app.state.signer = signer
    return app
