"""The public results page: /results and /results/{contract id}, for anyone, no token.

Server-rendered HTML with inline SVG bar charts: no JavaScript, nothing loaded from elsewhere
(the page is one self-contained response). It shows only what ledger.reports publishes, the
aggregated figures per contract and metric and the evaluation report by ownership form; counts
under 5 arrive suppressed (None) and are shown as "– under 5", never as a number.
"""
from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from html import escape
from urllib.parse import quote

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from api.graphql.base import split_global_id, to_global_id
from ledger import proofs, signing
from ledger import money as m
from ledger import reports
from ledger.db import Database
from ledger.errors import NotFound
from ledger.models import OutcomeContract

OWNERSHIP = {"PRIVATE": "Private company", "NONPROFIT": "Non-profit organisation",
             "PUBLIC_IN_HOUSE": "Public, in-house"}
KINDS = {"RATE_CARD": "rate card", "BASELINE_IMPROVEMENT": "against a baseline",
         "COMPARISON_THRESHOLD": "against a comparison group"}
SUPPRESSED_TITLE = f"Fewer than {reports.SMALL_COUNT}: not published, small numbers can identify people"
# no scripts, no outside resources, no framing: only the inline style sheet and SVG
HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                                      "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


def routes() -> list[Route]:
    return [Route("/results", results_index, methods=["GET"]),
            Route("/results/{contract_id:path}", contract_results, methods=["GET"])]


# --- reading (in a worker thread: never on the event loop) -----------------------------------

@dataclass(frozen=True)
class Published:
    contracts: tuple[reports.ContractResults, ...]
    report: reports.EvaluationReport
    as_of: datetime
    tree_head: signing.SignedTreeHead | None = None  # the ledger's newest, signed as the page is read


def read_published(db: Database, contract_id: int | None = None, signer: signing.Signer | None = None) -> Published:
    """Every published contract's results and the evaluation report, in one read session."""
    with db.reading() as s:
        head = proofs.signed_tree_head(s, signer=signer, now=_now()) if signer is not None else None
        if contract_id is None:
            ids = list(s.scalars(select(OutcomeContract.id).where(OutcomeContract.status.in_(reports.PUBLISHED))
                                 .order_by(OutcomeContract.id)))
            return Published(tuple(reports.public_results(s, pk) for pk in ids), reports.evaluation_report(s),
                             _now(), head)
        one = reports.public_results(s, contract_id)  # NotFound unless published
        return Published((one,), reports.evaluation_report(s, scope=OutcomeContract.id == contract_id), _now(),
                         head)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


async def _read(request: Request, contract_id: int | None = None) -> Published:
    return await run_in_threadpool(read_published, request.app.state.db, contract_id,
                                   getattr(request.app.state, "signer", None))


async def results_index(request: Request) -> HTMLResponse:
    return HTMLResponse(render_index(await _read(request)), headers=HEADERS)


async def contract_results(request: Request) -> HTMLResponse:
    parsed = split_global_id(request.path_params["contract_id"])
    if parsed is None or parsed[0] != "OutcomeContract":
        return _not_found()
    try:
        published = await _read(request, contract_id=parsed[1])
    except NotFound:
        return _not_found()
    return HTMLResponse(render_contract(published), headers=HEADERS)


def _not_found() -> HTMLResponse:
    body = ("<h1>No published results</h1><p>There is no published contract with this ID.</p>"
            '<p><a href="/results">All published results</a></p>')
    return HTMLResponse(_page("Not found — Utfall", body), status_code=404, headers=HEADERS)


# --- pages ------------------------------------------------------------------------------------

def render_index(p: Published) -> str:
    paid = {row.key: row for row in p.report.by_contract}
    body = [
        "<header><h1>Published results</h1>",
        "<p>Outcomes of the social outcomes contracts and what has been paid for them: aggregated figures "
        "only, with no personal data. Counts under "
        f"{reports.SMALL_COUNT} are not published and are shown as {_suppressed()}.</p></header><main>",
        '<section aria-labelledby="rates-h"><h2 id="rates-h">Outcome rate per contract and metric</h2>',
        "<p>Share of each contract's participants with a verified outcome, for the metrics paid per outcome "
        "(rate card). Metrics measured against a baseline or a comparison group have no rate; their latest "
        "value is in the contract's table below.</p>",
        rate_chart("rates", p.contracts), "</section>",
        '<section aria-labelledby="ownership-h"><h2 id="ownership-h">What do we get for the money, '
        "by ownership form</h2>",
        "<p>Outcomes and amounts in posted payouts (after clawbacks), per ownership form of the provider.</p>",
        paid_chart("paid", p.report.by_ownership), ownership_table(p.report.by_ownership), "</section>",
        '<section aria-labelledby="contracts-h"><h2 id="contracts-h">Contracts</h2>',
    ]
    if not p.contracts:
        body.append("<p>No contract has published results yet.</p>")
    for c in p.contracts:
        body.append(contract_article(c, paid.get(f"contract:{c.contract_id}"), heading="h3", link=True))
    body.append("</section></main>")
    body.append(_footer(p))
    return _page("Published results — Utfall", "".join(body))


def render_contract(p: Published) -> str:
    c = p.contracts[0]
    row = next((r for r in p.report.by_contract if r.key == f"contract:{c.contract_id}"), None)
    body = ['<p class="back"><a href="/results">← All published results</a></p><main>',
            contract_article(c, row, heading="h1", link=False)]
    if any(x.kind == "RATE_CARD" for x in c.metrics):
        body += ['<section aria-labelledby="rates-h"><h2 id="rates-h">Outcome rate per metric</h2>',
                 rate_chart("rates", (c,)), "</section>"]
    measured = [x for x in c.metrics if x.kind != "RATE_CARD"]
    if measured:
        body += ['<section aria-labelledby="measured-h"><h2 id="measured-h">Latest observed value and baseline</h2>',
                 "<p>Measured for the cohort as a whole, each metric on its own scale.</p>",
                 "".join(measured_chart(f"measured-{i}", c, x) for i, x in enumerate(measured)), "</section>"]
    body += ["</main>", _footer(p)]
    return _page(f"{c.title} — published results — Utfall", "".join(body))


def contract_article(c: reports.ContractResults, paid: reports.ReportRow | None, *, heading: str,
                     link: bool) -> str:
    title = escape(c.title)
    if link:
        title = f'<a href="/results/{quote(to_global_id("OutcomeContract", c.contract_id), safe="")}">{title}</a>'
    facts = [("Policy area", escape(c.policy_area)), ("Status", escape(c.status.lower())),
             ("Provider", f"{escape(c.provider)} ({escape(_ownership(c.ownership))})"),
             ("Municipality", escape(c.municipality)), ("Participants", _count(c.participants))]
    if paid is not None:
        facts.append(("Paid in posted payouts", _money(paid.amount_paid_minor, paid.currency)))
    rows = "".join(_metric_row(x) for x in c.metrics)
    return (f'<article class="contract" aria-labelledby="contract-{c.contract_id}">'
            f'<{heading} id="contract-{c.contract_id}">{title}</{heading}>'
            "<dl>" + "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts) + "</dl>"
            f'<div class="scroll"><table><caption>Results per metric: {escape(c.title)}</caption><thead><tr>'
            '<th scope="col">Metric</th><th scope="col" class="num">Participants</th>'
            '<th scope="col" class="num">With a verified outcome</th><th scope="col" class="num">Rate</th>'
            '<th scope="col" class="num">Latest observed</th><th scope="col" class="num">Baseline</th>'
            f"</tr></thead><tbody>{rows}</tbody></table></div></article>")


def _metric_row(x: reports.MetricResult) -> str:
    if x.kind == "RATE_CARD":  # counted per participant; a None count or rate is suppressed
        achieved = _count(x.achieved)
        rate = _suppressed() if x.rate is None else escape(_percent_text(x.rate))
        latest = baseline = _na()
    else:  # measured for the cohort as a whole
        achieved = rate = _na()
        latest, baseline = _decimal(x.latest_observed), _decimal(x.baseline)
    cells = "".join(f'<td class="num">{v}</td>' for v in (_count(x.participants), achieved, rate, latest, baseline))
    return (f'<tr><th scope="row">{escape(x.name)} <small>{escape(x.code)}, '
            f"{escape(KINDS.get(x.kind, x.kind))}</small></th>{cells}</tr>")


def ownership_table(rows: Sequence[reports.ReportRow]) -> str:
    body = "".join(
        f'<tr><th scope="row">{escape(_ownership(r.ownership))} <small>{escape(r.ownership or "")}</small></th>'
        f'<td class="num">{r.contracts}</td><td class="num">{_count(r.outcomes)}</td>'
        f'<td class="num">{_decimal(r.outcome_units)}</td>'
        f'<td class="num">{_money(r.amount_paid_minor, r.currency)}</td>'
        f'<td class="num">{_money(r.cost_per_outcome_minor, r.currency)}</td>'
        f'<td class="num">{_money(r.cost_per_unit_minor, r.currency)}</td></tr>'
        for r in rows)
    if not rows:
        body = '<tr><td colspan="7">No published contracts yet.</td></tr>'
    return ('<div class="scroll"><table><caption>Evaluation report by ownership form</caption><thead><tr>'
            '<th scope="col">Ownership form</th><th scope="col" class="num">Contracts</th>'
            '<th scope="col" class="num">Outcomes paid (rate card)</th>'
            '<th scope="col" class="num">Measured units paid (days, events avoided)</th>'
            '<th scope="col" class="num">Amount paid</th><th scope="col" class="num">Cost per outcome</th>'
            '<th scope="col" class="num">Cost per measured unit</th>'
            f"</tr></thead><tbody>{body}</tbody></table></div>")


# --- charts: inline SVG, drawn here --------------------------------------------------------------

@dataclass(frozen=True)
class Bar:
    label: str
    value_text: str
    fraction: float | None  # 0..1 of the scale; None draws no bar (suppressed)


CHART_WIDTH, BAR_MAX, ROW, LABEL_MAX = 720, 520, 46, 90


def bar_chart(chart_id: str, title: str, desc: str, bars: Sequence[Bar]) -> str:
    """A horizontal bar chart: each label above its bar, the value as text after it."""
    height = max(len(bars), 1) * ROW + 8
    parts = [f'<svg class="chart" id="{chart_id}" role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" '
             f'viewBox="0 0 {CHART_WIDTH} {height}" width="{CHART_WIDTH}" height="{height}" '
             'xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{chart_id}-title">{escape(title)}</title><desc id="{chart_id}-desc">{escape(desc)}</desc>']
    if not bars:
        parts.append(f'<text x="0" y="24" class="label">{escape(desc)}</text>')
    for i, bar in enumerate(bars):
        y = i * ROW + 4
        label = bar.label if len(bar.label) <= LABEL_MAX else bar.label[:LABEL_MAX - 1] + "…"  # whole in <title>
        width = 0.0 if bar.fraction is None else max(min(bar.fraction, 1.0), 0.0) * BAR_MAX
        parts.append(f'<g class="bar"><title>{escape(bar.label)}: {escape(bar.value_text)}</title>'
                     f'<text x="0" y="{y + 14}" class="label">{escape(label)}</text>')
        if bar.fraction is not None:
            parts.append(f'<rect x="0" y="{y + 20}" width="{max(width, 1):.1f}" height="18" rx="2"/>')
        parts.append(f'<text x="{width + 8:.1f}" y="{y + 34}" class="value">{escape(bar.value_text)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def rate_chart(chart_id: str, contracts: Sequence[reports.ContractResults]) -> str:
    bars = []
    for c in contracts:
        for x in c.metrics:
            if x.kind != "RATE_CARD":
                continue
            if x.rate is None:
                bars.append(Bar(f"{c.title} — {x.name}", f"– (under {reports.SMALL_COUNT})", None))
            else:
                bars.append(Bar(f"{c.title} — {x.name}", _percent_text(x.rate), float(x.rate)))
    desc = "; ".join(f"{b.label}: {b.value_text}" for b in bars) or "No metric paid per outcome (rate card) yet."
    return bar_chart(chart_id, "Outcome rate per contract and metric (share of participants, 0–100 %)",
                     desc, bars)


def paid_chart(chart_id: str, rows: Sequence[reports.ReportRow]) -> str:
    top: dict[str, int] = {}
    for r in rows:  # one scale per currency
        top[r.currency] = max(top.get(r.currency, 0), r.amount_paid_minor)
    bars = [Bar(_ownership(r.ownership), _money_text(r.amount_paid_minor, r.currency),
                r.amount_paid_minor / top[r.currency] if top[r.currency] else 0.0) for r in rows]
    desc = "; ".join(f"{b.label}: {b.value_text}" for b in bars) or "Nothing paid yet."
    return bar_chart(chart_id, "Amount paid per ownership form", desc, bars)


def measured_chart(chart_id: str, c: reports.ContractResults, x: reports.MetricResult) -> str:
    values = [(label, v) for label, v in (("Baseline", x.baseline), ("Latest observed", x.latest_observed))
              if v is not None]
    top = max((v for _, v in values), default=Decimal(0))
    bars = [Bar(f"{x.name}: {label.lower()}", _decimal_text(v), float(v / top) if top > 0 else 0.0)
            for label, v in values]
    desc = "; ".join(f"{b.label}: {b.value_text}" for b in bars) or "Nothing measured yet."
    return bar_chart(chart_id, f"{c.title} — {x.name}: latest observed value and baseline", desc, bars)


# --- formatting -------------------------------------------------------------------------------

NNBSP = "\u202f"  # narrow no-break space between thousands


def _suppressed() -> str:
    return (f'<span class="count suppressed" title="{escape(SUPPRESSED_TITLE)}">'
            f"–&nbsp;under&nbsp;{reports.SMALL_COUNT}</span>")


def _na() -> str:
    return '<span class="na" title="Not applicable">n/a</span>'


def _count(n: int | None) -> str:
    if n is None:
        return _suppressed()
    return f'<data class="count" value="{n}">{n:,}</data>'.replace(",", NNBSP)


def _percent_text(rate: Decimal) -> str:
    return f"{(rate * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}{NNBSP}%"


def _decimal(value: Decimal | None) -> str:
    if value is None:
        return _na()
    return escape(_decimal_text(value))


def _decimal_text(value: Decimal) -> str:
    if value == value.to_integral_value():
        value = value.quantize(Decimal(1))
    return format(value, ",f").replace(",", NNBSP)


def _money_text(minor: int, currency: str) -> str:
    return format(m.from_minor(minor, currency).amount, ",f").replace(",", NNBSP) + f"{NNBSP}{currency}"


def _money(minor: int | None, currency: str) -> str:
    return _na() if minor is None else escape(_money_text(minor, currency))


def _ownership(ownership: str | None) -> str:
    return OWNERSHIP.get(ownership or "", ownership or "Not stated")


def _footer(p: Published) -> str:
    return (f'<footer><p>Figures as of <time datetime="{p.as_of.isoformat()}">'
            f'{p.as_of:%Y-%m-%d %H:%M} UTC</time>, from verified evidence and posted payouts. The same figures '
            "are in the GraphQL API as <code>publicResults</code> and <code>evaluationReport</code>.</p>"
            f"{_tree_head(p.tree_head)}</footer>")


def _tree_head(h: signing.SignedTreeHead | None) -> str:
    """The newest signed tree head, in full, so anyone can keep it and later hold the fund to it."""
    if h is None:
        return ""
    return ('<section class="tree-head" aria-labelledby="tree-head-h"><h2 id="tree-head-h">Signed ledger tree head</h2>'
            "<p>Keep this: it commits the fund to every transaction in its ledger so far. Check it with the public "
            'key at <a href="/ledger/public-key">/ledger/public-key</a> and <code>ops/verify_proof.py</code>.</p>'
            f'<dl><dt>Tree size</dt><dd data-field="treeSize">{h.tree_size}</dd>'
            f'<dt>Signed at</dt><dd data-field="timestamp"><time datetime="{h.timestamp.isoformat()}">'
            f"{h.timestamp.isoformat()}</time></dd>"
            f'<dt>Root hash</dt><dd><code data-field="rootHash">{h.root_hash.hex()}</code></dd>'
            f'<dt>Key ID</dt><dd><code data-field="keyId">{escape(h.key_id)}</code></dd>'
            f'<dt>Signature</dt><dd><code data-field="signature">{base64.b64encode(h.signature).decode()}</code>'
            "</dd></dl></section>")


STYLE = """
:root { color-scheme: light; --ink: #1b1b1b; --muted: #555; --bar: #1f5f8b; --line: #d8d8d8; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", sans-serif; color: var(--ink);
       margin: 0 auto; max-width: 62rem; padding: 1.5rem; }
h1 { font-size: 1.8rem; margin: 0 0 .5rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid var(--line); }
a { color: #0b4f7c; } small { color: var(--muted); font-size: .8em; }
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
svg.chart text { font: 14px system-ui, "Liberation Sans", sans-serif; fill: var(--ink); }
svg.chart text.value { font-weight: 600; }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem; }
.tree-head code { word-break: break-all; } .tree-head h2 { font-size: 1rem; }
"""


def _page(title: str, body: str) -> str:
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>")
