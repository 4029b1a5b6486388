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
