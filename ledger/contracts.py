"""Outcome contracts: creation with terms and metrics, the lifecycle, amendments, termination.

Lifecycle: DRAFT → ACTIVE → (SUSPENDED ↔ ACTIVE) → COMPLETED | TERMINATED. Activation commits each
payer's share of `maxValue` in the ledger (ledger/commitments.py); a terminated contract runs off
until its last claim window closes; closing releases what is left.
Terms are never edited: an amendment is a new version with an effective date.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import func, select

from ledger import chart, commitments, journal
from ledger import money as m
from ledger.access import Actor, require_role
from ledger.corrections import dual_control
from ledger.db import UnitOfWork
from ledger.errors import Conflict, NotFound, ValidationError
from ledger.funds import get_fund
from ledger.models import (
    AreaSupplement, ContractTerms, Metric, OutcomeContract, OutcomesFund, Party, PayerShare, Transaction, utcnow,
)
from ledger.models.contracts import DEFAULT_CLAIM_WINDOW_DAYS, DIRECTIONS, METRIC_KINDS, PAYMENT_FREQUENCIES
from ledger.parties import clean_text, get_party

METRIC_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,59}")
ENDED = ("COMPLETED", "TERMINATED")


@dataclass(frozen=True)
class MetricSpec:
    """What a contract pays for and how (see PAYOUTS.md)."""

    code: str
    name: str
    kind: str
    direction: str
    unit_price: m.Money
    baseline: Decimal | None = None
    threshold: Decimal | None = None
    cap_per_participant: m.Money | None = None
    cap_per_period: m.Money | None = None
    cap_total: m.Money | None = None
    once_only: bool = False
    area_supplements: tuple[tuple[str, Decimal], ...] = ()
    baseline_source: str | None = None
    baseline_method: str | None = None


@dataclass(frozen=True)
class ShareSpec:
    party_id: int
    percent: Decimal
    # the most this payer pays over the contract (PAYOUTS.md §8)
    max_amount: m.Money | None = None


@dataclass(frozen=True)
class TermsSpec:
    max_value: m.Money
    participant_cap: m.Money | None
    payer_shares: tuple[ShareSpec, ...]
    metrics: tuple[MetricSpec, ...]


# --- validation -----------------------------------------------------------------------------

def _positive(value: m.Money | None, currency: str, path: list[str], *, code: str = "NON_POSITIVE_AMOUNT") -> int | None:
    if value is None:
        return None
    if value.currency.code != currency:
        raise ValidationError(f"amounts are in the fund's currency {currency}, not {value.currency.code}",
                              code="CURRENCY_MISMATCH", field=[*path, "currency"])
    units = m.minor_units(value)
    if units <= 0:
        raise ValidationError("must be more than zero", code=code, field=[*path, "amount"])
    return units


def _validate_metric(spec: MetricSpec, currency: str, i: int) -> None:
    path = ["metrics", str(i)]
    if not METRIC_CODE.fullmatch(spec.code or ""):
        raise ValidationError("a metric code is upper case letters, digits and _ (e.g. SCHOOL_PASS)",
                              code="INVALID_METRIC_CODE", field=[*path, "code"])
    clean_text(spec.name, "name")
    if spec.kind not in METRIC_KINDS:
        raise ValidationError(f"unknown metric kind {spec.kind!r}", code="INVALID_METRIC_KIND", field=[*path, "kind"])
    if spec.direction not in DIRECTIONS:
        raise ValidationError(f"unknown direction {spec.direction!r}", code="INVALID_DIRECTION", field=[*path, "direction"])
    _positive(spec.unit_price, currency, [*path, "unitPrice"], code="NON_POSITIVE_PRICE")
    for name in ("cap_per_participant", "cap_per_period", "cap_total"):
        camel = re.sub(r"_(\w)", lambda g: g.group(1).upper(), name)
        _positive(getattr(spec, name), currency, [*path, camel], code="NON_POSITIVE_CAP")
    if spec.kind == "BASELINE_IMPROVEMENT" and spec.baseline is None:
        raise ValidationError("a baseline improvement metric needs a baseline", code="BASELINE_REQUIRED",
                              field=[*path, "baseline"])
    if spec.kind == "COMPARISON_THRESHOLD":
        if spec.threshold is None:
            raise ValidationError("a comparison metric needs a threshold", code="THRESHOLD_REQUIRED",
                                  field=[*path, "threshold"])
    if spec.threshold is not None and not (Decimal(0) <= spec.threshold <= Decimal(1)):
        raise ValidationError("a threshold is a fraction between 0 and 1 (0.10 for 10 %)", code="INVALID_THRESHOLD",
                              field=[*path, "threshold"])
    if spec.once_only and spec.kind != "RATE_CARD":
        raise ValidationError("only rate-card outcomes are paid once per participant", code="ONCE_ONLY_NOT_ALLOWED",
                              field=[*path, "onceOnly"])
    if spec.kind != "RATE_CARD" and (spec.cap_per_participant is not None or spec.area_supplements):
        raise ValidationError("per-participant caps and area supplements apply to rate-card metrics",
                              code="NOT_A_RATE_CARD", field=path)
    areas = set()
    for j, (area, pct) in enumerate(spec.area_supplements):
        where = [*path, "areaSupplements", str(j)]
        area = clean_text(area, "area", max_len=60)
        if area in areas:
            raise ValidationError(f"area {area} is listed twice", code="DUPLICATE_AREA", field=where)
        areas.add(area)
        if pct <= Decimal(-100) or pct != pct.quantize(Decimal("0.01")):
            raise ValidationError("a supplement is a percentage above −100 with at most two decimals",
                                  code="INVALID_PERCENT", field=[*where, "percent"])


PAYER_ROLES = ("FUND", "MUNICIPALITY")


def _validate_terms(uow: UnitOfWork, terms: TermsSpec, *, currency: str) -> None:
    _positive(terms.max_value, currency, ["maxValue"])
    _positive(terms.participant_cap, currency, ["participantCap"])
    if not terms.payer_shares:
        raise ValidationError("a contract needs payer shares", code="SHARES_NOT_100", field=["payerShares"])
    seen: set[int] = set()
    for i, share in enumerate(terms.payer_shares):
        where = ["payerShares", str(i)]
        if share.party_id in seen:
            raise ValidationError("a payer is named twice", code="DUPLICATE_PAYER", field=[*where, "partyId"])
        seen.add(share.party_id)
        payer = uow.session.get(Party, share.party_id)
        if payer is None:
            raise NotFound(f"party {share.party_id} does not exist", code="UNKNOWN_PARTY", field=[*where, "partyId"])
        if payer.role not in PAYER_ROLES:
            raise ValidationError("a payer is a fund or a public body (a municipality or a region)",
                                  code="INVALID_PAYER", field=[*where, "partyId"])
        _positive(share.max_amount, currency, [*where, "maxAmount"])
        if share.percent <= 0 or share.percent != share.percent.quantize(Decimal("0.01")):
            raise ValidationError("a share is a positive percentage with at most two decimals",
                                  code="INVALID_PERCENT", field=[*where, "percent"])
    if sum((s.percent for s in terms.payer_shares), Decimal(0)) != Decimal(100):
        raise ValidationError("payer shares must sum to exactly 100", code="SHARES_NOT_100", field=["payerShares"])
    if not terms.metrics:
        raise ValidationError("a contract pays for at least one metric", code="NO_METRICS", field=["metrics"])
    codes: set[str] = set()
    for i, spec in enumerate(terms.metrics):
        _validate_metric(spec, currency, i)
        if spec.code in codes:
            raise ValidationError(f"metric code {spec.code} is used twice", code="DUPLICATE_METRIC_CODE",
                                  field=["metrics", str(i), "code"])
        codes.add(spec.code)


def _validate_schedule(start: date, end: date, frequency: str | None, service_end: date | None,
                       outcomes_end: date | None, claim_window_days: int | None) -> None:
    """start ≤ serviceEndDate ≤ outcomesEndDate ≤ endDate, a known frequency, a claim window of 0 days or more."""
    if frequency is not None and frequency not in PAYMENT_FREQUENCIES:
        raise ValidationError(f"a payment frequency is one of {', '.join(PAYMENT_FREQUENCIES)}", code="INVALID_SCHEDULE",
                              field=["paymentFrequency"])
    service = service_end or end
    outcomes = outcomes_end or end
    if not (start <= service <= end):
        raise ValidationError("service ends within the contract's term", code="INVALID_SCHEDULE", field=["serviceEndDate"])
    if outcomes < service:
        raise ValidationError("outcomes are counted at least until service ends (outcomesEndDate ≥ serviceEndDate)",
                              code="INVALID_SCHEDULE", field=["outcomesEndDate"])
    if outcomes > end:
        raise ValidationError("outcomes are counted within the contract's term (outcomesEndDate ≤ endDate)",
                              code="INVALID_SCHEDULE", field=["outcomesEndDate"])
    if claim_window_days is not None and not (0 <= claim_window_days <= 3650):
        raise ValidationError("a claim window is between 0 and 3650 days", code="INVALID_SCHEDULE",
                              field=["claimWindowDays"])


def _write_terms(uow: UnitOfWork, contract: OutcomeContract, terms: TermsSpec, *, version: int,
                 effective_from: date, reason: str, actor: Actor) -> ContractTerms:
    s = uow.session
    row = ContractTerms(contract_id=contract.id, version=version, effective_from=effective_from, reason=reason,
                        max_value_minor=m.minor_units(terms.max_value),
                        participant_cap_minor=m.minor_units(terms.participant_cap) if terms.participant_cap else None,
                        created_by=actor.label)
    s.add(row)
    s.flush()
    for i, share in enumerate(terms.payer_shares):
        s.add(PayerShare(terms_id=row.id, position=i, party_id=share.party_id, percent=share.percent,
                         max_amount_minor=m.minor_units(share.max_amount) if share.max_amount else None))
    for i, spec in enumerate(terms.metrics):
        metric = Metric(
            terms_id=row.id, position=i, code=spec.code, name=spec.name.strip(), kind=spec.kind,
            direction=spec.direction, unit_price_minor=m.minor_units(spec.unit_price), baseline=spec.baseline,
            baseline_source=spec.baseline_source, baseline_method=spec.baseline_method, threshold=spec.threshold,
            cap_per_participant_minor=m.minor_units(spec.cap_per_participant) if spec.cap_per_participant else None,
            cap_per_period_minor=m.minor_units(spec.cap_per_period) if spec.cap_per_period else None,
            cap_total_minor=m.minor_units(spec.cap_total) if spec.cap_total else None, once_only=spec.once_only,
        )
        s.add(metric)
        s.flush()
        for area, pct in spec.area_supplements:
            s.add(AreaSupplement(metric_id=metric.id, area=area.strip(), percent=pct))
    s.flush()
    s.expire(row)
    return row


# --- use cases ------------------------------------------------------------------------------

def create_contract(
    uow: UnitOfWork, *, actor: Actor, title: str, fund_id: int, municipality_id: int, provider_id: int,
    verifier_id: int | None, investor_id: int | None, policy_area: str, start_date: date, end_date: date,
    terms: TermsSpec, payment_frequency: str | None = None, service_end_date: date | None = None,
    outcomes_end_date: date | None = None, claim_window_days: int | None = None, dispute_window_days: int = 30,
) -> OutcomeContract:
    """A DRAFT contract with its first terms version, effective from the start date.

    With a `payment_frequency` the contract gets a schedule (PAYOUTS.md §6); without one it keeps
    free payout periods, as every contract made before schedules existed.
    """
    require_role(actor, "FUND_MANAGER")
    title = clean_text(title, "title", max_len=300)
    policy_area = clean_text(policy_area, "policyArea", max_len=100)
    fund = get_fund(uow, fund_id)
    get_party(uow, municipality_id, role="MUNICIPALITY", field="municipalityId")
    get_party(uow, provider_id, role="PROVIDER", field="providerId")
    if verifier_id is not None:
        get_party(uow, verifier_id, role="VERIFIER", field="verifierId")
    if investor_id is not None:
        get_party(uow, investor_id, role="INVESTOR", field="investorId")
    if end_date < start_date:
        raise ValidationError("the contract ends before it starts", code="INVALID_TERM", field=["endDate"])
    _validate_schedule(start_date, end_date, payment_frequency, service_end_date, outcomes_end_date, claim_window_days)
    _validate_terms(uow, terms, currency=fund.currency)
    from ledger.corrections.disputes import check_window  # here: disputes imports this module
    contract = OutcomeContract(dispute_window_days=check_window(dispute_window_days),
        title=title, fund_id=fund.id, municipality_id=municipality_id, provider_id=provider_id,
        verifier_id=verifier_id, investor_id=investor_id, policy_area=policy_area, currency=fund.currency,
        start_date=start_date, end_date=end_date, status="DRAFT", created_by=actor.label,
        payment_frequency=payment_frequency, service_end_date=service_end_date, outcomes_end_date=outcomes_end_date,
        claim_window_days=claim_window_days if claim_window_days is not None else (
            DEFAULT_CLAIM_WINDOW_DAYS if payment_frequency else None),
    )
    uow.session.add(contract)
    uow.session.flush()
    _write_terms(uow, contract, terms, version=1, effective_from=start_date, reason="Initial terms", actor=actor)
    return contract


def get_contract(uow_or_session, contract_id: int, *, for_update: bool = False) -> OutcomeContract:
    s = getattr(uow_or_session, "session", uow_or_session)
    stmt = select(OutcomeContract).where(OutcomeContract.id == contract_id)
    if for_update:
        stmt = stmt.with_for_update()
    contract = s.execute(stmt).scalar_one_or_none()
    if contract is None:
        raise NotFound(f"contract {contract_id} does not exist", code="UNKNOWN_CONTRACT", field=["contractId"])
    return contract


def terms_history(s, contract_id: int) -> list[ContractTerms]:
    return list(s.execute(select(ContractTerms).where(ContractTerms.contract_id == contract_id)
                          .order_by(ContractTerms.version)).scalars())


def terms_in_force(s, contract_id: int, on: date | None = None) -> ContractTerms:
    """The newest terms version effective on `on` (the newest of all when `on` is None)."""
    stmt = select(ContractTerms).where(ContractTerms.contract_id == contract_id)
    if on is not None:
        stmt = stmt.where(ContractTerms.effective_from <= on)
    row = s.execute(stmt.order_by(ContractTerms.effective_from.desc(), ContractTerms.version.desc()).limit(1)).scalar_one_or_none()
    if row is None:
        row = s.execute(select(ContractTerms).where(ContractTerms.contract_id == contract_id)
                        .order_by(ContractTerms.version).limit(1)).scalar_one()
    return row


def _transition(contract: OutcomeContract, allowed_from: Sequence[str], to: str) -> None:
    if contract.status not in allowed_from:
        raise Conflict(f"a {contract.status} contract cannot become {to}", code="INVALID_TRANSITION",
                       field=["contractId"])


def _require_available(uow: UnitOfWork, fund: OutcomesFund, units: int) -> None:
    available = chart.fund_position(uow.session, fund.id).available
    if units > available:
        raise Conflict(
            f"the fund has {m.from_minor(available, fund.currency).amount} {fund.currency} available, "
            f"{m.from_minor(units, fund.currency).amount} is needed", code="INSUFFICIENT_FUND_CAPITAL",
            field=["contractId"])


def _recommit(uow: UnitOfWork, actor: Actor, contract: OutcomeContract, *, kind: str, description: str,
              open_: bool | None = None) -> Transaction | None:
    """Bring every payer's commitment to what the contract now needs (ledger/commitments.py)."""
    fund = get_fund(uow, contract.fund_id)
    terms = terms_in_force(uow.session, contract.id)
    entries = commitments.legs(uow, contract, fund, terms, open_=open_)
    growth = commitments.fund_delta(fund, entries)
    if growth > 0:
        _require_available(uow, fund, growth)
    return commitments.post_adjustment(uow, actor=actor.label, contract=contract, entries=entries, kind=kind,
                                       description=description, effective_date=utcnow().date())


def activate_contract(uow: UnitOfWork, *, actor: Actor, contract_id: int) -> OutcomeContract:
    """DRAFT → ACTIVE: each payer commits its share of maxValue; the fund's share must be available."""
    require_role(actor, "FUND_MANAGER")
    journal.lock(uow)  # the availability check and the commitment are one step
    contract = get_contract(uow, contract_id, for_update=True)
    _transition(contract, ("DRAFT",), "ACTIVE")
    contract.status = "ACTIVE"
    contract.activated_at = utcnow()
    _recommit(uow, actor, contract, kind="COMMITMENT", description=f"Commitment to contract {contract.id} ({contract.title})")
    uow.session.flush()
    return contract


def committed_minor(uow: UnitOfWork, contract: OutcomeContract, fund: OutcomesFund) -> int:
    """The fund's commitment to the contract now."""
    return commitments.current(uow.session, contract.id).get(fund.manager_id, 0)


def amend_contract(
    uow: UnitOfWork, *, actor: Actor, contract_id: int, effective_date: date, reason: str,
    max_value: m.Money | None = None, participant_cap: m.Money | None = None,
    payer_shares: Sequence[ShareSpec] | None = None, metrics: Sequence[MetricSpec] | None = None,
) -> OutcomeContract:
    """A new terms version from `effective_date`; parts not given are carried over unchanged.

    On an active contract every payer's commitment moves to what the new terms need (a fund's
    growth must be available); no cap may go below what was paid under it (BELOW_AMOUNT_PAID).
    """
    require_role(actor, "FUND_MANAGER")
    reason = clean_text(reason, "reason", max_len=2000)
    journal.lock(uow)
    contract = get_contract(uow, contract_id, for_update=True)
    dual_control.require_change_request(uow, contract, "an amendment")
    if contract.status in ENDED:
        raise Conflict(f"a {contract.status} contract cannot be amended", code="INVALID_TRANSITION",
                       field=["contractId"])
    if not (contract.start_date <= effective_date <= contract.end_date):
        raise ValidationError("an amendment takes effect within the contract's term", code="TERMS_OUTSIDE_CONTRACT",
                              field=["effectiveDate"])
    current = terms_in_force(uow.session, contract.id)
    if effective_date < current.effective_from:
        raise ValidationError(f"the terms in force already run from {current.effective_from}",
                              code="EFFECTIVE_DATE_BEFORE_CURRENT", field=["effectiveDate"])
    spec = TermsSpec(
        max_value=max_value if max_value is not None else m.from_minor(current.max_value_minor, contract.currency),
        participant_cap=participant_cap if participant_cap is not None else (
            m.from_minor(current.participant_cap_minor, contract.currency) if current.participant_cap_minor else None),
        payer_shares=tuple(payer_shares) if payer_shares is not None else tuple(
            ShareSpec(p.party_id, p.percent, m.from_minor(p.max_amount_minor, contract.currency)
                      if p.max_amount_minor is not None else None) for p in current.payer_shares),
        metrics=tuple(metrics) if metrics is not None else tuple(_spec_of(x, contract.currency) for x in current.metrics),
    )
    _validate_terms(uow, spec, currency=contract.currency)
    version = max(t.version for t in terms_history(uow.session, contract.id)) + 1
    _refuse_below_paid(uow.session, contract, spec)
    _write_terms(uow, contract, spec, version=version, effective_from=effective_date, reason=reason, actor=actor)
    if contract.status != "DRAFT":
        _recommit(uow, actor, contract, kind="COMMITMENT_CHANGE",
                  description=f"Amendment {version} of contract {contract.id}: commitments follow the new terms: {reason}")
    return contract


def _refuse_below_paid(s, contract: OutcomeContract, spec: TermsSpec) -> None:
    """BELOW_AMOUNT_PAID: no cap of an amendment may sit below what has been paid under it (PAYOUTS.md §7)."""
    from ledger import payout_items
    from ledger.models import PayoutCalculation, PayoutItem
    paid = commitments.paid_by_payer(s, contract.id)
    if m.minor_units(spec.max_value) < sum(paid.values()):
        raise Conflict(f"{m.from_minor(sum(paid.values()), contract.currency).amount} has already been paid",
                       code="BELOW_AMOUNT_PAID", field=["maxValue"])
    for i, share in enumerate(spec.payer_shares):
        if share.max_amount is not None and m.minor_units(share.max_amount) < paid.get(share.party_id, 0):
            raise Conflict(f"this payer has already paid {m.from_minor(paid[share.party_id], contract.currency).amount}",
                           code="BELOW_AMOUNT_PAID", field=["payerShares", str(i), "maxAmount"])
    posted = select(PayoutCalculation.id).where(PayoutCalculation.contract_id == contract.id,
                                                PayoutCalculation.status == "POSTED")
    per_metric = {code: int(v) for code, v in s.execute(
        select(PayoutItem.metric_code, func.sum(PayoutItem.net_minor)).where(PayoutItem.payout_id.in_(posted))
        .group_by(PayoutItem.metric_code))}
    for block in payout_items.blocks_of(s, posted):  # the evidence items since migration 0020p
        for code, net in zip(block.metric_codes, block.net):
            per_metric[code] = per_metric.get(code, 0) + net
    for i, metric in enumerate(spec.metrics):
        if metric.cap_total is not None and m.minor_units(metric.cap_total) < int(per_metric.get(metric.code) or 0):
            raise Conflict(f"{metric.code} has already been paid "
                           f"{m.from_minor(int(per_metric[metric.code]), contract.currency).amount}",
                           code="BELOW_AMOUNT_PAID", field=["metrics", str(i), "capTotal"])


def _spec_of(metric: Metric, currency: str) -> MetricSpec:
    money = lambda units: m.from_minor(units, currency) if units is not None else None  # noqa: E731
    return MetricSpec(
        code=metric.code, name=metric.name, kind=metric.kind, direction=metric.direction,
        unit_price=money(metric.unit_price_minor), baseline=metric.baseline, threshold=metric.threshold,
        cap_per_participant=money(metric.cap_per_participant_minor), cap_per_period=money(metric.cap_per_period_minor),
        cap_total=money(metric.cap_total_minor), once_only=metric.once_only,
        area_supplements=tuple((s.area, s.percent) for s in metric.supplements),
        baseline_source=metric.baseline_source, baseline_method=metric.baseline_method,
    )


def awaiting_approval(s, contract_id: int) -> int:
    """How many payouts of the contract are calculated and not yet approved."""
    from ledger.models import PayoutCalculation
    return s.execute(select(func.count()).where(PayoutCalculation.contract_id == contract_id,
                                                PayoutCalculation.status == "CALCULATED")).scalar_one()


def closing_blocker(s, contract: OutcomeContract, today: date) -> tuple[str, str] | None:
    """Why the contract cannot close today as (code, message), or None when it can.

    A contract closes when the claim window of its last period has closed and no payout of it
    is waiting for approval (PAYOUTS.md §6). Contracts without a schedule have no claim window.
    """
    from ledger import schedule
    from ledger.models import LateClaimGrant
    deadline = schedule.last_claim_deadline(contract)
    if deadline is not None:  # a late claim granted keeps the contract open until it runs out
        granted = s.execute(select(func.max(LateClaimGrant.until)).where(LateClaimGrant.contract_id == contract.id)).scalar()
        deadline = max(deadline, granted) if granted else deadline
    if deadline is not None and today <= deadline:
        return "CLAIM_WINDOW_OPEN", f"claims for this contract can still be made until {deadline}"
    if awaiting_approval(s, contract.id):
        return "PAYOUT_AWAITING_APPROVAL", "a payout of this contract is waiting for approval"
    return None


def _close(uow: UnitOfWork, actor: Actor, contract: OutcomeContract, reason: str) -> None:
    contract.closed_at = utcnow()
    _recommit(uow, actor, contract, kind="COMMITMENT_RELEASE", open_=False,
              description=f"Contract {contract.id} closed: remaining commitments released: {reason}")


def end_contract(uow: UnitOfWork, *, actor: Actor, contract: OutcomeContract, status: str, reason: str,
                 effective_on: date | None = None, today: date | None = None) -> OutcomeContract:
    """End a contract: COMPLETED closes it; TERMINATED ends its schedule at `effective_on` (default today).

    A terminated contract keeps its commitments through the run-off (outcomes achieved up to the
    termination date stay payable within their claim windows) and closes, releasing what is left,
    as soon as nothing more can be claimed — at once when no window is open and nothing awaits approval.
    """
    today = today or utcnow().date()
    contract.status = status
    contract.ended_at = utcnow()
    contract.end_reason = reason
    if status == "TERMINATED":
        contract.terminated_on = effective_on or min(today, contract.outcomes_end_date or contract.end_date)
    if status == "COMPLETED" or contract.activated_at is None or closing_blocker(uow.session, contract, today) is None:
        _close(uow, actor, contract, reason)
    uow.session.flush()
    return contract


def terminate_contract(uow: UnitOfWork, *, actor: Actor, contract_id: int, reason: str,
                       effective_date: date | None = None, today: date | None = None) -> OutcomeContract:
    """End a contract early on `effective_date` (default today): outcomes achieved up to then stay payable."""
    require_role(actor, "FUND_MANAGER")
    reason = clean_text(reason, "reason", max_len=2000)
    journal.lock(uow)
    contract = get_contract(uow, contract_id, for_update=True)
    dual_control.require_change_request(uow, contract, "a termination")
    _transition(contract, ("DRAFT", "ACTIVE", "SUSPENDED"), "TERMINATED")
    if effective_date is not None and not (
            contract.start_date <= effective_date <= (contract.outcomes_end_date or contract.end_date)):
        raise ValidationError("a termination takes effect within the contract's term", code="TERMS_OUTSIDE_CONTRACT",
                              field=["effectiveDate"])
    return end_contract(uow, actor=actor, contract=contract, status="TERMINATED", reason=reason,
                        effective_on=effective_date, today=today)


def complete_contract(uow: UnitOfWork, *, actor: Actor, contract_id: int, reason: str,
                      today: date | None = None) -> OutcomeContract:
    """Close a contract whose last claim window is over; the remainder of the commitments is released."""
    require_role(actor, "FUND_MANAGER")
    reason = clean_text(reason, "reason", max_len=2000)
    journal.lock(uow)
    contract = get_contract(uow, contract_id, for_update=True)
    _transition(contract, ("ACTIVE", "SUSPENDED"), "COMPLETED")
    blocker = closing_blocker(uow.session, contract, today or utcnow().date())
    if blocker is not None:
        raise Conflict(blocker[1], code=blocker[0], field=["contractId"])
    return end_contract(uow, actor=actor, contract=contract, status="COMPLETED", reason=reason)


def close_due_contracts(uow: UnitOfWork, *, actor: Actor, today: date | None = None) -> list[OutcomeContract]:
    """Close every contract whose run-off is over: ACTIVE past its last claim window → COMPLETED;
    TERMINATED with its windows closed → closed. Each releases its remaining commitments.
    Run daily (`utfall contracts close-due`)."""
    require_role(actor, "FUND_MANAGER", "ADMIN")
    journal.lock(uow)
    today = today or utcnow().date()
    closed = []
    rows = uow.session.execute(select(OutcomeContract).where(
        OutcomeContract.status.in_(("ACTIVE", "SUSPENDED", "TERMINATED")), OutcomeContract.closed_at.is_(None),
        OutcomeContract.activated_at.is_not(None)).order_by(OutcomeContract.id).with_for_update()).scalars().all()
    for contract in rows:
        if contract.status != "TERMINATED" and contract.payment_frequency is None:
            continue  # a contract without a schedule is completed by hand (completeContract)
        if closing_blocker(uow.session, contract, today) is not None:
            continue
        if contract.status == "TERMINATED":
            _close(uow, actor, contract, "run-off over")
        else:
            end_contract(uow, actor=actor, contract=contract, status="COMPLETED", reason="last claim window closed")
        closed.append(contract)
    uow.session.flush()
    return closed
