"""The payout engine: a pure function from (terms, verified results, what was paid) to lines.

No database, no clock, no I/O. This is the code an auditor re-runs: given the recorded inputs
it must give the same figures to the öre on any machine, so every calculation runs in one
fixed decimal context (`_CTX`) whatever the caller's context is, and no float is ever used.

Amounts
-------
Every amount in the result is a `Decimal` quantized to the currency's minor unit
(``Decimal("12500.00")`` for SEK, ``Decimal("1151")`` for JPY). Money in the inputs
(unit prices, caps, max value, amounts paid before, clawbacks) must fit the minor unit too;
`Decimal` or `int` are accepted, `float` is refused with INVALID_AMOUNT.

How a payout is calculated (PAYOUTS.md is authoritative)
---------------------------------------------------------
* RATE_CARD: each evidence item earns ``unit_price × (1 + supplement(area) / 100)``,
  rounded half-up to the minor unit per item. An area without a supplement earns 0 %.
* BASELINE_IMPROVEMENT: ``quantity = max(0, baseline − observed)`` (LOWER_IS_BETTER) or
  ``max(0, observed − baseline)`` (HIGHER_IS_BETTER); ``gross = quantity × unit_price``.
* COMPARISON_THRESHOLD: ``comparison`` is the measurement's comparison value, else the
  metric's baseline. With ``improvement = comparison − observed`` (mirrored for
  HIGHER_IS_BETTER), ``relative = improvement / comparison``; below the threshold (none means
  0) the metric earns zero, otherwise ``quantity = improvement × cohort_size``.
  The threshold test is done exactly (``improvement ≥ threshold × comparison``), so a
  relative value that does not terminate (1/3) is never decided by rounding.
* Several measurements of one metric in a period: each measurement is its own contribution
  (its own quantity and gross, rounded half-up), and the metric's line sums them. A
  measurement's own period must lie within the payout period (MEASUREMENT_OUTSIDE_PERIOD).
  Two measurements of one metric whose periods overlap are refused
  (OVERLAPPING_MEASUREMENTS): the same outcome would be paid twice, and silently picking
  one (the "latest") would hide a data error. The caller passes only the current
  measurement of each measured period.
* once_only: at most one item per participant and metric is ever paid. Submission already
  refuses a second claim; the engine also enforces it, as a cap (``ONCE_ONLY``): the first
  item in pay order is paid unless the participant already has a positive net amount for
  the metric (an invalidated and clawed-back item frees it again).

Caps, in this order (each removes from ``net`` and is recorded in ``caps`` as (name, amount)):

1. ``ONCE_ONLY``; ``METRIC_CAP_PER_PARTICIPANT`` (metric cap_per_participant, counting what
   was paid before for the participant and metric); ``PARTICIPANT_CAP`` (contract
   participant_cap across all metrics, counting what was paid before for the participant).
   These apply to rate-card items only: measured metrics are cohort results with no
   participant.
2. ``METRIC_CAP_PER_PERIOD``: the metric's cap for this payout period.
3. ``METRIC_CAP_TOTAL``: the metric's cap over the contract, counting what was paid before.
4. ``MAX_VALUE``: the contract's maximum value, counting what was paid before.

"What was paid before" is `PaidBefore` minus the clawbacks in this payout: a clawback
reverses a payment, so the room it frees can be used again, and after posting no cap is
exceeded by the contract's net position. A cap already exceeded (a lowered cap in an
amendment) leaves zero room; it never claws anything back by itself.

Where a cap binds, the things it covers are paid in a fixed order: evidence items by
(achieved_on, evidence_id); measurements by (period_end, measurement_id); where both meet
(cap_per_period, cap_total, max_value cover one metric or the whole contract), by date, then
evidence before measurement on the same date, then id. The result never depends on the order
rows come from the database.

Clawback: each invalidated item gives a CLAWBACK item for exactly minus its amount; the
clawbacks of one metric make one CLAWBACK line with ``quantity = −(number of items)``,
``unit_price`` = the metric's base unit price (0 if the metric is no longer in the terms),
``gross = net = −sum``, ``capped = 0``. The payout total is the sum of line nets and may
be negative; its split then gives negative shares that sum exactly to it.

Adjustments (PAYOUTS.md §9): a paid measurement since corrected or voided gives one
ADJUSTMENT line per metric: its current version's amount (capped like any outcome, with the
replaced payment freed from "paid before" as a clawback's is) less what was paid for it;
``quantity`` is the current versions' quantity (0 when voided). The replaced measurement
gets an adjustment item of minus what it was paid. Inputs carry ``adjustments`` in the
canonical form only when there are any, so earlier recorded inputs hash as before.

Split: the payer shares (in the order given, which decides ties) split the total in minor
units by the largest-remainder method (`ledger.money.split_largest_remainder`).

Canonical inputs (what `inputs_hash` hashes)
--------------------------------------------
``canonical_inputs`` is UTF-8 JSON with sorted keys and no whitespace
(``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``) of::

    {"schema": "utfall/payout-inputs/1",
     "contract_id": str, "period_start": "YYYY-MM-DD", "period_end": "YYYY-MM-DD",
     "terms": {"version": int, "currency": str, "max_value": M, "participant_cap": M|null,
               "payer_shares": [{"party_id": str, "percent": D}, ...]   # order given
               "metrics": [{"code", "kind", "direction", "unit_price": M, "baseline": D|null,
                            "threshold": D|null, "cap_per_participant": M|null,
                            "cap_per_period": M|null, "cap_total": M|null,
                            "once_only": bool,
                            "area_supplements": [[area, D], ...]   # sorted by area
                           }, ...]},                                # sorted by code
     "evidence": [{"evidence_id", "participant_id", "metric_code", "achieved_on", "area"}],
                                                                    # sorted by evidence_id
     "measurements": [{"measurement_id", "metric_code", "period_start", "period_end",
                       "observed": D, "comparison": D|null, "cohort_size": int|null}],
                                                                    # sorted by measurement_id
     "paid_before": {"total": M,
                     "per_metric": [[code, M]], "per_participant": [[participant_id, M]],
                     "per_participant_metric": [[participant_id, code, M]]},
                                                      # sorted by key, zero amounts left out
     "clawbacks": [{"evidence_id", "participant_id", "metric_code", "amount": M}]}
                                                                    # sorted by evidence_id

M is money as a plain string with exactly the currency's minor-unit decimals ("12500.00");
D is any other decimal as a plain string without exponent or trailing zeros ("15", "0.1",
"3650"); ids and counts are JSON integers. So "15" and "15.00" percent, or rows in any order,
give the same bytes. ``inputs_hash`` is the lowercase hex SHA-256 of those bytes. Payer share
order is kept because it decides ties in the split.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Context, Decimal, DivisionByZero, InvalidOperation, Overflow, localcontext
from json.encoder import encode_basestring
from operator import add, attrgetter, le, lt, sub
from typing import Any

from ledger.errors import ValidationError
from ledger.money import currency as _currency
from ledger.money import exponent, quantize, split_largest_remainder

__all__ = [
    "RATE_CARD", "BASELINE_IMPROVEMENT", "COMPARISON_THRESHOLD", "METRIC_KINDS",
    "HIGHER_IS_BETTER", "LOWER_IS_BETTER", "DIRECTIONS", "OUTCOME", "CLAWBACK",
    "ONCE_ONLY", "METRIC_CAP_PER_PARTICIPANT", "PARTICIPANT_CAP", "METRIC_CAP_PER_PERIOD",
    "METRIC_CAP_TOTAL", "MAX_VALUE", "PAYER_CAP", "CAP_ORDER", "payer_cap_total", "CANONICAL_SCHEMA",
    "MetricTerms", "PayerShare", "Terms", "EvidenceItem", "Measurement", "PaidBefore",
    "Clawback", "PayoutInputs", "PayoutLine", "PayoutItem", "MeasurementItem", "PayerAmount",
    "PayoutResult", "calculate", "validate", "canonical_inputs", "inputs_hash", "split_total",
    "inputs_from_canonical", "ADJUSTMENT", "MeasurementAdjustment", "calculate_with_canonical", "calculate_decimal",
    "PayoutItems", "EvidenceColumns",
]

RATE_CARD = "RATE_CARD"
BASELINE_IMPROVEMENT = "BASELINE_IMPROVEMENT"
COMPARISON_THRESHOLD = "COMPARISON_THRESHOLD"
METRIC_KINDS = (RATE_CARD, BASELINE_IMPROVEMENT, COMPARISON_THRESHOLD)
HIGHER_IS_BETTER = "HIGHER_IS_BETTER"
LOWER_IS_BETTER = "LOWER_IS_BETTER"
DIRECTIONS = (HIGHER_IS_BETTER, LOWER_IS_BETTER)
OUTCOME = "OUTCOME"
CLAWBACK = "CLAWBACK"
ADJUSTMENT = "ADJUSTMENT"

ONCE_ONLY = "ONCE_ONLY"
METRIC_CAP_PER_PARTICIPANT = "METRIC_CAP_PER_PARTICIPANT"
PARTICIPANT_CAP = "PARTICIPANT_CAP"
METRIC_CAP_PER_PERIOD = "METRIC_CAP_PER_PERIOD"
METRIC_CAP_TOTAL = "METRIC_CAP_TOTAL"
MAX_VALUE = "MAX_VALUE"
PAYER_CAP = "PAYER_CAP"
CAP_ORDER = (ONCE_ONLY, METRIC_CAP_PER_PARTICIPANT, PARTICIPANT_CAP, METRIC_CAP_PER_PERIOD, METRIC_CAP_TOTAL, MAX_VALUE,
             PAYER_CAP)

CANONICAL_SCHEMA = "utfall/payout-inputs/1"
# the caps over many participants, applied after each participant's own caps
_LATER_CAPS = frozenset((METRIC_CAP_PER_PERIOD, METRIC_CAP_TOTAL, MAX_VALUE, PAYER_CAP))

# One context for every figure, so the caller's (or an auditor's) decimal settings never
# change a result. 100 digits is far beyond any amount the input limits below let through.
_CTX = Context(prec=100, rounding=ROUND_HALF_UP, Emax=999_999, Emin=-999_999,
               traps=[InvalidOperation, DivisionByZero, Overflow])
# Bounds on input numbers keep every product exact within _CTX and refuse absurd values
# ("1E+999") before they can make quantize() fail deep inside the calculation.
_MAX_MAGNITUDE = Decimal(10) ** 30
_MIN_EXPONENT = -30

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)


# ---------------------------------------------------------------------------------------
# Inputs


def _tuple(obj: Any, name: str) -> None:
    # Callers often hold lists; freezing them here keeps the values immutable and hashable.
    value = getattr(obj, name)
    if not isinstance(value, tuple):
        object.__setattr__(obj, name, tuple(value))


@dataclass(frozen=True)
class MetricTerms:
    """One metric of the terms: what is paid for, at what price, under which caps."""

    code: str
    kind: str
    direction: str
    unit_price: Decimal
    baseline: Decimal | None = None
    threshold: Decimal | None = None
    cap_per_participant: Decimal | None = None
    cap_per_period: Decimal | None = None
    cap_total: Decimal | None = None
    once_only: bool = False
    area_supplements: tuple[tuple[str, Decimal], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.area_supplements, Mapping):
            object.__setattr__(self, "area_supplements", tuple(self.area_supplements.items()))
        object.__setattr__(self, "area_supplements", tuple(tuple(p) for p in self.area_supplements))


@dataclass(frozen=True)
class PayerShare:
    """A payer's percentage of every payout (e.g. Decimal("50")), and the most it pays over the contract."""

    party_id: str
    percent: Decimal
    max_amount: Decimal | None = None


@dataclass(frozen=True)
class Terms:
    """The contract terms version in force on the period's end."""

    version: int
    currency: str
    max_value: Decimal
    participant_cap: Decimal | None
    payer_shares: tuple[PayerShare, ...]
    metrics: tuple[MetricTerms, ...]

    def __post_init__(self) -> None:
        _tuple(self, "payer_shares")
        _tuple(self, "metrics")


@dataclass(frozen=True, slots=True)  # 100 000 of them in a large payout
class EvidenceItem:
    """A VERIFIED, not yet paid rate-card claim achieved in the period."""

    evidence_id: int
    participant_id: int
    metric_code: str
    achieved_on: date
    area: str | None = None
    # PAYOUTS.md §7: the item's price (unit price with the area supplement, rounded) under the terms
    # version in force on achieved_on, when that is not the period's version; None: the period's terms
    price: Decimal | None = None


class _Columns(Sequence):
    """Rows kept as columns (one list per field), read as a tuple of row objects made on demand
    by `_item`: a large payout has 100 000 rows, and its hot paths read the columns instead.
    Equal to any sequence of the same row objects."""

    __slots__ = ()

    def __len__(self) -> int:
        raise NotImplementedError

    def _item(self, i: int) -> Any:
        raise NotImplementedError

    def __getitem__(self, i):
        if isinstance(i, slice):
            return tuple(self._item(j) for j in range(*i.indices(len(self))))
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"{type(self).__name__} index out of range")
        return self._item(i)

    def __iter__(self):
        return map(self._item, range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"


class EvidenceColumns(_Columns):
    """Evidence items as five columns (ids, participants, metric codes, days, areas), none with
    a price of its own, read as a tuple of `EvidenceItem`. A large payout has 100 000 of them:
    `ledger.calculations.gather_inputs` streams them from the database cursor into these
    columns, and the engine validates, hashes and calculates them from the columns, without an
    object per item. Equal to any sequence of the same `EvidenceItem`s."""

    __slots__ = ("evidence_ids", "participant_ids", "metric_codes", "achieved_on", "areas")

    def __init__(self, evidence_ids: list[int], participant_ids: list[int], metric_codes: list[str],
                 achieved_on: list[date], areas: list[str | None]):
        if not len(evidence_ids) == len(participant_ids) == len(metric_codes) == len(achieved_on) == len(areas):
            raise _fail("evidence columns differ in length", "INVALID_INPUT", "evidence")
        self.evidence_ids, self.participant_ids, self.metric_codes, self.achieved_on, self.areas = (
            evidence_ids, participant_ids, metric_codes, achieved_on, areas)

    def __len__(self) -> int:
        return len(self.evidence_ids)

    def _item(self, i: int) -> EvidenceItem:
        return EvidenceItem(self.evidence_ids[i], self.participant_ids[i], self.metric_codes[i], self.achieved_on[i],
                            self.areas[i])

    def _normal(self, start: date, end: date, rate_codes: set[str]) -> tuple[EvidenceColumns, tuple | None] | None:
        """These columns sorted by evidence id, and their `_row_classes` (None if the rows had to
        be sorted), if every row is the usual valid one (what `_normalise` accepts in one test
        per row); None if any is not, and the rows must go through the checks that say what is
        wrong."""
        ids, days, areas = self.evidence_ids, self.achieved_on, self.areas
        if not ids:
            return self, None
        try:  # a few hundred distinct days, codes and areas: their values are checked once each
            # (read from the rows' classes, which the engine needs anyway: one pass over the rows
            # in C instead of three)
            classes = _row_classes(days, self.metric_codes, areas)
        except TypeError:  # an unhashable value: the row checks say what is wrong with it
            return None
        kinds = classes[0].keys()
        distinct_days, distinct_codes, distinct_areas = ({key[i] for key in kinds} for i in range(3))
        if not (set(map(type, ids)) == {int} and set(map(type, self.participant_ids)) == {int}
                and set(map(type, self.metric_codes)) == {str} and distinct_codes <= rate_codes
                and all(type(d) is date for d in distinct_days)
                and start <= min(distinct_days) and max(distinct_days) <= end
                and all(a is None or (type(a) is str and a and "\x00" not in a) for a in distinct_areas)):
            return None
        # ids each greater than the one before are sorted and distinct: one pass in C (the usual
        # case, rows streamed in id order); otherwise distinct is checked and the rows sorted
        if all(map(lt, ids, itertools.islice(ids, 1, None))):
            return self, classes
        if len(set(ids)) != len(ids):
            return None
        by_id = sorted(range(len(ids)), key=ids.__getitem__)
        return EvidenceColumns(*([column[i] for i in by_id] for column in
                                 (ids, self.participant_ids, self.metric_codes, days, areas))), None


@dataclass(frozen=True)
class Measurement:
    """A measured result of a BASELINE_IMPROVEMENT or COMPARISON_THRESHOLD metric."""

    measurement_id: int
    metric_code: str
    period_start: date
    period_end: date
    observed: Decimal
    comparison: Decimal | None = None
    cohort_size: int | None = None
    # the metric's unit price under the version in force on period_end, when not the payout period's
    unit_price: Decimal | None = None


def _pairs(value: Any) -> tuple:
    if isinstance(value, Mapping):
        return tuple((*k, v) if isinstance(k, tuple) else (k, v) for k, v in value.items())
    return tuple(tuple(row) for row in value)


@dataclass(frozen=True)
class PaidBefore:
    """Net amounts of POSTED payouts of the contract before this one (after their clawbacks).

    Built straight from SQL aggregates over earlier payout items and lines: each field takes
    a mapping or rows, e.g. ``per_participant_metric={(participant_id, metric_code): amount}``
    or ``[(participant_id, metric_code, amount), ...]``; ``per_metric={code: amount}``;
    ``per_participant={participant_id: amount}``. Keys left out mean zero; row order never
    matters. `from_results` builds it from earlier `PayoutResult`s.
    """

    total: Decimal = _ZERO
    per_metric: tuple[tuple[str, Decimal], ...] = ()
    per_participant: tuple[tuple[int, Decimal], ...] = ()
    per_participant_metric: tuple[tuple[int, str, Decimal], ...] = ()
    # what each payer has paid on the contract, for payers with a maxAmount (PAYER_CAP)
    per_payer: tuple[tuple[str, Decimal], ...] = ()
    # what earlier payouts of this same period paid per metric (supplementary payouts, §6)
    per_metric_in_period: tuple[tuple[str, Decimal], ...] = ()

    def __post_init__(self) -> None:
        for name in ("per_metric", "per_participant", "per_participant_metric", "per_payer", "per_metric_in_period"):
            object.__setattr__(self, name, _pairs(getattr(self, name)))

    @classmethod
    def from_results(cls, results: Iterable[PayoutResult]) -> PaidBefore:
        """What the given (posted) payouts paid, net of their clawbacks."""
        total = _ZERO
        per_metric: dict[str, Decimal] = defaultdict(Decimal)
        per_participant: dict[int, Decimal] = defaultdict(Decimal)
        per_pair: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
        for result in results:
            total += result.total
            for line in result.lines:
                per_metric[line.metric_code] += line.net
            for item in result.items:
                per_participant[item.participant_id] += item.net
                per_pair[(item.participant_id, item.metric_code)] += item.net
        return cls(total=total, per_metric=dict(per_metric), per_participant=dict(per_participant),
                   per_participant_metric=dict(per_pair))


@dataclass(frozen=True)
class Clawback:
    """An item paid earlier and now INVALIDATED: `amount` (>= 0) is what was paid for it."""

    evidence_id: int
    participant_id: int
    metric_code: str
    amount: Decimal
    # the price at which the item was paid (shown on the CLAWBACK line); None in inputs recorded before
    unit_price: Decimal | None = None


@dataclass(frozen=True)
class MeasurementAdjustment:
    """A paid measurement since corrected or voided (PAYOUTS.md §9).

    `paid` (>= 0) is what was paid for the replaced measurement; `current` its corrected
    version, or None when it was voided. The payout carries one ADJUSTMENT line per metric:
    the current version's amount, under the caps like any outcome, less what was paid (so
    negative is a clawback). Like a clawback, the payment it replaces no longer counts as
    paid before for the caps.
    """

    replaced_id: int
    metric_code: str
    paid: Decimal
    current: Measurement | None = None


@dataclass(frozen=True)
class PayoutInputs:
    """Everything a payout depends on; recorded so the payout can be recomputed."""

    contract_id: str
    period_start: date
    period_end: date
    terms: Terms
    evidence: tuple[EvidenceItem, ...] | EvidenceColumns = ()  # any sequence of items is made a tuple
    measurements: tuple[Measurement, ...] = ()
    paid_before: PaidBefore = field(default_factory=PaidBefore)
    clawbacks: tuple[Clawback, ...] = ()
    adjustments: tuple[MeasurementAdjustment, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.evidence, EvidenceColumns):
            _tuple(self, "evidence")
        _tuple(self, "measurements")
        _tuple(self, "clawbacks")
        _tuple(self, "adjustments")


# ---------------------------------------------------------------------------------------
# Result


@dataclass(frozen=True)
class PayoutLine:
    """One line per metric and kind: OUTCOME (gross − capped = net >= 0) or CLAWBACK (< 0)."""

    metric_code: str
    kind: str
    quantity: Decimal
    unit_price: Decimal
    gross: Decimal
    capped: Decimal
    net: Decimal
    caps: tuple[tuple[str, Decimal], ...] = ()


@dataclass(frozen=True, slots=True)  # 100 000 of them in a large payout
class PayoutItem:
    """What one evidence item earned (OUTCOME) or gave back (CLAWBACK) in this payout."""

    evidence_id: int
    participant_id: int
    metric_code: str
    kind: str
    gross: Decimal
    capped: Decimal
    net: Decimal
    caps: tuple[tuple[str, Decimal], ...] = ()


@dataclass(frozen=True)
class MeasurementItem:
    """What one measurement earned; `relative` only for COMPARISON_THRESHOLD."""

    measurement_id: int
    metric_code: str
    quantity: Decimal
    relative: Decimal | None
    gross: Decimal
    capped: Decimal
    net: Decimal
    caps: tuple[tuple[str, Decimal], ...] = ()


@dataclass(frozen=True)
class PayerAmount:
    """A payer's part of the payout total (negative when the provider owes the payers)."""

    party_id: str
    amount: Decimal


@dataclass(frozen=True)
class PayoutResult:
    """The calculated payout: lines per metric, items per evidence, split per payer."""

    contract_id: str
    period_start: date
    period_end: date
    terms_version: int
    currency: str
    lines: tuple[PayoutLine, ...]
    items: PayoutItems  # read as a tuple of PayoutItem
    measurement_items: tuple[MeasurementItem, ...]
    shares: tuple[PayerAmount, ...]
    total: Decimal
    inputs_hash: str
    # what each replaced measurement gives back (negative); the current versions' earnings
    # are in measurement_items
    adjustment_items: tuple[MeasurementItem, ...] = ()


# ---------------------------------------------------------------------------------------
# Validation and normalisation


def _fail(message: str, code: str, *fields: str) -> ValidationError:
    return ValidationError(message, code=code, field=list(fields) or None)


def _number(value: Any, what: str, *, field_: str) -> Decimal:
    if isinstance(value, (bool, float)) or not isinstance(value, (Decimal, int)):
        raise _fail(f"{what} must be a Decimal, not {type(value).__name__}", "INVALID_AMOUNT", field_)
    d = Decimal(value)
    if not d.is_finite():
        raise _fail(f"{what} is not a finite number", "INVALID_AMOUNT", field_)
    if d != 0 and (abs(d) >= _MAX_MAGNITUDE or d.as_tuple().exponent < _MIN_EXPONENT):
        raise _fail(f"{what} {d} is out of range", "INVALID_AMOUNT", field_)
    return d + 0  # -0 becomes 0, so it prints and hashes like 0


def _money(value: Any, code: str, what: str, *, field_: str, negative: bool = False) -> Decimal:
    d = _number(value, what, field_=field_)
    q = quantize(d, code)
    if q != d:
        raise _fail(
            f"{what} {d} has more decimals than {code} allows ({exponent(code)})",
            "TOO_MANY_DECIMALS", field_,
        )
    if d < 0 and not negative:
        raise _fail(f"{what} must not be negative", "INVALID_AMOUNT", field_)
    return q + 0


def _opt_money(value: Any, code: str, what: str, *, field_: str) -> Decimal | None:
    return None if value is None else _money(value, code, what, field_=field_)


def _plain_number(value: Any, what: str, *, field_: str) -> Decimal:
    # Non-money decimals are compared by value, so "15" and "15.00" must be the same input.
    d = _number(value, what, field_=field_)
    if not d:
        return _ZERO
    d = d.normalize()
    # normalize() turns 100 into 1E+2; keep whole numbers whole so results print plainly.
    return d.quantize(Decimal(1)) if d.as_tuple().exponent > 0 else d


def _opt_plain(value: Any, what: str, *, field_: str) -> Decimal | None:
    return None if value is None else _plain_number(value, what, field_=field_)


def _text(value: Any, what: str, *, field_: str, code: str = "INVALID_INPUT") -> str:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise _fail(f"{what} must be a non-empty string", code, field_)
    return value


def _int_id(value: Any, what: str, *, field_: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"{what} must be an integer", "INVALID_INPUT", field_)
    return value


def _date(value: Any, what: str, *, field_: str) -> date:
    # A datetime would hash with its time of day and compare oddly with dates.
    if isinstance(value, datetime) or not isinstance(value, date):
        raise _fail(f"{what} must be a date", "INVALID_DATE", field_)
    return value


def _metric(m: MetricTerms, code: str) -> MetricTerms:
    f = f"metrics.{m.code}" if isinstance(m.code, str) else "metrics"
    _text(m.code, "metric code", field_=f)
    if m.kind not in METRIC_KINDS:
        raise _fail(f"metric {m.code}: unknown kind {m.kind!r}", "INVALID_METRIC_KIND", f)
    if m.direction not in DIRECTIONS:
        raise _fail(f"metric {m.code}: unknown direction {m.direction!r}", "INVALID_DIRECTION", f)
    if not isinstance(m.once_only, bool):
        raise _fail(f"metric {m.code}: once_only must be a bool", "INVALID_INPUT", f)
    baseline = _opt_plain(m.baseline, f"metric {m.code} baseline", field_=f)
    if m.kind == BASELINE_IMPROVEMENT and baseline is None:
        raise _fail(
            f"metric {m.code} measures improvement over a baseline but has none",
            "MISSING_BASELINE", f,
        )
    threshold = _opt_plain(m.threshold, f"metric {m.code} threshold", field_=f)
    if threshold is not None and threshold < 0:
        raise _fail(f"metric {m.code}: threshold must not be negative", "INVALID_THRESHOLD", f)
    supplements: dict[str, Decimal] = {}
    for pair in m.area_supplements:
        if len(pair) != 2:
            raise _fail(f"metric {m.code}: a supplement is (area, percent)", "INVALID_INPUT", f)
        area = _text(pair[0], "supplement area", field_=f)
        pct = _plain_number(pair[1], f"metric {m.code} supplement for {area}", field_=f)
        if pct < -100:
            raise _fail(
                f"metric {m.code}: a supplement below -100 % would pay a negative amount",
                "INVALID_AMOUNT", f,
            )
        if area in supplements:
            raise _fail(f"metric {m.code}: area {area} has two supplements", "DUPLICATE_SUPPLEMENT", f)
        supplements[area] = pct
    return MetricTerms(
        code=m.code, kind=m.kind, direction=m.direction,
        unit_price=_money(m.unit_price, code, f"metric {m.code} unit price", field_=f),
        baseline=baseline, threshold=threshold,
        cap_per_participant=_opt_money(m.cap_per_participant, code, f"metric {m.code} cap per participant", field_=f),
        cap_per_period=_opt_money(m.cap_per_period, code, f"metric {m.code} cap per period", field_=f),
        cap_total=_opt_money(m.cap_total, code, f"metric {m.code} total cap", field_=f),
        once_only=m.once_only,
        area_supplements=tuple(sorted(supplements.items())),
    )


def _terms(t: Terms) -> Terms:
    if isinstance(t.version, bool) or not isinstance(t.version, int):
        raise _fail("terms version must be an integer", "INVALID_INPUT", "terms", "version")
    code = t.currency
    _currency(code)  # INVALID_CURRENCY for anything that is not ISO 4217 money
    shares = []
    seen_parties: set[str] = set()
    for s in t.payer_shares:
        party = _text(s.party_id, "payer party id", field_="payerShares")
        if party in seen_parties:
            raise _fail(f"payer {party} is listed twice", "DUPLICATE_PAYER", "payerShares")
        seen_parties.add(party)
        pct = _plain_number(s.percent, f"share of {party}", field_="payerShares")
        if pct < 0:
            raise _fail(f"share of {party} is negative", "SHARES_NOT_100", "payerShares")
        cap = _opt_money(s.max_amount, code, f"maximum amount of {party}", field_="payerShares")
        shares.append(PayerShare(party, pct, cap))
    if sum((s.percent for s in shares), _ZERO) != _HUNDRED:
        raise _fail("payer shares must sum to exactly 100", "SHARES_NOT_100", "payerShares")
    metrics: dict[str, MetricTerms] = {}
    for m in t.metrics:
        norm = _metric(m, code)
        if norm.code in metrics:
            raise _fail(f"metric {norm.code} is defined twice", "DUPLICATE_METRIC", "metrics")
        metrics[norm.code] = norm
    return Terms(
        version=t.version, currency=code,
        max_value=_money(t.max_value, code, "maximum contract value", field_="maxValue"),
        participant_cap=_opt_money(t.participant_cap, code, "participant cap", field_="participantCap"),
        payer_shares=tuple(shares),
        metrics=tuple(metrics[c] for c in sorted(metrics)),
    )


def _paid_before(p: PaidBefore, code: str) -> PaidBefore:
    def rows(name: str, key_types: tuple[str, ...]) -> dict:
        out: dict = {}
        for row in getattr(p, name):
            if len(row) != len(key_types) + 1:
                raise _fail(
                    f"paid before {name}: rows are ({', '.join(key_types)}, amount)",
                    "INVALID_INPUT", "paidBefore",
                )
            key = tuple(
                _int_id(k, "participant id", field_="paidBefore") if t == "participant"
                else _text(k, "payer party id" if t == "payer" else "metric code", field_="paidBefore")
                for k, t in zip(row[:-1], key_types)
            )
            if key in out:
                raise _fail(f"paid before {name}: {key} appears twice", "DUPLICATE_PAID_BEFORE", "paidBefore")
            out[key] = _money(row[-1], code, f"amount paid before for {key}", field_="paidBefore")
        # Zero rows say nothing; leaving them out makes "no row" and "0" the same input.
        return {k: v for k, v in sorted(out.items()) if v}

    per_metric = rows("per_metric", ("metric",))
    per_participant = rows("per_participant", ("participant",))
    per_pair = rows("per_participant_metric", ("participant", "metric"))
    return PaidBefore(
        total=_money(p.total, code, "total paid before", field_="paidBefore"),
        per_metric=tuple((k[0], v) for k, v in per_metric.items()),
        per_participant=tuple((k[0], v) for k, v in per_participant.items()),
        per_participant_metric=tuple((*k, v) for k, v in per_pair.items()),
        per_payer=tuple((k[0], v) for k, v in rows("per_payer", ("payer",)).items()),
        per_metric_in_period=tuple((k[0], v) for k, v in rows("per_metric_in_period", ("metric",)).items()),
    )


def _normalise(inputs: PayoutInputs) -> PayoutInputs:
    """Validate every input and return it in one canonical shape: rows sorted, numbers exact."""
    return _normalise_with_classes(inputs)[0]


def _normalise_with_classes(inputs: PayoutInputs) -> tuple[PayoutInputs, tuple[dict, list[int]] | None]:
    """`_normalise(inputs)`, and the normalised evidence columns' `_row_classes` when they were
    made on the way (None otherwise)."""
    with localcontext(_CTX):
        _text(inputs.contract_id, "contract id", field_="contractId")
        start = _date(inputs.period_start, "period start", field_="periodStart")
        end = _date(inputs.period_end, "period end", field_="periodEnd")
        if end < start:
            raise _fail(f"period ends {end} before it starts {start}", "INVALID_PERIOD", "periodEnd")
        terms = _terms(inputs.terms)
        code = terms.currency
        metrics = {m.code: m for m in terms.metrics}

        rate_codes = {c for c, x in metrics.items() if x.kind == RATE_CARD}
        # columns of usual rows are checked a column at a time; any other evidence row by row
        normal = inputs.evidence._normal(start, end, rate_codes) if isinstance(inputs.evidence, EvidenceColumns) \
            else None
        columns, classes = normal if normal is not None else (None, None)
        # Sorted first so that, when several rows are wrong, the same one is reported
        # whatever order they came in.
        by_id = attrgetter("evidence_id")
        if columns is not None:
            evidence = ()
        elif all(type(i) is int for i in map(by_id, inputs.evidence)):
            evidence = sorted(inputs.evidence, key=by_id)
        else:  # the first id that is not an integer is reported
            evidence = sorted(inputs.evidence, key=lambda e: _int_id(e.evidence_id, "evidence id", field_="evidence"))
        seen: set[int] = set()
        norm_evidence = []
        for e in evidence:
            # The usual row (100 000 in a large payout) passes in one test; any other goes through
            # the checks below, which say what is wrong with it.
            area = e.area
            if (e.evidence_id not in seen and type(e.participant_id) is int and type(e.metric_code) is str
                    and e.metric_code in rate_codes and type(e.achieved_on) is date and start <= e.achieved_on <= end
                    and e.price is None and (area is None or (type(area) is str and area and "\x00" not in area))):
                seen.add(e.evidence_id)
                norm_evidence.append(e)
                continue
            f = f"evidence.{e.evidence_id}"
            if e.evidence_id in seen:
                raise _fail(f"evidence {e.evidence_id} is given twice", "DUPLICATE_EVIDENCE", f)
            seen.add(e.evidence_id)
            _int_id(e.participant_id, "participant id", field_=f)
            _text(e.metric_code, "metric code", field_=f, code="UNKNOWN_METRIC")
            metric = metrics.get(e.metric_code)
            if metric is None:
                raise _fail(
                    f"evidence {e.evidence_id} is for metric {e.metric_code}, which the terms do not have",
                    "UNKNOWN_METRIC", f,
                )
            if metric.kind != RATE_CARD:
                raise _fail(
                    f"evidence {e.evidence_id}: {metric.code} is a {metric.kind} metric, paid from measurements",
                    "EVIDENCE_NOT_ALLOWED", f,
                )
            achieved = _date(e.achieved_on, "achieved on", field_=f)
            if not start <= achieved <= end:
                raise _fail(
                    f"evidence {e.evidence_id} was achieved on {achieved}, outside the period",
                    "EVIDENCE_OUTSIDE_PERIOD", f,
                )
            if e.area is not None:
                _text(e.area, "area", field_=f)
            # most items carry no price of their own: the item itself is already its normal form
            norm_evidence.append(e if e.price is None else
                                 replace(e, price=_opt_money(e.price, code, f"price of evidence {e.evidence_id}",
                                                             field_=f)))

        measurements = sorted(
            inputs.measurements, key=lambda m: _int_id(m.measurement_id, "measurement id", field_="measurements")
        )
        seen = set()
        norm_measurements = []
        for m in measurements:
            f = f"measurements.{m.measurement_id}"
            if m.measurement_id in seen:
                raise _fail(f"measurement {m.measurement_id} is given twice", "DUPLICATE_MEASUREMENT", f)
            seen.add(m.measurement_id)
            _text(m.metric_code, "metric code", field_=f, code="UNKNOWN_METRIC")
            metric = metrics.get(m.metric_code)
            if metric is None:
                raise _fail(
                    f"measurement {m.measurement_id} is for metric {m.metric_code}, which the terms do not have",
                    "UNKNOWN_METRIC", f,
                )
            if metric.kind == RATE_CARD:
                raise _fail(
                    f"measurement {m.measurement_id}: {metric.code} is a rate card, paid per evidence item",
                    "MEASUREMENT_NOT_ALLOWED", f,
                )
            m_start = _date(m.period_start, "measurement period start", field_=f)
            m_end = _date(m.period_end, "measurement period end", field_=f)
            if m_end < m_start:
                raise _fail(f"measurement {m.measurement_id} ends before it starts", "INVALID_PERIOD", f)
            if not (start <= m_start and m_end <= end):
                raise _fail(
                    f"measurement {m.measurement_id} ({m_start}..{m_end}) is not within the period",
                    "MEASUREMENT_OUTSIDE_PERIOD", f,
                )
            observed = _plain_number(m.observed, f"measurement {m.measurement_id} observed value", field_=f)
            comparison = _opt_plain(m.comparison, f"measurement {m.measurement_id} comparison value", field_=f)
            cohort = m.cohort_size
            if cohort is not None and (isinstance(cohort, bool) or not isinstance(cohort, int) or cohort < 0):
                raise _fail(
                    f"measurement {m.measurement_id}: cohort size must be a non-negative integer",
                    "INVALID_COHORT_SIZE", f,
                )
            if metric.kind == COMPARISON_THRESHOLD:
                if cohort is None:
                    raise _fail(
                        f"measurement {m.measurement_id} has no cohort size",
                        "MISSING_COHORT_SIZE", f,
                    )
                against = comparison if comparison is not None else metric.baseline
                if against is None:
                    raise _fail(
                        f"measurement {m.measurement_id} has no comparison value and the metric no baseline",
                        "MISSING_COMPARISON", f,
                    )
                if against <= 0:
                    raise _fail(
                        f"measurement {m.measurement_id}: a relative improvement needs a positive comparison value",
                        "INVALID_COMPARISON", f,
                    )
            norm_measurements.append(replace(m, observed=observed, comparison=comparison, unit_price=_opt_money(
                m.unit_price, code, f"unit price of measurement {m.measurement_id}", field_=f)))
        by_metric: dict[str, list[Measurement]] = defaultdict(list)
        for m in norm_measurements:
            by_metric[m.metric_code].append(m)
        for code_, ms in sorted(by_metric.items()):
            ms = sorted(ms, key=lambda m: (m.period_start, m.period_end, m.measurement_id))
            for a, b in zip(ms, ms[1:]):
                if b.period_start <= a.period_end:
                    raise _fail(
                        f"measurements {a.measurement_id} and {b.measurement_id} of {code_} overlap",
                        "OVERLAPPING_MEASUREMENTS", f"measurements.{b.measurement_id}",
                    )

        paid = _paid_before(inputs.paid_before, code)

        clawbacks = sorted(inputs.clawbacks, key=lambda c: _int_id(c.evidence_id, "evidence id", field_="clawbacks"))
        seen = set()
        # (100 000 ids in a large payout: the set only when there is a clawback to test)
        evidence_ids: set[int] = set() if not clawbacks else \
            set(columns.evidence_ids) if columns is not None else {e.evidence_id for e in norm_evidence}
        norm_clawbacks = []
        for c in clawbacks:
            f = f"clawbacks.{c.evidence_id}"
            if c.evidence_id in seen:
                raise _fail(f"evidence {c.evidence_id} is clawed back twice", "DUPLICATE_CLAWBACK", f)
            seen.add(c.evidence_id)
            if c.evidence_id in evidence_ids:
                raise _fail(
                    f"evidence {c.evidence_id} cannot be both paid and clawed back",
                    "CLAWBACK_CONFLICT", f,
                )
            _int_id(c.participant_id, "participant id", field_=f)
            # A metric removed by an amendment can still be clawed back.
            _text(c.metric_code, "metric code", field_=f)
            amount = _money(c.amount, code, f"clawback of evidence {c.evidence_id}", field_=f)
            norm_clawbacks.append(replace(c, amount=amount, unit_price=_opt_money(
                c.unit_price, code, f"price paid for evidence {c.evidence_id}", field_=f)))
        _check_clawbacks_were_paid(norm_clawbacks, paid)

        return PayoutInputs(
            contract_id=inputs.contract_id, period_start=start, period_end=end, terms=terms,
            evidence=columns if columns is not None else tuple(norm_evidence), measurements=tuple(norm_measurements),
            paid_before=paid, clawbacks=tuple(norm_clawbacks),
            adjustments=_adjustments(inputs.adjustments, start, end, metrics, code,
                                     {m.measurement_id for m in norm_measurements}),
        ), classes


def _adjustments(adjustments: Iterable[MeasurementAdjustment], start: date, end: date,
                 metrics: Mapping[str, MetricTerms], code: str, measured_ids: set[int]) -> tuple:
    """Validate measurement adjustments; sorted by the replaced measurement's id."""
    out = []
    seen: set[int] = set()
    for a in sorted(adjustments, key=lambda a: _int_id(a.replaced_id, "measurement id", field_="adjustments")):
        f = f"adjustments.{a.replaced_id}"
        if a.replaced_id in seen or a.replaced_id in measured_ids:
            raise _fail(f"measurement {a.replaced_id} is adjusted twice", "DUPLICATE_MEASUREMENT", f)
        seen.add(a.replaced_id)
        _text(a.metric_code, "metric code", field_=f)
        paid = _money(a.paid, code, f"amount paid for measurement {a.replaced_id}", field_=f)
        current = a.current
        if current is not None:
            cid = _int_id(current.measurement_id, "measurement id", field_=f)
            if cid in measured_ids or cid in seen:
                raise _fail(f"measurement {cid} is given twice", "DUPLICATE_MEASUREMENT", f)
            seen.add(cid)
            metric = metrics.get(current.metric_code)
            if current.metric_code != a.metric_code or metric is None or metric.kind == RATE_CARD:
                raise _fail(f"measurement {cid} is not a measured metric of the terms", "UNKNOWN_METRIC", f)
            m_start = _date(current.period_start, "measurement period start", field_=f)
            m_end = _date(current.period_end, "measurement period end", field_=f)
            if not (start <= m_start <= m_end <= end):
                raise _fail(f"measurement {cid} is not within the period", "MEASUREMENT_OUTSIDE_PERIOD", f)
            observed = _plain_number(current.observed, f"measurement {cid} observed value", field_=f)
            comparison = _opt_plain(current.comparison, f"measurement {cid} comparison value", field_=f)
            if metric.kind == COMPARISON_THRESHOLD:
                against = comparison if comparison is not None else metric.baseline
                cohort = current.cohort_size
                if isinstance(cohort, bool) or not isinstance(cohort, int) or cohort < 0:
                    raise _fail(f"measurement {cid} has no valid cohort size", "MISSING_COHORT_SIZE", f)
                if against is None or against <= 0:
                    raise _fail(f"measurement {cid} needs a positive comparison value", "INVALID_COMPARISON", f)
            current = replace(current, observed=observed, comparison=comparison)
        out.append(MeasurementAdjustment(a.replaced_id, a.metric_code, paid, current))
    return tuple(out)


def _check_clawbacks_were_paid(clawbacks: list[Clawback], paid: PaidBefore) -> None:
    # Giving back more than was paid means the paid-before figures are wrong, and every cap
    # computed from them would be wrong too.
    levels = (
        ("contract", lambda c: (), {(): paid.total}),
        ("metric", lambda c: (c.metric_code,), {(k,): v for k, v in paid.per_metric}),
        ("participant", lambda c: (c.participant_id,), {(k,): v for k, v in paid.per_participant}),
        ("participant and metric", lambda c: (c.participant_id, c.metric_code),
         {(p, m): v for p, m, v in paid.per_participant_metric}),
    )
    for level, key, paid_by_key in levels:
        back: dict[tuple, Decimal] = defaultdict(Decimal)
        for c in clawbacks:
            back[key(c)] += c.amount
        for k, amount in sorted(back.items()):
            if amount > paid_by_key.get(k, _ZERO):
                raise _fail(
                    f"clawbacks of {amount} for {level} {k or ''} exceed what was paid before ({paid_by_key.get(k, _ZERO)})",
                    "CLAWBACK_EXCEEDS_PAID", "clawbacks",
                )


def validate(inputs: PayoutInputs) -> None:
    """Raise ValidationError (with a stable code) if the inputs cannot be calculated."""
    _normalise(inputs)


# ---------------------------------------------------------------------------------------
# Canonical form and hash


def _plain(d: Decimal) -> str:
    return format(d, "f")


def _canonical(n: PayoutInputs, classes: tuple[dict, list[int]] | None = None) -> bytes:
    # `n` is normalised: money already carries exactly the minor-unit decimals and other
    # decimals no trailing zeros, so format(…, "f") is the canonical text of each.
    def opt(d: Decimal | None) -> str | None:
        return None if d is None else _plain(d)

    t = n.terms
    p = n.paid_before
    doc = {
        "schema": CANONICAL_SCHEMA,
        "contract_id": n.contract_id,
        "period_start": n.period_start.isoformat(),
        "period_end": n.period_end.isoformat(),
        "terms": {
            "version": t.version,
            "currency": t.currency,
            "max_value": _plain(t.max_value),
            "participant_cap": opt(t.participant_cap),
            # max_amount and per_payer appear only when used, so inputs recorded before payer caps
            # existed read back to the same bytes
            "payer_shares": [{"party_id": s.party_id, "percent": _plain(s.percent),
                              **({} if s.max_amount is None else {"max_amount": _plain(s.max_amount)})}
                             for s in t.payer_shares],
            "metrics": [
                {
                    "code": m.code, "kind": m.kind, "direction": m.direction,
                    "unit_price": _plain(m.unit_price), "baseline": opt(m.baseline), "threshold": opt(m.threshold),
                    "cap_per_participant": opt(m.cap_per_participant), "cap_per_period": opt(m.cap_per_period),
                    "cap_total": opt(m.cap_total), "once_only": m.once_only,
                    "area_supplements": [[a, _plain(pct)] for a, pct in m.area_supplements],
                }
                for m in t.metrics
            ],
        },
        "evidence": [],  # spliced in below
        "measurements": [
            {"measurement_id": m.measurement_id, "metric_code": m.metric_code,
             "period_start": m.period_start.isoformat(), "period_end": m.period_end.isoformat(),
             "observed": _plain(m.observed), "comparison": opt(m.comparison), "cohort_size": m.cohort_size,
             **({} if m.unit_price is None else {"unit_price": _plain(m.unit_price)})}
            for m in n.measurements
        ],
        "paid_before": {
            "total": _plain(p.total),
            "per_metric": [[k, _plain(v)] for k, v in p.per_metric],
            "per_participant": [[k, _plain(v)] for k, v in p.per_participant],
            "per_participant_metric": [[pid, code, _plain(v)] for pid, code, v in p.per_participant_metric],
            **({"per_payer": [[k, _plain(v)] for k, v in p.per_payer]} if p.per_payer else {}),
            **({"per_metric_in_period": [[k, _plain(v)] for k, v in p.per_metric_in_period]}
               if p.per_metric_in_period else {}),
        },
        "clawbacks": [
            {"evidence_id": c.evidence_id, "participant_id": c.participant_id, "metric_code": c.metric_code,
             "amount": _plain(c.amount), **({} if c.unit_price is None else {"unit_price": _plain(c.unit_price)})}
            for c in n.clawbacks
        ],
    }
    if n.adjustments:  # left out when empty, so inputs recorded before adjustments existed hash as they did
        doc["adjustments"] = [
            {"replaced_id": a.replaced_id, "metric_code": a.metric_code, "paid": _plain(a.paid),
             "current": None if a.current is None else {
                 "measurement_id": a.current.measurement_id, "metric_code": a.current.metric_code,
                 "period_start": a.current.period_start.isoformat(), "period_end": a.current.period_end.isoformat(),
                 "observed": _plain(a.current.observed), "comparison": opt(a.current.comparison),
                 "cohort_size": a.current.cohort_size}}
            for a in n.adjustments
        ]
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    # The evidence rows (100 000 in a large payout) are written straight to text, not as a
    # dict each for json.dumps: the same bytes by construction, keys in sorted order, strings
    # through `encode_basestring` (what json.dumps(ensure_ascii=False) encodes str with), ids
    # exact ints (validated), dates by isoformat. `"evidence":[]` is found only where it is a
    # key: inside an encoded string every `"` is escaped.
    # A few hundred days, areas and metric codes recur over 100 000 rows: each is encoded once.
    days: dict[date, str] = {}
    texts: dict[str | None, str] = {None: "null"}

    def day(d: date) -> str:
        return days.get(d) or days.setdefault(d, d.isoformat())

    def string(v: str | None) -> str:
        return texts.get(v) or texts.setdefault(v, encode_basestring(v))

    ev = n.evidence
    if isinstance(ev, EvidenceColumns):  # no price of their own
        # A row is four pieces: the text up to its evidence id (the same for every row of a day,
        # metric and area: its class, see `_row_classes`, made once per class and starting with
        # the previous row's closing "},"), the id, the text up to its participant id (one per
        # class too) and the participant id. One bytes %-format over all the pieces, the
        # document around them two more, writes the UTF-8 bytes at once: the ids straight from
        # the ints (exact ints, validated: %d writes them as str() does), no literal text to
        # scan in the format, and a large payout's 11 MB written once, not as text, then copied
        # into the document, then encoded.
        first, row_class = classes if classes is not None else _row_classes(ev.achieved_on, ev.metric_codes,
                                                                            ev.areas)
        ahead: dict[int, bytes] = {}
        between: dict[int, bytes] = {}
        # (a few thousand classes, but only a few hundred (day, area) pairs and a few metric codes)
        ahead_of: dict[tuple, bytes] = {}
        between_of: dict[str, bytes] = {}
        for (on, code, area), c in first.items():
            text_ahead = ahead_of.get((on, area))
            if text_ahead is None:
                text_ahead = ahead_of[(on, area)] = ('},{"achieved_on":"%s","area":%s,"evidence_id":'
                                                     % (on.isoformat(), string(area))).encode("utf-8")
            text_between = between_of.get(code)
            if text_between is None:
                text_between = between_of[code] = (',"metric_code":%s,"participant_id":' % string(code)).encode("utf-8")
            ahead[c], between[c] = text_ahead, text_between
        k = len(row_class)
        pieces: list = [None] * (4 * k)
        pieces[0::4] = map(ahead.__getitem__, row_class)
        pieces[1::4] = ev.evidence_ids
        pieces[2::4] = map(between.__getitem__, row_class)
        pieces[3::4] = ev.participant_ids
        if k:
            pieces[0] = pieces[0][2:]  # the first row has no row before it to close
        head, tail = text.split('"evidence":[]', 1)
        arguments = ((head + '"evidence":[').encode("utf-8"), *pieces, (("}]" if k else "]") + tail).encode("utf-8"))
        del pieces  # (a large payout's pieces: 3 MB, freed before the 11 MB are written)
        return (b"%b" + b"%b%d%b%d" * k + b"%b") % arguments
    else:
        evidence = ",".join([_EVIDENCE_JSON % (day(e.achieved_on), string(e.area), e.evidence_id,
                                               string(e.metric_code), e.participant_id,
                                               "" if e.price is None else ',"price":"%s"' % _plain(e.price))
                             for e in ev])
        head, tail = text.split('"evidence":[]', 1)
        document = "".join((head, '"evidence":[', evidence, "]", tail))
    return document.encode("utf-8")


def _row_classes(days: list[date], codes: list[str], areas: list[str | None]) -> tuple[dict, list[int]]:
    """The evidence rows' classes: rows of one day, metric and area are paid the same price, take
    the same place in the pay order and are written alike in the canonical inputs, so that work is
    done once per class (a few thousand) instead of once per row (100 000 in a large payout).
    Returns {(day, metric code, area): class} and each row's class, a class being numbered by the
    position of its first row; made in one pass in C."""
    first: dict = {}
    return first, list(map(first.setdefault, zip(days, codes, areas), itertools.count()))


_EVIDENCE_JSON = '{"achieved_on":"%s","area":%s,"evidence_id":%d,"metric_code":%s,"participant_id":%d%s}'


def canonical_inputs(inputs: PayoutInputs) -> bytes:
    """The canonical bytes of the inputs (see the module docstring); validates them first."""
    return _canonical(_normalise(inputs))


def inputs_hash(inputs: PayoutInputs) -> str:
    """Lowercase hex SHA-256 of `canonical_inputs(inputs)`."""
    return hashlib.sha256(canonical_inputs(inputs)).hexdigest()


# ---------------------------------------------------------------------------------------
# Calculation


@dataclass(slots=True)
class _Part:
    # Mutable on purpose: the caps are applied one after another to the same working
    # record; only frozen values leave `calculate`.
    # the pay order's day and rank as one int: the day's ordinal × 2, + 1 for a measurement
    # (evidence before a measurement of the same day); `ref` breaks ties (module docstring)
    order: int
    ref: int
    metric_code: str
    participant_id: int | None
    gross: Decimal
    net: Decimal
    caps: list[tuple[str, Decimal]] | None = None  # most of 100 000 items are never capped: no list each


def _apply_cap(parts: list[_Part], room: Decimal, name: str) -> None:
    """Pay `parts`, given in their fixed pay order (`_Part.order`), until `room` is used up;
    record what the cap removed."""
    room = max(room, _ZERO)
    if sum(part.net for part in parts) <= room:  # the usual case: the cap does not bind
        return
    for part in parts:
        take = min(part.net, room)
        if take < part.net:
            if part.caps is None:
                part.caps = []
            part.caps.append((name, part.net - take))
            part.net = take
        room -= take


def _own_caps(part: _Part) -> tuple[tuple[str, Decimal], ...]:
    """`_merge_caps([part])`, without building a dict for each of 100 000 items: the caps are
    applied in CAP_ORDER, each at most once to a part, so a part's own list is already merged."""
    caps = part.caps
    if not caps:
        return ()
    return tuple(caps) if len(caps) == 1 else _merge_caps([part])


def _merge_caps(parts: Iterable[_Part]) -> tuple[tuple[str, Decimal], ...]:
    removed: dict[str, Decimal] = defaultdict(Decimal)
    for part in parts:
        for name, amount in part.caps or ():
            removed[name] += amount
    return tuple((name, removed[name]) for name in CAP_ORDER if name in removed)


def _measured(m: Measurement, metric: MetricTerms) -> tuple[Decimal, Decimal | None]:
    """(quantity, relative) of one measurement; quantity is never negative."""
    sign = 1 if metric.direction == HIGHER_IS_BETTER else -1
    if metric.kind == BASELINE_IMPROVEMENT:
        return max(_ZERO, sign * (m.observed - metric.baseline)), None
    comparison = m.comparison if m.comparison is not None else metric.baseline
    improvement = sign * (m.observed - comparison)
    relative = improvement / comparison
    threshold = metric.threshold if metric.threshold is not None else _ZERO
    if improvement < threshold * comparison:
        return _ZERO, relative
    return max(_ZERO, improvement * m.cohort_size), relative


def split_total(total: Decimal, payer_shares: Iterable[PayerShare], currency: str) -> tuple[PayerAmount, ...]:
    """Split `total` between payers by largest remainder; the parts sum exactly to `total`."""
    shares = tuple(payer_shares)
    with localcontext(_CTX):
        exp = exponent(currency)
        amount = _money(total, currency, "payout total", field_="total", negative=True)
        percents = [_plain_number(s.percent, f"share of {s.party_id}", field_="payerShares") for s in shares]
        parts = split_largest_remainder(int(amount.scaleb(exp)), percents)
        return tuple(
            PayerAmount(s.party_id, quantize(Decimal(units).scaleb(-exp), currency) + 0)
            for s, units in zip(shares, parts)
        )


def payer_cap_total(total: Decimal, payer_shares: Iterable[PayerShare], paid: Mapping[str, Decimal],
                    currency: str) -> Decimal:
    """The largest amount, not above `total`, whose split gives no payer with a maxAmount more than its room.

    room = maxAmount − what the payer has paid; the first bound is min over capped payers of
    floor(room × 100 / percent) in minor units, then lowered one minor unit at a time while the
    largest-remainder split still gives a payer one öre too many (at most a few steps).
    A total of zero or less is never capped: it pays nobody anything.
    """
    shares = tuple(payer_shares)
    capped = [s for s in shares if s.max_amount is not None and s.percent > 0]
    if total <= 0 or not capped:
        return total
    with localcontext(_CTX):
        exp = exponent(currency)
        units = lambda d: int(d.scaleb(exp))  # noqa: E731  (amounts are already quantized)
        room = {s.party_id: max(0, units(s.max_amount - paid.get(s.party_id, _ZERO))) for s in capped}
        limit = min(units(total), *((room[s.party_id] * 100 / s.percent).to_integral_value(rounding="ROUND_FLOOR")
                                    for s in capped))
        limit = int(limit)
        percents = [s.percent for s in shares]
        while limit > 0:
            parts = dict(zip((s.party_id for s in shares), split_largest_remainder(limit, percents)))
            if all(parts[p] <= r for p, r in room.items()):
                break
            limit -= 1
        return quantize(Decimal(limit).scaleb(-exp), currency) + 0


def calculate(inputs: PayoutInputs) -> PayoutResult:
    """Calculate a payout: lines per metric, items per evidence, split per payer, inputs hash."""
    return calculate_with_canonical(inputs)[0]


def calculate_with_canonical(inputs: PayoutInputs, *, before_caps: Callable[[bytes, str], object] | None = None
                             ) -> tuple[PayoutResult, bytes]:
    """`calculate(inputs)` and `canonical_inputs(inputs)` together, validating the inputs once:
    what a payout records (on 100 000 items validation is a third of the engine's time).

    `before_caps`, if given, is called with the canonical bytes and their hash (the result's
    `inputs_hash`) as soon as they are known, before the amounts are calculated: a caller can
    start storing them meanwhile. What it returns is ignored; what it raises propagates."""
    n, classes = _normalise_with_classes(inputs)
    ev = n.evidence
    # the evidence rows' classes, made once for all three (validation usually made them already)
    if classes is None and isinstance(ev, EvidenceColumns):
        classes = _row_classes(ev.achieved_on, ev.metric_codes, ev.areas)
    with localcontext(_CTX):
        canonical = _canonical(n, classes)
        digest = None
        if before_caps is not None:
            digest = hashlib.sha256(canonical).hexdigest()
            before_caps(canonical, digest)
        return _calculate_minor_units(n, canonical, classes, digest), canonical


def calculate_decimal(inputs: PayoutInputs) -> PayoutResult:
    """The same payout by the Decimal engine: a `_Part` object and Decimal amounts per item,
    written as PAYOUTS.md reads. Not used to pay anything: it is the reference the minor-unit
    engine (`calculate`) is proven identical to, figure for figure (tests/ledger/test_payouts.py)."""
    n = _normalise(inputs)
    with localcontext(_CTX):
        return _calculate(n, _canonical(n))


class PayoutItems(_Columns):
    """A payout's evidence items as columns of plain ints and strs (amounts in minor units),
    read as a tuple of `PayoutItem`: a large payout has 100 000 of them, and recording one
    (ledger/calculations.py) writes the columns straight to the database without ever making
    a `PayoutItem` or a `Decimal` per item. Equal to any sequence of the same `PayoutItem`s."""

    __slots__ = ("currency", "evidence_ids", "participant_ids", "metric_codes", "kinds", "gross", "capped", "net",
                 "caps", "_amounts")

    def __init__(self, currency: str, evidence_ids: list[int], participant_ids: list[int], metric_codes: list[str],
                 kinds: list[str], gross: list[int], capped: list[int], net: list[int],
                 caps: dict[str, dict[int, int]]):
        self.currency = currency
        self.evidence_ids, self.participant_ids, self.metric_codes, self.kinds = (
            evidence_ids, participant_ids, metric_codes, kinds)
        self.gross, self.capped, self.net = gross, capped, net
        # what each cap (by name, in CAP_ORDER) took from the items it capped, by position: most
        # items are never capped, and plain ints in dicts are no work for the cycle collector
        self.caps = caps
        self._amounts: dict[int, Decimal] = {}

    def __len__(self) -> int:
        return len(self.evidence_ids)

    def _money(self, units: int) -> Decimal:
        d = self._amounts.get(units)
        if d is None:
            with localcontext(_CTX):
                d = self._amounts[units] = _from_units(units, self.currency)
        return d

    def _item(self, i: int) -> PayoutItem:
        money = self._money
        return PayoutItem(self.evidence_ids[i], self.participant_ids[i], self.metric_codes[i], self.kinds[i],
                          money(self.gross[i]), money(self.capped[i]), money(self.net[i]),
                          tuple((name, money(taken[i])) for name, taken in self.caps.items() if i in taken))


def _from_units(units: int, currency: str) -> Decimal:
    """Minor units as the Decimal amount the Decimal engine gives (exactly its digits and exponent)."""
    return quantize(Decimal(units).scaleb(-exponent(currency)), currency) + 0


def _cap_units(positions: Iterable[int], net: list[int], taken: dict[int, int], room: int) -> None:
    """`_apply_cap` on the minor-unit engine's columns: pay the parts at `positions`, in their
    pay order, until `room` is used up, and record in `taken` what the cap removed from each
    part it capped. The callers test first, by one sum in C, that the cap binds at all (the
    usual case is that it does not)."""
    room = max(room, 0)
    for i in positions:
        amount = net[i]
        take = amount if amount < room else room
        if take < amount:
            taken[i] = amount - take
            net[i] = take
        room -= take


def _merged_units(positions: Iterable[int], caps: dict[str, dict[int, int]]) -> dict[str, int]:
    positions = list(positions)
    return {name: sum(taken[i] for i in positions if i in taken) for name, taken in caps.items()
            if any(i in taken for i in positions)}


def _calculate_minor_units(n: PayoutInputs, canonical: bytes, classes: tuple[dict, list[int]] | None = None,
                           digest: str | None = None) -> PayoutResult:
    """`_calculate` in integer minor units over flat columns (one list per field, a position per
    part) instead of a `_Part` object and Decimals per item: the same rules in the same order,
    so the same figures to the öre (a hypothesis test holds it to `calculate_decimal`). Every
    amount is a whole number of minor units here: prices are rounded per item before any cap,
    and caps, paid-before and clawbacks are validated to the minor unit. `classes` are the
    evidence rows' `_row_classes`, when the caller has made them already; `digest` the
    canonical bytes' SHA-256 (hex), when the caller has it already."""
    terms = n.terms
    code = terms.currency
    exp = exponent(code)
    metrics = {m.code: m for m in terms.metrics}
    paid = n.paid_before

    def units(d: Decimal) -> int:
        return int(d.scaleb(exp))

    def money(u: int) -> Decimal:
        return _from_units(u, code)

    # "paid before" less this payout's clawbacks and replaced measurements (see `_calculate`)
    claw_units = [units(c.amount) for c in n.clawbacks]
    clawed = sum(claw_units)
    prior_total = units(paid.total) - clawed
    prior_metric: dict[str, int] = defaultdict(int, {k: units(v) for k, v in paid.per_metric})
    prior_participant: dict[int, int] = defaultdict(int, {k: units(v) for k, v in paid.per_participant})
    prior_pair: dict[tuple[int, str], int] = defaultdict(int, {(p, m): units(v)
                                                               for p, m, v in paid.per_participant_metric})
    prior_in_period: dict[str, int] = defaultdict(int, {k: units(v) for k, v in paid.per_metric_in_period})
    for c, amount in zip(n.clawbacks, claw_units):
        prior_metric[c.metric_code] -= amount
        prior_participant[c.participant_id] -= amount
        prior_pair[(c.participant_id, c.metric_code)] -= amount
    replaced_paid = [units(a.paid) for a in n.adjustments]
    for a, amount in zip(n.adjustments, replaced_paid):
        prior_total -= amount
        prior_metric[a.metric_code] -= amount

    # the parts, one position each: evidence items first (in evidence id order), then measurements
    # and current versions of adjusted measurements (in measurement id order)
    evidence = n.evidence
    if isinstance(evidence, EvidenceColumns):
        ids, participants, codes, days, areas = (evidence.evidence_ids, evidence.participant_ids,
                                                 evidence.metric_codes, evidence.achieved_on, evidence.areas)
        own_prices: list[Decimal | None] | None = None
    else:
        ids = [e.evidence_id for e in evidence]
        participants = [e.participant_id for e in evidence]
        codes = [e.metric_code for e in evidence]
        days = [e.achieved_on for e in evidence]
        areas = [e.area for e in evidence]
        own_prices = [e.price for e in evidence]
        if not any(p is not None for p in own_prices):
            own_prices = None
    k = len(ids)
    # Per class of rows (day, metric, area; `_row_classes`), not per row: the price (unless an
    # item has its own), the place in the pay order (see `_Part.order`) and the metric's slot
    # in a participant's rooms (below); each row's is then read from its class in C.
    first, row_class = classes if classes is not None else _row_classes(days, codes, areas)
    slot_of = {c: s for s, c in enumerate(sorted(metrics), 1)}  # (in a participant's rooms, below: 0 is its own)
    prices: dict[tuple[str, str | None], int] = {}
    class_price: dict[int, int] = {}
    class_order: dict[int, int] = {}
    class_slot: dict[int, int] = {}
    for (on, mcode, area), c in first.items():
        price = prices.get((mcode, area))
        if price is None:
            metric = metrics[mcode]
            supplement = dict(metric.area_supplements).get(area, _ZERO) if area is not None else _ZERO
            price = prices[(mcode, area)] = units(quantize(metric.unit_price * (1 + supplement / _HUNDRED), code))
        class_price[c], class_order[c], class_slot[c] = price, on.toordinal() * 2, slot_of[mcode]
    gross: list[int] = list(map(class_price.__getitem__, row_class))
    if own_prices is not None:
        gross = [g if p is None else units(p) for g, p in zip(gross, own_prices)]
    # the evidence already in pay order (rows submitted as achieved, the usual case): its parts
    # are read in place below, not through a permutation, and no list of their places in the
    # pay order is made (a part's place is its day's, see `_Part.order`)
    evidence_in_order = all(map(le, days, itertools.islice(days, 1, None)))

    measured: dict[int, tuple[Decimal, Decimal | None]] = {}
    measured_parts: list[tuple[int, Measurement, int, bool]] = []  # (id, measurement, gross, is adjustment)
    for m in n.measurements:
        metric = metrics[m.metric_code]
        measured[m.measurement_id] = quantity, _ = _measured(m, metric)
        unit_price = m.unit_price if m.unit_price is not None else metric.unit_price
        measured_parts.append((m.measurement_id, m, units(quantize(quantity * unit_price, code)), False))
    for a in n.adjustments:
        if a.current is not None:
            m = a.current
            measured[m.measurement_id] = quantity, _ = _measured(m, metrics[m.metric_code])
            measured_parts.append((m.measurement_id, m, units(quantize(quantity * metrics[m.metric_code].unit_price,
                                                                      code)), True))
    measured_parts.sort(key=lambda x: x[0])
    position_of: dict[int, int] = {}  # measurement id → position
    adjusting: set[int] = set()  # positions of adjusted measurements' current versions
    measured_order: list[int] = []
    if measured_parts:
        codes = codes.copy()
    for mid, m, g, is_adjustment in measured_parts:
        position_of[mid] = len(gross)
        if is_adjustment:
            adjusting.add(len(gross))
        gross.append(g)
        codes.append(m.metric_code)
        measured_order.append(m.period_end.toordinal() * 2 + 1)
    net = gross.copy()
    # what each cap removed from each part it capped: {name: {position: amount}}, in CAP_ORDER
    caps: dict[str, dict[int, int]] = {name: {} for name in CAP_ORDER}

    # the pay order (a stable sort keeps the id order within a day and rank)
    if evidence_in_order and not measured_parts:
        pay: Sequence[int] = range(len(gross))
    else:
        order = [*map(class_order.__getitem__, row_class), *measured_order]
        pay = sorted(range(len(gross)), key=order.__getitem__)
        del order

    # Caps (1)–(4). Each cap pays the parts it covers in pay order until its room is used up
    # (`_apply_cap`), so what a part keeps under a cap depends only on the parts before it in pay
    # order and on the caps before it. The caps of one participant (once only, per participant
    # and metric, per participant) go in one pass over the evidence parts in pay order, each
    # part through them in CAP_ORDER, with the rooms carried along in one flat list: a
    # participant's from its `base` on (its own room, then its room under each metric's cap at
    # the metric's slot), and whether it was paid once for a metric in `paid_once` at the same
    # place; each part's places are found in C, so the pass itself does no hashing and makes no
    # object per participant. The caps over many participants (per period, total, MAX_VALUE) then go a cap
    # at a pass, in CAP_ORDER, over every part in pay order (`_cap_units`), each only if one sum
    # in C shows it binds. Amounts are never negative, so a cap binds only if the sum of what it
    # covers exceeds its room.
    width = len(slot_of) + 1
    once = {slot_of[c] for c, x in metrics.items() if x.once_only}
    pair_cap = {c: max(units(x.cap_per_participant), 0) for c, x in metrics.items()
                if x.cap_per_participant is not None}
    participant_cap = None if terms.participant_cap is None else max(units(terms.participant_cap), 0)
    # what each of these caps took from each metric's evidence parts (by slot), for the lines
    taken_once, taken_pair, taken_participant = [0] * width, [0] * width, [0] * width
    if once or pair_cap or participant_cap is not None:
        people = set(participants)
        base = dict(zip(people, range(0, width * len(people), width)))
        # the rooms before this payout: the whole caps, less what earlier payouts paid (for the
        # few participants they paid)
        rooms = [participant_cap, *(pair_cap.get(c) for c in slot_of)] * len(people)
        paid_once = [False] * len(rooms) if once else []
        if participant_cap is not None:
            for pid, v in prior_participant.items():
                if pid in base:
                    rooms[base[pid]] = max(participant_cap - v, 0)
        for (pid, mcode), v in prior_pair.items():
            if pid in base and mcode in slot_of:
                q = base[pid] + slot_of[mcode]
                if mcode in pair_cap:
                    rooms[q] = max(pair_cap[mcode] - v, 0)
                if once:
                    paid_once[q] = v > 0  # once only: one was paid before
        row_slot = list(map(class_slot.__getitem__, row_class))
        row_base = list(map(base.__getitem__, participants))
        evidence_pay = range(k) if evidence_in_order else [i for i in pay if i < k]
        if evidence_in_order:
            pay_base, pay_slot, pay_gross = row_base, row_slot, gross
        else:  # (measurements come after position k)
            pay_base, pay_slot, pay_gross = (list(map(column.__getitem__, evidence_pay))
                                             for column in (row_base, row_slot, gross))
        del row_base, row_slot
        took_once, took_pair, took_participant = caps[ONCE_ONLY], caps[METRIC_CAP_PER_PARTICIPANT], \
            caps[PARTICIPANT_CAP]
        for i, p, q, s, amount in zip(evidence_pay, pay_base, map(add, pay_base, pay_slot), pay_slot,
                                      pay_gross):  # 100 000 times in a large payout
            changed = False
            if once and s in once:  # the first in pay order is paid, unless one was paid before
                if paid_once[q]:
                    if amount:
                        took_once[i] = amount
                        taken_once[s] += amount
                        amount, changed = 0, True
                else:
                    paid_once[q] = True
            room = rooms[q]
            if room is not None:
                if amount > room:
                    took_pair[i] = amount - room
                    taken_pair[s] += amount - room
                    amount, changed = room, True
                rooms[q] = room - amount
            room = rooms[p]
            if room is not None:
                if amount > room:
                    took_participant[i] = amount - room
                    taken_participant[s] += amount - room
                    amount, changed = room, True
                rooms[p] = room - amount
            if changed:
                net[i] = amount
        del pay_base, pay_slot, pay_gross, rooms, paid_once
    for name, cap_of, prior in ((METRIC_CAP_PER_PERIOD, "cap_per_period", prior_in_period),
                                (METRIC_CAP_TOTAL, "cap_total", prior_metric)):
        for c, x in metrics.items():
            cap = getattr(x, cap_of)
            if cap is not None:
                room = max(units(cap) - prior[c], 0)
                if sum(itertools.compress(net, map(c.__eq__, codes))) > room:
                    _cap_units([i for i in pay if codes[i] == c], net, caps[name], room)
    room = max(units(terms.max_value) - prior_total, 0)
    if sum(net) > room:
        _cap_units(pay, net, caps[MAX_VALUE], room)
    # (5) PAYER_CAP (PAYOUTS.md §8): on the total after every other cap, so a pass of its own
    earned = sum(net)
    allowed = units(payer_cap_total(money(earned - clawed), terms.payer_shares, dict(paid.per_payer), code))
    if allowed < earned - clawed:
        _cap_units(pay, net, caps[PAYER_CAP], allowed + clawed)
    del pay

    def merged(positions: Iterable[int]) -> tuple[tuple[str, Decimal], ...]:
        removed = _merged_units(positions, caps)
        return tuple((name, money(removed[name])) for name in CAP_ORDER if name in removed)

    # one OUTCOME line per metric: its parts' count and gross (per class of evidence rows, or by
    # distinct price where items have prices of their own), less what the caps removed (a part's
    # caps are exactly its gross less its net): the participants' caps as they were taken, the
    # later ones from the parts they capped
    # (the current versions of adjusted measurements are on the ADJUSTMENT lines instead)
    count: dict[str, int] = defaultdict(int)
    gross_of: dict[str, int] = defaultdict(int)
    if own_prices is None:
        times_of = Counter(row_class)
        for (_, mcode, _), c in first.items():
            count[mcode] += times_of[c]
            gross_of[mcode] += times_of[c] * class_price[c]
    else:
        for (mcode, g), times in Counter(zip(codes[:k], gross[:k])).items():
            count[mcode] += times
            gross_of[mcode] += g * times
    for i in position_of.values():
        if i not in adjusting:
            count[codes[i]] += 1
            gross_of[codes[i]] += gross[i]
    removed_of: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for mcode, s in slot_of.items():
        for name, taken in ((ONCE_ONLY, taken_once), (METRIC_CAP_PER_PARTICIPANT, taken_pair),
                            (PARTICIPANT_CAP, taken_participant)):
            if taken[s]:
                removed_of[mcode][name] += taken[s]
    for name in _LATER_CAPS:
        for i, amount in caps[name].items():
            if i not in adjusting:
                removed_of[codes[i]][name] += amount
    quantity_of: dict[str, list[Decimal]] = defaultdict(list)
    for mid, i in position_of.items():
        if i not in adjusting:
            quantity_of[codes[i]].append(measured[mid][0])
    lines: list[PayoutLine] = []
    for mcode in sorted(count):
        if not count[mcode]:
            continue
        metric = metrics[mcode]
        quantity = Decimal(count[mcode]) if metric.kind == RATE_CARD else sum(quantity_of[mcode], _ZERO)
        removed = removed_of.get(mcode, {})
        g = gross_of[mcode]
        nt = g - sum(removed.values())
        lines.append(PayoutLine(mcode, OUTCOME, quantity, metric.unit_price, money(g), money(g - nt), money(nt),
                                tuple((name, money(removed[name])) for name in CAP_ORDER if name in removed)))
    claws: dict[tuple[str, Decimal | None], list[int]] = defaultdict(list)
    for c, amount in zip(n.clawbacks, claw_units):
        claws[(c.metric_code, c.unit_price)].append(amount)
    for (mcode, paid_price), amounts in claws.items():
        amount = money(-sum(amounts))
        unit_price = paid_price if paid_price is not None else (
            metrics[mcode].unit_price if mcode in metrics else money(0))
        lines.append(PayoutLine(mcode, CLAWBACK, Decimal(-len(amounts)), unit_price, amount, money(0), amount))
    paid_for: dict[str, int] = defaultdict(int)
    for a, amount in zip(n.adjustments, replaced_paid):
        paid_for[a.metric_code] += amount
    for mcode in sorted(paid_for):
        current = [a.current.measurement_id for a in n.adjustments if a.metric_code == mcode and a.current is not None]
        positions = [position_of[mid] for mid in current]
        unit_price = metrics[mcode].unit_price if mcode in metrics else money(0)
        g = sum([gross[i] for i in positions])
        nt = sum([net[i] for i in positions])
        lines.append(PayoutLine(mcode, ADJUSTMENT, sum((measured[mid][0] for mid in current), _ZERO), unit_price,
                                money(g - paid_for[mcode]), money(g - nt), money(nt - paid_for[mcode]),
                                merged(positions)))
    lines.sort(key=lambda line: (line.metric_code, line.kind != OUTCOME, line.unit_price))

    # the items: evidence (positions 0..k-1, already in evidence id order), and clawbacks
    item_caps = caps if len(gross) == k else {name: {i: a for i, a in taken.items() if i < k}
                                              for name, taken in caps.items()}
    item_participants = participants  # (read only, as the evidence ids are)
    item_codes, item_gross, item_net = (codes, gross, net) if len(gross) == k else (codes[:k], gross[:k], net[:k])
    capped = list(map(sub, item_gross, item_net))
    kinds = [OUTCOME] * k
    if n.clawbacks:  # merged in evidence id order, as the Decimal engine sorts its items
        rows = sorted([*((ids[i], item_participants[i], item_codes[i], OUTCOME, item_gross[i], capped[i], item_net[i],
                          i) for i in range(k)),
                       *((c.evidence_id, c.participant_id, c.metric_code, CLAWBACK, -a, 0, -a, None)
                         for c, a in zip(n.clawbacks, claw_units))], key=lambda row: row[0])
        ids, item_participants, item_codes, kinds, item_gross, capped, item_net, was = (
            [list(col) for col in zip(*rows)])
        item_caps = {name: {j: taken[i] for j, i in enumerate(was) if i in taken} for name, taken in item_caps.items()}
    items = PayoutItems(code, ids, item_participants, item_codes, kinds, item_gross, capped, item_net, item_caps)

    def measurement_item(mid: int, mcode: str) -> MeasurementItem:
        i = position_of[mid]
        quantity, relative = measured[mid]
        return MeasurementItem(mid, mcode, quantity, relative, money(gross[i]), money(gross[i] - net[i]),
                               money(net[i]), merged([i]))

    measurement_items = tuple(measurement_item(m.measurement_id, m.metric_code) for m in n.measurements) + tuple(
        measurement_item(a.current.measurement_id, a.metric_code) for a in n.adjustments if a.current is not None)
    adjustment_items = tuple(MeasurementItem(a.replaced_id, a.metric_code, _ZERO, None, money(-amount), money(0),
                                             money(-amount)) for a, amount in zip(n.adjustments, replaced_paid))
    total = money(sum(units(line.net) for line in lines))
    return PayoutResult(
        contract_id=n.contract_id, period_start=n.period_start, period_end=n.period_end,
        terms_version=terms.version, currency=code,
        lines=tuple(lines), items=items, measurement_items=measurement_items,
        shares=split_total(total, terms.payer_shares, code), total=total,
        inputs_hash=digest or hashlib.sha256(canonical).hexdigest(), adjustment_items=adjustment_items,
    )


def _calculate(n: PayoutInputs, canonical: bytes) -> PayoutResult:
    terms = n.terms
    code = terms.currency
    metrics = {m.code: m for m in terms.metrics}
    paid = n.paid_before

    # Effective "paid before": a clawback in this payout reverses its payment, so the room
    # it held under every cap is free again.
    prior_total = paid.total - sum((c.amount for c in n.clawbacks), _ZERO)
    prior_metric: dict[str, Decimal] = defaultdict(Decimal, dict(paid.per_metric))
    prior_participant: dict[int, Decimal] = defaultdict(Decimal, dict(paid.per_participant))
    prior_pair: dict[tuple[int, str], Decimal] = defaultdict(Decimal, {(p, m): v for p, m, v in paid.per_participant_metric})
    prior_in_period: dict[str, Decimal] = defaultdict(Decimal, dict(paid.per_metric_in_period))
    for c in n.clawbacks:
        prior_metric[c.metric_code] -= c.amount
        prior_participant[c.participant_id] -= c.amount
        prior_pair[(c.participant_id, c.metric_code)] -= c.amount
    # a corrected or voided measurement's payment is replaced, like a clawback's
    for a in n.adjustments:
        prior_total -= a.paid
        prior_metric[a.metric_code] -= a.paid

    # Evidence ranks before a measurement on the same date (0 < 1); see the module docstring.
    item_parts: dict[int, _Part] = {}
    # an item's price depends only on its metric and area: computed once per pair, not per item
    prices: dict[tuple[str, str | None], Decimal] = {}
    for e in n.evidence:
        gross = e.price
        if gross is None:
            gross = prices.get((e.metric_code, e.area))
            if gross is None:
                metric = metrics[e.metric_code]
                supplement = dict(metric.area_supplements).get(e.area, _ZERO) if e.area is not None else _ZERO
                gross = prices[(e.metric_code, e.area)] = quantize(metric.unit_price * (1 + supplement / _HUNDRED),
                                                                   code) + 0
        item_parts[e.evidence_id] = _Part(
            e.achieved_on.toordinal() * 2, e.evidence_id, e.metric_code, e.participant_id, gross, gross
        )

    measurement_parts: dict[int, _Part] = {}
    measured: dict[int, tuple[Decimal, Decimal | None]] = {}
    for m in n.measurements:
        metric = metrics[m.metric_code]
        quantity, relative = _measured(m, metric)
        measured[m.measurement_id] = (quantity, relative)
        unit_price = m.unit_price if m.unit_price is not None else metric.unit_price
        gross = quantize(quantity * unit_price, code) + 0
        measurement_parts[m.measurement_id] = _Part(
            m.period_end.toordinal() * 2 + 1, m.measurement_id, m.metric_code, None, gross, gross
        )

    adjustment_parts: dict[int, _Part] = {}
    for a in n.adjustments:
        if a.current is not None:
            m = a.current
            quantity, relative = _measured(m, metrics[m.metric_code])
            measured[m.measurement_id] = (quantity, relative)
            gross = quantize(quantity * metrics[m.metric_code].unit_price, code) + 0
            adjustment_parts[m.measurement_id] = _Part(
                m.period_end.toordinal() * 2 + 1, m.measurement_id, m.metric_code, None, gross, gross
            )

    # in pay order once: every group below is filled from this list and so is in pay order too,
    # which `_apply_cap` relies on
    # (by `order` alone: a stable sort of parts already in id order, evidence first, keeps the
    # id order within a day and rank, and an int key sorts 100 000 parts much faster than a tuple)
    all_parts = [*item_parts.values(),
                 *sorted([*measurement_parts.values(), *adjustment_parts.values()], key=lambda p: p.ref)]
    all_parts.sort(key=attrgetter("order"))
    by_pair: dict[tuple[int, str], list[_Part]] = defaultdict(list)
    by_participant: dict[int, list[_Part]] = defaultdict(list)
    by_metric: dict[str, list[_Part]] = defaultdict(list)
    for part in all_parts:
        if part.participant_id is not None:
            by_pair[(part.participant_id, part.metric_code)].append(part)
            by_participant[part.participant_id].append(part)
        by_metric[part.metric_code].append(part)

    # (1) once only, then the metric's cap per participant, then the contract's participant cap
    for (pid, mcode), parts in by_pair.items():
        if metrics[mcode].once_only:
            paid_already = prior_pair[(pid, mcode)] > 0
            for part in parts if paid_already else parts[1:]:
                if part.net:
                    part.caps = [(ONCE_ONLY, part.net)]
                    part.net = _ZERO
    # (participants and pairs share no part, so the order they are capped in changes nothing)
    for (pid, mcode), parts in by_pair.items():
        cap = metrics[mcode].cap_per_participant
        if cap is not None:
            _apply_cap(parts, cap - prior_pair[(pid, mcode)], METRIC_CAP_PER_PARTICIPANT)
    if terms.participant_cap is not None:
        for pid, parts in by_participant.items():
            _apply_cap(parts, terms.participant_cap - prior_participant[pid], PARTICIPANT_CAP)
    # (2) the metric's cap per period, (3) the metric's cap over the contract
    for mcode, parts in sorted(by_metric.items()):
        if metrics[mcode].cap_per_period is not None:
            _apply_cap(parts, metrics[mcode].cap_per_period - prior_in_period[mcode], METRIC_CAP_PER_PERIOD)
    for mcode, parts in sorted(by_metric.items()):
        if metrics[mcode].cap_total is not None:
            _apply_cap(parts, metrics[mcode].cap_total - prior_metric[mcode], METRIC_CAP_TOTAL)
    # (4) the contract's maximum value
    _apply_cap(all_parts, terms.max_value - prior_total, MAX_VALUE)
    # (5) PAYER_CAP (PAYOUTS.md §8): the largest total whose split keeps every capped payer within its room
    clawed = sum((c.amount for c in n.clawbacks), _ZERO)
    earned = sum((p.net for p in all_parts), _ZERO)
    allowed = payer_cap_total(earned - clawed, terms.payer_shares, dict(paid.per_payer), code)
    if allowed < earned - clawed:
        _apply_cap(all_parts, allowed + clawed, PAYER_CAP)

    lines: list[PayoutLine] = []
    for mcode, parts in sorted(by_metric.items()):
        parts = [p for p in parts if not (p.ref in adjustment_parts and p is adjustment_parts[p.ref])]
        if not parts:
            continue
        metric = metrics[mcode]
        if metric.kind == RATE_CARD:
            quantity = Decimal(len(parts))
        else:
            quantity = sum((measured[p.ref][0] for p in parts), _ZERO)
        gross = sum((p.gross for p in parts), _ZERO)
        net = sum((p.net for p in parts), _ZERO)
        lines.append(PayoutLine(mcode, OUTCOME, quantity, metric.unit_price, gross, gross - net, net, _merge_caps(parts)))
    # one CLAWBACK line per metric and price paid (PAYOUTS.md §7: the line shows the price at which
    # the items were paid; inputs recorded before that have no price and show the metric's)
    claws: dict[tuple[str, Decimal | None], list[Clawback]] = defaultdict(list)
    for c in n.clawbacks:
        claws[(c.metric_code, c.unit_price)].append(c)
    for (mcode, paid_price), cs in claws.items():
        amount = -sum((c.amount for c in cs), _ZERO) + 0
        unit_price = paid_price if paid_price is not None else (
            metrics[mcode].unit_price if mcode in metrics else quantize(_ZERO, code))
        lines.append(PayoutLine(mcode, CLAWBACK, Decimal(-len(cs)), unit_price, amount, quantize(_ZERO, code), amount))
    paid_for: dict[str, Decimal] = defaultdict(Decimal)
    for a in n.adjustments:
        paid_for[a.metric_code] += a.paid
    for mcode in sorted(paid_for):
        parts = [adjustment_parts[a.current.measurement_id] for a in n.adjustments
                 if a.metric_code == mcode and a.current is not None]
        unit_price = metrics[mcode].unit_price if mcode in metrics else quantize(_ZERO, code)
        gross = sum((p.gross for p in parts), _ZERO)
        net = sum((p.net for p in parts), _ZERO)
        lines.append(PayoutLine(mcode, ADJUSTMENT, sum((measured[p.ref][0] for p in parts), _ZERO), unit_price,
                                gross - paid_for[mcode] + 0, gross - net, net - paid_for[mcode] + 0, _merge_caps(parts)))
    lines.sort(key=lambda line: (line.metric_code, line.kind != OUTCOME, line.unit_price))

    items: list[PayoutItem] = []
    for e in n.evidence:
        part = item_parts[e.evidence_id]
        items.append(PayoutItem(e.evidence_id, e.participant_id, e.metric_code, OUTCOME,
                                part.gross, part.gross - part.net, part.net, _own_caps(part)))
    for c in n.clawbacks:
        items.append(PayoutItem(c.evidence_id, c.participant_id, c.metric_code, CLAWBACK,
                                -c.amount + 0, quantize(_ZERO, code), -c.amount + 0))
    if n.clawbacks:  # the items are already in evidence id order otherwise (`_normalise` sorted them)
        items.sort(key=lambda i: i.evidence_id)

    measurement_items = tuple(
        MeasurementItem(m.measurement_id, m.metric_code, measured[m.measurement_id][0], measured[m.measurement_id][1],
                        part.gross, part.gross - part.net, part.net, _merge_caps([part]))
        for m in n.measurements
        for part in [measurement_parts[m.measurement_id]]
    ) + tuple(
        MeasurementItem(a.current.measurement_id, a.metric_code, measured[a.current.measurement_id][0],
                        measured[a.current.measurement_id][1], part.gross, part.gross - part.net, part.net,
                        _merge_caps([part]))
        for a in n.adjustments if a.current is not None
        for part in [adjustment_parts[a.current.measurement_id]]
    )
    zero = quantize(_ZERO, code)
    adjustment_items = tuple(MeasurementItem(a.replaced_id, a.metric_code, _ZERO, None, -a.paid + 0, zero, -a.paid + 0)
                             for a in n.adjustments)

    total = quantize(sum((line.net for line in lines), _ZERO), code) + 0
    return PayoutResult(
        contract_id=n.contract_id, period_start=n.period_start, period_end=n.period_end,
        terms_version=terms.version, currency=code,
        lines=tuple(lines), items=tuple(items), measurement_items=measurement_items,
        shares=split_total(total, terms.payer_shares, code), total=total,
        inputs_hash=hashlib.sha256(canonical).hexdigest(), adjustment_items=adjustment_items,
    )


# ---------------------------------------------------------------------------------------
# Reading recorded inputs back


def inputs_from_canonical(data: bytes | str) -> PayoutInputs:
    """The inputs that `canonical_inputs` wrote, read back, so a recorded payout can be recomputed.

    The round trip is exact: ``canonical_inputs(inputs_from_canonical(b)) == b`` for bytes
    this module wrote.
    """
    doc = json.loads(data)
    if doc.get("schema") != CANONICAL_SCHEMA:
        raise _fail(f"unknown inputs schema {doc.get('schema')!r}", "INVALID_INPUT", "inputs")
    D = Decimal

    def opt(v: str | None) -> Decimal | None:
        return None if v is None else D(v)

    t = doc["terms"]
    terms = Terms(
        version=t["version"], currency=t["currency"], max_value=D(t["max_value"]),
        participant_cap=opt(t["participant_cap"]),
        payer_shares=tuple(PayerShare(s["party_id"], D(s["percent"]), opt(s.get("max_amount")))
                           for s in t["payer_shares"]),
        metrics=tuple(
            MetricTerms(code=x["code"], kind=x["kind"], direction=x["direction"], unit_price=D(x["unit_price"]),
                        baseline=opt(x["baseline"]), threshold=opt(x["threshold"]),
                        cap_per_participant=opt(x["cap_per_participant"]), cap_per_period=opt(x["cap_per_period"]),
                        cap_total=opt(x["cap_total"]), once_only=x["once_only"],
                        area_supplements=tuple((a, D(p)) for a, p in x["area_supplements"]))
            for x in t["metrics"]),
    )
    p = doc["paid_before"]
    return PayoutInputs(
        contract_id=doc["contract_id"], period_start=date.fromisoformat(doc["period_start"]),
        period_end=date.fromisoformat(doc["period_end"]), terms=terms,
        evidence=tuple(EvidenceItem(e["evidence_id"], e["participant_id"], e["metric_code"],
                                    date.fromisoformat(e["achieved_on"]), e["area"], opt(e.get("price")))
                       for e in doc["evidence"]),
        measurements=tuple(Measurement(x["measurement_id"], x["metric_code"], date.fromisoformat(x["period_start"]),
                                       date.fromisoformat(x["period_end"]), D(x["observed"]), opt(x["comparison"]),
                                       x["cohort_size"], opt(x.get("unit_price"))) for x in doc["measurements"]),
        paid_before=PaidBefore(total=D(p["total"]), per_metric=[(k, D(v)) for k, v in p["per_metric"]],
                               per_participant=[(k, D(v)) for k, v in p["per_participant"]],
                               per_participant_metric=[(a, b, D(v)) for a, b, v in p["per_participant_metric"]],
                               per_payer=[(k, D(v)) for k, v in p.get("per_payer", [])],
                               per_metric_in_period=[(k, D(v)) for k, v in p.get("per_metric_in_period", [])]),
        clawbacks=tuple(Clawback(c["evidence_id"], c["participant_id"], c["metric_code"], D(c["amount"]),
                                 opt(c.get("unit_price"))) for c in doc["clawbacks"]),
        adjustments=tuple(
            MeasurementAdjustment(a["replaced_id"], a["metric_code"], D(a["paid"]), None if a["current"] is None else
                                  Measurement(x["measurement_id"], x["metric_code"], date.fromisoformat(x["period_start"]),
                                              date.fromisoformat(x["period_end"]), D(x["observed"]),
                                              opt(x["comparison"]), x["cohort_size"]))
            for a in doc.get("adjustments", ()) for x in [a["current"]]),
    )
