"""Uploads over HTTP: documents by SHA-256 (who may upload, who may download, limits, the
immutable row) and evidence files through the same importer as the CLI, with its report."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from api.graphql.base import to_global_id
from ledger import evidence as uc
from ledger.access import Actor
from ledger.config import Settings
from ledger.models import AuditEvent, DocumentUpload, Evidence
from tests.conftest import table_counts
from tests.factories import contract, funded, party, rate_card

FM = Actor("frida", "FUND_MANAGER")
PDF = b"%PDF-1.4 attendance list for spring term\n"
PDF_SHA = hashlib.sha256(PDF).hexdigest()


@pytest.fixture
def settings(tmp_path):
    return Settings(database_url="unused", env="development", secret=b"test-secret-for-hmac-0123456789",
                    document_dir=str(tmp_path / "documents"), document_max_bytes=1000, import_max_bytes=200_000)


@pytest.fixture
def site(db, api):
    """An active contract with three participants; tokens of its provider, its verifier and others."""
    fund, manager, muni, prov, ver = funded(db, FM)
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True,
                 metrics=(rate_card(once_only=True), rate_card("ATTENDANCE", "12500.00")))
    provider = Actor("pia", "PROVIDER", prov.id)
    with db.uow() as uow:
        ps = [uc.enroll_participant(uow, actor=provider, secret=b"unused", contract_id=c.id, personal_identity_number=None,
                                    external_ref=f"ELEV-{i}", area=None, enrolled_on=date(2026, 2, 1),
                                    today=date(2026, 11, 23)).id for i in range(3)]
        uow.commit()
    other = party(db, role="PROVIDER", name="Annan utförare AB")
    return {
        "contract": c, "participants": ps, "provider": provider,
        "prov": api.token("PROVIDER", "pia", prov.id), "ver": api.token("VERIFIER", "vera", ver.id),
        "other": api.token("PROVIDER", "olle", other.id), "fm": api.token("FUND_MANAGER", "frida"), "other_party": other,
    }


def put(api, sha: str, body: bytes, token: str | None, media: str = "application/pdf"):
    headers = {"Content-Type": media, **({"Authorization": f"Bearer {token}"} if token else {})}
    return api.client.put(f"/documents/{sha}", content=body, headers=headers)


def get(api, sha: str, token: str | None):
    return api.client.get(f"/documents/{sha}", headers={"Authorization": f"Bearer {token}"} if token else {})


def code(r) -> str:
    return r.json()["errors"][0]["extensions"]["code"]


def uploads(db) -> int:
    with db.reading() as s:
        return s.execute(select(func.count()).select_from(DocumentUpload)).scalar_one()


# --- documents ------------------------------------------------------------------------------

def test_a_provider_uploads_a_document_once_and_reads_it_back(api, db, site, settings):
    # when
    first = put(api, PDF_SHA, PDF, site["prov"])
    again = put(api, PDF_SHA, PDF, site["prov"])
    # then: stored by its hash, recorded once, with who and when
    assert first.status_code == 201, first.text
    assert again.status_code == 200 and again.json()["uploadedAt"] == first.json()["uploadedAt"]
    assert first.json()["url"] == f"/documents/{PDF_SHA}" and first.json()["uploadedBy"].startswith("pia (PROVIDER")
    stored = list((tmp := Path(settings.document_dir)).rglob(PDF_SHA))
    assert len(stored) == 1 and stored[0].read_bytes() == PDF and not list((tmp / "incoming").iterdir())
    assert uploads(db) == 1
    r = get(api, PDF_SHA, site["prov"])
    assert r.status_code == 200 and r.content == PDF and r.headers["content-type"] == "application/pdf"
    assert r.headers["content-disposition"].startswith("attachment")


def test_bytes_that_do_not_match_the_address_are_refused_and_not_kept(api, db, site, settings):
    r = put(api, "a" * 64, PDF, site["prov"])
    assert r.status_code == 422 and code(r) == "DOCUMENT_HASH_MISMATCH"
    assert uploads(db) == 0
    assert not [p for p in Path(settings.document_dir).rglob("*") if p.is_file()]


def test_too_large_wrong_type_no_token_and_other_roles_are_refused(api, db, site):
    big = b"x" * 1001
    assert (r := put(api, hashlib.sha256(big).hexdigest(), big, site["prov"])).status_code == 413
    assert code(r) == "DOCUMENT_TOO_LARGE"
    html = b"<script>alert(1)</script>"
    assert (r := put(api, hashlib.sha256(html).hexdigest(), html, site["prov"], "text/html")).status_code == 415
    assert code(r) == "UNSUPPORTED_MEDIA_TYPE"
    assert (r := put(api, PDF_SHA, PDF, None)).status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert put(api, PDF_SHA, PDF, "not-a-token").status_code == 401
    assert (r := put(api, PDF_SHA, PDF, site["ver"])).status_code == 403 and code(r) == "PERMISSION_DENIED"
    assert put(api, "NOT-A-HASH", PDF, site["prov"]).status_code == 422
    assert uploads(db) == 0


def test_a_document_is_served_to_those_who_see_evidence_naming_it_and_404_to_everyone_else(api, db, site):
    # given: the provider uploaded the bytes and claimed an outcome naming them
    assert put(api, PDF_SHA, PDF, site["prov"]).status_code == 201
    missing = get(api, "b" * 64, site["fm"])
    assert get(api, PDF_SHA, site["ver"]).status_code == 404  # not named by any evidence yet
    evidence = submit(api, site, PDF_SHA)
    # then: the contract's verifier and the fund manager read it; another provider gets a plain 404
    assert get(api, PDF_SHA, site["ver"]).content == PDF
    assert get(api, PDF_SHA, site["fm"]).content == PDF
    other = get(api, PDF_SHA, site["other"])
    assert (other.status_code, other.json()) == (missing.status_code, missing.json()) and other.status_code == 404
    assert get(api, PDF_SHA, None).status_code == 401
    # and the evidence says the document is uploaded, with its address
    docs = evidence["documents"]
    assert docs == [{"sha256": PDF_SHA, "filename": "närvaro.pdf", "mediaType": "application/pdf", "uploaded": True,
                     "url": f"/documents/{PDF_SHA}"}]


def test_naming_someone_elses_document_does_not_let_you_download_it(api, db, site):
    # given: the provider uploaded; another provider, knowing the hash, names it in its own evidence
    assert put(api, PDF_SHA, PDF, site["prov"]).status_code == 201
    fund, manager, muni, _, ver2 = funded(db, FM)
    c2 = contract(db, FM, fund, manager, muni, site["other_party"], ver2, activate=True)
    olle = Actor("olle", "PROVIDER", site["other_party"].id)
    with db.uow() as uow:
        p = uc.enroll_participant(uow, actor=olle, secret=b"unused", contract_id=c2.id, personal_identity_number=None,
                                  external_ref="X-1", area=None, enrolled_on=date(2026, 2, 1), today=date(2026, 11, 23))
        uc.submit_evidence(uow, actor=olle, contract_id=c2.id, today=date(2026, 11, 23), claim=uc.Claim(
            p.id, "SCHOOL_PASS", achieved_on=date(2026, 6, 1), documents=(uc.Document(PDF_SHA, "x.pdf", "application/pdf"),)))
        uow.commit()
    # then: still 404 for that provider, and its evidence shows the document as not uploaded
    assert get(api, PDF_SHA, site["other"]).status_code == 404
    with db.reading() as s:
        mine = s.execute(select(Evidence).where(Evidence.contract_id == c2.id)).scalar_one()
        assert [d.uploaded for d in mine.documents] == [False]


def test_evidence_may_name_a_document_not_uploaded_yet(api, site):
    evidence = submit(api, site, "c" * 64)
    assert (evidence["documents"][0]["uploaded"], evidence["documents"][0]["url"]) == (False, None)


def test_a_document_upload_row_can_never_change(api, db, site, backend):
    assert put(api, PDF_SHA, PDF, site["prov"]).status_code == 201
    for statement in ("UPDATE document_uploads SET media_type = 'text/plain'", "DELETE FROM document_uploads"):
        with pytest.raises(DBAPIError, match="append-only"):
            with db.uow() as uow:
                uow.session.execute(text(statement))
    assert uploads(db) == 1


SUBMIT = """mutation($input: SubmitEvidenceInput!) { submitEvidence(input: $input) {
  evidence { id documents { sha256 filename mediaType uploaded url } } userErrors { code message } } }"""


def submit(api, site, sha: str) -> dict:
    data = api.ok(SUBMIT, {"input": {
        "contractId": to_global_id("OutcomeContract", site["contract"].id),
        "participantId": to_global_id("Participant", site["participants"][0]), "metricCode": "SCHOOL_PASS",
        "achievedOn": "2026-06-01", "documents": [{"sha256": sha, "filename": "närvaro.pdf", "mediaType": "application/pdf"}],
        "idempotencyKey": f"submit-{sha[:8]}"}}, site["prov"])
    assert not data["submitEvidence"]["userErrors"], data
    return data["submitEvidence"]["evidence"]


# --- evidence files -------------------------------------------------------------------------

def csv_file(site, *rows: tuple[int, str, str]) -> bytes:
    lines = ["participantId,metricCode,achievedOn"] + [f"{site['participants'][p]},{m},{d}" for p, m, d in rows]
    return ("\n".join(lines) + "\n").encode()


def post_file(api, site, body: bytes, token: str | None, *, media="text/csv", contract=None, key=None, query=""):
    headers = {"Content-Type": media, **({"Authorization": f"Bearer {token}"} if token else {}),
               **({"Idempotency-Key": key} if key else {})}
    cid = site["contract"].id if contract is None else contract
    return api.client.post(f"/contracts/{cid}/evidence-imports{query}", content=body, headers=headers)


def evidence_count(db) -> int:
    with db.reading() as s:
        return s.execute(select(func.count()).select_from(Evidence)).scalar_one()


def test_a_provider_imports_its_own_file_as_itself(api, db, site):
    body = csv_file(site, (0, "ATTENDANCE", "2026-06-01"), (1, "ATTENDANCE", "2026-06-02"), (2, "SCHOOL_PASS", "2026-06-03"))
    r = post_file(api, site, body, site["prov"], query="?fileName=juni.csv")
    assert r.status_code == 201, r.text
    report = r.json()
    assert (report["rows"], report["imported"], report["rejected"], report["badRows"]) == (3, 3, 0, [])
    assert report["sha256"] == hashlib.sha256(body).hexdigest() and report["fileName"] == "juni.csv"
    with db.reading() as s:
        submitters = set(s.execute(select(Evidence.submitted_by, Evidence.submitted_party_id)).all())
        audit = s.execute(select(AuditEvent.input, AuditEvent.actor).where(AuditEvent.operation == "importEvidence")).one()
    assert {party for _, party in submitters} == {site["provider"].party_id}
    assert all(name.startswith("pia (PROVIDER") for name, _ in submitters)
    assert json.loads(audit.input)["file"] == "juni.csv" and audit.actor == "pia"


def test_a_file_with_bad_rows_imports_nothing_and_lists_every_bad_line(api, db, site):
    before = table_counts(db)
    body = csv_file(site, (0, "ATTENDANCE", "2026-06-01"), (1, "NO_SUCH", "2026-06-02"), (2, "ATTENDANCE", "2026-02-30"))
    r = post_file(api, site, body, site["prov"])
    assert r.status_code == 422 and code(r) == "BAD_ROWS"
    report = r.json()["report"]
    assert (report["rows"], report["imported"], report["rejected"]) == (3, 0, 2)
    assert [(b["line"], b["errors"][0]["code"]) for b in report["badRows"]] == [(3, "UNKNOWN_METRIC"), (4, "INVALID_DATE")]
    assert table_counts(db) == before


def test_skip_bad_imports_the_good_rows_and_reports_the_bad(api, db, site):
    body = csv_file(site, (0, "ATTENDANCE", "2026-06-01"), (1, "NO_SUCH", "2026-06-02"))
    r = post_file(api, site, body, site["prov"], query="?skipBad=true")
    assert r.status_code == 201 and (r.json()["imported"], r.json()["rejected"]) == (1, 1)
    assert r.json()["badRows"][0]["line"] == 3 and evidence_count(db) == 1


def test_json_lines_by_content_type(api, db, site):
    body = (json.dumps({"participantId": site["participants"][0], "metricCode": "ATTENDANCE", "achievedOn": "2026-06-01"})
            + "\n").encode()
    r = post_file(api, site, body, site["prov"], media="application/x-ndjson")
    assert r.status_code == 201 and r.json()["format"] == "jsonl" and r.json()["imported"] == 1


def test_the_same_key_and_file_import_once(api, db, site):
    body = csv_file(site, (0, "ATTENDANCE", "2026-06-01"))
    first = post_file(api, site, body, site["prov"], key="juni-1")
    again = post_file(api, site, body, site["prov"], key="juni-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["replayed"] is True and again.json()["imported"] == 1
    assert again.json()["firstEvidenceId"] == first.json()["firstEvidenceId"] and evidence_count(db) == 1
    other = post_file(api, site, csv_file(site, (1, "ATTENDANCE", "2026-06-01")), site["prov"], key="juni-1")
    assert other.status_code == 409 and code(other) == "IDEMPOTENCY_KEY_REUSED" and evidence_count(db) == 1


def test_who_may_import_where(api, db, site):
    body = csv_file(site, (0, "ATTENDANCE", "2026-06-01"))
    assert post_file(api, site, body, None).status_code == 401
    assert (r := post_file(api, site, body, site["other"])).status_code == 404 and code(r) == "UNKNOWN_CONTRACT"
    missing = post_file(api, site, body, site["prov"], contract=99999)
    assert (missing.status_code, code(missing)) == (404, "UNKNOWN_CONTRACT")
    assert missing.json()["errors"][0]["message"] == r.json()["errors"][0]["message"].replace(
        str(site["contract"].id), "99999")
    assert post_file(api, site, body, site["ver"]).status_code == 403
    assert (r := post_file(api, site, body, site["prov"], media="application/pdf")).status_code == 415
    assert evidence_count(db) == 0


def test_an_evidence_file_has_its_own_size_limit_not_the_graphql_one(api, db, site):
    rows = [(i % 3, "ATTENDANCE", f"2026-0{3 + i % 6}-{1 + i % 28:02d}") for i in range(10_000)]
    body = csv_file(site, *rows)
    assert len(body) > 200_000  # the test's limit (settings above)
    assert (r := post_file(api, site, body, site["prov"])).status_code == 413 and code(r) == "REQUEST_TOO_LARGE"
    assert evidence_count(db) == 0


def test_over_a_mebibyte_is_accepted_under_a_larger_limit(db, site, settings, tmp_path):
    from starlette.testclient import TestClient
    from api.app import create_app
    rows = [(i % 3, "ATTENDANCE", f"2026-0{3 + i % 6}-{1 + i % 28:02d}") for i in range(60_000)]
    body = csv_file(site, *rows)
    assert len(body) > 1024 * 1024
    app = create_app(replace(settings, import_max_bytes=10 * 1024 * 1024), db, workers=2)
    with TestClient(app) as client:
        r = client.post(f"/contracts/{site['contract'].id}/evidence-imports", content=body,
                        headers={"Content-Type": "text/csv", "Authorization": f"Bearer {site['prov']}"})
    assert r.status_code == 201, r.text[:500]
    assert r.json()["imported"] == 60_000


# --- the page -------------------------------------------------------------------------------

def test_the_upload_page_has_a_form_and_a_strict_content_security_policy(api):
    r = api.client.get("/upload")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'sha256-" in csp and "connect-src 'self'" in csp and "unsafe" not in csp
    for marker in ('id="token"', 'id="contract"', 'type="file"', "<button"):
        assert marker in r.text


# --- the README's examples ------------------------------------------------------------------

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Uploading documents and evidence files")
    return text[start:text.index("\n## ", start + 1)]


def curl_commands(section: str) -> list[list[str]]:
    import shlex
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("  #")[0].strip()
            if command.startswith("curl "):
                commands.append(shlex.split(command))
    return commands


def as_request(argv: list[str], files: dict[str, bytes], values: dict[str, str]) -> tuple[str, str, dict, bytes | None]:
    """A curl command line as (method, path, headers, body), with $VARIABLES filled in."""
    method, headers, body, url = "GET", {}, None, None
    args = iter(argv[1:])
    for arg in args:
        if arg == "-X":
            method = next(args)
        elif arg == "-H":
            name, _, value = next(args).partition(": ")
            headers[name] = value
        elif arg == "--data-binary":
            body = files[next(args).lstrip("@")]
            method = "POST" if method == "GET" else method
        elif arg == "-o":
            next(args)
        elif arg.startswith("http"):
            url = arg
        else:
            assert arg.startswith("-"), arg
    for name, value in values.items():
        url = url.replace(f"${name}", value)
        headers = {k: v.replace(f"${name}", value) for k, v in headers.items()}
    return method, url.split("8000", 1)[1], headers, body


def test_the_readme_upload_examples_work_as_written(api, db, site):
    commands = curl_commands(readme_section())
    assert len(commands) == 3
    juni = csv_file(site, (0, "ATTENDANCE", "2026-06-01"), (1, "ATTENDANCE", "2026-06-02"))
    values = {"TOKEN": site["prov"], "SHA": PDF_SHA}
    answers = []
    for argv in commands:
        method, path, headers, body = as_request(argv, {"intyg.pdf": PDF, "juni.csv": juni}, values)
        path = path.replace("/contracts/1/", f"/contracts/{site['contract'].id}/")
        answers.append(api.client.request(method, path, headers=headers, content=body))
    put_answer, get_answer, import_answer = answers
    assert put_answer.status_code == 201 and get_answer.content == PDF
    assert import_answer.status_code == 201 and import_answer.json()["imported"] == 2
    # and the GraphQL example, as the role it names
    graphql = re.search(r"<!-- role: PROVIDER -->\n```graphql\n(.*?)```", readme_section(), re.S).group(1)
    submit(api, site, PDF_SHA)
    nodes = api.ok(graphql, token=site["prov"])["evidence"]["nodes"]
    assert {"sha256": PDF_SHA, "filename": "närvaro.pdf", "mediaType": "application/pdf", "uploaded": True,
            "url": f"/documents/{PDF_SHA}"} in [d for n in nodes for d in n["documents"]]


def test_the_document_store_and_limits_come_from_the_environment():
    from ledger.config import ConfigError, load
    base = {"UTFALL_ENV": "development"}
    assert load({**base, "DATABASE_URL": "sqlite:////srv/utfall/utfall.db"}).document_dir == "/srv/utfall/documents"
    assert load({**base, "DATABASE_URL": "postgresql+psycopg://u@h/db"}).document_dir == "documents"
    given = load({**base, "UTFALL_DOCUMENT_DIR": "/data/docs", "UTFALL_DOCUMENT_MAX_BYTES": "5000",
                  "UTFALL_IMPORT_MAX_BYTES": "9000"})
    assert (given.document_dir, given.document_max_bytes, given.import_max_bytes) == ("/data/docs", 5000, 9000)
    with pytest.raises(ConfigError, match="UTFALL_DOCUMENT_MAX_BYTES"):
        load({**base, "UTFALL_DOCUMENT_MAX_BYTES": "20MB"})
