"""The public page's words and number formats, in Swedish (the default) and English.

Swedish is the language of the data and of most readers: decimal comma, a narrow no-break
space between thousands, "41,3 %". English is there with ?lang=en or an Accept-Language that
prefers it.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from starlette.requests import Request

LANGUAGES = ("sv", "en")
NNBSP = "\u202f"  # narrow no-break space between thousands

SV = {
    "results": "Publicerade resultat",
    "intro": ("Resultat i de sociala utfallskontrakten och vad som har betalats för dem: bara sammanräknade "
              "siffror, inga personuppgifter. Antal under {n} publiceras inte (inte heller när färre än {n} "
              "inte nådde utfallet) och visas som {marker}."),
    "rates_h": "Andel med utfall per kontrakt och mått",
    "rates_p": ("Andel av kontraktets deltagare med ett verifierat utfall, för mått som betalas per utfall "
                "(á-pris). Mått som mäts mot en baslinje eller en jämförelsegrupp har ingen andel; deras senaste "
                "värde står i kontraktets tabell nedan."),
    "rates_title": "Andel med utfall per kontrakt och mått (andel av deltagarna, 0–100 %)",
    "no_rate": "Inget mått betalas per utfall (á-pris) än.",
    "own_h": "Vad får vi för pengarna, per ägarform",
    "own_p": ("Utfall, belopp och viten i bokförda utbetalningar (efter återkrav), per utförarens ägarform. "
              "Kostnad per utfall är pengarna för á-prismåtten delade med deras utfall."),
    "paid_title": "Utbetalt belopp per ägarform",
    "nothing_paid": "Inget utbetalt än.",
    "area_h": "Per politikområde",
    "metric_h": "Per mått, i måttets egen enhet",
    "metric_p": ("Kostnad per utfall för á-pris, kostnad per förbättrad enhet för mätta mått (per undvikt "
                 "vårddygn, per undvikt återfall)."),
    "contracts_h": "Kontrakt",
    "no_contracts": "Inget kontrakt har publicerade resultat än.",
    "policy_area": "Politikområde", "status": "Status", "provider": "Utförare", "municipality": "Kommun",
    "participants": "Deltagare", "paid_posted": "Utbetalt i bokförda utbetalningar",
    "per_metric_caption": "Resultat per mått: {title}",
    "tree_head_h": "Signerat trädhuvud för huvudboken",
    "tree_head_p": ("Spara detta: det binder fonden vid varje transaktion i dess huvudbok hittills. Kontrollera det "
                    'med den publika nyckeln på <a href="/ledger/public-key">/ledger/public-key</a> och '
                    "<code>ops/verify_proof.py</code>."),
    "tree_size": "Trädets storlek", "signed_at": "Signerat", "root_hash": "Rothash", "key_id": "Nyckel-id",
    "signature": "Signatur",
    "investors_h": "Utfallskontrakt med investerare: vad investerarna satte in och fick tillbaka",
    "investors_p": ("Investerare förfinansierar utföraren och får tillbaka pengar bara ur utfallsbetalningarna, "
                    "med en begränsad avkastning; kapital som inte har betalats tillbaka vid slutet är deras förlust."),
    "investors_caption": "Vad investerarna satte in och fick tillbaka, per kontrakt",
    "investors_contract_caption": "Investerare: vad de satte in och fick tillbaka: {title}",
    "all_investors": "Alla investerare", "tranche_SENIOR": "Senior tranch", "tranche_SUBORDINATE": "Efterställd tranch",
    "investors": "Investerare", "investment_one": "investering", "investment_many": "investeringar",
    "put_in": "Insatt", "got_back": "Tillbaka", "return": "Avkastning", "multiple": "Multipel", "loss": "Förlust",
    "metric": "Mått", "with_outcome": "Med verifierat utfall", "rate": "Andel", "latest": "Senast uppmätt",
    "baseline": "Baslinje / jämförelse",
    "own_caption": "Utvärdering per ägarform", "area_caption": "Utvärdering per politikområde",
    "metric_caption": "Utvärdering per mått",
    "ownership_form": "Ägarform", "contracts": "Kontrakt", "outcomes": "Utfall (á-pris)",
    "units": "Förbättrade enheter (mätta mått)", "amount_paid": "Utbetalt", "penalties": "Viten",
    "cost_outcome": "Kostnad per utfall", "cost_unit": "Kostnad per enhet", "behind": "Kontrakt bakom siffran",
    "left_out": "{n} siffror utelämnade (för få personer)",
    "unit": "Enhet", "quantity": "Antal", "per_unit": "Per enhet",
    "no_rows": "Inga publicerade kontrakt än.",
    "back": "← Alla publicerade resultat",
    "rate_per_metric": "Andel med utfall per mått",
    "measured_h": "Senast uppmätt värde och baslinje",
    "measured_p": "Mäts för gruppen som helhet, varje mått i sin egen enhet.",
    "measured_title": "{contract} — {metric}: senast uppmätt värde och baslinje ({unit})",
    "nothing_measured": "Inget uppmätt än.",
    "not_found_h": "Inga publicerade resultat", "not_found_p": "Det finns inget publicerat kontrakt med detta ID.",
    "not_found": "Hittades inte",
    "footer": ("Siffror per {as_of}, från verifierade utfall och bokförda utbetalningar. Samma siffror finns i "
               "GraphQL-API:t som <code>publicResults</code> och <code>evaluationReport</code>, och varje "
               "kontrakt i INDIGO-format som <code>indigoProject</code>."),
    "suppressed_title": "Färre än {n}: publiceras inte, små tal kan peka ut personer",
    "suppressed": "–&nbsp;under&nbsp;{n}", "suppressed_text": "– (under {n})",
    "na": "–", "na_title": "Ej tillämpligt",
    "not_stated": "Ej angivet",
    "kind": {"RATE_CARD": "á-pris", "BASELINE_IMPROVEMENT": "mot baslinje",
             "COMPARISON_THRESHOLD": "mot jämförelsegrupp"},
    "ownership": {"PRIVATE": "Privat företag", "NONPROFIT": "Idéburen organisation",
                  "PUBLIC_IN_HOUSE": "Offentlig, egen regi"},
    "status_names": {"ACTIVE": "pågår", "SUSPENDED": "avstängt", "COMPLETED": "avslutat", "TERMINATED": "hävt"},
    "unit_outcomes": "utfall", "unit_participants": "deltagare",
    "per_participant": "per deltagare",
    "periods": {1: "månad", 3: "kvartal", 6: "halvår", 12: "år"}, "months": "{n} månader",
    "baseline_label": "Baslinje", "latest_label": "Senast uppmätt",
    "switch": "English", "switch_lang": "en",
    "report_h": "Årsrapport {year}: {fund}",
    "report_p": ("Vad fonden fick för pengarna {year}: utbetalningar för perioder som slutar under året och "
                 "viten utfärdade under året, som allmänheten ser dem."),
    "report_link": "Årsrapport {year}", "report_totals": "Summa för året",
    "print": "Skriv ut eller spara som PDF från webbläsarens meny.",
}

EN = {
    "results": "Published results",
    "intro": ("Outcomes of the social outcomes contracts and what has been paid for them: aggregated figures "
              "only, with no personal data. Counts under {n} are not published (nor when fewer than {n} did "
              "not reach the outcome) and are shown as {marker}."),
    "rates_h": "Outcome rate per contract and metric",
    "rates_p": ("Share of each contract's participants with a verified outcome, for the metrics paid per outcome "
                "(rate card). Metrics measured against a baseline or a comparison group have no rate; their latest "
                "value is in the contract's table below."),
    "rates_title": "Outcome rate per contract and metric (share of participants, 0–100 %)",
    "no_rate": "No metric paid per outcome (rate card) yet.",
    "own_h": "What do we get for the money, by ownership form",
    "own_p": ("Outcomes, amounts and penalties in posted payouts (after clawbacks), per ownership form of the "
              "provider. Cost per outcome is the money for rate-card metrics divided by their outcomes."),
    "paid_title": "Amount paid per ownership form",
    "nothing_paid": "Nothing paid yet.",
    "area_h": "By policy area",
    "metric_h": "By metric, in its own unit",
    "metric_p": ("Cost per outcome for rate cards, cost per unit improved for measured metrics (per care day "
                 "avoided, per reconviction avoided)."),
    "contracts_h": "Contracts",
    "no_contracts": "No contract has published results yet.",
    "policy_area": "Policy area", "status": "Status", "provider": "Provider", "municipality": "Municipality",
    "participants": "Participants", "paid_posted": "Paid in posted payouts",
    "per_metric_caption": "Results per metric: {title}",
    "tree_head_h": "Signed ledger tree head",
    "tree_head_p": ("Keep this: it commits the fund to every transaction in its ledger so far. Check it with the "
                    'public key at <a href="/ledger/public-key">/ledger/public-key</a> and '
                    "<code>ops/verify_proof.py</code>."),
    "tree_size": "Tree size", "signed_at": "Signed at", "root_hash": "Root hash", "key_id": "Key ID",
    "signature": "Signature",
    "investors_h": "Impact bonds: what investors put in and got back",
    "investors_p": ("Investors pre-finance the provider and are repaid only out of the outcome payments, with a "
                    "capped return; principal not repaid at the end is their loss."),
    "investors_caption": "What investors put in and got back, per contract",
    "investors_contract_caption": "Investors (impact bond): what they put in and got back: {title}",
    "all_investors": "All investors", "tranche_SENIOR": "Senior tranche", "tranche_SUBORDINATE": "Subordinate tranche",
    "investors": "Investors", "investment_one": "investment", "investment_many": "investments",
    "put_in": "Put in", "got_back": "Got back", "return": "Return", "multiple": "Multiple", "loss": "Loss",
    "metric": "Metric", "with_outcome": "With a verified outcome", "rate": "Rate", "latest": "Latest observed",
    "baseline": "Baseline / comparison",
    "own_caption": "Evaluation report by ownership form", "area_caption": "Evaluation report by policy area",
    "metric_caption": "Evaluation report by metric",
    "ownership_form": "Ownership form", "contracts": "Contracts", "outcomes": "Outcomes (rate card)",
    "units": "Units improved (measured metrics)", "amount_paid": "Amount paid", "penalties": "Penalties",
    "cost_outcome": "Cost per outcome", "cost_unit": "Cost per unit", "behind": "Contracts behind the figure",
    "left_out": "{n} figures left out (too few people)",
    "unit": "Unit", "quantity": "Quantity", "per_unit": "Per unit",
    "no_rows": "No published contracts yet.",
    "back": "← All published results",
    "rate_per_metric": "Outcome rate per metric",
    "measured_h": "Latest observed value and baseline",
    "measured_p": "Measured for the cohort as a whole, each metric in its own unit.",
    "measured_title": "{contract} — {metric}: latest observed value and baseline ({unit})",
    "nothing_measured": "Nothing measured yet.",
    "not_found_h": "No published results", "not_found_p": "There is no published contract with this ID.",
    "not_found": "Not found",
    "footer": ("Figures as of {as_of}, from verified evidence and posted payouts. The same figures are in the "
               "GraphQL API as <code>publicResults</code> and <code>evaluationReport</code>, and each contract "
               "in the INDIGO standard as <code>indigoProject</code>."),
    "suppressed_title": "Fewer than {n}: not published, small numbers can identify people",
    "suppressed": "–&nbsp;under&nbsp;{n}", "suppressed_text": "– (under {n})",
    "na": "n/a", "na_title": "Not applicable",
    "not_stated": "Not stated",
    "kind": {"RATE_CARD": "rate card", "BASELINE_IMPROVEMENT": "against a baseline",
             "COMPARISON_THRESHOLD": "against a comparison group"},
    "ownership": {"PRIVATE": "Private company", "NONPROFIT": "Non-profit organisation",
                  "PUBLIC_IN_HOUSE": "Public, in-house"},
    "status_names": {"ACTIVE": "active", "SUSPENDED": "suspended", "COMPLETED": "completed",
                     "TERMINATED": "terminated"},
    "unit_outcomes": "outcomes", "unit_participants": "participants",
    "per_participant": "per participant",
    "periods": {1: "month", 3: "quarter", 6: "half-year", 12: "year"}, "months": "{n} months",
    "baseline_label": "Baseline", "latest_label": "Latest observed",
    "switch": "Svenska", "switch_lang": "sv",
    "report_h": "Annual report {year}: {fund}",
    "report_p": ("What the fund got for the money in {year}: payouts for periods ending in the year and penalties "
                 "issued in it, as the public sees them."),
    "report_link": "Annual report {year}", "report_totals": "Totals for the year",
    "print": "Print or save as PDF from the browser's menu.",
}

# words that say "fewer" before the thing counted: "Undvikna vårddygn" counts vårddygn
_PREFIXES = ("undvikna", "undvikta", "färre", "minskade", "minskat", "avoided", "fewer", "reduced")


@dataclass(frozen=True)
class Texts:
    lang: str
    words: dict

    def __getitem__(self, key: str):
        return self.words[key]

    # --- numbers ---------------------------------------------------------------------------

    def _group(self, text: str) -> str:
        whole, _, frac = text.partition(".")
        sign = "-" if whole.startswith("-") else ""
        digits = whole.lstrip("-")
        groups = []
        while len(digits) > 3:
            groups.insert(0, digits[-3:])
            digits = digits[:-3]
        groups.insert(0, digits)
        out = sign + NNBSP.join(groups)
        if frac:
            out += ("," if self.lang == "sv" else ".") + frac
        return out

    def integer(self, n: int) -> str:
        return self._group(str(n))

    def decimal(self, value: Decimal) -> str:
        if value == value.to_integral_value():
            value = value.quantize(Decimal(1))
        return self._group(format(value.normalize() if value != value.to_integral_value() else value, "f"))

    def percent(self, rate: Decimal) -> str:
        return self._group(format((rate * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP), "f")) + f"{NNBSP}%"

    def money(self, amount: Decimal, currency: str) -> str:
        return self._group(format(amount.quantize(Decimal("0.01")), "f")) + f"{NNBSP}{currency}"

    # --- units -----------------------------------------------------------------------------

    def period(self, months: int | None) -> str:
        if months is None:
            return self["periods"][6]
        return self["periods"].get(months) or self["months"].format(n=months)

    def measured_unit(self, name: str, kind: str, months: int | None) -> str:
        """The unit of a measured metric's values: "vårddygn per halvår", "återfall per deltagare"."""
        words = name.split()
        noun = " ".join(words[1:]) if len(words) > 1 and words[0].lower() in _PREFIXES else name
        noun = noun[:1].lower() + noun[1:]
        if kind == "COMPARISON_THRESHOLD":
            return f"{noun} {self['per_participant']}"
        return f"{noun} per {self.period(months)}"


def texts(lang: str) -> Texts:
    return Texts(lang, SV if lang == "sv" else EN)


def language(request: Request) -> str:
    """?lang=sv|en wins; otherwise the first of sv/en the browser's Accept-Language prefers; Swedish by default."""
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return asked
    best, best_q = "sv", -1.0
    for part in request.headers.get("accept-language", "").split(","):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGUAGES:
            continue
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if q > best_q:
            best, best_q = primary, q
    return best
