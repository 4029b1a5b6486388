"""/results: the public results page, server-rendered HTML with an SVG chart, for anyone."""
from __future__ import annotations

import re
from datetime import date
from html import unescape

from api.graphql.base import to_global_id
from ledger import demo
from ledger import evidence as ev
from ledger.access import Actor
from tests.factories import contract, funded

FM = Actor("frida", "FUND_MANAGER")
SECRET = b"test-secret-for-hmac-0123456789"
TODAY = date(2026, 11, 23)
# every count on the page is <data class="count" value="N">N</data> or the suppressed marker
COUNT = re.compile(r'<(?:data|span) class="count[^"]*"[^>]*>([^<]*)<')
SUPPRESSED = "–\xa0under\xa05"


def counts(page: str) -> list[str]:
    return [unescape(text) for text in COUNT.findall(page)]


def assert_no_count_under_5(page: str) -> None:
    for text in counts(page):
        assert text == SUPPRESSED or int(text.replace("\u202f", "")) == 0 or int(text.replace("\u202f", "")) >= 5, text


def test_the_results_page_shows_every_published_contract_and_the_report_without_a_token(api):
    # given
    demo.load(api.db, today=TODAY, secret=SECRET)
    # when
    r = api.client.get("/results")
    # then
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    page = r.text
    assert '<meta charset="utf-8">' in page and "<script" not in page
    assert "<svg" in page and "<rect" in page and "<title id=\"rates-title\">" in page
    for title in ("Fullständiga betyg i Umeå", "Färre vårddygn i Malmö", "Minskat återfall i brott i Gävle"):
        assert title in page
    for form in ("PRIVATE", "NONPROFIT", "PUBLIC_IN_HOUSE"):
        assert f"<small>{form}</small>" in page
    assert "SEK" in page and counts(page)
    assert_no_count_under_5(page)
    # no personal data: the demo's identity numbers and participant references never appear
    assert not re.search(r"\d{8}-\d{4}", page) and "external_ref" not in page


def test_small_counts_are_suppressed_and_text_is_escaped(api, db):
    # given: a published contract with three participants, two with a verified outcome, and a draft
    fund, manager, muni, prov, ver = funded(db, FM)
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True, title="Skola & <b>betyg</b> i Umeå")
    draft = contract(db, FM, fund, manager, muni, prov, ver, title="Utkast som inte publiceras")
    provider, verifier = Actor("pia", "PROVIDER", prov.id), Actor("vera", "VERIFIER", ver.id)
    with db.uow() as uow:
        for n in range(3):
            p = ev.enroll_participant(uow, actor=provider, secret=SECRET, contract_id=c.id,
                                      personal_identity_number=None, external_ref=f"P{n}", area="URBAN",
                                      enrolled_on=date(2026, 1, 10), today=TODAY)
            if n < 2:
                e = ev.submit_evidence(uow, actor=provider, contract_id=c.id, today=TODAY,
                                       claim=ev.Claim(p.id, "SCHOOL_PASS", achieved_on=date(2026, 3, 1 + n)))
                ev.verify_evidence(uow, actor=verifier, evidence_id=e.id, note=None)
        uow.commit()
    # when
    page = api.client.get("/results").text
    one = api.client.get(f"/results/{to_global_id('OutcomeContract', c.id)}")
    # then
    assert "Skola &amp; &lt;b&gt;betyg&lt;/b&gt; i Umeå" in page and "<b>betyg" not in page
    assert "Utkast som inte publiceras" not in page
    assert counts(page) and all(text in (SUPPRESSED, "0") for text in counts(page))  # 3 participants, 2 achieved
    assert_no_count_under_5(page)
    assert "<svg" in page
    assert one.status_code == 200 and "Skola &amp; &lt;b&gt;betyg" in one.text
    assert counts(one.text) and all(text == SUPPRESSED for text in counts(one.text))
    # a draft, an unknown contract and a malformed ID are all simply not found
    for gid in (to_global_id("OutcomeContract", draft.id), to_global_id("OutcomeContract", 10**9),
                to_global_id("Party", prov.id), "not-an-id"):
        r = api.client.get(f"/results/{gid}")
        assert r.status_code == 404 and "Utkast" not in r.text


def paid_by_ownership(db, **scope) -> list[str]:
    """What the public evaluation report says each ownership form was paid, as the Swedish page writes it."""
    from api.results_text import texts
    from ledger import money as m
    from ledger import reports
    with db.reading() as s:
        report = reports.evaluation_report(s, full=False, **scope)
    return [texts("sv").money(m.from_minor(r.amount_paid_minor, r.currency).amount, r.currency)
            for r in report.by_ownership if r.amount_paid_minor]


def test_the_page_is_swedish_by_default_and_english_on_request(api):
    # given
    demo.load(api.db, today=TODAY, secret=SECRET)
    # when
    sv = api.client.get("/results")
    en = api.client.get("/results?lang=en")
    browser_en = api.client.get("/results", headers={"Accept-Language": "en-GB,en;q=0.9"})
    prefers_sv = api.client.get("/results", headers={"Accept-Language": "de-DE, sv;q=0.9, en;q=0.8"})
    # then
    assert '<html lang="sv">' in sv.text and "Publicerade resultat" in sv.text and sv.headers["content-language"] == "sv"
    assert re.search(r"\d,\d\u202f%", sv.text)  # a decimal comma in the rates: 43,3 %
    paid = paid_by_ownership(api.db)
    assert paid and all(x in sv.text for x in paid)  # with a decimal comma and narrow spaces: 8 180 250,00 SEK
    assert '<html lang="en">' in en.text and "Published results" in en.text and "Publicerade resultat" not in en.text
    assert re.search(r"\d\.\d\u202f%", en.text)
    assert '<html lang="en">' in browser_en.text and '<html lang="sv">' in prefers_sv.text
    assert 'href="/results?lang=en"' in sv.text and "lang=en" in en.text.split("<main>")[1]  # links keep the language


def test_every_measured_value_carries_its_unit(api):
    demo.load(api.db, today=TODAY, secret=SECRET)
    page = api.client.get("/results").text
    assert '2\u202f400 <small class="unit">vårddygn per halvår</small>' in page
    assert '3\u202f650 <small class="unit">vårddygn per halvår</small>' in page
    assert '1,4 <small class="unit">återfall per deltagare</small>' in page
    en = api.client.get("/results?lang=en").text
    assert '1.4 <small class="unit">återfall per participant</small>' in en


def test_the_annual_report_per_fund_is_printable(api):
    # given
    demo.load(api.db, today=TODAY, secret=SECRET)
    from ledger.models import OutcomesFund
    from sqlalchemy import select
    with api.db.reading() as s:
        fund_id = s.execute(select(OutcomesFund.id).where(OutcomesFund.name == demo.DEMO_FUND)).scalar_one()
    # when
    r = api.client.get(f"/results/report?fund={to_global_id('Fund', fund_id)}&year=2025")
    empty = api.client.get(f"/results/report?fund={fund_id}&year=2024&lang=en")
    # then
    assert r.status_code == 200 and f"Årsrapport 2025: {demo.DEMO_FUND}" in unescape(r.text)
    paid_2025 = paid_by_ownership(api.db, fund_id=fund_id, period=(date(2025, 1, 1), date(2025, 12, 31)))
    assert "@media print" in r.text and paid_2025 and all(x in r.text for x in paid_2025)
    assert_no_count_under_5(r.text)
    assert empty.status_code == 200 and "Annual report 2024" in empty.text
    assert not any(x.split(",")[0].replace("\u202f", "") in empty.text.replace("\u202f", "").replace(",", "")
                   for x in paid_2025)
    for bad in ("/results/report", "/results/report?fund=999999&year=2025", "/results/report?fund=not-an-id"):
        assert api.client.get(bad).status_code == 404
