"""The public results page: /results, /results/{contract id} and the annual report
/results/report?fund=...&year=..., for anyone, no token.

Server-rendered HTML with inline SVG bar charts: no JavaScript, nothing loaded from elsewhere
(the page is one self-contained response). In Swedish by default, English with ?lang=en or an
Accept-Language that prefers it (api.results_text). It shows only what ledger.reports publishes
for the public: the aggregated figures per contract and metric and the evaluation report, after
disclosure control; a suppressed count arrives as None and is shown as "– under 5", never as a
number. Every measured value carries its unit.
"""
from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from html import escape
from urllib.parse import quote

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from api.graphql.base import split_global_id, to_global_id
from api.results_text import NNBSP, Texts, language, texts
from ledger import proofs, signing
from ledger import money as m
from ledger import reports
from ledger.db import Database
from ledger.errors import NotFound
from ledger.models import OutcomeContract, OutcomesFund

# no scripts, no outside resources, no framing: only the inline style sheet and SVG
HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                                      "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache", "Vary": "Accept-Language"}


def routes() -> list[Route]:
    return [Route("/results", results_index, methods=["GET"]),
            Route("/results/report", annual_report, methods=["GET"]),
            Route("/results/{contract_id:path}", contract_results, methods=["GET"])]


# --- reading (in a worker thread: never on the event loop) -----------------------------------

@dataclass(frozen=True)
class Published:
    contracts: tuple[reports.ContractResults, ...]
    report: reports.EvaluationReport
    as_of: datetime
    fund: str | None = None
    year: int | None = None
    tree_head: signing.SignedTreeHead | None = None  # the ledger's newest, signed as the page is read


def read_published(db: Database, contract_id: int | None = None, signer: signing.Signer | None = None) -> Published:
    """Every published contract's results and the public evaluation report, in one read session."""
    with db.reading() as s:
        head = proofs.signed_tree_head(s, signer=signer, now=_now()) if signer is not None else None
        if contract_id is None:
            ids = list(s.scalars(select(OutcomeContract.id).where(OutcomeContract.status.in_(reports.PUBLISHED))
                                 .order_by(OutcomeContract.id)))
            return Published(tuple(reports.public_results(s, pk) for pk in ids),
                             reports.evaluation_report(s, full=False), _now(), tree_head=head)
        one = reports.public_results(s, contract_id)  # NotFound unless published
        return Published((one,), reports.evaluation_report(s, full=False, scope=OutcomeContract.id == contract_id),
                         _now(), tree_head=head)


def read_annual(db: Database, fund_id: int, year: int, signer: signing.Signer | None = None) -> Published:
    """One fund's year as the public sees it: payouts for periods ending in the year, penalties issued in it."""
    with db.reading() as s:
        head = proofs.signed_tree_head(s, signer=signer, now=_now()) if signer is not None else None
        fund = s.get(OutcomesFund, fund_id)
        if fund is None:
            raise NotFound(f"fund {fund_id} does not exist", code="UNKNOWN_FUND")
        ids = list(s.scalars(select(OutcomeContract.id).where(OutcomeContract.status.in_(reports.PUBLISHED),
                                                              OutcomeContract.fund_id == fund_id)
                             .order_by(OutcomeContract.id)))
        report = reports.evaluation_report(s, full=False, fund_id=fund_id,
                                           period=(date(year, 1, 1), date(year, 12, 31)))
        return Published(tuple(reports.public_results(s, pk) for pk in ids), report, _now(), fund.name, year, head)


def _signer(request: Request) -> signing.Signer | None:
    return getattr(request.app.state, "signer", None)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


async def _in_thread(request: Request, fn, *args):
    """`fn(*args)` in a worker thread, holding one of the app's database slots like a GraphQL
    request (api.app.DbGate), so the pool is never asked for more connections than it has."""
    gate = getattr(request.app.state, "gate", None)
    if gate is None:
        return await run_in_threadpool(fn, *args)
    async with gate.slot():
        return await run_in_threadpool(fn, *args)


def _html(body: str, t: Texts, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={**HEADERS, "Content-Language": t.lang})


async def results_index(request: Request) -> HTMLResponse:
    t = texts(language(request))
    published = await _in_thread(request, read_published, request.app.state.db, None, _signer(request))
    return _html(render_index(published, t), t)


async def contract_results(request: Request) -> HTMLResponse:
    t = texts(language(request))
    parsed = split_global_id(request.path_params["contract_id"])
    if parsed is None or parsed[0] != "OutcomeContract":
        return _not_found(t)
    try:
        published = await _in_thread(request, read_published, request.app.state.db, parsed[1], _signer(request))
    except NotFound:
        return _not_found(t)
    return _html(render_contract(published, t), t)


async def annual_report(request: Request) -> HTMLResponse:
    t = texts(language(request))
    raw_fund, raw_year = request.query_params.get("fund", ""), request.query_params.get("year", "")
    parsed = split_global_id(raw_fund)
    fund_id = int(raw_fund) if raw_fund.isdigit() else (parsed[1] if parsed and parsed[0] == "Fund" else None)
    year = int(raw_year) if raw_year.isdigit() and 1900 < int(raw_year) < 3000 else _now().year
    if fund_id is None:
        return _not_found(t)
    try:
        published = await _in_thread(request, read_annual, request.app.state.db, fund_id, year, _signer(request))
    except NotFound:
        return _not_found(t)
    return _html(render_annual(published, t), t)


def _not_found(t: Texts) -> HTMLResponse:
    body = (f"<h1>{t['not_found_h']}</h1><p>{t['not_found_p']}</p>"
            f'<p><a href="{_href("/results", t)}">{t["back"].lstrip("← ")}</a></p>')
    return _html(_page(f"{t['not_found']} — Utfall", body, t), t, status=404)


def _href(path: str, t: Texts, **params) -> str:
    if t.lang != "sv":
        params["lang"] = t.lang
    query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params.items())
    return escape(path + (f"?{query}" if query else ""))


# --- pages ------------------------------------------------------------------------------------

def render_index(p: Published, t: Texts | None = None) -> str:
    t = t or texts("sv")
    paid = {row.key: row for row in p.report.by_contract}
    body = [
        f"<header>{_switch(t, '/results')}<h1>{t['results']}</h1>",
        f"<p>{t['intro'].format(n=reports.SMALL_COUNT, marker=_suppressed(t))}</p></header><main>",
        f'<section aria-labelledby="rates-h"><h2 id="rates-h">{t["rates_h"]}</h2><p>{t["rates_p"]}</p>',
        rate_chart("rates", p.contracts, t), "</section>",
        evaluation_sections(p.report, t),
        f'<section aria-labelledby="contracts-h"><h2 id="contracts-h">{t["contracts_h"]}</h2>',
    ]
    if not p.contracts:
        body.append(f"<p>{t['no_contracts']}</p>")
    for c in p.contracts:
        body.append(contract_article(c, paid.get(f"contract:{c.contract_id}"), heading="h3", link=True, t=t,
                                     returns=p.report.investor_returns.get(c.contract_id)))
    body.append("</section>")
    if p.report.investor_returns:
        titles = {c.contract_id: c.title for c in p.contracts}
        body += [f'<section aria-labelledby="investors-h"><h2 id="investors-h">{escape(t["investors_h"])}</h2>',
                 f"<p>{escape(t['investors_p'])}</p>",
                 investor_table([r for cid, rows in p.report.investor_returns.items() for r in rows if r.tranche is None],
                                t["investors_caption"], t, label=lambda r: titles.get(r.contract_id, "")),
                 "</section>"]
    body.append("</main>")
    body.append(_footer(p, t))
    return _page(f"{t['results']} — Utfall", "".join(body), t)


def evaluation_sections(report: reports.EvaluationReport, t: Texts) -> str:
    return "".join([
        f'<section aria-labelledby="ownership-h"><h2 id="ownership-h">{t["own_h"]}</h2><p>{t["own_p"]}</p>',
        paid_chart("paid", report.by_ownership, t),
        group_table(t["own_caption"], t["ownership_form"], report.by_ownership, t,
                    lambda r: f'{escape(_ownership(r.ownership, t))} <small>{escape(r.ownership or "")}</small>'),
        "</section>",
        f'<section aria-labelledby="area-h"><h2 id="area-h">{t["area_h"]}</h2>',
        group_table(t["area_caption"], t["policy_area"], report.by_policy_area, t, lambda r: escape(r.label)),
        "</section>",
        f'<section aria-labelledby="metric-h"><h2 id="metric-h">{t["metric_h"]}</h2><p>{t["metric_p"]}</p>',
        metric_table(report.by_metric, t), "</section>",
    ])


def render_contract(p: Published, t: Texts | None = None) -> str:
    t = t or texts("sv")
    c = p.contracts[0]
    row = next((r for r in p.report.by_contract if r.key == f"contract:{c.contract_id}"), None)
    gid = to_global_id("OutcomeContract", c.contract_id)
    body = [f'{_switch(t, f"/results/{gid}")}<p class="back"><a href="{_href("/results", t)}">{t["back"]}</a></p>'
            "<main>", contract_article(c, row, heading="h1", link=False, t=t,
                                       returns=p.report.investor_returns.get(c.contract_id))]
    if any(x.kind == "RATE_CARD" for x in c.metrics):
        body += [f'<section aria-labelledby="rates-h"><h2 id="rates-h">{t["rate_per_metric"]}</h2>',
                 rate_chart("rates", (c,), t), "</section>"]
    measured = [x for x in c.metrics if x.kind != "RATE_CARD"]
    if measured:
        body += [f'<section aria-labelledby="measured-h"><h2 id="measured-h">{t["measured_h"]}</h2>'
                 f'<p>{t["measured_p"]}</p>',
                 "".join(measured_chart(f"measured-{i}", c, x, t) for i, x in enumerate(measured)), "</section>"]
    body += ["</main>", _footer(p, t)]
    return _page(f"{c.title} — {t['results'].lower()} — Utfall", "".join(body), t)


def render_annual(p: Published, t: Texts | None = None) -> str:
    """A printable annual report per fund: the year's evaluation and each contract's results."""
    t = t or texts("sv")
    totals = reports.ReportRow("total", t["report_totals"], None, sum(r.contracts for r in p.report.by_ownership),
                               None, Decimal(0), sum(r.amount_paid_minor for r in p.report.by_ownership),
                               p.report.by_ownership[0].currency if p.report.by_ownership else "SEK",
                               penalties_minor=sum(r.penalties_minor for r in p.report.by_ownership))
    body = [f"<header>{_switch(t, '/results/report')}<h1>{escape(t['report_h'].format(year=p.year, fund=p.fund))}</h1>",
            f"<p>{t['report_p'].format(year=p.year)}</p><p class=\"noprint\">{t['print']}</p></header><main>",
            '<dl class="totals">',
            f"<div><dt>{t['contracts']}</dt><dd>{_number(totals.contracts, t)}</dd></div>",
            f"<div><dt>{t['amount_paid']}</dt><dd>{_money(totals.amount_paid_minor, totals.currency, t)}</dd></div>",
            f"<div><dt>{t['penalties']}</dt><dd>{_money(totals.penalties_minor, totals.currency, t)}</dd></div>",
            "</dl>", evaluation_sections(p.report, t),
            f'<section aria-labelledby="contracts-h"><h2 id="contracts-h">{t["contracts_h"]}</h2>']
    paid = {row.key: row for row in p.report.by_contract}
    for c in p.contracts:
        body.append(contract_article(c, paid.get(f"contract:{c.contract_id}"), heading="h3", link=True, t=t))
    body += ["</section></main>", _footer(p, t)]
    return _page(f"{t['report_h'].format(year=p.year, fund=p.fund)} — Utfall", "".join(body), t)


def contract_article(c: reports.ContractResults, paid: reports.ReportRow | None, *, heading: str,
                     link: bool, t: Texts | None = None, returns=None) -> str:
    t = t or texts("sv")
    title = escape(c.title)
    if link:
        title = f'<a href="{_href("/results/" + to_global_id("OutcomeContract", c.contract_id), t)}">{title}</a>'
    facts = [(t["policy_area"], escape(c.policy_area)),
             (t["status"], escape(t["status_names"].get(c.status, c.status.lower()))),
             (t["provider"], f"{escape(c.provider)} ({escape(_ownership(c.ownership, t))})"),
             (t["municipality"], escape(c.municipality)),
             (t["participants"], _count(c.participants, t, unit=t["unit_participants"]))]
    if paid is not None:
        facts.append((t["paid_posted"], _money(paid.amount_paid_minor, paid.currency, t)))
    rows = "".join(_metric_row(x, t) for x in c.metrics)
    return (f'<article class="contract" aria-labelledby="contract-{c.contract_id}">'
            f'<{heading} id="contract-{c.contract_id}">{title}</{heading}>'
            "<dl>" + "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts) + "</dl>"
            f'<div class="scroll"><table><caption>{escape(t["per_metric_caption"].format(title=c.title))}</caption>'
            f'<thead><tr><th scope="col">{t["metric"]}</th><th scope="col" class="num">{t["participants"]}</th>'
            f'<th scope="col" class="num">{t["with_outcome"]}</th><th scope="col" class="num">{t["rate"]}</th>'
            f'<th scope="col" class="num">{t["latest"]}</th><th scope="col" class="num">{t["baseline"]}</th>'
            f"</tr></thead><tbody>{rows}</tbody></table></div>"
            + ("" if not returns else investor_table(
                returns, t["investors_contract_caption"].format(title=c.title), t,
                label=lambda r: t["all_investors"] if r.tranche is None else t[f"tranche_{r.tranche}"]))
            + "</article>")


def investor_table(rows, caption: str, t: Texts, *, label) -> str:
    """Per row of ledger.investments.InvestorReturns: put in, got back, return percent, multiple, loss."""
    def opt(d, suffix=""):
        return _na(t) if d is None else escape(f"{t.decimal(d)}{suffix}")
    body = "".join(
        f'<tr><th scope="row">{escape(label(r))} <small>{r.investments}&nbsp;'
        f'{t["investment_one"] if r.investments == 1 else t["investment_many"]}</small></th>'
        f'<td class="num">{_money(r.drawn_minor, r.currency, t)}</td>'
        f'<td class="num">{_money(r.returned_minor, r.currency, t)}</td>'
        f'<td class="num">{opt(r.return_percent, NNBSP + "%")}</td><td class="num">{opt(r.multiple)}</td>'
        f'<td class="num">{_money(r.loss_minor, r.currency, t)}</td></tr>' for r in rows)
    return (f'<div class="scroll"><table class="investors"><caption>{escape(caption)}</caption><thead><tr>'
            f'<th scope="col">{t["investors"]}</th><th scope="col" class="num">{t["put_in"]}</th>'
            f'<th scope="col" class="num">{t["got_back"]}</th><th scope="col" class="num">{t["return"]}</th>'
            f'<th scope="col" class="num">{t["multiple"]}</th><th scope="col" class="num">{t["loss"]}</th>'
            f"</tr></thead><tbody>{body}</tbody></table></div>")


def _unit(x: reports.MetricResult, t: Texts) -> str:
    return t.measured_unit(x.name, x.kind, x.period_months)


def _metric_row(x: reports.MetricResult, t: Texts) -> str:
    if x.kind == "RATE_CARD":  # counted per participant; a None count or rate is suppressed
        achieved = _count(x.achieved, t, unit=t["unit_participants"])
        rate = _suppressed(t) if x.rate is None else escape(t.percent(x.rate))
        latest = baseline = _na(t)
    else:  # measured for the cohort as a whole, in the metric's own unit
        achieved = rate = _na(t)
        unit = _unit(x, t)
        latest = _measured(x.latest_observed, unit, t)
        baseline = _measured(x.baseline, unit, t)
    cells = "".join(f'<td class="num">{v}</td>' for v in (_count(x.participants, t, unit=t["unit_participants"]),
                                                         achieved, rate, latest, baseline))
    return (f'<tr><th scope="row">{escape(x.name)} <small>{escape(x.code)}, '
            f"{escape(t['kind'].get(x.kind, x.kind))}</small></th>{cells}</tr>")


def group_table(caption: str, first: str, rows: Sequence[reports.ReportRow], t: Texts, label) -> str:
    body = "".join(
        f'<tr><th scope="row">{label(r)}'
        + (f' <small class="left-out">{escape(t["left_out"].format(n=r.left_out))}</small>' if r.left_out else "")
        + f'</th><td class="num">{_number(r.contracts, t)}</td>'
        f'<td class="num">{_count(r.outcomes, t, unit=t["unit_outcomes"])}</td>'
        f'<td class="num">{_money(r.amount_paid_minor, r.currency, t)}</td>'
        f'<td class="num">{_money(r.penalties_minor, r.currency, t)}</td>'
        f'<td class="num">{_money(r.cost_per_outcome_minor, r.currency, t)}</td>'
        f'<td class="num">{_number(r.outcome_contracts, t)}</td></tr>'
        for r in rows)
    if not rows:
        body = f'<tr><td colspan="7">{t["no_rows"]}</td></tr>'
    return (f'<div class="scroll"><table><caption>{escape(caption)}</caption><thead><tr>'
            f'<th scope="col">{first}</th><th scope="col" class="num">{t["contracts"]}</th>'
            f'<th scope="col" class="num">{t["outcomes"]}</th><th scope="col" class="num">{t["amount_paid"]}</th>'
            f'<th scope="col" class="num">{t["penalties"]}</th><th scope="col" class="num">{t["cost_outcome"]}</th>'
            f'<th scope="col" class="num">{t["behind"]}</th>'
            f"</tr></thead><tbody>{body}</tbody></table></div>")


def metric_table(rows: Sequence[reports.MetricFigures], t: Texts) -> str:
    def unit(f: reports.MetricFigures) -> str:
        return t["unit_outcomes"] if f.unit == "OUTCOME" else t.measured_unit(f.name, "BASELINE_IMPROVEMENT", None) \
            .rsplit(" per ", 1)[0]

    def quantity(f: reports.MetricFigures) -> str:
        if f.quantity is None:
            return _suppressed(t)
        return f'<data class="count" value="{f.quantity}">{escape(t.decimal(f.quantity))}</data>'

    body = "".join(
        f'<tr><th scope="row">{escape(f.contract_title)} — {escape(f.name)} <small>{escape(f.code)}</small></th>'
        f"<td>{escape(unit(f))}</td><td class=\"num\">{quantity(f)}</td>"
        f'<td class="num">{_money(f.amount_paid_minor, f.currency, t)}</td>'
        f'<td class="num">{_money(f.cost_per_unit_minor, f.currency, t)}</td></tr>'
        for f in rows)
    if not rows:
        body = f'<tr><td colspan="5">{t["no_rows"]}</td></tr>'
    return (f'<div class="scroll"><table><caption>{t["metric_caption"]}</caption><thead><tr>'
            f'<th scope="col">{t["metric"]}</th><th scope="col">{t["unit"]}</th>'
            f'<th scope="col" class="num">{t["quantity"]}</th><th scope="col" class="num">{t["amount_paid"]}</th>'
            f'<th scope="col" class="num">{t["per_unit"]}</th></tr></thead><tbody>{body}</tbody></table></div>')


# --- charts: inline SVG, drawn here --------------------------------------------------------------

@dataclass(frozen=True)
class Bar:
    label: str
    value_text: str
    fraction: float | None  # 0..1 of the scale; None draws no bar (suppressed)


# Narrow enough that a 390 px phone shows the text at about 13 px (the SVG scales to the column):
# each label on its own line over the full width, its bar below with the value after it.
CHART_WIDTH, BAR_MAX, ROW, LABEL_MAX, VALUE_CHAR_PX = 400, 250, 50, 48, 9.2  # 15 px text


def bar_chart(chart_id: str, title: str, desc: str, bars: Sequence[Bar]) -> str:
    """A horizontal bar chart: each label above its bar, the value as text after it."""
    height = max(len(bars), 1) * ROW + 8
    parts = [f'<svg class="chart" id="{chart_id}" role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" '
             f'viewBox="0 0 {CHART_WIDTH} {height}" width="{CHART_WIDTH}" height="{height}" '
             'xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{chart_id}-title">{escape(title)}</title><desc id="{chart_id}-desc">{escape(desc)}</desc>']
    if not bars:
        parts.append(f'<text x="0" y="24" class="label">{escape(desc[:LABEL_MAX])}</text>')
    for i, bar in enumerate(bars):
        y = i * ROW + 4
        label = bar.label if len(bar.label) <= LABEL_MAX else bar.label[:LABEL_MAX - 1] + "…"  # whole in <title>
        width = 0.0 if bar.fraction is None else max(min(bar.fraction, 1.0), 0.0) * BAR_MAX
        parts.append(f'<g class="bar"><title>{escape(bar.label)}: {escape(bar.value_text)}</title>'
                     f'<text x="0" y="{y + 15}" class="label">{escape(label)}</text>')
        if bar.fraction is not None:
            parts.append(f'<rect x="0" y="{y + 22}" width="{max(width, 1):.1f}" height="18" rx="2"/>')
        if width + 6 + len(bar.value_text) * VALUE_CHAR_PX > CHART_WIDTH:  # no room after the bar: inside its end
            parts.append(f'<text x="{width - 6:.1f}" y="{y + 37}" class="value inside" text-anchor="end">'
                         f"{escape(bar.value_text)}</text></g>")
        else:
            parts.append(f'<text x="{width + 6:.1f}" y="{y + 37}" class="value">{escape(bar.value_text)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def rate_chart(chart_id: str, contracts: Sequence[reports.ContractResults], t: Texts | None = None) -> str:
    t = t or texts("sv")
    bars = []
    for c in contracts:
        for x in c.metrics:
            if x.kind != "RATE_CARD":
                continue
            if x.rate is None:
                bars.append(Bar(f"{c.title} — {x.name}", t["suppressed_text"].format(n=reports.SMALL_COUNT), None))
            else:
                bars.append(Bar(f"{c.title} — {x.name}", t.percent(x.rate), float(x.rate)))
    desc = "; ".join(f"{b.label}: {b.value_text}" for b in bars) or t["no_rate"]
    return bar_chart(chart_id, t["rates_title"], desc, bars)


def paid_chart(chart_id: str, rows: Sequence[reports.ReportRow], t: Texts | None = None) -> str:
    t = t or texts("sv")
    top: dict[str, int] = {}
    for r in rows:  # one scale per currency
        top[r.currency] = max(top.get(r.currency, 0), r.amount_paid_minor)
    bars = [Bar(_ownership(r.ownership, t), _money_text(r.amount_paid_minor, r.currency, t),
                r.amount_paid_minor / top[r.currency] if top[r.currency] else 0.0) for r in rows]
    desc = "; ".join(f"{b.label}: {b.value_text}" for b in bars) or t["nothing_paid"]
    return bar_chart(chart_id, t["paid_title"], desc, bars)


def measured_chart(chart_id: str, c: reports.ContractResults, x: reports.MetricResult, t: Texts | None = None) -> str:
    t = t or texts("sv")
    unit = _unit(x, t)
    values = [(label, v) for label, v in ((t["baseline_label"], x.baseline), (t["latest_label"], x.latest_observed))
              if v is not None]
    top = max((v for _, v in values), default=Decimal(0))
    bars = [Bar(f"{label}, {unit}", t.decimal(v), float(v / top) if top > 0 else 0.0) for label, v in values]
    desc = "; ".join(f"{b.label}: {b.value_text}" for b in bars) or t["nothing_measured"]
    return bar_chart(chart_id, t["measured_title"].format(contract=c.title, metric=x.name, unit=unit), desc, bars)


# --- formatting -------------------------------------------------------------------------------

def _suppressed(t: Texts) -> str:
    title = t["suppressed_title"].format(n=reports.SMALL_COUNT)
    return f'<span class="count suppressed" title="{escape(title)}">{t["suppressed"].format(n=reports.SMALL_COUNT)}</span>'


def _na(t: Texts) -> str:
    return f'<span class="na" title="{escape(t["na_title"])}">{t["na"]}</span>'


def _count(n: int | None, t: Texts, unit: str | None = None) -> str:
    if n is None:
        return _suppressed(t)
    label = f' aria-label="{escape(t.integer(n))} {escape(unit)}"' if unit else ""
    return f'<data class="count" value="{n}"{label}>{t.integer(n)}</data>'


def _number(n: int, t: Texts) -> str:
    """A number that counts no people (contracts): never suppressed."""
    return f'<data class="n" value="{n}">{t.integer(n)}</data>'


def _measured(value: Decimal | None, unit: str, t: Texts) -> str:
    if value is None:
        return _na(t)
    return f'{escape(t.decimal(value))} <small class="unit">{escape(unit)}</small>'


def _money_text(minor: int, currency: str, t: Texts) -> str:
    return t.money(m.from_minor(minor, currency).amount, currency)


def _money(minor: int | None, currency: str, t: Texts) -> str:
    return _na(t) if minor is None else escape(_money_text(minor, currency, t))


def _ownership(ownership: str | None, t: Texts) -> str:
    return t["ownership"].get(ownership or "", ownership or t["not_stated"])


def _switch(t: Texts, path: str) -> str:
    other = t["switch_lang"]
    href = escape(path + ("" if other == "sv" else f"?lang={other}"))
    return f'<p class="lang"><a href="{href}" hreflang="{other}" lang="{other}">{t["switch"]}</a></p>'


def _footer(p: Published, t: Texts) -> str:
    as_of = f'<time datetime="{p.as_of.isoformat()}">{p.as_of:%Y-%m-%d %H:%M} UTC</time>'
    return f"<footer><p>{t['footer'].format(as_of=as_of)}</p>{_tree_head(p.tree_head, t)}</footer>"


def _tree_head(h: signing.SignedTreeHead | None, t: Texts) -> str:
    """The newest signed tree head, in full, so anyone can keep it and later hold the fund to it."""
    if h is None:
        return ""
    return (f'<section class="tree-head" aria-labelledby="tree-head-h"><h2 id="tree-head-h">{t["tree_head_h"]}</h2>'
            f"<p>{t['tree_head_p']}</p>"
            f'<dl><dt>{t["tree_size"]}</dt><dd data-field="treeSize">{h.tree_size}</dd>'
            f'<dt>{t["signed_at"]}</dt><dd data-field="timestamp"><time datetime="{h.timestamp.isoformat()}">'
            f"{h.timestamp.isoformat()}</time></dd>"
            f'<dt>{t["root_hash"]}</dt><dd><code data-field="rootHash">{h.root_hash.hex()}</code></dd>'
            f'<dt>{t["key_id"]}</dt><dd><code data-field="keyId">{escape(h.key_id)}</code></dd>'
            f'<dt>{t["signature"]}</dt><dd><code data-field="signature">{base64.b64encode(h.signature).decode()}</code>'
            "</dd></dl></section>")


STYLE = """
:root { color-scheme: light; --ink: #1b1b1b; --muted: #555; --bar: #1f5f8b; --line: #d8d8d8; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 62rem; padding: 1.5rem; }
@media (max-width: 480px) { body { padding: 1rem .75rem; } }
h1 { font-size: 1.8rem; margin: 0 0 .5rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid var(--line); }
a { color: #0b4f7c; } small { color: var(--muted); font-size: .8em; }
p.lang { float: right; margin: 0 0 0 1rem; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; font-size: .95rem; }
caption { text-align: left; font-weight: 600; padding-bottom: .3rem; }
th, td { border-bottom: 1px solid var(--line); padding: .35rem .5rem; text-align: left; vertical-align: top; }
.num { text-align: right; font-variant-numeric: tabular-nums; } td.num { white-space: nowrap; }
.scroll { overflow-x: auto; }
dl { display: grid; grid-template-columns: repeat(auto-fill, minmax(13rem, 1fr)); gap: .3rem 1.2rem; margin: .5rem 0; }
dt { color: var(--muted); font-size: .85rem; } dd { margin: 0; }
.suppressed, .na { color: var(--muted); }
article.contract { margin: 1.5rem 0 2.5rem; }
svg.chart { max-width: 100%; height: auto; display: block; margin: 1rem 0; }
svg.chart rect { fill: var(--bar); }
svg.chart text { font: 15px system-ui, "Liberation Sans", sans-serif; fill: var(--ink); }
svg.chart text.value { font-weight: 600; } svg.chart text.inside { fill: #fff; }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem; }
.tree-head code { word-break: break-all; } .tree-head h2 { font-size: 1rem; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; } a { color: inherit; text-decoration: none; }
  .lang, .noprint, p.back { display: none; } section, article, table { break-inside: avoid; }
  svg.chart rect { fill: #444; } h2 { break-after: avoid; }
}
"""


def _page(title: str, body: str, t: Texts | None = None) -> str:
    lang = (t or texts("sv")).lang
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>")
