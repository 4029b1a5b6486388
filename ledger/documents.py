"""Evidence documents uploaded by providers: the bytes stored once by their SHA-256, and who
uploaded them when.

The bytes live in a `DocumentStore` (a directory, UTFALL_DOCUMENT_DIR), each file named by
its hash, so the same bytes are stored once however often they are uploaded and a file is
never rewritten. A `DocumentUpload` row says a party uploaded them; it is never changed or
deleted (database triggers refuse it). Evidence names its documents by hash; a document
can be read by the party that uploaded it and by whoever may see an evidence item naming
it that the uploading party submitted, and by no one else: knowing a hash is never enough.

Evidence may name a document that is not uploaded (yet): submitting stays as it was for
clients that only send metadata, and the document shows `uploaded: false` until its
provider uploads the bytes.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sqlalchemy import and_, select
from sqlalchemy.exc import IntegrityError

from ledger.access import Actor, require_role
from ledger.db import UnitOfWork
from ledger.errors import DomainError, PermissionDenied, ValidationError
from ledger.evidence import SHA256
from ledger.models import DocumentUpload, Evidence, EvidenceDocument, OutcomeContract, utcnow
from ledger.reads import visible_contracts

# What evidence documents may be: scans and photos, office files, plain data. Anything a
# browser would run (HTML, SVG, scripts) is refused, and downloads are served as attachments.
ALLOWED_MEDIA_TYPES = frozenset({
    "application/pdf", "image/png", "image/jpeg", "image/tiff", "text/plain", "text/csv",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",  # .docx
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",  # .xlsx
    "application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.spreadsheet",
    "application/msword", "application/vnd.ms-excel",
})
UPLOAD_ROLES = ("PROVIDER",)  # those who submit evidence upload its documents


class UnsupportedMediaType(DomainError):
    code = "UNSUPPORTED_MEDIA_TYPE"


class DocumentTooLarge(DomainError):
    code = "DOCUMENT_TOO_LARGE"


def media_type_of(content_type: str | None) -> str:
    """The bare media type of a Content-Type header, if it is one documents may have."""
    bare = (content_type or "").split(";", 1)[0].strip().lower()
    if bare not in ALLOWED_MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"documents are {', '.join(sorted(ALLOWED_MEDIA_TYPES))}; not {bare or 'a missing Content-Type'}",
            code="UNSUPPORTED_MEDIA_TYPE", field=["Content-Type"])
    return bare


def check_sha256(sha256: str) -> str:
    if not SHA256.fullmatch(sha256):
        raise ValidationError("a document's sha256 is 64 lower-case hex digits", code="INVALID_SHA256",
                              field=["sha256"])
    return sha256


def require_uploader(actor: Actor | None) -> Actor:
    actor = require_role(actor, *UPLOAD_ROLES)
    if actor.party_id is None:
        raise PermissionDenied("uploading needs a token of a provider party", code="PERMISSION_DENIED")
    return actor


class DocumentStore:
    """A directory of files named by their SHA-256 (`ab/abcdef…`), written once, never changed.

    New bytes arrive in `incoming/` on the same file system and are renamed into place only
    once their hash is checked, so a reader never sees half a document.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path_of(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def incoming(self) -> tuple[int, Path]:
        """A new temporary file for arriving bytes: (fd, path)."""
        folder = self.root / "incoming"
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", dir=folder)
        return fd, Path(name)

    def keep(self, temporary: Path, sha256: str) -> bool:
        """Move checked bytes into place; False (and the copy dropped) when they are there already."""
        target = self.path_of(sha256)
        if target.is_file():
            temporary.unlink(missing_ok=True)
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(temporary, 0o440)
        os.replace(temporary, target)  # atomic; a concurrent upload of the same bytes writes the same file
        return True


def record_upload(uow: UnitOfWork, *, actor: Actor, sha256: str, media_type: str,
                  size_bytes: int) -> tuple[DocumentUpload, bool]:
    """The actor's party's upload of these bytes: (row, True) when new, (its earlier row, False)."""
    actor = require_uploader(actor)
    s = uow.session
    U = DocumentUpload
    earlier = s.execute(select(U).where(U.sha256 == sha256, U.party_id == actor.party_id)).scalar_one_or_none()
    if earlier is not None:
        return earlier, False
    row = U(sha256=check_sha256(sha256), party_id=actor.party_id, media_type=media_type, size_bytes=size_bytes,
            uploaded_by=actor.label, uploaded_at=utcnow())
    try:
        with s.begin_nested():
            s.add(row)
    except IntegrityError:
        # the same party sent the same bytes at the same moment and its row committed first: the
        # upload is one and the same, so answer with that row rather than a conflict
        earlier = s.execute(select(U).where(U.sha256 == sha256, U.party_id == actor.party_id)).scalar_one_or_none()
        if earlier is None:
            raise
        return earlier, False
    return row, True


def readable_upload(s, actor: Actor, sha256: str) -> DocumentUpload | None:
    """The upload the actor may read these bytes through, or None (missing and forbidden alike):
    its own party's, or one by the party that submitted an evidence item naming the hash in a
    contract the actor may see."""
    U, E, D = DocumentUpload, Evidence, EvidenceDocument
    if actor.party_id is not None:
        own = s.execute(select(U).where(U.sha256 == sha256, U.party_id == actor.party_id)).scalar_one_or_none()
        if own is not None:
            return own
    stmt = (select(U).join(E, E.submitted_party_id == U.party_id)
            .join(D, and_(D.evidence_id == E.id, D.sha256 == U.sha256)).where(U.sha256 == sha256))
    clause = visible_contracts(actor)
    if clause is not None:
        stmt = stmt.join(OutcomeContract, OutcomeContract.id == E.contract_id).where(clause)
    return s.execute(stmt.order_by(U.id).limit(1)).scalars().first()
