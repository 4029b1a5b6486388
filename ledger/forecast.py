"""What a fund (and each payer) may still have to pay, per contract, payer and scheduled period.

- certain:  VERIFIED outcomes not yet paid (rate-card items, and measurements not yet paid);
- probable: SUBMITTED outcomes the verifier has not yet decided;
- maximum:  what the caps still allow for the period: the contract's room under maxValue and,
            when every metric has a per-period cap, the rooms left under them; for a period whose
            claim window has closed, only what is already claimed can still come.

Amounts are priced under the terms in force on the period's last day and limited by the caps
in force (certain first, then probable, period by period in date order, against the contract's
room under maxValue). Each figure is split between the payers as a payout would be (§4) and
limited by each payer's room under its maxAmount. A contract without a schedule shows one period,
its whole term. Closed and draft contracts owe nothing more and are left out.

One SQL aggregate does the heavy lifting: evidence counted per (contract, scheduled period,
metric, area, status), the periods joined in as a VALUES list, paid items filtered out.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import sqlalchemy as sa
from sqlalchemy import exists, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from ledger import payout_items, payouts, schedule
from ledger import money as m
from ledger.models import (
    ContractTerms, Measurement, OutcomeContract, PayoutCalculation, PayoutItem, PayoutShare,
)


@dataclass(frozen=True)
class ForecastLine:
    contract_id: int
    party_id: int
    period_start: date
    period_end: date
    claim_deadline: date | None
    currency: str
    certain_minor: int
    probable_minor: int
    maximum_minor: int
    room_minor: int  # the payer's part of all the contract can still pay (under maxValue and its maxAmount)


def _periods(contract: OutcomeContract) -> list[schedule.Period | tuple]:
    ps = schedule.of(contract)
    if ps:
        return list(ps)
    return [schedule.Period(contract.start_date, schedule.outcomes_end(contract), None)]


def forecast(s: Session, *, fund_id: int | None = None, contract_id: int | None = None, scope=None,
             today: date) -> list[ForecastLine]:
    C = OutcomeContract
    stmt = select(C).where(C.status.in_(("ACTIVE", "SUSPENDED", "TERMINATED")), C.closed_at.is_(None),
                           C.activated_at.is_not(None)).order_by(C.id)
    if fund_id is not None:
        stmt = stmt.where(C.fund_id == fund_id)
    if contract_id is not None:
        stmt = stmt.where(C.id == contract_id)
    if scope is not None:
        stmt = stmt.where(scope)
    contracts = s.execute(stmt).scalars().all()
    if not contracts:
        return []
    ids = [c.id for c in contracts]
    periods = {c.id: _periods(c) for c in contracts}
    # Evidence counted per scheduled period in one statement. Written as text with typed bound
    # parameters: a CASE over hundreds of periods built as SQLAlchemy expressions spends longer
    # computing its cache key than the database spends running it.
    params: list = []

    def bind(value, type_=sa.Date):
        params.append(sa.bindparam(f"p{len(params)}", value, type_=type_))
        return f":p{len(params) - 1}"
    # (outside the schedule — before the start or after the last day that counts — gives NULL)
    # Contracts with the same schedule share one CASE (a fund's contracts usually do), so the
    # database evaluates a few comparisons per row, not one per contract.
    by_schedule: dict[tuple, list[int]] = defaultdict(list)
    for cid, ps in periods.items():
        by_schedule[tuple((p.start, p.end) for p in ps)].append(cid)

    def bucket(ps) -> str:
        inner = " ".join(f"WHEN e.achieved_on <= {bind(end)} THEN {bind(start)}" for start, end in ps)
        return f"CASE WHEN e.achieved_on < {bind(ps[0][0])} THEN NULL {inner} END"
    if len(by_schedule) == 1:
        period_sql = bucket(next(iter(by_schedule)))
    else:
        period_sql = "CASE " + " ".join(
            f"WHEN e.contract_id IN ({', '.join(bind(c, sa.Integer) for c in cids)}) THEN {bucket(ps)}"
            for ps, cids in by_schedule.items()) + " END"
    ids_sql = ", ".join(bind(cid, sa.Integer) for cid in ids)
    posted_periods = {pid: (cid, start) for pid, cid, start in s.execute(
        select(PayoutCalculation.id, PayoutCalculation.contract_id, PayoutCalculation.period_start)
        .where(PayoutCalculation.contract_id.in_(ids), PayoutCalculation.status == "POSTED"))}
    # what posted payouts paid as item blocks (since migration 0020p; the item rows are joined below)
    blocks = payout_items.blocks_of(s, list(posted_periods)) if posted_periods else []
    paid_in_blocks = sorted({eid for b in blocks for kind, eid in zip(b.kinds, b.evidence_ids) if kind == "OUTCOME"})
    not_in_blocks = ""
    if paid_in_blocks:
        # one parameter however many items: an array on PostgreSQL, a JSON array on SQLite
        # (both planned as a hashed or indexed set, not a comparison per id)
        if s.get_bind().dialect.name == "postgresql":
            params.append(sa.bindparam("paid", paid_in_blocks, type_=ARRAY(sa.BigInteger)))
            not_in_blocks = "AND e.id NOT IN (SELECT unnest(:paid)) "
        else:
            params.append(sa.bindparam("paid", json.dumps(paid_in_blocks), type_=sa.Text))
            not_in_blocks = "AND e.id NOT IN (SELECT value FROM json_each(:paid)) "
    sql = (f"SELECT e.contract_id, {period_sql} AS ps, e.metric_code, p.area, e.status, COUNT(*) "
           f"FROM evidence e JOIN participants p ON p.id = e.participant_id "
           f"WHERE e.contract_id IN ({ids_sql}) AND e.status IN ('VERIFIED', 'SUBMITTED') "
           f"AND NOT EXISTS (SELECT 1 FROM payout_items i JOIN payouts o ON o.id = i.payout_id "
           f"WHERE i.evidence_id = e.id AND i.kind = 'OUTCOME' AND o.status = 'POSTED') {not_in_blocks}"
           f"GROUP BY 1, 2, 3, 4, 5")
    counts = [(cid, ps if isinstance(ps, date) else date.fromisoformat(ps), code, area, status, n)
              for cid, ps, code, area, status, n in s.execute(sa.text(sql).bindparams(*params)) if ps is not None]
    posted = select(PayoutCalculation.id).where(PayoutCalculation.contract_id.in_(ids),
                                                PayoutCalculation.status == "POSTED")
    used = exists().where(PayoutItem.measurement_id == Measurement.id, PayoutItem.payout_id.in_(posted))
    measured = s.execute(select(Measurement).where(Measurement.contract_id.in_(ids), ~used)).scalars().all()
    paid_total = dict(s.execute(
        select(PayoutCalculation.contract_id, func.sum(PayoutCalculation.total_minor))
        .where(PayoutCalculation.contract_id.in_(ids), PayoutCalculation.status == "POSTED")
        .group_by(PayoutCalculation.contract_id)).all())
    in_period = defaultdict(int)
    for cid, ps, pe, code, units in s.execute(
            select(PayoutCalculation.contract_id, PayoutCalculation.period_start, PayoutCalculation.period_end,
                   PayoutItem.metric_code, func.sum(PayoutItem.net_minor))
            .join(PayoutItem, PayoutItem.payout_id == PayoutCalculation.id)
            .where(PayoutCalculation.contract_id.in_(ids), PayoutCalculation.status == "POSTED",
                   PayoutItem.kind == "OUTCOME")
            .group_by(PayoutCalculation.contract_id, PayoutCalculation.period_start, PayoutCalculation.period_end,
                      PayoutItem.metric_code)):
        in_period[(cid, ps, code)] += int(units)
    for b in blocks:
        cid, ps = posted_periods[b.payout_id]
        for kind, code, net in zip(b.kinds, b.metric_codes, b.net):
            if kind == "OUTCOME":
                in_period[(cid, ps, code)] += net

    gross: dict[tuple[int, date, str], int] = defaultdict(int)  # (contract, period start, VERIFIED|SUBMITTED)
    history: dict[int, list] = defaultdict(list)
    for t in s.execute(select(ContractTerms).where(ContractTerms.contract_id.in_(ids))
                       .order_by(ContractTerms.contract_id, ContractTerms.effective_from, ContractTerms.version)).scalars():
        history[t.contract_id].append(t)
    paid_by_payer: dict[int, dict[int, int]] = defaultdict(dict)
    for cid, party, units in s.execute(
            select(PayoutCalculation.contract_id, PayoutShare.party_id, func.sum(PayoutShare.amount_minor))
            .join(PayoutShare, PayoutShare.payout_id == PayoutCalculation.id)
            .where(PayoutCalculation.contract_id.in_(ids), PayoutCalculation.status == "POSTED")
            .group_by(PayoutCalculation.contract_id, PayoutShare.party_id)):
        paid_by_payer[cid][party] = int(units)

    def terms_on(cid, day):
        hs = history[cid]
        on = [t for t in hs if t.effective_from <= day]
        return on[-1] if on else hs[0]
    ends = {(cid, p.start): p.end for cid, ps in periods.items() for p in ps}
    cur = {c.id: c.currency for c in contracts}
    prices: dict[tuple, int | None] = {}

    def price_minor(cid, ps, code, area) -> int | None:
        """The item's price in minor units: unit price × (1 + supplement), rounded half-up (as the engine does)."""
        key = (cid, ps, code, area)
        if key not in prices:
            metric = next((x for x in terms_on(cid, ends[(cid, ps)]).metrics if x.code == code), None)
            supplement = next((a.percent for a in metric.supplements if a.area == area), 0) if metric and area else 0
            prices[key] = None if metric is None else int(
                (Decimal(metric.unit_price_minor) * (100 + Decimal(supplement)) / 100).quantize(Decimal(1), ROUND_HALF_UP))
        return prices[key]
    for cid, ps, code, area, status, n in counts:
        price = price_minor(cid, ps, code, area)
        if price is not None:
            gross[(cid, ps, status)] += price * n
    for x in measured:
        p = next((p for p in periods[x.contract_id] if p.start <= x.period_start and x.period_end <= p.end), None)
        metric = next((y for y in terms_on(x.contract_id, x.period_end).metrics if y.code == x.metric_code), None)
        if p is None or metric is None or metric.kind == "RATE_CARD":
            continue
        engine_metric = payouts.MetricTerms(metric.code, metric.kind, metric.direction, m.from_minor(
            metric.unit_price_minor, cur[x.contract_id]).amount, metric.baseline, metric.threshold)
        quantity, _ = payouts._measured(payouts.Measurement(x.id, x.metric_code, x.period_start, x.period_end,
                                                            x.observed_value, x.comparison_value, x.cohort_size),
                                        engine_metric)
        units = m.minor_units(m.Money(m.quantize(quantity * engine_metric.unit_price, cur[x.contract_id]), cur[x.contract_id]))
        gross[(x.contract_id, p.start, "VERIFIED")] += units

    out: list[ForecastLine] = []
    for c in contracts:
        paid_by = paid_by_payer[c.id]
        room = max(0, terms_on(c.id, date.max).max_value_minor - int(paid_total.get(c.id) or 0))
        payer_room: dict[int, int] = {}
        latest = terms_on(c.id, date.max)
        whole = dict(zip((x.party_id for x in latest.payer_shares),
                         m.split_largest_remainder(room, [x.percent for x in latest.payer_shares])))
        for x in latest.payer_shares:
            if x.max_amount_minor is not None:
                whole[x.party_id] = min(whole[x.party_id], max(0, x.max_amount_minor - paid_by.get(x.party_id, 0)))
        for p in periods[c.id]:
            terms = terms_on(c.id, p.end)
            period_room = room
            if terms.metrics and all(x.cap_per_period_minor is not None for x in terms.metrics):
                period_room = min(room, sum(max(0, x.cap_per_period_minor - in_period[(c.id, p.start, x.code)])
                                            for x in terms.metrics))
            certain = min(gross[(c.id, p.start, "VERIFIED")], period_room)
            probable = min(gross[(c.id, p.start, "SUBMITTED")], period_room - certain)
            closed = p.claim_deadline is not None and today > p.claim_deadline
            maximum = certain + probable if closed else period_room
            room -= certain + probable
            percents = [x.percent for x in terms.payer_shares]
            splits = [m.split_largest_remainder(v, percents) for v in (certain, probable, maximum)]
            for i, share in enumerate(terms.payer_shares):
                if share.max_amount_minor is not None:
                    payer_room.setdefault(share.party_id, max(0, share.max_amount_minor - paid_by.get(share.party_id, 0)))
                limit = payer_room.get(share.party_id)
                c_, p_, x_ = (split[i] for split in splits)
                if limit is not None:
                    c_ = min(c_, limit)
                    p_ = min(p_, limit - c_)
                    x_ = min(x_, limit)
                    payer_room[share.party_id] = limit - c_ - p_
                out.append(ForecastLine(c.id, share.party_id, p.start, p.end, p.claim_deadline, c.currency, c_, p_, x_,
                                        whole.get(share.party_id, 0)))
    return out


def fiscal_year_totals(lines: list[ForecastLine]) -> dict[tuple[int, str], tuple[int, int, int]]:
    """(certain, probable, maximum) per (fiscal year of the period's end, currency). Periods of one
    contract share its room, so a year's maximum for a payer is the sum of its periods' maxima but
    never more than all the contract can still pay it."""
    certain: dict = defaultdict(int)
    probable: dict = defaultdict(int)
    summed: dict = defaultdict(int)
    room: dict = {}
    for x in lines:
        key = (x.period_end.year, x.currency)
        certain[key] += x.certain_minor
        probable[key] += x.probable_minor
        summed[(key, x.contract_id, x.party_id)] += x.maximum_minor
        room[(key, x.contract_id, x.party_id)] = x.room_minor
    maximum: dict = defaultdict(int)
    for k, v in summed.items():
        maximum[k[0]] += min(v, room[k])
    return {k: (certain[k], probable[k], maximum[k]) for k in sorted(set(certain) | set(maximum))}
