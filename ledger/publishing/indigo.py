"""INDIGO 4.1.0 (GO Lab's data standard for outcomes-based contracts): a pure mapping, no DB.

`project_export(facts, public=...)` turns the plain facts of one contract (ProjectFacts) into
an INDIGO project with its organisations and its fund, each `{"id": ..., "data": {...}}` where
`data` validates against the official schema (project.json, organisation.json, fund.json).

Conventions of the standard: almost every leaf is `{"value": ...}`; a field or list item may
carry `status` PUBLIC | PRIVATE | DISPUTED; money is a JSON number with an ISO 4217 currency in
the original currency; dates are YYYY-MM-DD.

Ids never change: they are the database ids with a fixed prefix ("INDIGOPROJECT-SE-UTF-12"),
and a metric's id is its code, which is fixed within a contract.

What the public export leaves out: every field or item a fund manager marked PRIVATE, whatever
then refers to something left out, and counts that disclosure control suppresses.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from ledger.publishing import disclosure

INDIGO_VERSION = "4.1.0"
PROJECT_PREFIX = "INDIGOPROJECT-SE-UTF-"
ORGANISATION_PREFIX = "INDIGOORG-SE-UTF-"
FUND_PREFIX = "INDIGOFUND-SE-UTF-"

# What a fund manager may mark PRIVATE (or PUBLIC again): fields with a status in the schema,
# and whole lists (every item carries a status).
MARKABLE = (
    "dates.outcomes_contract_signed",
    "dates.start_date_of_service_provision",
    "dates.anticipated_end_date_of_service_provision",
    "dates.actual_end_date_of_service_provision",
    "dates.anticipated_completion_date",
    "overall_project_finance.maximum_potential_outcome_payment_v2.amount",
    "overall_project_finance.total_outcome_payments_made.amount",
    "service_and_beneficiaries.actual_number_service_users_or_beneficiaries_total",
    "service_provisions",
    "outcome_payment_commitments",
    "outcome_metrics",
    "outcome_pricings",
    "results",
    "outcome_payment_plans",
    "outcome_payments",
    "transactions",
    "investments",
)

# policyArea is free text (Swedish or English); INDIGO has a closed list of policy sectors
POLICY_SECTORS = (
    (("skol", "school", "utbild", "education", "betyg"), "Education"),
    (("kriminal", "brott", "återfall", "criminal", "justice", "reoffend", "frivård"), "Criminal justice"),
    (("arbete", "sysselsättning", "employment", "jobb", "training"), "Employment and training"),
    (("barn", "familj", "child", "family", "ungdom"), "Child and family welfare"),
    (("hemlös", "bostad", "homeless", "housing"), "Homelessness"),
    (("hälsa", "vård", "health", "missbruk", "beroende", "psykiatri"), "Health"),
    (("miljö", "jordbruk", "environment", "agricultur"), "Agriculture and environment"),
    (("fattig", "försörjning", "poverty", "ekonomiskt bistånd"), "Poverty reduction"),
)

ROLE_CATEGORY_PROVIDER = {"PRIVATE": "For-profit", "NONPROFIT": "Nonprofit/NGO",
                          "PUBLIC_IN_HOUSE": "Government/Public Sector/Public Bank"}
ORGANISATION_TYPE = {"PRIVATE": "Registered company, partnership or commercial association",
                     "NONPROFIT": "Registered non-profit organisation, charity or foundation",
                     "PUBLIC_IN_HOUSE": "Government body"}
STAGE = {"DRAFT": "Contracted", "ACTIVE": "Implementation", "SUSPENDED": "Implementation",
         "COMPLETED": "Complete", "TERMINATED": "Complete"}
VALIDATION = {"RATE_CARD": "Evidence per participant, verified by the independent verifier before payment",
              "BASELINE_IMPROVEMENT": "Cohort measurement by the independent verifier against a fixed baseline",
              "COMPARISON_THRESHOLD": "Cohort measurement by the independent verifier against a comparison group"}


def policy_sector(area: str) -> str | None:
    text = area.lower()
    return next((sector for words, sector in POLICY_SECTORS if any(w in text for w in words)), None)


# --- the facts (plain values read from the database elsewhere) ---------------------------------

@dataclass(frozen=True)
class Organisation:
    id: int
    name: str
    role: str  # FUND, MUNICIPALITY, PROVIDER, VERIFIER, INVESTOR
    ownership: str | None = None
    org_number: str | None = None  # an organisation number (public in Sweden), never a person's


@dataclass(frozen=True)
class PayerCommitment:
    party_id: int
    percent: Decimal
    paid: Decimal  # this payer's part of posted payouts
    max_amount: Decimal | None = None  # issue 12's payer maxAmount, when present


@dataclass(frozen=True)
class MetricFacts:
    code: str
    name: str
    kind: str
    direction: str
    unit_price: Decimal
    baseline: Decimal | None = None
    threshold: Decimal | None = None
    baseline_source: str | None = None
    supplements: tuple[tuple[str, Decimal], ...] = ()
    cap_per_participant: Decimal | None = None
    cap_per_period: Decimal | None = None
    cap_total: Decimal | None = None
    once_only: bool = False


@dataclass(frozen=True)
class ResultFacts:
    """One metric's result for one paid period (a posted payout)."""

    metric_code: str
    period_start: date
    period_end: date
    engaged: int  # participants enrolled by the end of the period
    positive: int | None  # participants with a paid outcome (rate cards)
    quantity: Decimal  # outcomes or units improved paid for
    observed: Decimal | None = None  # measured metrics: the observed value
    cohort: int | None = None  # measured metrics: the cohort measured


@dataclass(frozen=True)
class OutcomePaymentFacts:
    """A payer's part of a posted payout."""

    payout_id: int
    payer_id: int
    period_start: date
    period_end: date
    amount: Decimal
    plan_id: str | None = None


@dataclass(frozen=True)
class TransactionFacts:
    """A payment recorded in the ledger between two parties."""

    payment_id: int
    debtor_id: int
    creditor_id: int
    paid_on: date
    amount: Decimal


@dataclass(frozen=True)
class PaymentPlanFacts:
    """A scheduled period of the contract's payment schedule, when the contract has one."""

    period_start: date
    period_end: date
    claim_deadline: date | None = None  # claims for the period are accepted until this day


@dataclass(frozen=True)
class InvestmentFacts:
    """An investment in the contract (an impact bond's), when there are any."""

    id: int
    investor_id: int
    principal: Decimal
    drawn: Decimal = Decimal(0)
    return_cap_percent: Decimal | None = None
    drawdowns: tuple[tuple[date, Decimal], ...] = ()


@dataclass(frozen=True)
class FundFacts:
    id: int
    name: str
    manager_id: int
    currency: str
    capital: Decimal
    contracts: int
    launched_on: date | None = None


@dataclass(frozen=True)
class ProjectFacts:
    contract_id: int
    title: str
    status: str
    policy_area: str
    currency: str
    start_date: date
    end_date: date
    signed_on: date | None
    ended_on: date | None
    max_value: Decimal
    paid: Decimal
    participants: int
    fund: FundFacts
    municipality_id: int
    provider_id: int
    verifier_id: int | None
    organisations: tuple[Organisation, ...]
    payers: tuple[PayerCommitment, ...]
    metrics: tuple[MetricFacts, ...]
    results: tuple[ResultFacts, ...] = ()
    outcome_payments: tuple[OutcomePaymentFacts, ...] = ()
    transactions: tuple[TransactionFacts, ...] = ()
    payment_plans: tuple[PaymentPlanFacts, ...] = ()
    investments: tuple[InvestmentFacts, ...] = ()
    # path → PUBLIC | PRIVATE, as the fund manager set it (setIndigoFieldStatus)
    field_status: Mapping[str, str] = field(default_factory=dict)
    # items under an open dispute: (list path, item key), e.g. ("outcome_payments", "payout:7") or
    # ("results", result_key(...)) for a result a disputed evidence item may change
    disputed: frozenset[tuple[str, str]] = frozenset()


# --- ids ----------------------------------------------------------------------------------------

def project_id(contract_id: int) -> str:
    return f"{PROJECT_PREFIX}{contract_id}"


def organisation_id(party_id: int) -> str:
    return f"{ORGANISATION_PREFIX}{party_id}"


def fund_id(fund_pk: int) -> str:
    return f"{FUND_PREFIX}{fund_pk}"


def plan_id(p: PaymentPlanFacts) -> str:
    return f"PLAN-{p.period_start.isoformat()}"


def result_key(metric_code: str, period_start: date) -> str:
    """A result's key in ProjectFacts.disputed: one metric in one paid period."""
    return f"{metric_code}:{period_start.isoformat()}"


# --- building blocks ----------------------------------------------------------------------------

def _v(value) -> dict:
    return {"value": value}


def _vs(value, status: str = "PUBLIC") -> dict:
    return {"value": value, "status": status}


def _num(amount: Decimal | int) -> int | float:
    # JSON numbers, as the standard asks: amounts have at most 2 decimals and well under 15
    # significant digits, so the float is the exact decimal (repr round-trips)
    d = Decimal(amount)
    return int(d) if d == d.to_integral_value() else float(d)


def _day(d: date) -> str:
    return d.isoformat()


def _money_text(amount: Decimal, currency: str) -> str:
    d = Decimal(amount)
    text = f"{d:,.2f}".replace(",", " ")
    return f"{text.removesuffix('.00')} {currency}"


def price_description(m: MetricFacts, currency: str) -> str:
    unit = "outcome" if m.kind == "RATE_CARD" else "unit improved"
    parts = [f"{_money_text(m.unit_price, currency)} per {unit} ({m.name})"]
    for area, percent in m.supplements:
        parts.append(f"+{percent.normalize():f} % for participants in area {area}")
    if m.once_only:
        parts.append("paid once per participant")
    for label, cap in (("cap per participant", m.cap_per_participant), ("cap per period", m.cap_per_period),
                       ("total cap", m.cap_total)):
        if cap is not None:
            parts.append(f"{label} {_money_text(cap, currency)}")
    return "; ".join(parts)


def _target(m: MetricFacts) -> str | None:
    better = "lower" if m.direction == "LOWER_IS_BETTER" else "higher"
    if m.kind == "BASELINE_IMPROVEMENT" and m.baseline is not None:
        return f"Improvement on the baseline {m.baseline.normalize():f} ({better} is better)"
    if m.kind == "COMPARISON_THRESHOLD" and m.threshold is not None:
        return f"At least {(m.threshold * 100).normalize():f} % better than the comparison group ({better} is better)"
    return None


def _organisation_data(o: Organisation) -> dict:
    if o.role in ("MUNICIPALITY", "FUND"):
        kind = "Government body"
    elif o.role == "PROVIDER":
        kind = ORGANISATION_TYPE.get(o.ownership or "", "Registered company, partnership or commercial association")
    else:
        kind = "Registered company, partnership or commercial association"
    data: dict = {"status": "PUBLIC", "name": _v(o.name), "type": _v(kind), "country": _v("SE"),
                  "jurisdiction": _v("SE")}
    if o.org_number:
        # org-id.guide's list for Swedish organisation numbers (Bolagsverket)
        data["org-ids"] = {"primary": _v(f"SE-BLV-{o.org_number.replace('-', '')}")}
    return data


def _fund_data(f: FundFacts) -> dict:
    data: dict = {
        "status": "PUBLIC", "name": _v(f.name), "stage_development": _v("Active"), "country": _v("SE"),
        "identifier_scheme": _v("Utfall"), "identifier": _v(fund_id(f.id)),
        "organisations": [{"organisation_id": _v(organisation_id(f.manager_id))}],
        "dimensions_of_scale": {
            "total_outcome_fund_value_outcomes_funding": {"currency": _v(f.currency),
                                                          "actual": {"amount": _v(_num(f.capital))}},
            "number_of_outcome_contracts": {"actual": _v(f.contracts)},
        },
        "geographic_areas_for_outcome_payment": [{"country": _v("SE")}],
    }
    if f.launched_on is not None:
        data["dates"] = {"launch_date": _v(_day(f.launched_on))}
    return data


def _project_data(f: ProjectFacts) -> dict:
    cur = f.currency
    orgs = {o.id: o for o in f.organisations}
    provider = orgs[f.provider_id]
    sector = policy_sector(f.policy_area)
    metric_codes = [m.code for m in f.metrics]
    dates = {"outcomes_contract_signed": _vs(_day(f.signed_on)) if f.signed_on else None,
             "start_date_of_service_provision": _vs(_day(f.start_date)),
             "anticipated_end_date_of_service_provision": _vs(_day(f.end_date)),
             "anticipated_completion_date": _vs(_day(f.end_date)),
             "actual_end_date_of_service_provision": _vs(_day(f.ended_on)) if f.ended_on else None}
    purpose = {"social_challenge": _vs(f.policy_area)}
    if sector:
        purpose["policy_sector"] = _v(sector)
    data: dict = {
        "status": "PUBLIC",
        "name": _v(f.title),
        "stage_development": _v(STAGE.get(f.status, "Implementation")),
        "dates": {k: v for k, v in dates.items() if v is not None},
        "jurisdiction": {"jurisdiction": _vs("SE")},
        "overall_project_finance": {
            "maximum_potential_outcome_payment_v2": {"currency": _vs(cur), "amount": _vs(_num(f.max_value))},
            "total_outcome_payments_made": {"currency": _vs(cur), "amount": _vs(_num(f.paid))},
        },
        "purpose_and_classifications": purpose,
        "service_and_beneficiaries": {
            "actual_number_service_users_or_beneficiaries_total": _vs(f.participants),
            "unit_type_actual_service_users_or_beneficiaries": {"value": "Individual", "status": "PUBLIC"},
        },
        "outcome_funds": [{"id": fund_id(f.fund.id), "status": "PUBLIC"}],
        "service_provisions": [{
            "id": f"PROVISION-{f.provider_id}",
            "organisation_id": _v(organisation_id(f.provider_id)),
            "organisation_role_category": _v(ROLE_CATEGORY_PROVIDER.get(provider.ownership or "", "Other")),
            "planned_service": {"start_date": _v(_day(f.start_date)), "end_date": _v(_day(f.end_date))},
            "status": "PUBLIC",
        }],
        "outcome_payment_commitments": [{
            "organisation_id": _v(organisation_id(p.party_id)),
            "organisation_role_category": _v("Government/Public Sector/Public Bank"),
            "maximum_potential_outcome_payment": {
                "currency": _vs(cur),
                "amount": _v(_num(p.max_amount if p.max_amount is not None
                                  else (f.max_value * p.percent / 100).quantize(Decimal("0.01"))))},
            "result_type": _v("Overall"),
            "period": {"start_date": _v(_day(f.start_date)), "end_date": _v(_day(f.end_date))},
            "total_outcome_payments": {"currency": _vs(cur), "amount": _v(_num(p.paid))},
            "notes": f"Pays {p.percent.normalize():f} % of each payout",
            "status": "PUBLIC",
        } for p in f.payers],
        "outcome_metrics": [{
            "id": m.code,
            "definition": _v(m.name),
            "outcome_validation_method": _v(VALIDATION.get(m.kind, m.kind)),
            **({"outcome_metric_target": _v(_target(m))} if _target(m) else {}),
            **({"data_source_for_outcome_validation": _v(m.baseline_source)} if m.baseline_source else {}),
            **({"policy_sector": _v(sector)} if sector else {}),
            "unit_type_of_targeted_service_users_or_beneficiaries": _v("Individual"),
            "notes": f"Utfall metric kind {m.kind}, {m.direction}",
            "status": "PUBLIC",
        } for m in f.metrics],
        "outcome_pricings": [{
            "outcome_metric_id": _v(m.code),
            "currency": _v(cur),
            "price_per_unit": {"amount": _v(_num(m.unit_price))},
            "price_description": _v(price_description(m, cur)),
            "status": "PUBLIC",
        } for m in f.metrics],
        "results": [_result(f, r) for r in f.results if r.metric_code in metric_codes],
        "outcome_payment_plans": [{
            "id": _v(plan_id(p)), "period": {"start_date": _v(_day(p.period_start)), "end_date": _v(_day(p.period_end))},
            **({"notes": f"Claims for the period are accepted until {_day(p.claim_deadline)}"}
               if p.claim_deadline else {}),
            "status": "PUBLIC",
        } for p in f.payment_plans],
        "outcome_payments": [{
            **({"outcome_payment_plan_id": _v(p.plan_id)} if p.plan_id else {}),
            "period": {"start_date": _v(_day(p.period_start)), "end_date": _v(_day(p.period_end))},
            "payer_organisation_id": _v(organisation_id(p.payer_id)),
            "recipient_organisation_id": _v(organisation_id(f.provider_id)),
            "type": _v("Actual"),
            "money": {"currency": _v(cur), "amount": _v(_num(p.amount))},
            "notes": f"payout:{p.payout_id}",
            "status": "DISPUTED" if ("outcome_payments", f"payout:{p.payout_id}") in f.disputed else "PUBLIC",
        } for p in f.outcome_payments],
        "transactions": [{
            "date": _v(_day(t.paid_on)),
            "sending_organisation_id": _v(organisation_id(t.debtor_id)),
            "receiving_organisation_id": _v(organisation_id(t.creditor_id)),
            "transaction_type": _v("Outcome Payment"),
            "money": {"currency": _v(cur), "amount": _v(_num(t.amount))},
            "notes": f"payment:{t.payment_id}",
            "status": "PUBLIC",
        } for t in f.transactions],
        "investments": [{
            "id": f"INVESTMENT-{i.id}",
            "organisation_id": _v(organisation_id(i.investor_id)),
            "organisation_role_category": _v("Impact Investor"),
            "investment_commitment": {"currency": _v(cur), "amount": {"exact": _v(_num(i.principal))}},
            **({"maximum_potential_return": _v(_num(i.return_cap_percent))} if i.return_cap_percent is not None
               else {}),
            "investment_type": _v("Debt"),
            "notes": f"{_money_text(i.drawn, cur)} drawn",
            "status": "PUBLIC",
        } for i in f.investments],
    }
    data["transactions"] += [{
        "investment_id": _v(f"INVESTMENT-{i.id}"),
        "date": _v(_day(on)),
        "sending_organisation_id": _v(organisation_id(i.investor_id)),
        "receiving_organisation_id": _v(organisation_id(f.provider_id)),
        "transaction_type": _v("Debt"),
        "money": {"currency": _v(cur), "amount": _v(_num(amount))},
        "status": "PUBLIC",
    } for i in f.investments for on, amount in i.drawdowns]
    for key in ("results", "outcome_payment_plans", "outcome_payments", "transactions", "investments"):
        if not data[key]:
            del data[key]
    return data


def _result(f: ProjectFacts, r: ResultFacts) -> dict:
    item: dict = {
        "outcome_metric_id": _v(r.metric_code),
        "result_level": _v("Outcome level"),
        "result_type": _v("Interim"),
        "period": {"start_date": _v(_day(r.period_start)), "end_date": _v(_day(r.period_end))},
        "number_engaged_in_impact_bond": _v(r.engaged),
        "status": "DISPUTED" if ("results", result_key(r.metric_code, r.period_start)) in f.disputed else "PUBLIC",
    }
    if r.positive is not None:
        item["number_with_positive_social_outcomes"] = _v(r.positive)
    if r.observed is not None:
        item["outcomes_achieved"] = _v(f"observed {r.observed.normalize():f} for a cohort of {r.cohort}; "
                                       f"{r.quantity.normalize():f} units improved paid for")
    else:
        item["outcomes_achieved"] = _v(f"{r.quantity.normalize():f} outcomes paid for")
    if f.verifier_id is not None:
        item["outcomes_validator_organisation_ids"] = _v(organisation_id(f.verifier_id))
    return item


# --- statuses and what the public sees ---------------------------------------------------------

def _resolve(data: dict, path: str):
    node = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def apply_statuses(data: dict, field_status: Mapping[str, str]) -> dict:
    """Mark each path's field (or every item of its list) with the status a fund manager set."""
    for path, status in field_status.items():
        target = _resolve(data, path)
        if isinstance(target, list):
            for item in target:
                if item.get("status") != "DISPUTED" or status == "PRIVATE":
                    item["status"] = status
        elif isinstance(target, dict):
            target["status"] = status
    return data


def _prune(node):
    if isinstance(node, dict):
        return {k: _prune(v) for k, v in node.items()
                if not (isinstance(v, dict) and v.get("status") == "PRIVATE")}
    if isinstance(node, list):
        return [_prune(v) for v in node if not (isinstance(v, dict) and v.get("status") == "PRIVATE")]
    return node


def _public_counts(data: dict) -> None:
    """Counts of people go through disclosure control: a suppressed count is left out."""
    sab = data.get("service_and_beneficiaries", {})
    n = sab.get("actual_number_service_users_or_beneficiaries_total")
    if n is not None and disclosure.count(n["value"]) is None:
        del sab["actual_number_service_users_or_beneficiaries_total"]
    for r in data.get("results", []):
        engaged = r.get("number_engaged_in_impact_bond", {}).get("value")
        positive = r.get("number_with_positive_social_outcomes", {}).get("value")
        if positive is not None and disclosure.part(positive, engaged) is None:
            del r["number_with_positive_social_outcomes"]
            r["outcomes_achieved"] = _v("not published: too few people")
        if engaged is not None and disclosure.count(engaged) is None:
            del r["number_engaged_in_impact_bond"]
            r["outcomes_achieved"] = _v("not published: too few people")


def _drop_dangling(data: dict) -> None:
    """Nothing in the public export refers to a metric that was left out."""
    metrics = {m["id"] for m in data.get("outcome_metrics", [])}
    for key in ("outcome_pricings", "results", "outcome_payments"):
        if key in data:
            data[key] = [x for x in data[key] if "outcome_metric_id" not in x
                         or x["outcome_metric_id"]["value"] in metrics]
    plans = {p["id"]["value"] for p in data.get("outcome_payment_plans", [])}
    for p in data.get("outcome_payments", []):
        if "outcome_payment_plan_id" in p and p["outcome_payment_plan_id"]["value"] not in plans:
            del p["outcome_payment_plan_id"]
    investments = {i["id"] for i in data.get("investments", [])}
    if "transactions" in data:
        data["transactions"] = [t for t in data["transactions"]
                                if "investment_id" not in t or t["investment_id"]["value"] in investments]


def referenced_organisations(data) -> set[str]:
    """Every organisation id the document refers to (values of *organisation_id* fields)."""
    found: set[str] = set()

    def walk(node, key=""):
        if isinstance(node, dict):
            if "organisation_id" in key and isinstance(node.get("value"), str):
                found.update(x.strip() for x in node["value"].split(","))
            if key == "outcomes_validator_organisation_ids" and isinstance(node.get("value"), str):
                found.update(x.strip() for x in node["value"].split(","))
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
    walk(data)
    return found


def project_export(facts: ProjectFacts, *, public: bool) -> dict:
    """The INDIGO project with its organisations and fund; `public` leaves private data out."""
    data = apply_statuses(_project_data(facts), facts.field_status)
    if public:
        data = _prune(data)
        _drop_dangling(data)
        _public_counts(data)
        for key in ("results", "outcome_payment_plans", "outcome_payments", "transactions", "investments",
                    "outcome_metrics", "outcome_pricings", "outcome_payment_commitments", "service_provisions"):
            if key in data and not data[key]:
                del data[key]
    fund = _fund_data(facts.fund)
    wanted = referenced_organisations(data) | referenced_organisations(fund)
    organisations = [{"id": organisation_id(o.id), "data": _organisation_data(o)}
                     for o in sorted(facts.organisations, key=lambda o: o.id) if organisation_id(o.id) in wanted]
    return {"indigo_version": INDIGO_VERSION,
            "project": {"id": project_id(facts.contract_id), "data": data},
            "organisations": organisations,
            "fund": {"id": fund_id(facts.fund.id), "data": fund}}


def unknown_paths(paths: Iterable[str]) -> list[str]:
    return [p for p in paths if p not in MARKABLE]
