"""Payout calculations: gather the inputs from the database, run the pure engine, record the
result; approve (four eyes) and post to the ledger; recompute from the recorded inputs.
"""
from __future__ import annotations

import gc
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date

from sqlalchemy import and_, case, exists, func, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ledger import chart, commitments, journal, payout_items, payouts, schedule
from ledger import money as m
from ledger.access import Actor, require_role
from ledger.contracts import get_contract, terms_history, terms_in_force
from ledger.db import UnitOfWork, sync_pending
from ledger.errors import Conflict, NotFound, ValidationError
from ledger.funds import get_fund
from ledger.models import (
    ContractTerms, Evidence, Measurement, OutcomeContract, Participant, PayoutCalculation, PayoutItem,
    PayoutLine, PayoutRecordedInputs, PayoutShare, utcnow,
)
from ledger.settlement import fund_of, obligation_legs


def _units(amount, currency: str) -> int:
    return m.minor_units(m.Money(amount, currency))


def engine_terms(terms: ContractTerms, currency: str) -> payouts.Terms:
    """A terms version as the engine's immutable input."""
    money = lambda units: None if units is None else m.from_minor(units, currency).amount  # noqa: E731
    return payouts.Terms(
        version=terms.version, currency=currency, max_value=money(terms.max_value_minor),
        participant_cap=money(terms.participant_cap_minor),
        payer_shares=tuple(payouts.PayerShare(str(s.party_id), s.percent, money(s.max_amount_minor))
                           for s in terms.payer_shares),
        metrics=tuple(payouts.MetricTerms(
            code=x.code, kind=x.kind, direction=x.direction, unit_price=money(x.unit_price_minor), baseline=x.baseline,
            threshold=x.threshold, cap_per_participant=money(x.cap_per_participant_minor),
            cap_per_period=money(x.cap_per_period_minor), cap_total=money(x.cap_total_minor), once_only=x.once_only,
            area_supplements=tuple((a.area, a.percent) for a in x.supplements)) for x in terms.metrics),
    )


class _Pricing:
    """Prices under the terms version in force on a given day, where it differs from the period's (PAYOUTS.md §7)."""

    def __init__(self, history: list[ContractTerms], period_terms: ContractTerms, currency: str):
        self.history, self.period, self.cur = history, period_terms, currency
        self._from = [t.effective_from for t in history]
        # one version over the contract's life (the common case): every price is the period's
        self.single = all(t.version == period_terms.version for t in history)

    def _version(self, day: date) -> ContractTerms:
        from bisect import bisect_right
        i = bisect_right(self._from, day)
        return self.history[i - 1] if i else self.history[0]

    def _metric(self, terms: ContractTerms, code: str):
        return next((x for x in terms.metrics if x.code == code), None)

    def item(self, code: str, day: date, area: str | None):
        terms = self._version(day)
        metric = self._metric(terms, code)
        if terms.version == self.period.version or metric is None:
            return None
        supplement = next((a.percent for a in metric.supplements if a.area == area), 0) if area else 0
        unit = m.from_minor(metric.unit_price_minor, self.cur).amount
        return m.quantize(unit * (1 + m.decimal(supplement) / 100), self.cur)

    def unit(self, code: str, day: date):
        terms = self._version(day)
        metric = self._metric(terms, code)
        if terms.version == self.period.version or metric is None:
            return None
        return m.from_minor(metric.unit_price_minor, self.cur).amount

    def paid_unit(self, code: str, day: date):
        """The unit price of the version the item was priced under, when it is not the period's own price."""
        metric = self._metric(self._version(day), code)
        current = self._metric(self.period, code)
        if metric is None or (current is not None and current.unit_price_minor == metric.unit_price_minor):
            return None
        return m.from_minor(metric.unit_price_minor, self.cur).amount


def _posted(contract_id: int):
    return select(PayoutCalculation.id).where(PayoutCalculation.contract_id == contract_id,
                                              PayoutCalculation.status == "POSTED")


def gather_inputs(s: Session, contract: OutcomeContract, period_start: date, period_end: date) -> payouts.PayoutInputs:
    """Everything the engine needs, from the database: SQL does the selecting, SQL and one pass over
    the posted payouts' item blocks the summing (`_paid_before`)."""
    cur = contract.currency
    # every terms version, read once: the period's is the newest in force on its last day (as
    # terms_in_force picks it), the others price items on other days (PAYOUTS.md §7)
    history = sorted(terms_history(s, contract.id), key=lambda t: (t.effective_from, t.version))
    in_force = [t for t in history if t.effective_from <= period_end]
    terms = in_force[-1] if in_force else min(history, key=lambda t: t.version)
    posted = _posted(contract.id)
    rate_codes = [x.code for x in terms.metrics if x.kind == "RATE_CARD"]
    last_day = period_end if contract.terminated_on is None else min(period_end, contract.terminated_on)
    paid = _paid_before(s, contract.id, period_start, period_end)
    evidence = _unpaid_evidence(s, contract.id, rate_codes, period_start, last_day, paid.paid_evidence())
    measured_codes = {x.code for x in terms.metrics if x.kind != "RATE_CARD"}
    # two statements fewer for the usual large payout: measurements matter only to terms with
    # a measured metric, and a measurement is adjusted only once a posted payout paid it
    measurements = []
    if measured_codes:
        used = exists().where(PayoutItem.measurement_id == Measurement.id, PayoutItem.payout_id.in_(posted))
        measurements = s.execute(
            select(Measurement).where(Measurement.contract_id == contract.id, Measurement.period_start >= period_start,
                                      Measurement.period_end <= last_day, Measurement.status == "CURRENT", ~used)
        ).scalars().all()
    adjustments = (measurement_adjustments(s, contract.id, period_start, period_end, measured_codes)
                   if paid.any_posted else [])
    adjusted = {a.current.measurement_id for a in adjustments if a.current is not None}
    per_metric, per_participant = paid.per_metric(), paid.per_participant()
    per_pair = [(p, c, v) for (p, c), v in paid.per_pair.items()]
    # what the period's earlier payouts paid per metric (outcomes and adjustments only: a
    # clawback in it gave back another period's money) counts against every per-period cap,
    # less what was paid for measurements this payout adjusts: their adjustment line replaces
    # that money, so the cap must not count it twice
    replaced: dict[str, int] = {}
    for a in adjustments:
        replaced[a.metric_code] = replaced.get(a.metric_code, 0) + a.paid
    in_period = [(code, v - replaced.get(code, 0)) for code, v in paid.in_period.items()]
    total = sum(per_metric.values())
    # clawbacks: invalidated evidence that is paid, for its net paid amount, at the price paid
    claw_rows = []
    if paid.times:
        invalidated = [row for row in s.execute(
            select(Evidence.id, Evidence.participant_id, Evidence.metric_code, Evidence.achieved_on)
            .where(Evidence.contract_id == contract.id, Evidence.status == "INVALIDATED").order_by(Evidence.id))
            if paid.times.get(row[0], 0) > 0]
        net_of = paid.net_of_evidence({row[0] for row in invalidated})
        claw_rows = [(eid, pid, code, net_of[eid], on) for eid, pid, code, on in invalidated]
    amount = lambda units: m.from_minor(int(units), cur).amount  # noqa: E731
    # PAYOUTS.md §7: an item is priced under the version in force on its achievedOn, a measurement
    # under the one on its periodEnd; only prices that differ from the period's version are recorded
    priced = _Pricing(history, terms, cur)
    # what each payer has paid matters only to payers with a maxAmount (PAYER_CAP)
    per_payer = ({str(p): amount(v) for p, v in commitments.paid_by_payer(s, contract.id).items()}
                 if any(x.max_amount_minor is not None for x in terms.payer_shares) else {})
    return payouts.PayoutInputs(
        contract_id=str(contract.id), period_start=period_start, period_end=period_end,
        terms=engine_terms(terms, cur),
        # one terms version over the contract's life (the common case): the columns as read;
        # otherwise an item each, with its price under the version in force on its day (§7)
        evidence=evidence if priced.single else tuple(
            payouts.EvidenceItem(eid, pid, code, on, area, priced.item(code, on, area))
            for eid, pid, code, on, area in zip(evidence.evidence_ids, evidence.participant_ids,
                                                evidence.metric_codes, evidence.achieved_on, evidence.areas)),
        measurements=tuple(payouts.Measurement(x.id, x.metric_code, x.period_start, x.period_end, x.observed_value,
                                               x.comparison_value, x.cohort_size,
                                               priced.unit(x.metric_code, x.period_end))
                           for x in measurements if x.metric_code in measured_codes and x.id not in adjusted),
        paid_before=payouts.PaidBefore(
            total=amount(total), per_metric=[(c, amount(v)) for c, v in per_metric.items()],
            per_participant=[(p, amount(v)) for p, v in per_participant.items()],
            per_participant_metric=[(p, c, amount(v)) for p, c, v in per_pair], per_payer=per_payer,
            per_metric_in_period=[(c, amount(v)) for c, v in in_period]),
        clawbacks=tuple(payouts.Clawback(eid, pid, code, amount(v), priced.paid_unit(code, on))
                        for eid, pid, code, v, on in claw_rows if v > 0),
        adjustments=tuple(replace(a, paid=amount(a.paid)) for a in adjustments),
    )


class _Paid:
    """What the POSTED payouts of a contract paid, in minor units, summed over their items
    (rows and blocks together, see ledger/payout_items.py)."""

    def __init__(self) -> None:
        self.per_pair: dict[tuple[int, str], int] = {}  # (participant, metric code) → net
        self.unpaired: dict[str, int] = {}  # metric code → net of items without a participant (measurements)
        self.in_period: dict[str, int] = {}  # metric code → net of OUTCOME and ADJUSTMENT items of the period
        # evidence → its OUTCOME items less its CLAWBACK items: an item is paid while its posted
        # payments outnumber its posted clawbacks, so one clawed back and then reinstated (a
        # dispute upheld) is payable again
        self.times: Counter = Counter()
        self.row_net: dict[int, int] = {}  # evidence → net of its item rows
        self.blocks: list[payout_items.Block] = []
        self.any_posted = False  # whether the contract has a POSTED payout at all

    def per_participant(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for (pid, _), net in self.per_pair.items():
            out[pid] = out.get(pid, 0) + net
        return out

    def per_metric(self) -> dict[str, int]:
        out = dict(self.unpaired)
        for (_, code), net in self.per_pair.items():
            out[code] = out.get(code, 0) + net
        return out

    def paid_evidence(self) -> set[int]:
        return {eid for eid, n in self.times.items() if n > 0}

    def net_of_evidence(self, wanted: set[int]) -> dict[int, int]:
        """The net paid for each of `wanted` over all its items."""
        out = {eid: self.row_net.get(eid, 0) for eid in wanted}
        for b in self.blocks:
            for eid, net in zip(b.evidence_ids, b.net):
                if eid in wanted:
                    out[eid] += net
        return out


def _paid_before(s: Session, contract_id: int, period_start: date, period_end: date) -> _Paid:
    """The sums `gather_inputs` needs over the contract's posted payouts: three GROUP BYs over
    the item rows (measurement items, and evidence items of payouts calculated before
    migration 0020p) and one pass in Python over the item blocks, summed per (participant,
    metric) only: the other sums follow from those, and what each evidence item was paid is
    summed only for the few that are clawed back (`_Paid.net_of_evidence`)."""
    paid = _Paid()
    periods = dict(s.execute(
        select(PayoutCalculation.id, (PayoutCalculation.period_start == period_start)
               & (PayoutCalculation.period_end == period_end))
        .where(PayoutCalculation.contract_id == contract_id, PayoutCalculation.status == "POSTED")).all())
    if not periods:
        return paid
    paid.any_posted = True
    ids = list(periods)
    mine = PayoutItem.payout_id.in_(ids)
    per_pair, in_period, times = paid.per_pair, paid.in_period, paid.times
    for pid, code, net in s.execute(select(PayoutItem.participant_id, PayoutItem.metric_code,
                                           func.sum(PayoutItem.net_minor))
                                    .where(mine).group_by(PayoutItem.participant_id, PayoutItem.metric_code)):
        if pid is None:
            paid.unpaired[code] = int(net)
        else:
            per_pair[(pid, code)] = int(net)
    same = [p for p, yes in periods.items() if yes]
    if same:
        for code, net in s.execute(select(PayoutItem.metric_code, func.sum(PayoutItem.net_minor))
                                   .where(PayoutItem.payout_id.in_(same),
                                          PayoutItem.kind.in_(("OUTCOME", "ADJUSTMENT")))
                                   .group_by(PayoutItem.metric_code)):
            in_period[code] = int(net)
    for eid, n, net in s.execute(
            select(PayoutItem.evidence_id, func.sum(case((PayoutItem.kind == "OUTCOME", 1),
                                                         (PayoutItem.kind == "CLAWBACK", -1), else_=0)),
                   func.sum(PayoutItem.net_minor))
            .where(mine, PayoutItem.evidence_id.is_not(None)).group_by(PayoutItem.evidence_id)):
        times[eid], paid.row_net[eid] = int(n), int(net)
    paid.blocks = payout_items.blocks_of(s, ids)
    pair_of = per_pair.get
    for b in paid.blocks:
        for pair, net in zip(zip(b.participant_ids, b.metric_codes), b.net):
            per_pair[pair] = pair_of(pair, 0) + net
        if set(b.kinds) == {"OUTCOME"}:  # a block of payments only (most are): counted in C
            times.update(b.evidence_ids)
        else:
            for kind, eid in zip(b.kinds, b.evidence_ids):
                times[eid] += 1 if kind == "OUTCOME" else -1 if kind == "CLAWBACK" else 0
        if periods[b.payout_id]:
            for kind, code, net in zip(b.kinds, b.metric_codes, b.net):
                if kind == "OUTCOME":
                    in_period[code] = in_period.get(code, 0) + net
    return paid


_STREAM_CHUNK = 2_000  # rows per chunk of the evidence read on PostgreSQL (measured: 2 000–5 000 alike)


def _chunked_rows() -> bool:
    """Whether the PostgreSQL driver can stream a result in chunks (libpq 17 or later)."""
    try:
        import psycopg
    except ImportError:
        return False
    return psycopg.pq.version() >= 170000


_CHUNKED_ROWS = _chunked_rows()


def _stream_chunks(cursor, sql: str, params: tuple) -> Iterator[Iterable[tuple]]:
    """`cursor.stream(sql, params, size=_STREAM_CHUNK)` a chunk at a time: each chunk's rows
    made into tuples by one call into psycopg's C loader, not a generator step and a
    `load_row` call per row (client CPU for 100 000 rows: ~159 → ~136 ms; the bare fetchall
    ~128 ms). These are psycopg's own steps of `Cursor.stream`, private ones: a psycopg
    without them streams through `Cursor.stream` row by row as before."""
    import psycopg

    conn = cursor.connection
    try:
        send_query, fetch_chunk, lock = cursor._stream_send_gen, cursor._stream_fetchone_gen, conn.lock
        type(cursor)._tx, type(cursor)._make_row  # (slots, set once the query is sent)
    except AttributeError:
        yield cursor.stream(sql, params, size=_STREAM_CHUNK)
        return
    with lock:
        conn.wait(send_query(sql, params, size=_STREAM_CHUNK))
        first, done = True, False
        try:
            while (res := conn.wait(fetch_chunk(first))) is not None:
                first = False
                # (the loader and the row maker are the query's, set by the steps above)
                yield cursor._tx.load_rows(0, res.ntuples, cursor._make_row)
            done = True
        finally:
            if not done and conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.ACTIVE:
                # as Cursor.stream does when left early: cancel the query and read what the
                # server sent, so the connection can be used (or rolled back) afterwards
                try:
                    conn._try_cancel()
                    while conn.wait(fetch_chunk(False)) is not None:
                        pass
                    conn.wait(fetch_chunk(False))
                except Exception:  # noqa: BLE001 (the error that left the loop is the one raised)
                    pass


def _unpaid_evidence(s: Session, contract_id: int, codes: list[str], first_day: date,
                     last_day: date, paid: set[int]) -> payouts.EvidenceColumns:
    """(id, participant, metric, achieved on, area) of the VERIFIED rate-card evidence in the
    period that is not in `paid` (what posted payouts have paid, see `_paid_before`), as columns.

    A large payout reads 100 000 of these, so this is the bare join through the raw driver
    cursor, the paid items left out by one set lookup each as they stream past (the posted
    payouts' items are packed blocks, not rows SQL could join); the rows are read a batch at
    a time into five lists (no ORM or Core row, tuple list or object per item kept), and the
    few hundred distinct days are one date object each.
    """
    columns = payouts.EvidenceColumns([], [], [], [], [])
    if not codes:
        return columns
    conn = s.connection()
    sqlite = conn.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    sql = ("SELECT e.id, e.participant_id, e.metric_code, e.achieved_on, p.area "
           "FROM evidence e JOIN participants p ON p.id = e.participant_id "
           f"WHERE e.contract_id = {mark} AND e.status = 'VERIFIED' "
           f"AND e.metric_code IN ({', '.join([mark] * len(codes))}) AND e.achieved_on BETWEEN {mark} AND {mark}")
    # SQLite keeps dates as ISO text (as the ORM writes them)
    days = (first_day.isoformat(), last_day.isoformat()) if sqlite else (first_day, last_day)
    parsed: dict = {}  # the day as read → one date object
    texts: dict = {}  # one str per metric code and area
    ids, participants, metrics, achieved, areas = (columns.evidence_ids, columns.participant_ids,
                                                   columns.metric_codes, columns.achieved_on, columns.areas)
    sync_pending(conn)  # a group commit batch's postings before it, sent first
    cursor = conn.connection.driver_connection.cursor()
    try:
        if sqlite or not _CHUNKED_ROWS:
            cursor.execute(sql, (contract_id, *codes, *days))
            rows = itertools.chain.from_iterable(iter(lambda: cursor.fetchmany(10_000), []))
        else:
            # PostgreSQL: the rows arrive in chunks while the server is still producing the rest
            # (libpq's chunked mode), so this loop runs beside the server's join instead of after
            # it, and the result is never held whole in the client (~10 MB at 100 000 rows)
            rows = itertools.chain.from_iterable(_stream_chunks(cursor, sql, (contract_id, *codes, *days)))
        for eid, pid, code, on, area in rows:
            if paid and eid in paid:
                continue
            ids.append(eid)
            participants.append(pid)
            metrics.append(texts.get(code) or texts.setdefault(code, code))
            achieved.append(parsed.get(on) or parsed.setdefault(on, date.fromisoformat(on) if sqlite else on))
            areas.append(area if area is None else texts.get(area) or texts.setdefault(area, area))
    finally:
        cursor.close()
    return columns


def measurement_adjustments(s: Session, contract_id: int, period_start: date, period_end: date,
                            measured_codes: set[str]) -> list[payouts.MeasurementAdjustment]:
    """Paid measurements of the period since corrected or voided, not yet adjusted (PAYOUTS.md §9).

    A measurement is paid when a posted payout has an OUTCOME item for it, and adjusted when a
    posted payout has its ADJUSTMENT item. Its replacement is the end of its version chain:
    the current version (paid in the adjustment), or none if the chain ends voided. `paid`
    is in minor units here.
    """
    posted = _posted(contract_id)
    item = lambda kind: exists().where(PayoutItem.measurement_id == Measurement.id, PayoutItem.kind == kind,  # noqa: E731
                                       PayoutItem.payout_id.in_(posted))
    rows = s.execute(
        select(Measurement).where(Measurement.contract_id == contract_id, Measurement.status != "CURRENT",
                                  Measurement.period_start >= period_start, Measurement.period_end <= period_end,
                                  item("OUTCOME"), ~item("ADJUSTMENT")).order_by(Measurement.id)
    ).scalars().all()
    if not rows:
        return []
    paid = dict(s.execute(select(PayoutItem.measurement_id, func.sum(PayoutItem.net_minor)).where(
        PayoutItem.measurement_id.in_([r.id for r in rows]), PayoutItem.kind == "OUTCOME",
        PayoutItem.payout_id.in_(posted)).group_by(PayoutItem.measurement_id)).all())
    out = []
    for row in rows:
        current = row
        while current.superseded_by_id is not None:
            current = s.get(Measurement, current.superseded_by_id)
        version = None
        if current.status == "CURRENT" and current.metric_code in measured_codes:
            version = payouts.Measurement(current.id, current.metric_code, current.period_start, current.period_end,
                                          current.observed_value, current.comparison_value, current.cohort_size)
        out.append(payouts.MeasurementAdjustment(row.id, row.metric_code, paid.get(row.id, 0), version))
    return out


def _check_payable(contract: OutcomeContract, period_start: date, period_end: date) -> None:
    if period_end < period_start:
        raise ValidationError("the period ends before it starts", code="INVALID_PERIOD", field=["periodEnd"])
    if contract.status == "DRAFT":
        raise Conflict("a DRAFT contract has nothing to pay", code="CONTRACT_NOT_ACTIVE", field=["contractId"])
    if contract.status == "SUSPENDED":
        raise Conflict("the contract is suspended: no payouts until the suspension is lifted",
                       code="CONTRACT_SUSPENDED", field=["contractId"])
    if contract.ended_at is not None and period_start > contract.ended_at.date():
        raise Conflict(f"the contract ended on {contract.ended_at.date()}, before the period",
                       code="CONTRACT_ENDED", field=["periodStart"])
    if period_start > contract.end_date or period_end < contract.start_date:
        raise ValidationError("the period is outside the contract's term", code="PERIOD_OUTSIDE_TERM",
                              field=["periodStart"])


def _check_period(s: Session, contract: OutcomeContract, period_start: date, period_end: date) -> None:
    """A scheduled contract pays exactly its scheduled periods; an unscheduled one a period that
    equals an earlier payout's (a supplementary payout) or overlaps none (PAYOUTS.md §6)."""
    if contract.payment_frequency is not None:
        if not any(p.start == period_start and p.end == period_end for p in schedule.of(contract)):
            raise ValidationError("the period is not one of the contract's scheduled periods (see Contract.schedule)",
                                  code="PERIOD_NOT_IN_SCHEDULE", field=["periodStart"])
        return
    clash = s.execute(select(PayoutCalculation.period_start, PayoutCalculation.period_end).where(
        PayoutCalculation.contract_id == contract.id, PayoutCalculation.status.in_(("CALCULATED", "POSTED")),
        PayoutCalculation.period_start <= period_end, PayoutCalculation.period_end >= period_start,
        ~and_(PayoutCalculation.period_start == period_start, PayoutCalculation.period_end == period_end)).limit(1)).first()
    if clash is not None:
        raise Conflict(f"the period overlaps the payout period {clash[0]}..{clash[1]}: use exactly that period for a "
                       "supplementary payout, or a period that overlaps none", code="PERIOD_OVERLAPS",
                       field=["periodStart"])


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector paused while a payout's inputs are read and calculated.

    A large payout allocates a few hundred thousand long-lived objects (inputs, working
    records, items), and the collector walks all of them again and again as they pile up:
    about a third of the engine's time on 100 000 items (ops/bench/payout.py). None of them
    form cycles, so reference counting frees them as before. The collector is switched back
    on only if it was on when this began, so an application that turned it off keeps it off
    (and of two calculations at once in two threads, the first to finish turns it back on).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def calculate_payout(uow: UnitOfWork, *, actor: Actor, contract_id: int, period_start: date,
                     period_end: date) -> PayoutCalculation:
    """A CALCULATED payout for the period; an unapproved one for the same period is superseded."""
    require_role(actor, "FUND_MANAGER")
    s = uow.session
    journal.lock(uow)  # nothing is posted between reading what was paid and recording this
    contract = get_contract(uow, contract_id, for_update=True)
    _check_payable(contract, period_start, period_end)
    _check_period(s, contract, period_start, period_end)
    cur = contract.currency
    posted_before = s.execute(select(func.count()).select_from(_posted(contract.id).subquery())).scalar_one()
    payout = PayoutCalculation(
        contract_id=contract.id, period_start=period_start, period_end=period_end, status="CALCULATED",
        currency=cur, posted_before=posted_before, calculated_by=actor.name)
    inputs_recorded: Callable[[], None] = lambda: None  # noqa: E731

    def record_inputs(canonical: bytes, inputs_hash: str) -> None:
        # The payout's row, then its recorded inputs in their own append-only row (migration
        # 0021p, so that superseding, approving or posting the payout never rewrites them), as
        # soon as the engine has the canonical inputs. On PostgreSQL the inputs are sent and not
        # waited for: the server stores them (~11 MB for 100 000 items: parsed, compressed,
        # TOASTed) while the engine applies the caps and this process packs the items. The
        # payout's total is set once known, in the same transaction: no other transaction can
        # see the row before.
        nonlocal inputs_recorded
        payout.terms_version, payout.inputs_hash, payout.total_minor = inputs.terms.version, inputs_hash, 0
        s.add(payout)
        s.flush()
        recorded = canonical.decode("utf-8")
        inputs_recorded = _record_inputs(s, payout.id, recorded)
        set_committed_value(payout, "inputs", recorded)  # as loaded, not read back

    try:
        with _no_cycle_collection():
            inputs = gather_inputs(s, contract, period_start, period_end)
            # the inputs validated once, not twice
            result, canonical = payouts.calculate_with_canonical(inputs, before_caps=record_inputs)
        items = result.items
        blocks = payout_items.pack_blocks(items.kinds, items.metric_codes, items.evidence_ids, items.participant_ids,
                                          items.gross, items.capped, items.net)
    finally:
        inputs_recorded()
    payout.terms_version, payout.total_minor = result.terms_version, _units(result.total, cur)
    # one UPDATE, not the superseded payouts loaded first: each holds its recorded inputs, some
    # megabytes for a large payout
    s.execute(update(PayoutCalculation).where(
        PayoutCalculation.contract_id == contract.id, PayoutCalculation.period_start == period_start,
        PayoutCalculation.period_end == period_end, PayoutCalculation.status == "CALCULATED",
        PayoutCalculation.id != payout.id).values(status="SUPERSEDED", superseded_by_id=payout.id))
    _record_result(s, payout, result, cur, blocks)
    s.flush()
    return payout


def _record_inputs(s: Session, payout_id: int, recorded: str) -> Callable[[], None]:
    """Write a payout's canonical inputs to payout_inputs; returns what waits for the write.

    On PostgreSQL the INSERT is sent in pipeline mode, in full, and not waited for: the
    server's work on it (for 11 MB: parsing, lz4, TOAST) overlaps this process's until the
    returned function is called, which reads its result (raising any error). No other
    statement may use the session in between. On SQLite it is written at once."""
    conn = s.connection()
    if conn.dialect.name != "postgresql":
        conn.execute(insert(PayoutRecordedInputs.__table__), [{"payout_id": payout_id, "inputs": recorded}])
        return lambda: None
    from psycopg.generators import send

    sync_pending(conn)  # a group commit batch's postings before it, sent first
    driver = conn.connection.driver_connection
    pipeline = driver.pipeline()
    pipeline.__enter__()
    try:
        cursor = driver.cursor()
        # (a text parameter: as bytes in binary format the server spent 5 ms more on 11 MB)
        cursor.execute("INSERT INTO payout_inputs (payout_id, inputs) VALUES (%s, %s)", (payout_id, recorded),
                       prepare=False)
        driver.wait(send(driver.pgconn))  # the whole message to the server; no result read
    except BaseException as exc:
        pipeline.__exit__(type(exc), exc, exc.__traceback__)
        raise

    def wait() -> None:
        try:
            pipeline.__exit__(None, None, None)  # a Sync, then the INSERT's result
        finally:
            cursor.close()

    return wait


def _record_result(s: Session, payout: PayoutCalculation, result: payouts.PayoutResult, cur: str,
                   blocks: list | None = None) -> None:
    u = lambda d: _units(d, cur)  # noqa: E731
    lines = [PayoutLine(payout_id=payout.id, position=i, metric_code=line.metric_code, kind=line.kind,
                        quantity=line.quantity, unit_price_minor=u(line.unit_price), gross_minor=u(line.gross),
                        capped_minor=u(line.capped), net_minor=u(line.net),
                        caps=";".join(f"{name}={amt}" for name, amt in line.caps))
             for i, line in enumerate(result.lines)]
    shares = [PayoutShare(payout_id=payout.id, position=i, party_id=int(share.party_id), amount_minor=u(share.amount))
              for i, share in enumerate(result.shares)]
    s.add_all(lines + shares)
    # a payout can have 100 000 items: the engine keeps them as columns of plain ints and strs
    # (payouts.PayoutItems), which go to the database as they are in a few packed block rows
    # (ledger/payout_items.py): never an ORM object, a dict or a Decimal per item
    exp = m.exponent(cur)
    measured = [(kind, x.measurement_id, x.metric_code, int(x.gross.scaleb(exp)), int(x.capped.scaleb(exp)),
                 int(x.net.scaleb(exp)))
                for kind, group in (("OUTCOME", result.measurement_items), ("ADJUSTMENT", result.adjustment_items))
                for x in group]
    s.flush()
    # the payout's lines and shares are the rows just written, in position order: set as
    # loaded, not read back
    set_committed_value(payout, "lines", lines)
    set_committed_value(payout, "shares", shares)
    items = result.items
    payout_items.write(s, payout.id, items.kinds, items.evidence_ids, items.participant_ids, items.metric_codes,
                       items.gross, items.capped, items.net, measured, blocks=blocks)


def get_payout(uow_or_session, payout_id: int, *, for_update: bool = False) -> PayoutCalculation:
    s = getattr(uow_or_session, "session", uow_or_session)
    stmt = select(PayoutCalculation).where(PayoutCalculation.id == payout_id)
    if for_update:
        stmt = stmt.with_for_update()
    payout = s.execute(stmt).scalar_one_or_none()
    if payout is None:
        raise NotFound(f"payout {payout_id} does not exist", code="UNKNOWN_PAYOUT", field=["payoutId"])
    return payout


def approve_payout(uow: UnitOfWork, *, actor: Actor, payout_id: int) -> PayoutCalculation:
    """Four eyes: a second fund manager approves, and the payout is POSTED to the ledger at once.

    One balanced transaction books each payer's outcome cost and its obligation to the
    provider (or, for a negative share, the provider's obligation back), and draws the fund's
    commitment down by the fund's share.
    """
    require_role(actor, "FUND_MANAGER")
    s = uow.session
    journal.lock(uow)
    payout = get_payout(uow, payout_id, for_update=True)
    if payout.status == "SUPERSEDED":
        raise Conflict("this calculation was superseded by a newer one", code="PAYOUT_SUPERSEDED", field=["payoutId"])
    if payout.status != "CALCULATED":
        raise Conflict(f"the payout is already {payout.status}", code="ALREADY_POSTED", field=["payoutId"])
    if payout.calculated_by == actor.name:
        raise Conflict("the person who calculated a payout cannot approve it", code="FOUR_EYES_REQUIRED",
                       field=["payoutId"])
    contract = get_contract(uow, payout.contract_id, for_update=True)
    _check_payable(contract, payout.period_start, payout.period_end)
    posted_now = s.execute(select(func.count()).select_from(_posted(contract.id).subquery())).scalar_one()
    if posted_now != payout.posted_before:
        raise Conflict("another payout of this contract was posted since; calculate again", code="STALE_PAYOUT",
                       field=["payoutId"])
    # What is approved must be what the database holds now: terms amended, evidence decided or
    # invalidated, measurements corrected or payouts reversed since the calculation all change
    # the inputs, and so their hash (PAYOUTS.md §9).
    if payouts.inputs_hash(gather_inputs(s, contract, payout.period_start, payout.period_end)) != payout.inputs_hash:
        raise Conflict("the terms, evidence, measurements or amounts paid before changed since this payout was "
                       "calculated; calculate it again", code="STALE_PAYOUT", field=["payoutId"])
    cur = contract.currency
    fund = get_fund(uow, contract.fund_id)
    provider = contract.provider_id
    legs: list[tuple] = []
    fund_share = 0
    for share in payout.shares:
        a = share.amount_minor
        if a == 0:
            continue
        payer = share.party_id
        tag = fund_of(uow, contract, payer)
        legs.append((chart.account(uow, chart.OUTCOME_COST, payer, cur, contract_id=contract.id, fund_id=tag), a))
        legs.append((chart.account(uow, chart.OUTCOME_REVENUE, provider, cur, contract_id=contract.id), -a))
        legs += obligation_legs(uow, contract, payer, provider, a) if a > 0 else \
            obligation_legs(uow, contract, provider, payer, -a)
        if payer == fund.manager_id:
            fund_share += a
    # each payer's commitment is drawn down by its share, never below zero (ledger/commitments.py)
    drawn = commitments.legs(uow, contract, fund, terms_in_force(s, contract.id),
                             paying_now={x.party_id: x.amount_minor for x in payout.shares})
    uncommitted = fund_share + commitments.fund_delta(fund, drawn)
    if uncommitted > 0 and uncommitted > chart.fund_position(s, fund.id).available:
        raise Conflict("the fund's share of this payout is more than its commitment and its available capital",
                       code="INSUFFICIENT_FUND_CAPITAL", field=["payoutId"])
    legs += drawn
    if legs:
        tx = journal.post(
            uow, actor=actor.label, kind="PAYOUT", effective_date=payout.period_end, contract_id=contract.id,
            description=f"Payout {payout.id} of contract {contract.id} for {payout.period_start}..{payout.period_end} "
                        f"(inputs {payout.inputs_hash[:16]})",
            postings=[journal.Posting(acc.id, m.from_minor(units, cur)) for acc, units in legs])
        payout.transaction_sequence = tx.sequence
    payout.status, payout.approved_by, payout.approved_at = "POSTED", actor.name, utcnow()
    s.flush()
    return payout


@dataclass(frozen=True)
class Recomputation:
    matches: bool
    inputs_hash: str
    total_minor: int
    differences: tuple[str, ...]


def recompute(s: Session, payout: PayoutCalculation) -> Recomputation:
    """Run the engine again on the recorded inputs and compare every figure with what was stored."""
    inputs = payouts.inputs_from_canonical(payout.inputs)
    result = payouts.calculate(inputs)
    cur = payout.currency
    u = lambda d: _units(d, cur)  # noqa: E731
    diffs = []
    if result.inputs_hash != payout.inputs_hash:
        diffs.append("inputs hash")
    if payouts.canonical_inputs(inputs).decode("utf-8") != payout.inputs:
        diffs.append("canonical inputs")
    stored_lines = [(x.metric_code, x.kind, x.quantity, x.unit_price_minor, x.gross_minor, x.capped_minor, x.net_minor)
                    for x in payout.lines]
    new_lines = [(x.metric_code, x.kind, x.quantity, u(x.unit_price), u(x.gross), u(x.capped), u(x.net))
                 for x in result.lines]
    if stored_lines != new_lines:
        diffs.append("lines")
    if [(x.party_id, x.amount_minor) for x in payout.shares] != [(int(x.party_id), u(x.amount)) for x in result.shares]:
        diffs.append("shares")
    if u(result.total) != payout.total_minor:
        diffs.append("total")
    return Recomputation(not diffs, result.inputs_hash, u(result.total), tuple(diffs))
