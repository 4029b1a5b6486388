"""Bulk evidence import from CSV and JSON Lines files (ledger.evidence_import)."""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import tracemalloc
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from ledger import evidence as uc
from ledger import evidence_import as imp
from ledger.access import Actor
from ledger.contracts import MetricSpec
from ledger.errors import DomainError
from ledger.models import AuditEvent, Evidence
from tests.conftest import table_counts
from tests.factories import contract, funded, rate_card, sek

FM = Actor("frida", "FUND_MANAGER")
SECRET = b"test-secret-for-hmac-0123456789"
TODAY = date(2026, 11, 23)
SHA = "ab" * 32
HEADER = ("participantId,metricCode,achievedOn,periodStart,periodEnd,value,"
          "document_sha256,document_filename,document_media_type")


@pytest.fixture
def world(db):
    """An active contract (2026–2028) paying SCHOOL_PASS once, ATTENDANCE each time and CARE_DAYS
    as measured; three participants enrolled on 2026-02-01, one on 2026-09-01."""
    fund, manager, muni, prov, ver = funded(db, FM)
    care = MetricSpec(code="CARE_DAYS", name="Vårddygn", kind="BASELINE_IMPROVEMENT", direction="LOWER_IS_BETTER",
                      unit_price=sek("1850.00"), baseline=Decimal(3650))
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True,
                 metrics=(rate_card(once_only=True), rate_card("ATTENDANCE", "12500.00"), care))
    provider = Actor("cli import", "PROVIDER", prov.id)
    with db.uow() as uow:
        ps = [uc.enroll_participant(uow, actor=provider, secret=SECRET, contract_id=c.id, personal_identity_number=None,
                                    external_ref=f"ELEV-{i}", area=None,
                                    enrolled_on=date(2026, 9, 1) if i == 3 else date(2026, 2, 1), today=TODAY)
              for i in range(4)]
        uow.commit()
    return c, provider, [p.id for p in ps]


def csv_file(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode("utf-8")


def jsonl_file(*items) -> bytes:
    return "".join((i if isinstance(i, str) else json.dumps(i)) + "\n" for i in items).encode("utf-8")


def run_import(db, c, provider, data: bytes, fmt: str = "csv", *, commit: bool = True, **kw):
    """Import `data` in one unit of work; (result, bad rows given to on_bad_row)."""
    seen: list[imp.BadRow] = []
    with db.uow() as uow:
        result = imp.import_evidence(uow, actor=provider, contract_id=c.id, source=io.BytesIO(data),
                                     file_name=f"evidence.{fmt}", format=fmt, today=TODAY, on_bad_row=seen.append, **kw)
        if commit:
            uow.commit()
    return result, seen


def rejected(db, c, provider, data: bytes, fmt: str = "csv", **kw) -> imp.ImportRejected:
    with pytest.raises(imp.ImportRejected) as err:
        run_import(db, c, provider, data, fmt, **kw)
    return err.value


def codes(bad_rows) -> list[tuple[int, str]]:
    return [(b.line, e.code) for b in bad_rows for e in b.errors]


def gid(pk: int) -> str:
    return base64.b64encode(f"Participant:{pk}".encode()).decode()


def test_a_good_csv_file_is_imported_as_submitted_evidence_with_one_audit_event(db, world):
    # given
    c, provider, (p0, p1, p2, _) = world
    data = csv_file(
        f"{p0},SCHOOL_PASS,2026-06-10,,,,{SHA},betyg.pdf,application/pdf",
        f"{gid(p1)},ATTENDANCE,2026-06-11,,,,,,",
        f"{p2},CARE_DAYS,,2026-01-01,2026-06-30,3100.50,,,",
    )
    # when
    result, bad = run_import(db, c, provider, data, batch_size=2)
    # then
    assert (result.rows, result.imported, result.rejected, result.documents, bad) == (3, 3, 0, 1, [])
    with db.reading() as s:
        rows = s.execute(select(Evidence).where(Evidence.contract_id == c.id).order_by(Evidence.id)).scalars().all()
        assert [(e.participant_id, e.metric_code, e.achieved_on, e.period_start, e.period_end, e.value, e.status)
                for e in rows] == [
            (p0, "SCHOOL_PASS", date(2026, 6, 10), None, None, None, "SUBMITTED"),
            (p1, "ATTENDANCE", date(2026, 6, 11), None, None, None, "SUBMITTED"),
            (p2, "CARE_DAYS", None, date(2026, 1, 1), date(2026, 6, 30), Decimal("3100.50"), "SUBMITTED"),
        ]
        assert [(d.sha256, d.filename, d.media_type) for d in rows[0].documents] == [(SHA, "betyg.pdf", "application/pdf")]
        assert {(e.submitted_by, e.submitted_party_id) for e in rows} == {(provider.label, provider.party_id)}
        assert (rows[0].id, rows[-1].id) == (result.first_id, result.last_id)
        audit = s.execute(select(AuditEvent.actor, AuditEvent.role, AuditEvent.party_id, AuditEvent.input)
                          .where(AuditEvent.operation == "importEvidence")).one()
    assert tuple(audit[:3]) == ("cli import", "PROVIDER", provider.party_id)
    assert json.loads(audit.input) == {"contractId": c.id, "file": "evidence.csv", "sha256": result.sha256,
                                       "format": "csv", "skipBad": False, "rows": 3, "imported": 3, "rejected": 0,
                                       "documents": 1}
    assert result.sha256 == hashlib.sha256(data).hexdigest()


def test_imported_rows_are_stored_exactly_as_submit_evidence_stores_them(db, world):
    # given the same claim for two participants, one through the use case, one imported
    c, provider, (p0, p1, *_) = world
    with db.uow() as uow:
        uc.submit_evidence(uow, actor=provider, contract_id=c.id, today=TODAY, claim=uc.Claim(
            p0, "CARE_DAYS", period_start=date(2026, 1, 1), period_end=date(2026, 6, 30), value=Decimal("-0.50"),
            documents=(uc.Document(SHA, "a.pdf", "application/pdf"),)))
        uow.commit()
    run_import(db, c, provider, jsonl_file({"participantId": p1, "metricCode": "CARE_DAYS", "periodStart": "2026-01-01",
                                            "periodEnd": "2026-06-30", "value": "-0.50",
                                            "documents": [{"sha256": SHA, "filename": "a.pdf",
                                                           "mediaType": "application/pdf"}]}), "jsonl")
    # then the raw column values are identical but for the keys and the time
    cols = "contract_id, metric_code, achieved_on, period_start, period_end, value, status, submitted_by, submitted_party_id"
    with db.reading() as s:
        raw = s.execute(text(f"SELECT {cols}, submitted_at FROM evidence WHERE contract_id = :c ORDER BY id"),
                        {"c": c.id}).all()
        docs = s.execute(text("SELECT sha256, filename, media_type FROM evidence_documents d JOIN evidence e "
                              "ON e.id = d.evidence_id WHERE e.contract_id = :c ORDER BY d.id"), {"c": c.id}).all()
        times = s.execute(select(Evidence.submitted_at).where(Evidence.contract_id == c.id)).scalars().all()
    assert raw[0][:-1] == raw[1][:-1]
    assert type(raw[0][-1]) is type(raw[1][-1]) and len(str(raw[0][-1])) == len(str(raw[1][-1]))
    assert docs[0] == docs[1]
    assert all(t.tzinfo is not None for t in times)


def test_a_good_jsonl_file_with_ids_in_every_form_and_several_documents(db, world):
    c, provider, (p0, p1, p2, _) = world
    doc = {"sha256": SHA, "filename": "intyg.pdf", "mediaType": "application/pdf"}
    data = jsonl_file(
        {"participantId": gid(p0), "metricCode": "ATTENDANCE", "achievedOn": "2026-06-01", "documents": [doc, doc]},
        "",  # blank lines are skipped
        {"participantId": p1, "metricCode": "ATTENDANCE", "achievedOn": "2026-06-02", "documents": []},
        {"participantId": str(p2), "metricCode": "ATTENDANCE", "achievedOn": "2026-06-03"},
    )
    result, bad = run_import(db, c, provider, data, "jsonl")
    assert (result.rows, result.imported, result.documents, bad) == (3, 3, 2, [])


def test_one_bad_row_in_the_middle_imports_nothing_and_names_its_line(db, world):
    # given 9 rows, the 5th (line 6) with an unknown metric; batches of 2 are written before it
    c, provider, (p0, *_) = world
    rows = [f"{p0},ATTENDANCE,2026-06-{d:02d},,,,,," for d in range(1, 10)]
    rows[4] = f"{p0},NO_SUCH_METRIC,2026-06-05,,,,,,"
    before = table_counts(db)
    # when
    err = rejected(db, c, provider, csv_file(*rows), batch_size=2)
    # then
    assert codes(err.bad_rows) == [(6, "UNKNOWN_METRIC")]
    assert err.errors[0].field[:2] == ["line", "6"]
    assert (err.result.rows, err.result.imported, err.result.rejected) == (9, 0, 1)
    assert table_counts(db) == before


def test_skip_bad_imports_the_good_rows_and_writes_the_bad_ones_to_a_reject_file(db, world):
    # given
    c, provider, (p0, p1, *_) = world
    rows = [f"{p0},ATTENDANCE,2026-06-01,,,,,,",
            f"{p0},ATTENDANCE,2027-06-01,,,,,,",  # line 3: in the future
            f"{p1},ATTENDANCE,2026-06-02,,,,{'x' * 64},a.pdf,application/pdf",  # line 4: malformed sha256
            f"{p1},ATTENDANCE,2026-06-03,,,,,,"]
    out = io.StringIO()
    writer = imp.RejectWriter(out, "csv")
    # when
    with db.uow() as uow:
        result = imp.import_evidence(uow, actor=provider, contract_id=c.id, source=io.BytesIO(csv_file(*rows)),
                                     file_name="e.csv", format="csv", today=TODAY, skip_bad=True, on_bad_row=writer)
        uow.commit()
    # then
    assert (result.rows, result.imported, result.rejected) == (4, 2, 2)
    with db.reading() as s:
        assert s.execute(select(Evidence.achieved_on).where(Evidence.contract_id == c.id)
                         .order_by(Evidence.id)).scalars().all() == [date(2026, 6, 1), date(2026, 6, 3)]
        audit = json.loads(s.execute(select(AuditEvent.input).where(AuditEvent.operation == "importEvidence")).scalar_one())
    assert (audit["skipBad"], audit["imported"], audit["rejected"]) == (True, 2, 2)
    lines = list(csv.reader(io.StringIO(out.getvalue())))
    assert lines[0] == ["line", "code", "field", "message", *HEADER.split(",")]
    assert [(r[0], r[1], r[2]) for r in lines[1:]] == [("3", "DATE_IN_FUTURE", "achievedOn"),
                                                       ("4", "INVALID_SHA256", "documents.0.sha256")]
    assert lines[1][4:] == rows[1].split(",")


def test_a_once_only_outcome_is_refused_a_second_time_in_the_file_and_after_an_earlier_claim(db, world):
    c, provider, (p0, p1, p2, _) = world
    with db.uow() as uow:
        uc.submit_evidence(uow, actor=provider, contract_id=c.id, today=TODAY,
                           claim=uc.Claim(p2, "SCHOOL_PASS", achieved_on=date(2026, 5, 1)))
        uow.commit()
    data = csv_file(f"{p0},SCHOOL_PASS,2026-06-10,,,,,,",
                    f"{p1},SCHOOL_PASS,2026-06-10,,,,,,",
                    f"{p0},SCHOOL_PASS,2026-06-11,,,,,,",
                    f"{p2},SCHOOL_PASS,2026-06-12,,,,,,")
    err = rejected(db, c, provider, data)
    assert codes(err.bad_rows) == [(4, "DUPLICATE_CLAIM"), (5, "DUPLICATE_CLAIM")]


def test_a_bad_first_claim_does_not_count_as_claimed(db, world):
    # the first SCHOOL_PASS of p0 is refused (bad document), so the second one is its first claim
    c, provider, (p0, *_) = world
    data = csv_file(f"{p0},SCHOOL_PASS,2026-06-10,,,,{SHA},\x01bad,application/pdf",
                    f"{p0},SCHOOL_PASS,2026-06-11,,,,,,")
    result, bad = run_import(db, c, provider, data, skip_bad=True)
    assert codes(bad) == [(2, "INVALID_TEXT")] and result.imported == 1


def test_schema_errors_are_reported_per_line(db, world):
    c, provider, (p0, *_) = world
    rows = [
        f"{p0},,2026-06-01,,,,,,",  # 2: no metric code
        f"{p0},ATTENDANCE,2026-13-01,,,,,,",  # 3: no such month (the pattern passes, the calendar does not)
        f"{p0},ATTENDANCE,2026-02-30,,,,,,",  # 4: no such day
        f"{p0},ATTENDANCE,1/6/2026,,,,,,",  # 5: not ISO
        f"{p0},CARE_DAYS,,2026-01-01,2026-06-30,1e3,,,",  # 6: exponent
        f'{p0},CARE_DAYS,,2026-01-01,2026-06-30,"12,5",,,',  # 7: decimal comma
        f"{p0},CARE_DAYS,,2026-01-01,2026-06-30,NaN,,,",  # 8
        f"{p0},CARE_DAYS,,2026-01-01,2026-06-30,.5,,,",  # 9
        f"{p0},CARE_DAYS,,2026-01-01,2026-06-30,1 000,,,",  # 10
        f"{p0},ATTENDANCE,2026-06-01,,,,{SHA},,",  # 11: a document without filename and media type
        f"{p0},ATTENDANCE,2026-06-01",  # 12: too few fields
        "UGFydHk6MQ==,ATTENDANCE,2026-06-01,,,,,,",  # 13: the global ID of a Party
        f"{p0},ATTENDANCE,2026-06-01,,,,,,",  # 14: good
    ]
    err = rejected(db, c, provider, csv_file(*rows))
    assert codes(err.bad_rows) == [
        (2, "REQUIRED"), (3, "INVALID_DATE"), (4, "INVALID_DATE"), (5, "INVALID_DATE"), (6, "INVALID_DECIMAL"),
        (7, "INVALID_DECIMAL"), (8, "INVALID_DECIMAL"), (9, "INVALID_DECIMAL"), (10, "INVALID_DECIMAL"),
        (11, "REQUIRED"), (11, "REQUIRED"), (12, "INVALID_ROW"), (13, "INVALID_ID"),
    ]
    assert err.bad_rows[0].errors[0].field == ("metricCode",)
    assert err.bad_rows[9].errors[0].field == ("documents", "0", "filename")


def test_jsonl_schema_errors_are_reported_per_line(db, world):
    c, provider, (p0, *_) = world
    good = {"participantId": p0, "metricCode": "ATTENDANCE", "achievedOn": "2026-06-01"}
    measured = {"participantId": p0, "metricCode": "CARE_DAYS", "periodStart": "2026-01-01", "periodEnd": "2026-06-30"}
    data = jsonl_file(
        good,
        {**measured, "value": 12.5},  # 2: a JSON number, not a decimal string
        '{"participantId": 1, "metricCode": ',  # 3: not JSON
        "[1, 2]",  # 4: not an object
        {**good, "achieved_on": "2026-06-01"},  # 5: an unknown field
        {**good, "participantId": True},  # 6
        {**good, "documents": [{"sha256": SHA.upper(), "filename": "a", "mediaType": "b"}]},  # 7
        {**good, "documents": {"sha256": SHA}},  # 8: not an array
        {**good, "metricCode": "school_pass"},  # 9: not a metric code's form
    )
    err = rejected(db, c, provider, data, "jsonl")
    assert codes(err.bad_rows) == [(2, "INVALID_DECIMAL"), (3, "INVALID_JSON"), (4, "INVALID_ROW"), (5, "UNKNOWN_FIELD"),
                                   (6, "INVALID_ID"), (7, "INVALID_SHA256"), (8, "INVALID_DOCUMENTS"),
                                   (9, "UNKNOWN_METRIC")]
    assert err.bad_rows[1].raw == '{"participantId": 1, "metricCode": '


@pytest.mark.parametrize("header, code", [
    ("participantId,achievedOn", "MISSING_COLUMN"),
    ("participantId,metricCode,acheivedOn", "UNKNOWN_COLUMN"),
    ("participantId,metricCode,achievedOn,achievedOn", "DUPLICATE_COLUMN"),
    ("participantId,metricCode,achievedOn,document_sha256", "MISSING_COLUMN"),
])
def test_a_bad_header_is_refused_as_a_whole(db, world, header, code):
    c, provider, (p0, *_) = world
    before = table_counts(db)
    with pytest.raises(imp.ImportFileError) as err:
        run_import(db, c, provider, csv_file(f"{p0},ATTENDANCE,2026-06-01", header=header), skip_bad=True)
    assert (err.value.code, err.value.line) == (code, 1)
    assert table_counts(db) == before


def test_semicolons_a_bom_and_crlf_are_read(db, world):
    c, provider, (p0, *_) = world
    data = "\ufeffparticipantId;metricCode;achievedOn\r\n" + f"{p0};ATTENDANCE;2026-06-01\r\n"
    result, _ = run_import(db, c, provider, data.encode("utf-8"))
    assert result.imported == 1


def test_an_empty_file_and_a_suspended_contract_import_nothing(db, world):
    from ledger import sanctions
    c, provider, (p0, *_) = world
    for data in (b"", HEADER.encode() + b"\n"):
        with pytest.raises(imp.ImportFileError) as err:
            run_import(db, c, provider, data)
        assert err.value.code == "EMPTY_FILE"
    with db.uow() as uow:
        sanctions.issue_sanction(uow, actor=FM, contract_id=c.id, level="SUSPENSION", reason="Brister")
        uow.commit()
    with pytest.raises(DomainError) as err:
        run_import(db, c, provider, csv_file(f"{p0},ATTENDANCE,2026-06-01,,,,,,"))
    assert err.value.code == "CONTRACT_SUSPENDED"


def test_another_providers_contract_is_unknown(db, world):
    c, provider, _ = world
    with pytest.raises(DomainError) as err:
        run_import(db, c, Actor("cli import", "PROVIDER", provider.party_id + 1000), csv_file())
    assert err.value.code == "UNKNOWN_CONTRACT"


def test_every_rule_fails_the_same_way_as_in_submit_evidence(db, world):
    """The importer's rules are ledger.evidence._submit_one's: each claim gets the same code."""
    c, provider, (p0, p1, _, late) = world
    with db.uow() as uow:
        uc.submit_evidence(uow, actor=provider, contract_id=c.id, today=TODAY,
                           claim=uc.Claim(p1, "SCHOOL_PASS", achieved_on=date(2026, 5, 1)))
        uow.commit()
    d = date
    claims = [
        uc.Claim(p0, "ATTENDANCE", achieved_on=d(2026, 6, 1)),
        uc.Claim(p1, "SCHOOL_PASS", achieved_on=d(2026, 6, 11)),
        uc.Claim(p0, "NO_SUCH", achieved_on=d(2026, 6, 11)),
        uc.Claim(p0, "ATTENDANCE", achieved_on=d(2026, 12, 1)),
        uc.Claim(p0, "ATTENDANCE", achieved_on=d(2025, 12, 31)),
        uc.Claim(late, "ATTENDANCE", achieved_on=d(2026, 8, 31)),
        uc.Claim(late, "ATTENDANCE", achieved_on=d(2026, 9, 1)),
        uc.Claim(99_999_999, "ATTENDANCE", achieved_on=d(2026, 6, 1)),
        uc.Claim(p0, "ATTENDANCE"),
        uc.Claim(p0, "ATTENDANCE", period_start=d(2026, 1, 1), period_end=d(2026, 6, 30)),
        uc.Claim(p0, "CARE_DAYS", period_start=d(2026, 1, 1), period_end=d(2026, 6, 30)),
        uc.Claim(p0, "CARE_DAYS", period_start=d(2026, 7, 1), period_end=d(2026, 6, 30), value=Decimal(1)),
        uc.Claim(p0, "CARE_DAYS", period_start=d(2025, 7, 1), period_end=d(2026, 6, 30), value=Decimal(1)),
        uc.Claim(p0, "CARE_DAYS", period_start=d(2026, 7, 1), period_end=d(2026, 12, 31), value=Decimal(1)),
        uc.Claim(p0, "CARE_DAYS", achieved_on=d(2026, 3, 1), period_start=d(2026, 1, 1), period_end=d(2026, 6, 30),
                 value=Decimal("2.5")),
        uc.Claim(p0, "ATTENDANCE", achieved_on=d(2026, 6, 1), value=Decimal("7")),
        uc.Claim(p0, "ATTENDANCE", achieved_on=d(2026, 6, 1), documents=(uc.Document("xyz", "a", "b"),)),
        uc.Claim(p0, "ATTENDANCE", achieved_on=d(2026, 6, 1), documents=(uc.Document(SHA, " ", "b"),)),
        uc.Claim(p0, "ATTENDANCE", achieved_on=d(2026, 6, 1), documents=(uc.Document(SHA, "a" * 256, "b"),)),
        uc.Claim(p0, "ATTENDANCE", achieved_on=d(2026, 6, 1), documents=(uc.Document(SHA, "a\x00", "b"),)),
        uc.Claim(p0, "ATTENDANCE", achieved_on=d(2026, 6, 1), documents=(uc.Document(SHA, "a", "b" * 101),)),
        uc.Claim(p0, "ATTENDANCE", achieved_on=d(2026, 6, 1), documents=(uc.Document(SHA, " a.pdf\t", " x/y "),)),
    ]

    def item(cl: uc.Claim) -> dict:
        out = {"participantId": cl.participant_id, "metricCode": cl.metric_code}
        for key, value in (("achievedOn", cl.achieved_on), ("periodStart", cl.period_start),
                           ("periodEnd", cl.period_end), ("value", cl.value)):
            if value is not None:
                out[key] = str(value)
        if cl.documents:
            out["documents"] = [{"sha256": x.sha256, "filename": x.filename, "mediaType": x.media_type}
                                for x in cl.documents]
        return out

    for claim in claims:
        try:
            with db.uow() as uow:  # never committed
                uc.submit_evidence(uow, actor=provider, contract_id=c.id, claim=claim, today=TODAY)
            expected = None
        except DomainError as err:
            expected = err.code
        try:
            run_import(db, c, provider, jsonl_file(item(claim)), "jsonl", commit=False)
            got = None
        except imp.ImportRejected as err:
            got = err.bad_rows[0].errors[0].code
        assert got == expected, claim


def test_peak_memory_does_not_grow_with_the_file(db, world):
    # given files of 1 000 and 10 000 rows, a quarter with a document. (tracemalloc makes the
    # import about 6× slower; ops/bench/evidence_import.py shows the same at 20 000 / 100 000.)
    c, provider, ps = world

    def data(n: int) -> bytes:
        rows = [f"{ps[i % 3]},ATTENDANCE,2026-{3 + i % 8:02d}-{1 + i % 28:02d},,,,"
                + (f"{i:064x},dok-{i}.pdf,application/pdf" if i % 4 == 0 else ",,") for i in range(n)]
        return csv_file(*rows)

    small, large = data(1_000), data(10_000)
    run_import(db, c, provider, small, commit=False, batch_size=200)  # warm-up: imports, caches, compiled SQL

    def peak(blob: bytes) -> int:
        source = io.BytesIO(blob)  # the file itself is not the importer's memory
        tracemalloc.start()
        try:
            with db.uow() as uow:
                result = imp.import_evidence(uow, actor=provider, contract_id=c.id, source=source, file_name="m.csv",
                                             format="csv", today=TODAY, batch_size=200)
            assert result.imported == blob.count(b"\n") - 1
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    # when
    small_peak, large_peak = peak(small), peak(large)
    # then ten times the rows take well under twice the memory (holding every row would take ~10×)
    assert large_peak < 2 * small_peak, (small_peak, large_peak)


def test_the_fast_and_the_detailed_schema_validators_agree():
    """jsonschema-rs gates every row, jsonschema explains the refused ones: they must agree."""
    fast, detailed = imp._validators()
    good = {"participantId": 5, "metricCode": "ATTENDANCE", "achievedOn": "2026-06-01"}
    doc = {"sha256": SHA, "filename": "a.pdf", "mediaType": "application/pdf"}
    cases = [good, {**good, "participantId": "5"}, {**good, "participantId": gid(5)}, {**good, "participantId": 5.0},
             {**good, "documents": [doc, doc]}, {**good, "value": "-12.50"}, {**good, "value": "0"}]
    bad = [{**good, "participantId": p} for p in (0, -1, 10**18, 10**30, 5.5, True, None, "05", "5\n", "٥", "a b")]
    bad += [{**good, "value": v} for v in ("12\n", " 12", "1e3", "NaN", "Infinity", "1,5", ".5", "5.", "+5", 12, 1.5)]
    bad += [{**good, "achievedOn": v} for v in ("2026-6-1", "20260601", "2026-06-01\n", "2026-06-01T00:00", "")]
    bad += [{**good, "metricCode": v} for v in ("attendance", "ATTENDANCE\n", "", "A" * 61, 5)]
    bad += [{**good, "documents": d} for d in ([{**doc, "sha256": SHA.upper()}], [{**doc, "x": 1}], [{"sha256": SHA}],
                                               [{**doc, "filename": 5}], doc, "x")]
    bad += [{"metricCode": "ATTENDANCE"}, {**good, "extra": 1}, [good], "x", None]
    assert [fast(i) for i in cases] == [True] * len(cases)
    assert [fast(i) for i in bad] == [False] * len(bad)
    assert [detailed.is_valid(i) for i in cases + bad] == [fast(i) for i in cases + bad]
    # and every problem in an object is named with its field and a specific code
    assert all(e.code != "INVALID_ROW" and e.field for i in bad if isinstance(i, dict) for e in imp.schema_errors(i))
