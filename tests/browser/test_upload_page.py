"""The /upload page in a real browser: a provider types its token and contract, chooses a file,
presses Upload and reads the import report; a bad file lists its bad lines and imports nothing.

Debian's chromium through Playwright, as in test_browser.py (skipped without them, except
under CI=true). A real server (uvicorn in a thread) on a fresh SQLite file.
"""
from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from tests.browser.test_browser import MISSING, browser, pytestmark  # noqa: F401 - the shared browser fixture

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - the module is skipped then
    expect = None


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The app on a free port with an active contract, three participants and its provider's token."""
    from api.app import create_app
    from ledger import evidence as uc
    from ledger import schema, tokens
    from ledger.access import SYSTEM, Actor
    from ledger.config import Settings
    from ledger.db import Database, make_engine
    from tests.api.serving import serving
    from tests.factories import contract, funded, rate_card

    where = tmp_path_factory.mktemp("upload")
    url = f"sqlite:///{where / 'utfall.db'}"
    schema.upgrade(url)
    engine = make_engine(url)
    db = Database(engine)
    fm = Actor("frida", "FUND_MANAGER")
    fund, manager, muni, prov, ver = funded(db, fm)
    c = contract(db, fm, fund, manager, muni, prov, ver, activate=True, metrics=(rate_card("ATTENDANCE", "12500.00"),))
    provider = Actor("pia", "PROVIDER", prov.id)
    with db.uow() as uow:
        ps = [uc.enroll_participant(uow, actor=provider, secret=b"unused", contract_id=c.id, personal_identity_number=None,
                                    external_ref=f"ELEV-{i}", area=None, enrolled_on=date(2026, 2, 1),
                                    today=date(2026, 11, 23)).id for i in range(3)]
        token = tokens.create_token(uow, actor=SYSTEM, name="pia", role="PROVIDER", party_id=prov.id).token
        uow.commit()
    settings = Settings(database_url=url, env="development", secret=b"upload-page-secret-0123456789",
                        document_dir=str(where / "documents"))
    with serving(create_app(settings, db, workers=2)) as port:
        yield {"origin": f"http://127.0.0.1:{port}", "token": token, "contract": c.id, "participants": ps, "db": db}
    engine.dispose()


def evidence_count(db) -> int:
    from ledger.models import Evidence
    with db.reading() as s:
        return s.execute(select(func.count()).select_from(Evidence)).scalar_one()


def upload(browser, site, name: str, body: bytes):  # noqa: F811 - the browser fixture's value
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{site['origin']}/upload")
    page.fill("#token", site["token"])
    page.fill("#contract", str(site["contract"]))
    page.set_input_files("#file", files=[{"name": name, "mimeType": "text/csv", "buffer": body}])
    page.get_by_role("button", name="Upload").click()
    return context, page, errors


def test_a_good_file_is_imported_and_the_report_shows_the_count(browser, site):  # noqa: F811
    p = site["participants"]
    body = f"participantId,metricCode,achievedOn\n{p[0]},ATTENDANCE,2026-06-01\n{p[1]},ATTENDANCE,2026-06-02\n".encode()
    before = evidence_count(site["db"])
    context, page, errors = upload(browser, site, "juni.csv", body)
    try:
        expect(page.locator("#summary")).to_have_text("2 imported, 0 bad, of 2 rows", timeout=20_000)
        assert evidence_count(site["db"]) == before + 2
        assert not errors, errors  # nothing the page's CSP refused, no script error
    finally:
        context.close()


def test_a_bad_file_lists_its_bad_lines_and_imports_nothing(browser, site):  # noqa: F811
    p = site["participants"]
    body = (f"participantId,metricCode,achievedOn\n{p[0]},ATTENDANCE,2026-06-03\n{p[1]},NO_SUCH,2026-06-02\n"
            f"{p[2]},ATTENDANCE,2026-13-01\n").encode()
    before = evidence_count(site["db"])
    context, page, _ = upload(browser, site, "bad.csv", body)
    try:
        expect(page.locator("#summary")).to_have_text("0 imported, 2 bad, of 3 rows", timeout=20_000)
        bad = page.locator("#report li.bad")
        expect(bad.filter(has_text="line 3: UNKNOWN_METRIC")).to_have_count(1)
        expect(bad.filter(has_text="line 4: INVALID_DATE")).to_have_count(1)
        expect(bad.first).to_contain_text("BAD_ROWS")
        assert evidence_count(site["db"]) == before
    finally:
        context.close()
