"""Finance exports over HTTP: /exports/{obligations|payouts|ledger}.{csv|xlsx}.

Authenticated with the same bearer token as /graphql (`Authorization: Bearer <token>`): fund
managers, admins and auditors get everything, a municipality its own (see
ledger.publishing.finance); any other role 403, no or a bad token 401. CSV is what Swedish
Excel opens as it is (UTF-8 BOM, semicolons, decimal comma, CRLF); .xlsx is an Excel workbook.
"""
from __future__ import annotations

from datetime import datetime, timezone

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ledger import tokens
from ledger.errors import PermissionDenied
from ledger.publishing import finance

MEDIA = {"csv": "text/csv; charset=utf-8",
         "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def routes() -> list[Route]:
    return [Route("/exports/{name}.{fmt}", export, methods=["GET"])]


def _error(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status_code=status,
                        headers=headers)


def build(db, secret: str, name: str, fmt: str) -> bytes:
    """Authenticate and build the file in one read session (in a worker thread)."""
    with db.reading() as s:
        actor = tokens.authenticate(s, secret, datetime.now(timezone.utc))
        t = finance.table(s, name, actor=actor)
    return finance.swedish_csv(t) if fmt == "csv" else finance.xlsx(t)


async def export(request: Request) -> Response:
    name, fmt = request.path_params["name"], request.path_params["fmt"]
    if name not in finance.EXPORTS or fmt not in MEDIA:
        return _error(404, "NOT_FOUND", f"exports are {', '.join(finance.EXPORTS)} as .csv or .xlsx")
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return _error(401, "UNAUTHENTICATED", "the Authorization header must be 'Bearer <token>'")
    try:
        gate = getattr(request.app.state, "gate", None)  # one of the pool's connections (api.app.DbGate)
        if gate is None:
            body = await run_in_threadpool(build, request.app.state.db, secret.strip(), name, fmt)
        else:
            async with gate.slot():
                body = await run_in_threadpool(build, request.app.state.db, secret.strip(), name, fmt)
    except PermissionDenied as err:
        return _error(401 if err.code == "UNAUTHENTICATED" else 403, err.code, err.message)
    filename = f"utfall-{name}-{datetime.now(timezone.utc):%Y-%m-%d}.{fmt}"
    return Response(body, media_type=MEDIA[fmt], headers={
        "Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff"})
