"""Uploads over HTTP: evidence documents (`PUT/GET /documents/{sha256}`), evidence files
(`POST /contracts/{id}/evidence-imports`) and the upload page (`/upload`).

Authenticated with the same bearer token as /graphql. Bodies are streamed to a temporary
file while they are hashed and counted, never held in memory; each route has its own size
limit (UTFALL_DOCUMENT_MAX_BYTES, UTFALL_IMPORT_MAX_BYTES) instead of the 1 MiB of
/graphql. Everything that is refused is refused before the body is read when it can be
(no token, a wrong role, someone else's contract, a media type or Content-Length that
cannot be taken). The database work runs in the app's worker threads, holding one of its
database slots (api.app.DbGate), so the event loop only moves bytes.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import re
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ledger import documents as docs
from ledger import evidence_import as imp
from ledger import tokens
from ledger.audit import IdempotencyRace
from ledger.errors import Conflict, DomainError, NotFound, PermissionDenied
from ledger.models import utcnow
from ledger.parties import clean_text

CHUNK_TIMEOUT = 30.0  # seconds a client may pause between two parts of a body
LISTED_BAD_ROWS = 10_000  # bad rows listed in one report; the count is always complete
# the upload routes read their own bodies, with their own limits (api.app.BodyLimit skips them)
OWN_BODY_LIMIT = re.compile(r"^/documents/[^/]*$|^/contracts/[^/]+/evidence-imports$")
IMPORT_MEDIA = {"text/csv": "csv", "application/x-ndjson": "jsonl", "application/jsonl": "jsonl",
                "application/x-jsonlines": "jsonl", "application/jsonlines": "jsonl"}
STATUS = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "UNSUPPORTED_MEDIA_TYPE": 415,
          "DOCUMENT_TOO_LARGE": 413, "REQUEST_TOO_LARGE": 413}


def routes() -> list[Route]:
    return [Route("/documents/{sha256}", put_document, methods=["PUT"]),
            Route("/documents/{sha256}", get_document, methods=["GET"]),
            Route("/contracts/{contract_id}/evidence-imports", post_evidence_import, methods=["POST"]),
            Route("/upload", upload_page, methods=["GET"])]


# --- answers --------------------------------------------------------------------------------

def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}], **extra},
                        status_code=status, headers={"Cache-Control": "no-store", **headers})


def _domain_error(err: DomainError, **extra: Any) -> JSONResponse:
    status = STATUS.get(err.code) or (404 if isinstance(err, NotFound) else 409 if isinstance(err, Conflict)
                                      else 403 if isinstance(err, PermissionDenied) else 422)
    return _error(status, err.code, err.message, **extra)


NOT_FOUND = "no such document"  # missing and not yours answer alike


class _BodyTooLarge(Exception):
    pass


# --- plumbing -------------------------------------------------------------------------------

def _bearer(request: Request) -> str | None:
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    return secret.strip() if scheme.lower() == "bearer" and secret.strip() else None


async def _in_thread(request: Request, fn, *args):
    """Run `fn` in the app's worker threads while holding a database slot."""
    state = request.app.state
    async with state.gate.slot():
        return await asyncio.get_running_loop().run_in_executor(state.executor, fn, *args)


def _authenticate(db, secret: str):
    with db.reading() as s:
        return tokens.authenticate(s, secret, datetime.now(timezone.utc))


def _declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    return int(raw) if raw is not None and raw.isdigit() else None


async def _receive(request: Request, fd: int, limit: int) -> tuple[str, int]:
    """Stream the body into the open file `fd`: (sha256 hex, bytes). _BodyTooLarge past `limit`."""
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise _BodyTooLarge()
    digest, size = hashlib.sha256(), 0
    chunks = request.stream().__aiter__()
    with os.fdopen(fd, "wb") as out:
        while True:
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), CHUNK_TIMEOUT)
            except StopAsyncIteration:
                break
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge()
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest(), size


async def _arrive(request: Request, limit: int, too_large: str, what: str) -> tuple[Path, str, int] | Response:
    """The body in a new temporary file (in the document store's `incoming`: the same disk, no
    memory), with its SHA-256 and size; or the answer when it is too large or does not arrive.
    The caller removes the file."""
    fd, temporary = _store(request).incoming()
    try:
        sha256, size = await _receive(request, fd, limit)
        return temporary, sha256, size
    except _BodyTooLarge:
        answer = _error(413, too_large, f"{what} is at most {limit} bytes")
    except (ClientDisconnect, TimeoutError, asyncio.TimeoutError):
        answer = _error(400, "BAD_REQUEST", f"{what} did not arrive whole")
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    temporary.unlink(missing_ok=True)
    return answer


# --- documents ------------------------------------------------------------------------------

def _store(request: Request) -> docs.DocumentStore:
    return docs.DocumentStore(request.app.state.settings.document_dir)


def _document_json(row, created: bool) -> dict:
    return {"sha256": row.sha256, "mediaType": row.media_type, "size": row.size_bytes, "uploadedBy": row.uploaded_by,
            "uploadedAt": row.uploaded_at.isoformat(), "url": f"/documents/{row.sha256}", "created": created}


async def put_document(request: Request) -> Response:
    """Upload a document's bytes under their SHA-256: 201 when new, 200 when this party has them."""
    sha256 = request.path_params["sha256"]
    secret = _bearer(request)
    if secret is None:
        return _error(401, "UNAUTHENTICATED", "the Authorization header must be 'Bearer <token>'")
    db, settings = request.app.state.db, request.app.state.settings
    try:
        actor = await _in_thread(request, _authenticate, db, secret)
        docs.require_uploader(actor)
        docs.check_sha256(sha256)
        media_type = docs.media_type_of(request.headers.get("content-type"))
    except DomainError as err:
        return _domain_error(err)
    store = _store(request)
    arrival = await _arrive(request, settings.document_max_bytes, "DOCUMENT_TOO_LARGE", "a document")
    if isinstance(arrival, Response):
        return arrival
    temporary, arrived, size = arrival
    try:
        if arrived != sha256:
            return _error(422, "DOCUMENT_HASH_MISMATCH",
                          f"the bytes received have SHA-256 {arrived}, not the {sha256} of the address; nothing was kept")

        def keep():
            store.keep(temporary, sha256)
            with db.uow() as uow:
                row, created = docs.record_upload(uow, actor=actor, sha256=sha256, media_type=media_type,
                                                  size_bytes=size)
                answer = _document_json(row, created)
                uow.commit()
            return answer
        try:
            answer = await _in_thread(request, keep)
        except DomainError as err:
            return _domain_error(err)
        return JSONResponse(answer, status_code=201 if answer["created"] else 200,
                            headers={"Location": answer["url"], "Cache-Control": "no-store"})
    finally:
        temporary.unlink(missing_ok=True)  # gone already when it was kept


async def get_document(request: Request) -> Response:
    """The bytes, to the uploading party and to those who may see evidence naming them; else 404."""
    sha256 = request.path_params["sha256"]
    secret = _bearer(request)
    if secret is None:
        return _error(401, "UNAUTHENTICATED", "the Authorization header must be 'Bearer <token>'")
    db = request.app.state.db
    store = _store(request)

    def find():
        with db.reading() as s:
            actor = tokens.authenticate(s, secret, datetime.now(timezone.utc))
            if not docs.SHA256.fullmatch(sha256):
                return None
            row = docs.readable_upload(s, actor, sha256)
            return None if row is None else (row.media_type, store.path_of(sha256))
    try:
        found = await _in_thread(request, find)
    except PermissionDenied as err:
        return _domain_error(err)
    if found is None or not found[1].is_file():
        return _error(404, "NOT_FOUND", NOT_FOUND)
    media_type, path = found
    return FileResponse(path, media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="{sha256}"', "Cache-Control": "private, no-store",
        "ETag": f'"{sha256}"'})


# --- evidence files -------------------------------------------------------------------------

def _contract_id(raw: str) -> int:
    if raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    from api.graphql.base import from_global_id
    return from_global_id(raw, "OutcomeContract", field="contractId")


def _import_format(request: Request) -> str:
    given = request.query_params.get("format")
    if given is None:
        bare = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        given = IMPORT_MEDIA.get(bare)
        if given is None:
            raise docs.UnsupportedMediaType(
                "send an evidence file as text/csv or application/x-ndjson (JSON Lines), or say ?format=csv|jsonl",
                code="UNSUPPORTED_MEDIA_TYPE", field=["Content-Type"])
    if given not in imp.FORMATS:
        raise imp.ValidationError(f"the format is csv or jsonl, not {given!r}", code="INVALID_FORMAT", field=["format"])
    return given


def _report(contract_id: int, result: imp.ImportResult | None, bad: list, n_bad: int, size: int) -> dict:
    return {
        "contractId": contract_id,
        "fileName": result.file_name if result else None, "format": result.format if result else None,
        "sha256": result.sha256 if result else None, "bytes": size,
        "rows": result.rows if result else 0, "imported": result.imported if result else 0,
        "rejected": n_bad, "documents": result.documents if result else 0,
        "firstEvidenceId": result.first_id if result else None, "lastEvidenceId": result.last_id if result else None,
        "replayed": bool(result and result.replayed),
        "badRows": [{"line": b.line, "errors": [{"code": e.code, "field": ".".join(e.field), "message": e.message}
                                                for e in b.errors]} for b in bad],
        "badRowsNotListed": max(0, n_bad - len(bad)),
    }


async def post_evidence_import(request: Request) -> Response:
    """Import a CSV or JSON Lines file of evidence for the contract, as the token's party:
    the same all-or-nothing importer as `utfall evidence import`, its report as JSON."""
    secret = _bearer(request)
    if secret is None:
        return _error(401, "UNAUTHENTICATED", "the Authorization header must be 'Bearer <token>'")
    db, settings = request.app.state.db, request.app.state.settings
    q = request.query_params
    key = request.headers.get("idempotency-key")
    skip_bad = q.get("skipBad", "").lower() in ("1", "true", "yes")
    try:
        contract_id = _contract_id(request.path_params["contract_id"])
        fmt = _import_format(request)
        file_name = clean_text(q.get("fileName") or f"upload.{fmt}", "fileName", max_len=200)

        def check():
            with db.reading() as s:
                actor = tokens.authenticate(s, secret, datetime.now(timezone.utc))
                imp.check_may_import(s, actor=actor, contract_id=contract_id)
            return actor
        actor = await _in_thread(request, check)
    except DomainError as err:
        return _domain_error(err)
    arrival = await _arrive(request, settings.import_max_bytes, "REQUEST_TOO_LARGE", "an evidence file")
    if isinstance(arrival, Response):
        return arrival
    temporary, sha256, size = arrival
    try:
        bad: list = []
        n_bad = 0

        def on_bad_row(row) -> None:
            nonlocal n_bad
            n_bad += 1
            if len(bad) < LISTED_BAD_ROWS:
                bad.append(row)

        def run():
            nonlocal bad, n_bad
            for attempt in (1, 2):  # a concurrent request with the same key committed first: its result
                bad, n_bad = [], 0
                try:
                    with open(temporary, "rb") as source, db.uow() as uow:
                        result = imp.import_evidence_once(
                            uow, idempotency_key=key, file_sha256=sha256, actor=actor, contract_id=contract_id,
                            source=source, file_name=file_name, format=fmt, today=utcnow().date(), skip_bad=skip_bad,
                            on_bad_row=on_bad_row)
                        uow.commit()
                    return result
                except IdempotencyRace:
                    if attempt == 2:
                        raise
        try:
            result = await _in_thread(request, run)
        except imp.ImportRejected as err:
            report = _report(contract_id, err.result, bad, n_bad, size)
            return _error(422, "BAD_ROWS", err.message, report=report)
        except imp.ImportFileError as err:
            return _domain_error(err, report={**_report(contract_id, None, [], 0, size), "line": err.line})
        except DomainError as err:
            return _domain_error(err)
        report = _report(contract_id, result, bad, result.rejected if result.replayed else n_bad, size)
        return JSONResponse(report, status_code=200 if result.replayed else 201, headers={"Cache-Control": "no-store"})
    finally:
        temporary.unlink(missing_ok=True)


# --- the upload page ------------------------------------------------------------------------

PAGE_SCRIPT = r"""
const form = document.getElementById('upload');
const out = document.getElementById('report');
function line(text, cls) { const li = document.createElement('li'); li.textContent = text; if (cls) li.className = cls; return li; }
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  out.replaceChildren(line('Uploading…'));
  const token = form.token.value.trim(), contract = form.contract.value.trim(), file = form.file.files[0];
  if (!token || !contract || !file) { out.replaceChildren(line('Give a token, a contract and a file.', 'bad')); return; }
  const csv = /\.csv$/i.test(file.name);
  const url = '/contracts/' + encodeURIComponent(contract) + '/evidence-imports?format=' + (csv ? 'csv' : 'jsonl') +
              '&fileName=' + encodeURIComponent(file.name);
  let answer;
  try {
    const r = await fetch(url, {method: 'POST', body: file, headers: {'Authorization': 'Bearer ' + token,
      'Content-Type': csv ? 'text/csv' : 'application/x-ndjson'}});
    answer = await r.json();
  } catch (e) { out.replaceChildren(line('The upload failed: ' + e, 'bad')); return; }
  const report = answer.report || answer;
  const items = [];
  if (answer.errors) items.push(line(answer.errors[0].extensions.code + ': ' + answer.errors[0].message, 'bad'));
  if (report.rows !== undefined) {
    const s = document.createElement('li'); s.id = 'summary';
    s.textContent = report.imported + ' imported, ' + report.rejected + ' bad, of ' + report.rows + ' rows';
    items.push(s);
  }
  for (const b of report.badRows || []) {
    for (const e of b.errors) items.push(line('line ' + b.line + ': ' + e.code + (e.field ? ' (' + e.field + ')' : '') + ': ' + e.message, 'bad'));
  }
  if (report.badRowsNotListed) items.push(line('… and ' + report.badRowsNotListed + ' more bad rows', 'bad'));
  out.replaceChildren(...items);
});
"""
PAGE_STYLE = ("body{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;line-height:1.5}"
              "label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}"
              "button{margin-top:1rem;padding:.5rem 1.5rem}.bad{color:#a00}#report{margin-top:1.5rem}")


def _sha(text: str) -> str:
    import base64
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


@cache
def _page() -> tuple[str, str]:
    html = ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f'<title>Upload evidence</title><style>{PAGE_STYLE}</style></head><body>'
            '<h1>Upload an evidence file</h1>'
            '<p>A CSV or JSON Lines file in the evidence import format (schemas/evidence-import.schema.json). '
            'The whole file is imported, or nothing: every bad line is listed.</p>'
            '<form id="upload">'
            '<label for="token">Your API token</label><input id="token" name="token" type="password" autocomplete="off">'
            '<label for="contract">Contract ID</label><input id="contract" name="contract">'
            '<label for="file">Evidence file (.csv or .jsonl)</label>'
            '<input id="file" name="file" type="file" accept=".csv,.jsonl,.ndjson">'
            '<button type="submit">Upload</button></form>'
            '<ul id="report" aria-live="polite"></ul>'
            f'<script>{PAGE_SCRIPT}</script></body></html>')
    csp = (f"default-src 'none'; script-src {_sha(PAGE_SCRIPT)}; style-src {_sha(PAGE_STYLE)}; connect-src 'self'; "
           "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return html, csp


async def upload_page(_request: Request) -> Response:
    html, csp = _page()
    return HTMLResponse(html, headers={"Content-Security-Policy": csp, "Cache-Control": "no-cache"})
