"""Bulk import of outcome evidence from CSV or JSON Lines files (`utfall evidence import`).

The file's format is the JSON Schema `schemas/evidence-import.schema.json` (one schema for
one item; in CSV a row is mapped to an item first). The import is one use case in one unit
of work: all or nothing, or with `skip_bad` all the good rows and none of the bad ones.

It streams: rows are read, validated and written in batches, and nothing kept grows with the
file, only with the contract (the lookups below, and the once-only claims accepted so far,
which are at most participants × once-only metrics). Bad rows go to a callback as they are
found, so every one can be reported with its line number.

Speed: a row is never a query. The rules of `ledger.evidence._submit_one` are applied in
Python against lookups loaded once (the contract's participants with their enrolment dates,
every terms version's metrics, the once-only claims already made), and good rows are
written in batches: COPY on PostgreSQL, the driver's executemany on SQLite. On PostgreSQL
the contract's participant rows are locked FOR UPDATE while the lookups are loaded, as
`_submit_one` locks the one participant it claims for, so a concurrent claim waits for the
import and then sees its rows, and the import sees every claim committed before it.
"""
from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select

from ledger.access import Actor, require_role
from ledger.audit import canonical_json
from ledger.contracts import terms_history
from ledger.db import UnitOfWork
from ledger.errors import Conflict, DomainError, MultipleErrors, NotFound, ValidationError
from ledger.evidence import SHA256, Claim, ClaimRules, Document, _own_contract, _require_claimable, _within_term
from ledger.models import AuditEvent, Evidence, OutcomeContract, Participant, utcnow
from ledger.parties import clean_text

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "evidence-import.schema.json"
FORMATS = ("csv", "jsonl")
ITEM_COLUMNS = ("participantId", "metricCode", "achievedOn", "periodStart", "periodEnd", "value")
DOCUMENT_COLUMNS = {"document_sha256": "sha256", "document_filename": "filename", "document_media_type": "mediaType"}
REQUIRED_COLUMNS = ("participantId", "metricCode")
DEFAULT_BATCH = 5000
KEPT_ERRORS = 1000  # bad rows kept in the exception; all of them go to `on_bad_row`
PROGRESS_EVERY = 1000  # rows between progress callbacks

# a schema error's code, by the field it is about (anything else: INVALID_ROW). The codes are
# those the API gives for the same mistakes; a metric code of the wrong form is unknown,
# as every metric's code has that form (ledger.contracts.METRIC_CODE).
FIELD_CODES = {
    "participantId": "INVALID_ID", "metricCode": "UNKNOWN_METRIC", "achievedOn": "INVALID_DATE",
    "periodStart": "INVALID_DATE", "periodEnd": "INVALID_DATE", "value": "INVALID_DECIMAL",
    "documents": "INVALID_DOCUMENTS", "sha256": "INVALID_SHA256", "filename": "INVALID_TEXT", "mediaType": "INVALID_TEXT",
}
FIELD_HINTS = {
    "INVALID_ID": "is not a participant ID (a global ID or a plain number)",
    "UNKNOWN_METRIC": "is not a metric code (A-Z, 0-9 and _)",
    "INVALID_DATE": "is not a date YYYY-MM-DD",
    "INVALID_DECIMAL": "is not a plain decimal number such as \"12.50\" (a string; no exponent, NaN or decimal comma)",
    "INVALID_SHA256": "is not 64 lower-case hex digits",
}
# The same patterns as the schema's, checked again in Python so that a value is never
# taken in a form the schema refuses, whichever validator answered (see `_validators`).
VALUE = re.compile(r"-?[0-9]{1,18}(\.[0-9]{1,12})?")
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


# --- results and errors ---------------------------------------------------------------------

@dataclass(frozen=True)
class RowError:
    code: str
    message: str
    field: tuple[str, ...] = ()


@dataclass(frozen=True)
class BadRow:
    """A row that is not imported: its first line in the file, why, and the row as read
    (CSV: the list of fields, with the header in `columns`; JSON Lines: the object, or the
    line's text when it is not JSON)."""

    line: int
    errors: tuple[RowError, ...]
    raw: Any
    columns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ImportResult:
    file_name: str
    sha256: str
    format: str
    rows: int  # data rows read
    imported: int  # evidence rows written (0 when the import is refused)
    rejected: int  # bad rows
    documents: int  # document rows written
    first_id: int | None = None
    last_id: int | None = None
    audit_event_id: int | None = None  # the "importEvidence" audit event that records it
    replayed: bool = False  # a retry under the same idempotency key: the first import's counts


class ImportFileError(ValidationError):
    """The file as a whole cannot be read (its header, its encoding): nothing is imported."""

    def __init__(self, message: str, *, code: str, line: int):
        super().__init__(f"line {line}: {message}", code=code, field=["line", str(line)])
        self.line = line


class ImportRejected(MultipleErrors):
    """Some rows are bad and `skip_bad` was not given: nothing is imported.

    `bad_rows` holds the first KEPT_ERRORS bad rows and `errors` their errors as domain
    errors with the field path ["line", "N", ...]; every bad row was given to `on_bad_row`
    as it was found.
    """

    code = "BAD_ROWS"

    def __init__(self, bad_rows: list[BadRow], result: ImportResult):
        super().__init__([ValidationError(e.message, code=e.code, field=["line", str(b.line), *e.field])
                          for b in bad_rows for e in b.errors])
        self.message = f"{result.rejected} of {result.rows} rows are bad; nothing was imported"
        self.bad_rows = bad_rows
        self.result = result

    def __str__(self) -> str:
        return self.message


# --- the schema -----------------------------------------------------------------------------

@lru_cache(maxsize=1)
def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _ecma_pattern(validator, pattern: str, instance: Any, schema: dict):
    """JSON Schema's "pattern" as ECMA-262 reads it: `$` is the end of the text. (Python's
    `re` also lets `$` match before a final newline, so "12\\n" would pass "^[0-9]+$".)"""
    from jsonschema.exceptions import ValidationError as SchemaError
    if not isinstance(instance, str):
        return
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    if not re.search(pattern, instance):
        yield SchemaError(f"{instance!r} does not match {pattern!r}")


@lru_cache(maxsize=1)
def _validators() -> tuple[Callable[[Any], bool], Any]:
    """(is_valid, detailed validator) for one item.

    `jsonschema` (pure Python) takes 35–100 µs an item here, more than all the rest of an
    import row; `jsonschema-rs` answers is_valid in under 1 µs, so it is the gate when it
    is installed, and `jsonschema` explains the rows it refuses (few). Both implement draft
    2020-12 with "format" as an annotation only (dates are parsed below) and "pattern" with
    ECMA-262's `$`, so they agree; the patterns use [0-9], not \\d, for the same reason.
    """
    from jsonschema import Draft202012Validator, validators
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    detailed = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})(schema)
    try:
        import jsonschema_rs
    except ImportError:  # slower, same verdicts
        return detailed.is_valid, detailed
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=False).is_valid, detailed


def validator_name() -> str:
    fast, detailed = _validators()
    return "jsonschema" if fast == detailed.is_valid else "jsonschema-rs"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def schema_errors(item: Any) -> tuple[RowError, ...]:
    """Why `item` does not match the schema, one RowError per problem found."""
    _, detailed = _validators()
    out = []
    for e in detailed.iter_errors(item):
        path = tuple(str(p) for p in e.absolute_path)
        if e.validator == "required" and isinstance(e.instance, dict):
            missing = [p for p in e.validator_value if p not in e.instance]
            for name in missing:
                out.append(RowError("REQUIRED", f"{name} is required", (*path, name)))
        elif e.validator == "additionalProperties" and isinstance(e.instance, dict):
            allowed = e.schema.get("properties", {})
            for name in (k for k in e.instance if k not in allowed):
                out.append(RowError("UNKNOWN_FIELD", f"{name} is not a field of an evidence item", (*path, str(name))))
        elif not path:
            out.append(RowError("INVALID_ROW", "an item is one JSON object" if e.validator == "type" else e.message))
        else:
            code = FIELD_CODES.get(next((p for p in reversed(path) if not p.isdigit()), ""), "INVALID_ROW")
            hint = FIELD_HINTS.get(code)
            message = f"{'.'.join(path)} {hint}: {_short(e.instance)}" if hint else f"{'.'.join(path)}: {e.message}"
            out.append(RowError(code, message, path))
    if not out:  # the fast validator refused what jsonschema takes: still refused
        out.append(RowError("INVALID_ROW", "the item does not match the evidence import schema"))
    return tuple(dict.fromkeys(out))  # jsonschema reports `required` once per missing name


# --- reading files --------------------------------------------------------------------------

class _Hashing(io.RawIOBase):
    """A binary stream that hashes and counts the bytes read through it."""

    def __init__(self, raw: IO[bytes]):
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._raw.read(len(b))
        n = len(data)
        b[:n] = data
        self.sha256.update(data)
        self.bytes_read += n
        return n

    def drain(self) -> None:
        """Hash what is left of the source (the readers above may close this stream, not it)."""
        while data := self._raw.read(1 << 16):
            self.sha256.update(data)
            self.bytes_read += len(data)


Row = tuple[int, Any, tuple[RowError, ...], Any]  # (line, item or None, errors, raw)


def _csv_rows(stream: io.BufferedReader) -> tuple[tuple[str, ...], Iterator[Row]]:
    """The header, and (line, item, errors, raw) for each data row; an item is built as the
    schema describes it, an empty cell being an absent value."""
    # Swedish spreadsheets write semicolons: the header's delimiter is the file's (peeked at,
    # so the csv reader reads the file itself, with nothing in between)
    first = stream.peek(1 << 16).split(b"\n", 1)[0].decode("utf-8", "replace")
    delimiter = max((",", ";", "\t"), key=first.count)
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    try:
        header = tuple(name.strip() for name in next(reader, ()))
    except UnicodeDecodeError:
        raise ImportFileError("the file is not UTF-8 text", code="INVALID_ENCODING", line=1) from None
    except csv.Error as exc:
        raise ImportFileError(f"the header is not a CSV row: {exc}", code="INVALID_CSV", line=1) from None
    if not any(header):
        raise ImportFileError("the file is empty: a CSV file starts with a header line", code="EMPTY_FILE", line=1)
    _check_header(header)
    main = [(i, name) for i, name in enumerate(header) if name in ITEM_COLUMNS]
    docs = [(i, DOCUMENT_COLUMNS[name]) for i, name in enumerate(header) if name in DOCUMENT_COLUMNS]
    width = len(header)

    def rows() -> Iterator[Row]:
        previous = reader.line_num
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield previous + 1, None, (RowError("INVALID_CSV", f"not a CSV row: {exc}"),), None
                previous = reader.line_num
                continue
            except UnicodeDecodeError:
                raise ImportFileError("the file is not UTF-8 text", code="INVALID_ENCODING",
                                      line=reader.line_num + 1) from None
            line, previous = previous + 1, reader.line_num
            if len(fields) != width:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # a blank line
                yield line, None, (RowError("INVALID_ROW", f"the row has {len(fields)} fields, the header {width}"),), fields
                continue
            item = {name: fields[i] for i, name in main if fields[i]}
            if docs:
                doc = {key: fields[i] for i, key in docs if fields[i]}
                if doc:
                    item["documents"] = [doc]
            yield line, item, (), fields

    return header, rows()


def _check_header(header: tuple[str, ...]) -> None:
    known = set(ITEM_COLUMNS) | set(DOCUMENT_COLUMNS)
    unknown = [h for h in header if h not in known]
    if unknown:
        raise ImportFileError(f"unknown column {unknown[0]!r}; the columns are {', '.join(ITEM_COLUMNS)} and "
                              f"{', '.join(DOCUMENT_COLUMNS)}", code="UNKNOWN_COLUMN", line=1)
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise ImportFileError(f"column {twice[0]!r} appears twice", code="DUPLICATE_COLUMN", line=1)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ImportFileError(f"the header has no {missing[0]} column", code="MISSING_COLUMN", line=1)
    doc_columns = [c for c in DOCUMENT_COLUMNS if c in header]
    if doc_columns and len(doc_columns) != len(DOCUMENT_COLUMNS):
        lacking = next(c for c in DOCUMENT_COLUMNS if c not in header)
        raise ImportFileError(f"document columns come together: the header has no {lacking} column",
                              code="MISSING_COLUMN", line=1)


def _jsonl_rows(stream: io.BufferedReader) -> Iterator[Row]:
    for line, data in enumerate(stream, 1):
        if line == 1 and data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        if not data.strip():
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            yield line, None, (RowError("INVALID_ENCODING", "the line is not UTF-8 text"),), data.decode("utf-8", "replace")
            continue
        try:
            item = json.loads(text)
        except ValueError as exc:
            yield line, None, (RowError("INVALID_JSON", f"not JSON: {exc}"),), text.rstrip("\r\n")
            continue
        yield line, item, (), item


# --- the rules ------------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricRule:
    code: str
    kind: str
    once_only: bool


@dataclass(frozen=True)
class _Term:
    start_date: date
    end_date: date


class ContractRules:
    """`ledger.evidence._submit_one`'s rules for one contract, against lookups loaded once.

    Each check is in the same order with the same error as there, so a claim fails here
    exactly as it would in `submit_evidence`; tests/ledger/test_evidence_import.py runs the
    same claims through both.
    """

    def __init__(self, contract: OutcomeContract, participants: dict[int, date],
                 terms: list[tuple[date, int, dict[str, MetricRule]]], taken: set[tuple[int, str]], today: date,
                 claims: ClaimRules | None = None):
        # what _within_term reads of the contract, as plain attributes (ORM ones cost more)
        self.contract = _Term(contract.start_date, contract.end_date)
        self.start, self.end = contract.start_date, contract.end_date
        self.participants = participants
        self.today = today
        self.taken = taken  # (participant id, metric code) of SUBMITTED or VERIFIED once-only claims
        self.claims = claims or ClaimRules(contract.end_date, (), ())  # claim windows (PAYOUTS.md §6)
        ordered = sorted(terms, key=lambda t: (t[0], t[1]))
        self._terms = [t[2] for t in ordered]
        self._from = [t[0] for t in ordered]
        self._first = min(terms, key=lambda t: t[1])[2]  # terms_in_force's fallback: the first version
        self._by_day: dict[date, dict[str, MetricRule]] = {}

    @classmethod
    def load(cls, uow: UnitOfWork, contract: OutcomeContract, today: date) -> "ContractRules":
        s = uow.session
        P, E = Participant.__table__.c, Evidence.__table__.c
        # locked as _submit_one locks the participant it claims for (a no-op on SQLite, whose
        # BEGIN IMMEDIATE already serialises writers)
        participants = dict(s.execute(select(P.id, P.enrolled_on).where(P.contract_id == contract.id)
                                      .order_by(P.id).with_for_update()).all())
        terms = [(t.effective_from, t.version, {m.code: MetricRule(m.code, m.kind, bool(m.once_only)) for m in t.metrics})
                 for t in terms_history(s, contract.id)]
        once = sorted({r.code for _, _, metrics in terms for r in metrics.values() if r.once_only})
        taken: set[tuple[int, str]] = set()
        if once:
            taken = set(map(tuple, s.execute(
                select(E.participant_id, E.metric_code).join(Participant.__table__, P.id == E.participant_id)
                .where(P.contract_id == contract.id, E.metric_code.in_(once), E.status.in_(("SUBMITTED", "VERIFIED")))
            )))
        return cls(contract, participants, terms, taken, today, ClaimRules.load(s, contract, today))

    def metrics_on(self, day: date) -> dict[str, MetricRule]:
        """The metrics of the terms in force on `day` (`ledger.contracts.terms_in_force`)."""
        found = self._by_day.get(day)
        if found is None:
            i = bisect_right(self._from, day)
            found = self._by_day[day] = self._terms[i - 1] if i else self._first
        return found

    def check(self, claim: Claim) -> tuple[MetricRule, list[tuple[str, str, str]]]:
        """The claim's metric and its cleaned documents (sha256, filename, media type); or the
        DomainError `_submit_one` raises for it."""
        enrolled_on = self.participants.get(claim.participant_id)
        if enrolled_on is None:
            raise NotFound("the participant is not in this contract", code="UNKNOWN_PARTICIPANT", field=["participantId"])
        on = claim.achieved_on or claim.period_end
        if on is None:
            raise ValidationError("give achievedOn, or periodStart and periodEnd", code="DATE_REQUIRED", field=["achievedOn"])
        metric = self.metrics_on(min(max(on, self.start), self.end)).get(claim.metric_code)
        if metric is None:
            raise ValidationError(f"the contract's terms have no metric {claim.metric_code!r}", code="UNKNOWN_METRIC",
                                  field=["metricCode"])
        contract, today = self.contract, self.today
        if metric.kind == "RATE_CARD":
            if claim.achieved_on is None:
                raise ValidationError("a rate-card outcome needs achievedOn", code="DATE_REQUIRED", field=["achievedOn"])
            _within_term(contract, claim.achieved_on, today, "achievedOn")
            if claim.achieved_on < enrolled_on:
                raise ValidationError("the outcome is dated before the participant's enrolment", code="BEFORE_ENROLMENT",
                                      field=["achievedOn"])
            self.claims.check(claim.achieved_on, claim.achieved_on, today, participant_id=claim.participant_id,
                              metric_code=metric.code, field_name="achievedOn")
            if metric.once_only and (claim.participant_id, metric.code) in self.taken:
                raise Conflict(f"{metric.code} is paid once per participant and is already claimed",
                               code="DUPLICATE_CLAIM", field=["metricCode"])
        else:
            if claim.period_start is None or claim.period_end is None or claim.value is None:
                raise ValidationError("a measured metric needs periodStart, periodEnd and value", code="VALUE_REQUIRED",
                                      field=["value"])
            if claim.period_end < claim.period_start:
                raise ValidationError("the period ends before it starts", code="INVALID_PERIOD", field=["periodEnd"])
            _within_term(contract, claim.period_end, today, "periodEnd")
            _within_term(contract, claim.period_start, today, "periodStart")
            self.claims.check(claim.period_start, claim.period_end, today, participant_id=claim.participant_id,
                              metric_code=metric.code, field_name="periodEnd")
        docs = []
        for i, d in enumerate(claim.documents):
            if not SHA256.fullmatch(d.sha256 or ""):
                raise ValidationError("a document's sha256 is 64 lower-case hex digits", code="INVALID_SHA256",
                                      field=["documents", str(i), "sha256"])
            docs.append((d.sha256, _text(d.filename, "filename", 255), _text(d.media_type, "mediaType", 100)))
        return metric, docs

    def accept(self, claim: Claim, metric: MetricRule) -> None:
        """Count a good claim as made, so a second once-only claim in the same file is refused."""
        if metric.once_only:
            self.taken.add((claim.participant_id, metric.code))


# --- parsing an item into a Claim -----------------------------------------------------------

def _participant_id(value: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():  # JSON Schema's integers include 42.0
        return int(value)
    if isinstance(value, str):
        if value.isascii() and value.isdigit() and len(value) <= 18:
            return int(value)
        try:
            type_name, _, pk = base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8").partition(":")
        except (UnicodeError, binascii.Error, ValueError):
            type_name, pk = "", ""
        if type_name == "Participant" and pk.isascii() and pk.isdigit() and len(pk) <= 18:
            return int(pk)
    raise ValidationError(f"{_short(value)} is not the ID of a Participant", code="INVALID_ID", field=["participantId"])


class ItemParser:
    """Schema-valid items as Claims: INVALID_ID / INVALID_DATE / INVALID_DECIMAL for what the
    schema's patterns cannot tell (a global ID of another type, 2026-02-30). A file has few
    distinct dates: each is parsed once (and kept in the form the database stores it in)."""

    MAX_DAYS = 10_000  # distinct dates remembered; a file with more is only slower

    def __init__(self, store_day: Callable[[date], Any] = lambda d: d):
        self._store_day = store_day
        self._days: dict[str, tuple[date, Any]] = {}

    def day(self, item: dict, name: str) -> tuple[date, Any] | tuple[None, None]:
        text = item.get(name)
        if text is None:
            return None, None
        known = self._days.get(text)
        if known is not None:
            return known
        try:
            if DAY.fullmatch(text):
                d = date.fromisoformat(text)
                parsed = d, self._store_day(d)
                if len(self._days) < self.MAX_DAYS:
                    self._days[text] = parsed
                return parsed
        except ValueError:
            pass
        raise ValidationError(f"{name} is not a day of the calendar: {_short(text)}", code="INVALID_DATE", field=[name])

    def claim(self, item: dict) -> Claim:
        return self.claim_and_days(item)[0]

    def claim_and_days(self, item: dict) -> tuple[Claim, Any, Any, Any]:
        """The claim, and its three dates as the database stores them."""
        value = item.get("value")
        if value is not None:
            if not VALUE.fullmatch(value):
                raise ValidationError(f"value {FIELD_HINTS['INVALID_DECIMAL']}: {_short(value)}", code="INVALID_DECIMAL",
                                      field=["value"])
            value = Decimal(value)
        achieved_on, a = self.day(item, "achievedOn")
        period_start, s = self.day(item, "periodStart")
        period_end, e = self.day(item, "periodEnd")
        docs = item.get("documents")
        claim = Claim(_participant_id(item["participantId"]), item["metricCode"], achieved_on, period_start, period_end,
                      value, tuple(Document(d["sha256"], d["filename"], d["mediaType"]) for d in docs) if docs else ())
        return claim, a, s, e


def to_claim(item: dict) -> Claim:
    """A schema-valid item as a Claim (see ItemParser)."""
    return ItemParser().claim(item)


def _text(value: str, field: str, max_len: int) -> str:
    """`clean_text(value, field, max_len=max_len)`, with a fast path for text it would return
    unchanged: printable (so no control characters, and no whitespace but the ASCII space),
    not starting or ending with a space, not empty, not too long."""
    if value and len(value) <= max_len and value.isprintable() and value[0] != " " and value[-1] != " ":
        return value
    return clean_text(value, field, max_len=max_len)


# --- writing batches ------------------------------------------------------------------------

EVIDENCE_COLUMNS = ("id", "contract_id", "participant_id", "metric_code", "achieved_on", "period_start", "period_end",
                    "value", "status", "submitted_by", "submitted_party_id", "submitted_at")
DOCUMENT_TABLE_COLUMNS = ("evidence_id", "sha256", "filename", "media_type")


class _Writer:
    """Writes batches of evidence and document rows through the session's own connection,
    inside the unit of work's transaction (a savepoint under the tests' fixture).

    Evidence ids are allocated before the rows are written, so the documents of a batch can
    name their evidence in the same batch without reading anything back:
    - PostgreSQL: `nextval` of the column's own sequence, a batch of values in one query.
      Sequences never hand a value out twice, so this is safe beside concurrent inserts that
      take the column default; gaps (a refused import) are what sequences always allow.
    - SQLite: max(id) + 1 onwards. Units of work begin with BEGIN IMMEDIATE (ledger.db), so
      this transaction holds the database's only write lock from its first statement until
      it ends: no other writer can take an id in between. The id column is a plain rowid
      (no AUTOINCREMENT), for which SQLite itself picks max(rowid) + 1.
    (`RETURNING id` through insertmanyvalues would also be correct on both, but it is the
    slowest way to insert in bulk: 14 000 rows/s here against 53 000 for a plain Core
    executemany and 400 000 for COPY, BENCHMARKS.md.)

    Values are converted by the models' own column types (their bind processors), so a row
    is stored exactly as the ORM would store it.
    """

    def __init__(self, uow: UnitOfWork, batch_size: int):
        self.conn = uow.session.connection()  # begins the transaction (and takes SQLite's write lock)
        self.dialect = self.conn.dialect
        self.raw = self.conn.connection.driver_connection
        self.postgres = self.dialect.name == "postgresql"
        self.batch_size = batch_size
        table = Evidence.__table__
        self.bind = {name: table.c[name].type.dialect_impl(self.dialect).bind_processor(self.dialect) or _same
                     for name in ("achieved_on", "submitted_at", "value")}
        self._ids: Iterator[int] = iter(())
        if self.postgres:
            self.sequence = self.raw.execute("SELECT pg_get_serial_sequence('evidence', 'id')").fetchone()[0]
        else:
            self._next = self.conn.exec_driver_sql("SELECT coalesce(max(id), 0) + 1 FROM evidence").scalar_one()

    def next_id(self) -> int:
        if not self.postgres:
            self._next += 1
            return self._next - 1
        for i in self._ids:
            return i
        rows = self.raw.execute("SELECT nextval(%s) FROM generate_series(1, %s)", (self.sequence, self.batch_size))
        self._ids = iter([r[0] for r in rows])
        return next(self._ids)

    def write(self, evidence: list[tuple], documents: list[tuple]) -> None:
        if self.postgres:
            with self.raw.cursor() as cur:
                with cur.copy(f"COPY evidence ({', '.join(EVIDENCE_COLUMNS)}) FROM STDIN") as cp:
                    for row in evidence:
                        cp.write_row(row)
                if documents:
                    with cur.copy(f"COPY evidence_documents ({', '.join(DOCUMENT_TABLE_COLUMNS)}) FROM STDIN") as cp:
                        for row in documents:
                            cp.write_row(row)
        else:
            cur = self.raw.cursor()
            try:
                cur.executemany(f"INSERT INTO evidence ({', '.join(EVIDENCE_COLUMNS)}) "
                                f"VALUES ({', '.join('?' * len(EVIDENCE_COLUMNS))})", evidence)
                if documents:
                    cur.executemany(f"INSERT INTO evidence_documents ({', '.join(DOCUMENT_TABLE_COLUMNS)}) "
                                    f"VALUES ({', '.join('?' * len(DOCUMENT_TABLE_COLUMNS))})", documents)
            finally:
                cur.close()


def _same(value):
    return value


# --- the use case ---------------------------------------------------------------------------

def detect_format(file_name: str) -> str:
    """csv or jsonl by the file's extension (.csv; .jsonl, .ndjson); INVALID_FORMAT otherwise."""
    suffix = Path(file_name).suffix.lower()
    fmt = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(suffix)
    if fmt is None:
        raise ValidationError(f"cannot tell the format of {file_name!r} by its extension: give csv or jsonl",
                              code="INVALID_FORMAT", field=["format"])
    return fmt


def import_evidence(
    uow: UnitOfWork, *, actor: Actor, contract_id: int, source: IO[bytes], file_name: str, format: str, today: date,
    skip_bad: bool = False, on_bad_row: Callable[[BadRow], None] | None = None,
    on_progress: Callable[[int, int, int, int], None] | None = None, batch_size: int = DEFAULT_BATCH,
) -> ImportResult:
    """Import every row of a CSV or JSON Lines file of evidence as SUBMITTED claims.

    All or nothing: when a row is bad, ImportRejected is raised after the whole file has
    been read (every bad row was given to `on_bad_row`, with its line number), and the unit
    of work rolls back. With `skip_bad` the good rows are imported and the bad ones only
    reported. A file that cannot be read as a whole raises ImportFileError. One AuditEvent
    ("importEvidence") records the file's name and sha256 and the counts.
    `on_progress(bytes_read, rows, imported, rejected)` is called every PROGRESS_EVERY rows and at the end.
    """
    require_role(actor, "PROVIDER")
    contract = _own_contract(uow, actor, contract_id, party_field="provider_id")
    _require_claimable(contract)
    if format not in FORMATS:
        raise ValidationError(f"the format is csv or jsonl, not {format!r}", code="INVALID_FORMAT", field=["format"])
    if batch_size < 1:
        raise ValidationError("the batch size is at least 1", code="INVALID_BATCH_SIZE", field=["batchSize"])
    is_valid, _ = _validators()
    rules = ContractRules.load(uow, contract, today)
    writer = _Writer(uow, batch_size)
    hashing = _Hashing(source)
    stream = io.BufferedReader(hashing, 1 << 16)
    columns = None
    if format == "csv":
        columns, rows = _csv_rows(stream)
    else:
        rows = _jsonl_rows(stream)

    cid, label, party = contract.id, actor.label, actor.party_id
    status, submitted_at = "SUBMITTED", writer.bind["submitted_at"](utcnow())  # one time for the whole import
    decimal_text = writer.bind["value"]
    parser = ItemParser(writer.bind["achieved_on"])
    evidence, documents = [], []
    n_rows = imported = n_docs = 0
    first_id = last_id = None
    bad: list[BadRow] = []
    n_bad = 0
    writing = True

    def flush() -> None:
        nonlocal evidence, documents
        if writing and evidence:
            writer.write(evidence, documents)
        evidence, documents = [], []

    for line, item, errors, raw in rows:
        n_rows += 1
        if not errors:
            if not is_valid(item):
                errors = schema_errors(item)
            else:
                try:
                    claim, achieved_on, period_start, period_end = parser.claim_and_days(item)
                    metric, docs = rules.check(claim)
                except DomainError as err:
                    errors = (RowError(err.code, err.message, tuple(err.field or ())),)
        if errors:
            n_bad += 1
            row = BadRow(line, errors, raw, columns)
            if len(bad) < KEPT_ERRORS:
                bad.append(row)
            if on_bad_row is not None:
                on_bad_row(row)
            if not skip_bad and writing:  # nothing will be imported: stop writing, keep checking
                writing = False
                evidence, documents = [], []
        else:
            rules.accept(claim, metric)
            if writing:
                eid = writer.next_id()
                if first_id is None:
                    first_id = eid
                last_id = eid
                evidence.append((eid, cid, claim.participant_id, metric.code, achieved_on, period_start, period_end,
                                 None if claim.value is None else decimal_text(claim.value),
                                 status, label, party, submitted_at))
                for sha, filename, media_type in docs:
                    documents.append((eid, sha, filename, media_type))
                imported += 1
                n_docs += len(docs)
                if len(evidence) >= batch_size:
                    flush()
        if on_progress is not None and n_rows % PROGRESS_EVERY == 0:
            on_progress(hashing.bytes_read, n_rows, imported if writing else 0, n_bad)
    flush()
    hashing.drain()  # the whole file is hashed, whatever the parser left unread
    if on_progress is not None:
        on_progress(hashing.bytes_read, n_rows, imported if writing else 0, n_bad)

    sha = hashing.sha256.hexdigest()
    if n_rows == 0:
        raise ImportFileError("the file holds no rows", code="EMPTY_FILE", line=1)
    if not writing:
        raise ImportRejected(bad, ImportResult(file_name, sha, format, n_rows, 0, n_bad, 0))
    result = ImportResult(file_name, sha, format, n_rows, imported, n_bad, n_docs, first_id, last_id)
    event = AuditEvent(
        actor=actor.name, role=actor.role, party_id=actor.party_id, operation="importEvidence",
        input=canonical_json({"contractId": cid, "file": Path(file_name).name, "sha256": sha, "format": format,
                              "skipBad": skip_bad, "rows": n_rows, "imported": imported, "rejected": n_bad,
                              "documents": n_docs}),
        result_type="EvidenceImport", result_id=f"{first_id}-{last_id}" if imported else None,
    )
    uow.session.add(event)
    uow.session.flush()
    return replace(result, audit_event_id=event.id)


def check_may_import(uow_or_session, *, actor: Actor | None, contract_id: int) -> None:
    """What `import_evidence` checks before reading a row: the caller is the contract's
    provider (UNKNOWN_CONTRACT for a contract it may not see) and the contract takes claims.
    Lets a server refuse a file before receiving it."""
    require_role(actor, "PROVIDER")
    _require_claimable(_own_contract(uow_or_session, actor, contract_id, party_field="provider_id"))


def import_evidence_once(uow: UnitOfWork, *, idempotency_key: str | None, file_sha256: str, **kw) -> ImportResult:
    """`import_evidence`, once per idempotency key: a retry with the same key and the same file
    (by its SHA-256, with the same options) gets the first import's counts (`replayed`) and
    imports nothing; the key with another file is IDEMPOTENCY_KEY_REUSED. A refused import
    keeps no key (it rolled back), so a retry checks the file again."""
    if idempotency_key is None:
        return import_evidence(uow, **kw)
    from ledger.audit import run_mutation
    params = {"contractId": kw["contract_id"], "sha256": file_sha256, "format": kw["format"],
              "skipBad": kw.get("skip_bad", False)}
    return run_mutation(uow, actor=kw["actor"], operation="importEvidenceFile", params=params,
                        idempotency_key=idempotency_key, action=lambda: import_evidence(uow, **kw),
                        ref=lambda r: ("AuditEvent", str(r.audit_event_id)), load=_earlier_import)


def _earlier_import(uow: UnitOfWork, _type: str, audit_event_id: str) -> ImportResult:
    event = uow.session.get(AuditEvent, int(audit_event_id))
    given = json.loads(event.input)
    first, _, last = (event.result_id or "").partition("-")
    return ImportResult(given["file"], given["sha256"], given["format"], given["rows"], given["imported"],
                        given["rejected"], given["documents"], int(first) if first else None,
                        int(last) if last else None, event.id, replayed=True)


# --- reject files ---------------------------------------------------------------------------

class RejectWriter:
    """Writes bad rows to a file as they are found, in the input's format, so it can be fixed
    and imported again: CSV gets the columns line, code, field, message before the row's own
    fields; JSON Lines gets {"line", "errors": [{code, field, message}], "row"} per bad row."""

    def __init__(self, out: IO[str], format: str):
        self.out, self.format = out, format
        self.count = 0
        self._csv = csv.writer(out) if format == "csv" else None
        self._header_written = False

    def __call__(self, bad: BadRow) -> None:
        self.count += 1
        if self._csv is not None:
            if not self._header_written:
                self._csv.writerow(["line", "code", "field", "message", *(bad.columns or ())])
                self._header_written = True
            self._csv.writerow([bad.line, ";".join(e.code for e in bad.errors),
                                ";".join(".".join(e.field) for e in bad.errors),
                                "; ".join(e.message for e in bad.errors),
                                *(bad.raw if isinstance(bad.raw, list) else ())])
        else:
            self.out.write(json.dumps({
                "line": bad.line,
                "errors": [{"code": e.code, "field": ".".join(e.field), "message": e.message} for e in bad.errors],
                "row": bad.raw,
            }, ensure_ascii=False) + "\n")
