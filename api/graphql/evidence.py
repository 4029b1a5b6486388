"""Participants, evidence and its verification, and cohort measurements."""
from __future__ import annotations

import enum
from typing import Annotated
from datetime import date, datetime
from decimal import Decimal

import strawberry
from sqlalchemy import bindparam, select
from strawberry.types import Info

from api.graphql.base import (
    BEFORE, LAST, Connection, Node, UserError, Window, audited, ctx, from_global_id, keyset_page, mutate, query_error,
    require_actor, to_global_id,
)
from ledger import evidence as uc
from ledger.cursor_reads import ConvertedOnRead, CursorQuery
from ledger import models
from ledger.errors import DomainError
from ledger.identity import redactor
from ledger.models import utcnow
from ledger.reads import visible_contracts


@strawberry.enum
class EvidenceStatus(enum.Enum):
    SUBMITTED = "SUBMITTED"
    VERIFIED = "VERIFIED"
    REJECTED = "REJECTED"
    INVALIDATED = "INVALIDATED"


@strawberry.type(description="A pseudonymous member of a contract's cohort; identity numbers are never shown or stored.")
class Participant(Node):
    pk: strawberry.Private[int]
    external_ref: str | None
    area: str | None
    enrolled_on: date
    enrolled_by: str

    @classmethod
    def from_row(cls, p: models.Participant) -> "Participant":
        return cls(pk=p.id, external_ref=p.external_ref, area=p.area, enrolled_on=p.enrolled_on, enrolled_by=p.enrolled_by)


@strawberry.type(description="A document behind an evidence item, named by the SHA-256 of its bytes.")
class Document:
    sha256: str
    filename: str
    media_type: str
    uploaded: bool = strawberry.field(description=(
        "Whether the provider that submitted the evidence has uploaded the document's bytes "
        "(PUT /documents/{sha256}); until then the evidence names the document but it cannot be downloaded."))

    @classmethod
    def from_row(cls, d) -> "Document":
        return cls(sha256=d.sha256, filename=d.filename, media_type=d.media_type, uploaded=d.uploaded)

    @strawberry.field(description=(
        "Where to download the document (GET with your bearer token), once it is uploaded; null until then."))
    def url(self) -> str | None:
        return f"/documents/{self.sha256}" if self.uploaded else None


@strawberry.type
class Evidence(Node):
    pk: strawberry.Private[int]
    contract_pk: strawberry.Private[int]
    participant: Participant | None
    metric_code: str
    status: EvidenceStatus
    achieved_on: date | None
    period_start: date | None
    period_end: date | None
    value: Decimal | None
    documents: list[Document]
    submitted_by: str
    submitted_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    invalidated_by: str | None
    invalidated_at: datetime | None
    invalidation_reason: str | None

    @strawberry.field
    async def contract(self, info: Info) -> Annotated["OutcomeContract", strawberry.lazy("api.graphql.contracts")] | None:  # noqa: F821
        from api.graphql.contracts import load_contract
        return await load_contract(info, self.contract_pk)

    @classmethod
    def from_row(cls, e: models.Evidence) -> "Evidence":
        return cls.of(e, Participant.from_row(e.participant), [Document.from_row(d) for d in e.documents])

    @classmethod
    def of(cls, e, participant: Participant | None, documents: list[Document]) -> "Evidence":
        """The item from an evidence row (an ORM instance or a plain row: the same attribute names)."""
        return cls(pk=e.id, contract_pk=e.contract_id, participant=participant, metric_code=e.metric_code,
                   status=EvidenceStatus(e.status), achieved_on=e.achieved_on, period_start=e.period_start,
                   period_end=e.period_end, value=e.value, documents=documents,
                   submitted_by=e.submitted_by, submitted_at=e.submitted_at, decided_by=e.decided_by,
                   decided_at=e.decided_at, decision_note=e.decision_note, invalidated_by=e.invalidated_by,
                   invalidated_at=e.invalidated_at, invalidation_reason=e.invalidation_reason)

    @classmethod
    def from_table_rows(cls, s, rows, conversions: tuple | None = None) -> dict[int, "Evidence"]:
        """Evidence items by key from plain rows of the evidence table (its columns in order), with their
        participants and documents in one SELECT each (the same two the ORM's selectin loading runs,
        without its instances). With `conversions` (a lazy CursorQuery's), the rows' columns named in
        EVIDENCE_CONVERTED_ON_READ are as the driver read them, and each item converts them when read."""
        if not rows:
            return {}
        conn = s.connection()
        contracts = {r[1] for r in rows}
        if len(contracts) == 1:
            # one contract's page: its items are that contract's evidence between the first and last key,
            # three bound values instead of a hundred (no IN list to render and parse every request), on
            # the driver's cursor
            span = {"contract": rows[0][1], "lo": min(r[0] for r in rows), "hi": max(r[0] for r in rows)}
            found_documents = _DOCUMENTS_OF_SPAN.rows(conn, span)
            # participants' enrollment dates left as read, converted only if the query sends them
            participant_dates = _PARTICIPANTS_OF_SPAN.conversions(conn.dialect)
            new = object.__new__
            participants = {}
            for row in _PARTICIPANTS_OF_SPAN.rows(conn, span):
                participant = participants[row[0]] = new(_ParticipantOfRow)
                participant.__dict__.update(pk=row[0], external_ref=row[1], area=row[2], enrolled_by=row[4], _row=row,
                                            _conversions=participant_dates)
        else:
            found_participants = conn.execute(_PARTICIPANTS.where(
                models.Participant.id.in_({r[2] for r in rows}))).all()
            found_documents = conn.execute(_DOCUMENTS.where(
                models.EvidenceDocument.evidence_id.in_([r[0] for r in rows]))).all()
            participants = {id_: Participant(pk=id_, external_ref=external_ref, area=area, enrolled_on=enrolled_on,
                                             enrolled_by=enrolled_by)
                            for id_, external_ref, area, enrolled_on, enrolled_by in found_participants}
        documents: dict[int, list[Document]] = {}
        for evidence_id, sha256, filename, media_type, uploaded in found_documents:
            documents.setdefault(evidence_id, []).append(Document(sha256=sha256, filename=filename,
                                                                  media_type=media_type, uploaded=uploaded))
        statuses = EvidenceStatus.__members__
        out = {}
        if conversions is not None:
            new = object.__new__
            for e in rows:
                id_, participant_id = e[0], e[2]
                item = new(_EvidenceOfRow)
                item.__dict__.update(pk=id_, contract_pk=e[1], participant=participants.get(participant_id),
                                     metric_code=e[3], status=statuses[e[8]], documents=documents.get(id_, []),
                                     submitted_by=e[9], decided_by=e[12], decision_note=e[14],
                                     invalidated_by=e[15], invalidation_reason=e[17], _row=e,
                                     _conversions=conversions)
                out[id_] = item
            return out
        for e in rows:
            (id_, contract_id, participant_id, metric_code, achieved_on, period_start, period_end, value, status,
             submitted_by, _party, submitted_at, decided_by, decided_at, decision_note, invalidated_by,
             invalidated_at, invalidation_reason) = e
            out[id_] = cls(pk=id_, contract_pk=contract_id, participant=participants.get(participant_id),
                           metric_code=metric_code, status=statuses[status], achieved_on=achieved_on,
                           period_start=period_start, period_end=period_end, value=value,
                           documents=documents.get(id_, []), submitted_by=submitted_by, submitted_at=submitted_at,
                           decided_by=decided_by, decided_at=decided_at, decision_note=decision_note,
                           invalidated_by=invalidated_by, invalidated_at=invalidated_at,
                           invalidation_reason=invalidation_reason)
        return out


_EVIDENCE_COLUMN = {name: i for i, name in enumerate(models.Evidence.__table__.columns.keys())}


class _EvidenceOfRow(Evidence):
    """An evidence item (the same GraphQL type) whose dates, value and timestamps are converted from its row
    of the evidence table when first read: the contract query sends one date of the seven."""
    achieved_on = ConvertedOnRead(_EVIDENCE_COLUMN["achieved_on"])
    period_start = ConvertedOnRead(_EVIDENCE_COLUMN["period_start"])
    period_end = ConvertedOnRead(_EVIDENCE_COLUMN["period_end"])
    value = ConvertedOnRead(_EVIDENCE_COLUMN["value"])
    submitted_at = ConvertedOnRead(_EVIDENCE_COLUMN["submitted_at"])
    decided_at = ConvertedOnRead(_EVIDENCE_COLUMN["decided_at"])
    invalidated_at = ConvertedOnRead(_EVIDENCE_COLUMN["invalidated_at"])


# Node.id names the class: an item's global id is an Evidence id, whatever class holds it
_EvidenceOfRow.__name__ = Evidence.__name__


class _ParticipantOfRow(Participant):
    """A participant (the same GraphQL type) whose enrollment date is converted from its row of
    _PARTICIPANTS_OF_SPAN when first read: the contract query sends it for none of a page's participants."""
    enrolled_on = ConvertedOnRead(3)


_ParticipantOfRow.__name__ = Participant.__name__  # its global id is a Participant's

EVIDENCE_CONVERTED_ON_READ = frozenset(d.name for d in vars(_EvidenceOfRow).values() if isinstance(d, ConvertedOnRead))


_PARTICIPANTS = select(models.Participant.id, models.Participant.external_ref, models.Participant.area,
                       models.Participant.enrolled_on, models.Participant.enrolled_by)
_DOCUMENTS = select(models.EvidenceDocument.evidence_id, models.EvidenceDocument.sha256,
                    models.EvidenceDocument.filename, models.EvidenceDocument.media_type,
                    models.EvidenceDocument.uploaded.label("uploaded")).order_by(models.EvidenceDocument.id)
_SPAN = (models.Evidence.contract_id == bindparam("contract"),
         models.Evidence.id.between(bindparam("lo"), bindparam("hi")))
_PARTICIPANTS_OF_SPAN = CursorQuery(_PARTICIPANTS.where(models.Participant.id.in_(
    select(models.Evidence.participant_id).where(*_SPAN))), lazy=frozenset({"enrolled_on"}))
_DOCUMENTS_OF_SPAN = CursorQuery(_DOCUMENTS.where(models.EvidenceDocument.evidence_id.in_(
    select(models.Evidence.id).where(*_SPAN))))


@strawberry.enum(description="Which version of a measured result this is.")
class MeasurementStatus(enum.Enum):
    CURRENT = strawberry.enum_value("CURRENT", description="The version that counts in payouts.")
    SUPERSEDED = strawberry.enum_value("SUPERSEDED", description="Replaced by a corrected version (supersededBy).")
    VOIDED = strawberry.enum_value("VOIDED", description="Withdrawn: it counts for nothing.")


@strawberry.type
class Measurement(Node):
    pk: strawberry.Private[int]
    metric_code: str
    period_start: date
    period_end: date
    observed_value: Decimal
    comparison_value: Decimal | None
    cohort_size: int | None
    recorded_by: str
    recorded_at: datetime
    status: MeasurementStatus = strawberry.field(
        description="CURRENT (the version that counts), SUPERSEDED by a correction, or VOIDED.")
    superseded_by_pk: strawberry.Private[int | None] = None
    correction_reason: str | None = strawberry.field(default=None, description="Why this version corrected the one before.")
    voided_by: str | None = None
    void_reason: str | None = strawberry.field(default=None, description="Why this measurement was voided.")

    @strawberry.field(description="The corrected version that replaced this one, if any.")
    def superseded_by(self) -> strawberry.ID | None:
        return None if self.superseded_by_pk is None else strawberry.ID(to_global_id("Measurement", self.superseded_by_pk))

    @classmethod
    def from_row(cls, x: models.Measurement) -> "Measurement":
        return cls(pk=x.id, metric_code=x.metric_code, period_start=x.period_start, period_end=x.period_end,
                   observed_value=x.observed_value, comparison_value=x.comparison_value, cohort_size=x.cohort_size,
                   recorded_by=x.recorded_by, recorded_at=x.recorded_at, status=MeasurementStatus(x.status),
                   superseded_by_pk=x.superseded_by_id, correction_reason=x.correction_reason,
                   voided_by=x.voided_by, void_reason=x.void_reason)


def _scoped(info: Info, stmt, contract_column):
    clause = visible_contracts(require_actor(info))
    if clause is None:
        return stmt
    return stmt.join(models.OutcomeContract, models.OutcomeContract.id == contract_column).where(clause)


async def evidence_page(info: Info, *, contract_id: int | None, status: EvidenceStatus | None,
                        window: Window) -> Connection[Evidence]:
    E = models.Evidence

    def build(s):
        stmt = _scoped(info, select(E), E.contract_id)
        if contract_id is not None:
            stmt = stmt.where(E.contract_id == contract_id)
        if status is not None:
            stmt = stmt.where(E.status == status.value)
        return stmt
    return await keyset_page(info, build, E.id, Evidence.from_row, window)


async def load_node(info: Info, type_name: str, pk: int):
    """A participant, evidence item or measurement by key, within the contracts the caller may see."""
    model, gql = {"Evidence": (models.Evidence, Evidence), "Participant": (models.Participant, Participant),
                  "Measurement": (models.Measurement, Measurement)}[type_name]

    def q(s):
        row = s.execute(_scoped(info, select(model), model.contract_id).where(model.id == pk)).scalar_one_or_none()
        return gql.from_row(row) if row else None
    return await ctx(info).db.read(q)


# --- inputs and payloads --------------------------------------------------------------------

@strawberry.input
class DocumentInput:
    sha256: str
    filename: str
    media_type: str


@strawberry.input
class EnrollParticipantInput:
    contract_id: strawberry.ID
    enrolled_on: date
    personal_identity_number: str | None = None
    external_ref: str | None = None
    area: str | None = None
    idempotency_key: str | None = None


@strawberry.type
class EnrollParticipantPayload:
    participant: Participant | None
    user_errors: list[UserError]


@strawberry.input
class EvidenceItemInput:
    participant_id: strawberry.ID
    metric_code: str
    achieved_on: date | None = None
    period_start: date | None = None
    period_end: date | None = None
    value: Decimal | None = None
    documents: list[DocumentInput] = strawberry.field(default_factory=list)


@strawberry.input
class SubmitEvidenceInput:
    contract_id: strawberry.ID
    participant_id: strawberry.ID
    metric_code: str
    achieved_on: date | None = None
    period_start: date | None = None
    period_end: date | None = None
    value: Decimal | None = None
    documents: list[DocumentInput] = strawberry.field(default_factory=list)
    idempotency_key: str | None = None


def to_claim(item: EvidenceItemInput | SubmitEvidenceInput, prefix: list[str]) -> uc.Claim:
    try:
        pid = from_global_id(item.participant_id, "Participant", field="participantId")
    except DomainError as err:
        raise err.at(*prefix)
    return uc.Claim(participant_id=pid, metric_code=item.metric_code, achieved_on=item.achieved_on,
                    period_start=item.period_start, period_end=item.period_end, value=item.value,
                    documents=tuple(uc.Document(d.sha256, d.filename, d.media_type) for d in item.documents))


@strawberry.type
class SubmitEvidencePayload:
    evidence: Evidence | None
    user_errors: list[UserError]


@strawberry.input
class SubmitEvidenceBatchInput:
    contract_id: strawberry.ID
    items: list[EvidenceItemInput]
    idempotency_key: str | None = None


@strawberry.type
class SubmitEvidenceBatchPayload:
    evidence: list[Evidence] | None
    user_errors: list[UserError]


@strawberry.input
class VerifyEvidenceInput:
    evidence_id: strawberry.ID
    note: str | None = None
    idempotency_key: str | None = None


@strawberry.input
class DecideEvidenceInput:
    evidence_id: strawberry.ID
    reason: str
    idempotency_key: str | None = None


@strawberry.input
class RejectEvidenceInput(DecideEvidenceInput):
    pass


@strawberry.input
class InvalidateEvidenceInput(DecideEvidenceInput):
    pass


@strawberry.type
class EvidencePayload:
    evidence: Evidence | None
    user_errors: list[UserError]


@strawberry.type
class VerifyEvidencePayload(EvidencePayload):
    pass


@strawberry.type
class RejectEvidencePayload(EvidencePayload):
    pass


@strawberry.type
class InvalidateEvidencePayload(EvidencePayload):
    pass


@strawberry.input
class RecordMeasurementInput:
    contract_id: strawberry.ID
    metric_code: str
    period_start: date
    period_end: date
    observed_value: Decimal
    comparison_value: Decimal | None = None
    cohort_size: int | None = None
    idempotency_key: str | None = None


@strawberry.type
class RecordMeasurementPayload:
    measurement: Measurement | None
    user_errors: list[UserError]


def _contract_id(gid) -> int:
    return from_global_id(gid, "OutcomeContract", field="contractId")


def _evidence_id(gid) -> int:
    return from_global_id(gid, "Evidence", field="evidenceId")


@strawberry.type
class EvidenceQueries:
    @strawberry.field
    async def evidence(self, info: Info, contract_id: strawberry.ID | None = None, status: EvidenceStatus | None = None,
                       first: int | None = None, after: str | None = None, last: Annotated[int | None, LAST] = None,
                       before: Annotated[str | None, BEFORE] = None) -> Connection[Evidence]:
        try:
            cid = _contract_id(contract_id) if contract_id is not None else None
        except DomainError as err:
            raise query_error(err) from None
        return await evidence_page(info, contract_id=cid, status=status, window=Window.of(first, after, last, before))


@strawberry.type
class EvidenceMutations:
    @strawberry.mutation(description="Enroll a participant; a personal identity number is only ever kept as a keyed hash.")
    async def enroll_participant(self, info: Info, input: EnrollParticipantInput) -> EnrollParticipantPayload:
        secret = ctx(info).secret

        def run(uow, actor):
            return audited(uow, actor, "enrollParticipant", input, lambda: uc.enroll_participant(
                uow, actor=actor, secret=secret, contract_id=_contract_id(input.contract_id),
                personal_identity_number=input.personal_identity_number, external_ref=input.external_ref,
                area=input.area, enrolled_on=input.enrolled_on, today=utcnow().date()), redact=redactor(secret))
        return await mutate(info, EnrollParticipantPayload, run, lambda p: {"participant": Participant.from_row(p)})

    @strawberry.mutation
    async def submit_evidence(self, info: Info, input: SubmitEvidenceInput) -> SubmitEvidencePayload:
        def run(uow, actor):
            return audited(uow, actor, "submitEvidence", input, lambda: uc.submit_evidence(
                uow, actor=actor, contract_id=_contract_id(input.contract_id), claim=to_claim(input, []),
                today=utcnow().date()))
        return await mutate(info, SubmitEvidencePayload, run, lambda e: {"evidence": Evidence.from_row(e)})

    @strawberry.mutation(description="Many items, all or nothing; each failing item's index is in its userError's field.")
    async def submit_evidence_batch(self, info: Info, input: SubmitEvidenceBatchInput) -> SubmitEvidenceBatchPayload:
        from ledger.errors import MultipleErrors

        def claims():
            out, errors = [], []
            for i, item in enumerate(input.items):
                try:
                    out.append(to_claim(item, ["items", str(i)]))
                except DomainError as err:
                    errors.append(err)
            if errors:
                raise MultipleErrors(errors)
            return out

        def run(uow, actor):
            cid = _contract_id(input.contract_id)
            items = claims()
            # a batch's result is many rows: the key remembers the id range, and a retry reloads
            # the rows of that range that this caller submitted to this contract
            result = audited(uow, actor, "submitEvidenceBatch", input,
                             lambda: _Batch(uc.submit_evidence_batch(uow, actor=actor, contract_id=cid, claims=items,
                                                                     today=utcnow().date())),
                             ref=lambda b: ("EvidenceBatch", f"{b.rows[0].id}-{b.rows[-1].id}"),
                             load=lambda u, _t, ids: _Batch(_reload_batch(u, cid, actor, ids)))
            return result.rows
        return await mutate(info, SubmitEvidenceBatchPayload, run,
                            lambda rows: {"evidence": [Evidence.from_row(e) for e in rows]})

    @strawberry.mutation
    async def verify_evidence(self, info: Info, input: VerifyEvidenceInput) -> VerifyEvidencePayload:
        def run(uow, actor):
            return audited(uow, actor, "verifyEvidence", input, lambda: uc.verify_evidence(
                uow, actor=actor, evidence_id=_evidence_id(input.evidence_id), note=input.note))
        return await mutate(info, VerifyEvidencePayload, run, lambda e: {"evidence": Evidence.from_row(e)})

    @strawberry.mutation
    async def reject_evidence(self, info: Info, input: RejectEvidenceInput) -> RejectEvidencePayload:
        def run(uow, actor):
            return audited(uow, actor, "rejectEvidence", input, lambda: uc.reject_evidence(
                uow, actor=actor, evidence_id=_evidence_id(input.evidence_id), reason=input.reason))
        return await mutate(info, RejectEvidencePayload, run, lambda e: {"evidence": Evidence.from_row(e)})

    @strawberry.mutation(description="VERIFIED → INVALIDATED; the next payout claws back what was paid for it.")
    async def invalidate_evidence(self, info: Info, input: InvalidateEvidenceInput) -> InvalidateEvidencePayload:
        def run(uow, actor):
            return audited(uow, actor, "invalidateEvidence", input, lambda: uc.invalidate_evidence(
                uow, actor=actor, evidence_id=_evidence_id(input.evidence_id), reason=input.reason))
        return await mutate(info, InvalidateEvidencePayload, run, lambda e: {"evidence": Evidence.from_row(e)})

    @strawberry.mutation
    async def record_measurement(self, info: Info, input: RecordMeasurementInput) -> RecordMeasurementPayload:
        def run(uow, actor):
            return audited(uow, actor, "recordMeasurement", input, lambda: uc.record_measurement(
                uow, actor=actor, contract_id=_contract_id(input.contract_id), metric_code=input.metric_code,
                period_start=input.period_start, period_end=input.period_end, observed_value=input.observed_value,
                comparison_value=input.comparison_value, cohort_size=input.cohort_size, today=utcnow().date()))
        return await mutate(info, RecordMeasurementPayload, run, lambda x: {"measurement": Measurement.from_row(x)})


def _reload_batch(uow, contract_id: int, actor, ids: str) -> list[models.Evidence]:
    first, last = (int(x) for x in ids.split("-"))
    E = models.Evidence
    return list(uow.session.execute(select(E).where(E.id.between(first, last), E.contract_id == contract_id,
                                                    E.submitted_by == actor.label).order_by(E.id)).scalars())


class _Batch:
    def __init__(self, rows):
        self.rows = rows
