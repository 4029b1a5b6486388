"""In a real browser: GraphiQL works with no internet, and /results draws its chart.

Debian's chromium (/usr/bin/chromium), driven headless by Playwright's Python package; Playwright
never downloads a browser of its own. A real server (uvicorn in a thread, 127.0.0.1, a free port)
serves the demo from a fresh SQLite file. Without chromium or playwright the module is skipped,
except under CI=true, where that fails the run (like an unreachable PostgreSQL).
Screenshots go to artifacts/screenshots/.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest

from tests.conftest import IN_CI

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
SECRET = b"browser-test-secret-0123456789"
TODAY = date(2026, 11, 23)

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

MISSING = [what for what, ok in ((f"chromium at {CHROMIUM}", os.access(CHROMIUM, os.X_OK)),
                                 ("the playwright package", sync_playwright is not None)) if not ok]
pytestmark = pytest.mark.skipif(bool(MISSING) and not IN_CI,
                                reason=f"browser tests need {' and '.join(MISSING)} (see ops/test.sh)")

VIEWER = "{ viewer { name role } ledgerDigest { sequence } }"


@dataclass(frozen=True)
class Server:
    origin: str
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real app on 127.0.0.1 and a free port, serving the demo from a fresh SQLite file."""
    import uvicorn

    from api.app import create_app
    from ledger import demo, schema
    from ledger.config import Settings
    from ledger.db import Database, make_engine

    url = f"sqlite:///{tmp_path_factory.mktemp('browser') / 'utfall.db'}"
    schema.upgrade(url)
    engine = make_engine(url)
    db = Database(engine)
    issued = demo.load(db, today=TODAY, secret=SECRET)
    app = create_app(Settings(database_url=url, env="development", secret=SECRET), db)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # the OS picks a free port; uvicorn serves on this very socket
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Server(f"http://127.0.0.1:{port}", {t.role: t.token for t in issued})
    finally:
        uv.should_exit = True
        thread.join(timeout=10)
        sock.close()
        engine.dispose()


@pytest.fixture(scope="module")
def browser():
    if MISSING:  # only reached under CI=true: the skip mark covers the rest
        pytest.fail(f"browser tests are required under CI=true and need {' and '.join(MISSING)}")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Tab:
    """A page in a fresh browser context, with every request it made and every script error."""

    page: object
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def tab(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="sv-SE")
    t = Tab(context.new_page())
    t.page.on("request", lambda r: t.requests.append(r.url))
    t.page.on("pageerror", lambda e: t.errors.append(str(e)))
    t.page.on("console", lambda m: t.errors.append(m.text) if m.type == "error" else None)
    yield t
    context.close()


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def assert_stays_local(tab: Tab, server: Server) -> None:
    assert tab.requests, "no request was recorded"
    outside = [u for u in tab.requests if not u.startswith(server.origin + "/")]
    assert not outside, f"requests left {server.origin}: {outside}"


def test_graphiql_runs_a_query_with_an_auditor_token_and_nothing_leaves_the_server(tab, server):
    page = tab.page
    # given: GraphiQL, with its editors ready
    page.goto(f"{server.origin}/graphql")
    query_editor = page.locator(".graphiql-query-editor .CodeMirror")
    expect(query_editor).to_be_visible(timeout=20_000)
    # when: the auditor types the query, pastes the token into the headers editor and runs it
    query_editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(VIEWER)
    page.locator('.graphiql-editor-tools button[data-name="headers"]').click()
    headers_editor = page.locator(".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror")
    expect(headers_editor).to_be_visible()
    headers_editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text('{"Authorization": "Bearer %s"}' % server.tokens["AUDITOR"])
    page.locator(".graphiql-execute-button").click()
    # then
    response = page.locator(".graphiql-response")
    expect(response).to_contain_text('"role": "AUDITOR"', timeout=20_000)
    expect(response).to_contain_text('"name": "Anders Revisor"')
    expect(response).to_contain_text('"sequence"')
    expect(response).not_to_contain_text('"errors"')
    screenshot(page, "graphiql")
    assert_stays_local(tab, server)
    assert any(u.endswith("/static/graphiql/graphiql/graphiql.min.js") for u in tab.requests)
    assert not tab.errors, tab.errors


def test_the_results_page_draws_its_chart_with_the_contract_titles(tab, server):
    page = tab.page
    # when
    response = page.goto(f"{server.origin}/results")
    # then
    assert response.status == 200
    chart = page.locator("svg#rates")
    expect(chart).to_be_visible()
    assert chart.locator("rect").count() >= 1
    assert chart.get_attribute("role") == "img"
    expect(chart.locator("title").first).to_have_text("Andel med utfall per kontrakt och mått (andel av deltagarna, "
                                                      "0–100 %)")
    bars = page.locator("svg#paid rect")
    assert bars.count() == 3 and all(float(bars.nth(i).get_attribute("width")) > 0 for i in range(3))
    box = chart.bounding_box()
    assert box["width"] > 300 and box["height"] > 50  # drawn, not collapsed
    for title in ("Fullständiga betyg i Umeå", "Färre vårddygn i Malmö", "Minskat återfall i brott i Gävle"):
        expect(page.get_by_role("heading", name=title)).to_be_visible()
    expect(page.locator("svg#rates text.value").first).to_contain_text("%")
    screenshot(page, "results")
    # one contract's own page, through its link
    page.get_by_role("link", name="Färre vårddygn i Malmö").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Färre vårddygn i Malmö")
    screenshot(page, "results-contract")
    assert_stays_local(tab, server)
    assert not tab.errors, tab.errors



# the size a chart's text is drawn at on screen: its font size times the SVG's scale to the column
CHART_TEXT_PX = """() => Array.from(document.querySelectorAll('svg.chart text')).map(
    t => parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a)"""


@pytest.mark.parametrize("width", [390, 1280])
def test_chart_labels_stay_readable_on_a_phone_and_a_desktop(browser, server, width):
    context = browser.new_context(viewport={"width": width, "height": 844 if width < 600 else 900},
                                  device_scale_factor=2 if width < 600 else 1, locale="sv-SE")
    page = context.new_page()
    try:
        for path, name in (("/results", "results"), ("/results/T3V0Y29tZUNvbnRyYWN0OjI=", "results-contract")):
            assert page.goto(f"{server.origin}{path}").status == 200
            expect(page.locator("svg.chart").first).to_be_visible()
            sizes = page.evaluate(CHART_TEXT_PX)
            assert sizes and min(sizes) >= 11, (path, width, min(sizes))
            # nothing wider than the screen but the tables' own scroll boxes
            assert page.evaluate("() => document.documentElement.scrollWidth") <= width
            screenshot(page, f"{name}-{width}")
        assert page.locator("html").get_attribute("lang") == "sv"
        expect(page.get_by_text("vårddygn per halvår").first).to_be_visible()
    finally:
        context.close()
