"""The repayment waterfall of an impact bond: a pure function from (investments, receipts) to lines.

No database, no clock, no I/O (WATERFALL.md is authoritative). Like the payout engine, this is
the code an auditor re-runs on the recorded inputs, so every figure is computed in integer
minor units (öre) and no float is ever used.

A distribution pays the net receipts R (the sum of the receipts, which may include negative
ones: a clawback the provider repaid) in this order:

1. SENIOR principal outstanding (drawn − repaid);
2. SENIOR return, up to ``floor(return_cap × drawn)`` − return already paid;
3. SUBORDINATE principal outstanding;
4. SUBORDINATE return, up to its cap;
5. the residual (RESIDUAL line, no investment) stays with the provider.

Within a step, investments share pro rata to their principal drawn, in minor units by the
largest-remainder method, ties to the investment made first (the lower id). A share larger
than what an investment can still take is cut to it and the rest is shared again among the
others, so no cap is exceeded and nothing that could be paid is left behind. The cap is
rounded down to the minor unit: a cap of 0.333 on 100.01 allows 33.30, never 33.31.

If R is zero or negative nothing is paid (no lines, total 0).

Canonical inputs (what `inputs_hash` hashes): UTF-8 JSON, sorted keys, no whitespace, of::

    {"schema": "utfall/waterfall-inputs/1", "contract_id": int, "currency": str,
     "up_to": "YYYY-MM-DD",
     "investments": [{"investment_id": int, "tranche": "SENIOR"|"SUBORDINATE", "drawn": M,
                      "repaid": M, "return_paid": M, "return_cap": D}, ...],  # sorted by id
     "receipts": [{"payment_id": int, "amount": M}, ...]}                     # sorted by id

M is money with exactly the currency's minor-unit decimals ("12500.00", "-300.00"); D a
decimal without exponent or trailing zeros ("0.2", "10"). So the same inputs in any order
give the same bytes and the same `inputs_hash` (lowercase hex SHA-256 of the bytes).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from ledger.errors import ValidationError
from ledger.money import currency as _currency
from ledger.money import exponent

__all__ = [
    "SENIOR", "SUBORDINATE", "TRANCHES", "PRINCIPAL", "RETURN", "RESIDUAL", "LINE_KINDS", "MAX_RETURN_CAP",
    "CANONICAL_SCHEMA", "Position", "Receipt", "WaterfallInputs", "WaterfallLine", "Distribution",
    "distribute", "canonical_inputs", "inputs_hash", "inputs_from_canonical", "return_limit",
]

SENIOR = "SENIOR"
SUBORDINATE = "SUBORDINATE"
TRANCHES = (SENIOR, SUBORDINATE)
PRINCIPAL = "PRINCIPAL"
RETURN = "RETURN"
RESIDUAL = "RESIDUAL"
LINE_KINDS = (PRINCIPAL, RETURN, RESIDUAL)
# A return above 1 000 % of the principal is not an impact bond any fund manager would sign;
# above it, a typo ("20" for "0.20") is far more likely.
MAX_RETURN_CAP = Decimal(10)
CANONICAL_SCHEMA = "utfall/waterfall-inputs/1"
# amounts beyond this are not money (and would make hashes of absurd inputs)
_MAX_MAGNITUDE = Decimal(10) ** 18


@dataclass(frozen=True)
class Position:
    """One investment as it stands before the distribution."""

    investment_id: int
    tranche: str
    drawn: Decimal  # principal drawn down so far
    repaid: Decimal  # principal repaid by earlier distributions
    return_paid: Decimal  # return paid by earlier distributions
    return_cap: Decimal  # a fraction of principal drawn: Decimal("0.20") is at most 20 % on top


@dataclass(frozen=True)
class Receipt:
    """A payment for the contract not yet distributed: received by the provider (> 0), or a
    clawback the provider paid back (< 0)."""

    payment_id: int
    amount: Decimal


@dataclass(frozen=True)
class WaterfallInputs:
    contract_id: int
    currency: str
    up_to: date
    investments: tuple[Position, ...] = ()
    receipts: tuple[Receipt, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "investments", tuple(self.investments))
        object.__setattr__(self, "receipts", tuple(self.receipts))


@dataclass(frozen=True)
class WaterfallLine:
    investment_id: int | None  # None for RESIDUAL
    kind: str
    amount: Decimal


@dataclass(frozen=True)
class Distribution:
    """The lines in waterfall order, what they add up to (the net receipts, or 0) and the hash."""

    lines: tuple[WaterfallLine, ...]
    received: Decimal  # the net receipts R (may be negative)
    total: Decimal  # what the lines distribute: max(R, 0)
    inputs_hash: str


# ---------------------------------------------------------------------------------------
# Validation


def _fail(message: str, code: str, *fields: str) -> ValidationError:
    return ValidationError(message, code=code, field=list(fields) or None)


def _number(value: Any, what: str, field_: str) -> Decimal:
    if isinstance(value, (bool, float)) or not isinstance(value, (Decimal, int)):
        raise _fail(f"{what} must be a Decimal, not {type(value).__name__}", "INVALID_AMOUNT", field_)
    d = Decimal(value)
    if not d.is_finite() or abs(d) >= _MAX_MAGNITUDE:
        raise _fail(f"{what} is not a finite amount in range", "INVALID_AMOUNT", field_)
    return d


def _units(value: Any, code: str, what: str, field_: str, *, negative: bool = False) -> int:
    d = _number(value, what, field_)
    scaled = d.scaleb(exponent(code))
    if scaled != scaled.to_integral_value():
        raise _fail(f"{what} {d} has more decimals than {code} allows", "TOO_MANY_DECIMALS", field_)
    if d < 0 and not negative:
        raise _fail(f"{what} must not be negative", "INVALID_AMOUNT", field_)
    return int(scaled)


def _id(value: Any, what: str, field_: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"{what} must be an integer", "INVALID_INPUT", field_)
    return value


def _plain(d: Decimal) -> str:
    if not d:
        return "0"
    d = d.normalize()
    return format(d.quantize(Decimal(1)) if d.as_tuple().exponent > 0 else d, "f")


def return_limit(drawn_units: int, cap: Decimal) -> int:
    """The most return an investment may ever get, in minor units: cap × drawn, rounded down."""
    return int((Decimal(drawn_units) * cap).to_integral_value(rounding=ROUND_DOWN))


@dataclass(frozen=True)
class _Pos:
    id: int
    tranche: str
    drawn: int
    repaid: int
    return_paid: int
    cap: Decimal


def _normalise(inputs: WaterfallInputs) -> tuple[str, list[_Pos], list[tuple[int, int]]]:
    if not isinstance(inputs.currency, str):
        raise _fail("currency must be a code", "INVALID_CURRENCY", "currency")
    code = _currency(inputs.currency).code
    _id(inputs.contract_id, "contract id", "contractId")
    if isinstance(inputs.up_to, datetime) or not isinstance(inputs.up_to, date):
        raise _fail("up_to must be a date", "INVALID_DATE", "upTo")
    positions: list[_Pos] = []
    seen: set[int] = set()
    for p in inputs.investments:
        i = _id(p.investment_id, "investment id", "investments")
        f = f"investments.{i}"
        if i in seen:
            raise _fail(f"investment {i} is given twice", "INVALID_INPUT", f)
        seen.add(i)
        if p.tranche not in TRANCHES:
            raise _fail(f"investment {i}: tranche is SENIOR or SUBORDINATE, not {p.tranche!r}", "INVALID_TRANCHE", f)
        drawn = _units(p.drawn, code, "principal drawn", f)
        repaid = _units(p.repaid, code, "principal repaid", f)
        paid = _units(p.return_paid, code, "return paid", f)
        cap = _number(p.return_cap, "return cap", f)
        if cap < 0 or cap > MAX_RETURN_CAP:
            raise _fail(f"investment {i}: a return cap is between 0 and {MAX_RETURN_CAP}", "INVALID_RETURN_CAP", f)
        if repaid > drawn:
            raise _fail(f"investment {i}: more principal repaid than drawn", "INVALID_INPUT", f)
        if paid > return_limit(drawn, cap):
            raise _fail(f"investment {i}: more return paid than its cap allows", "INVALID_INPUT", f)
        positions.append(_Pos(i, p.tranche, drawn, repaid, paid, cap))
    receipts: list[tuple[int, int]] = []
    seen = set()
    for r in inputs.receipts:
        i = _id(r.payment_id, "payment id", "receipts")
        if i in seen:
            raise _fail(f"payment {i} is given twice", "INVALID_INPUT", f"receipts.{i}")
        seen.add(i)
        receipts.append((i, _units(r.amount, code, "receipt", f"receipts.{i}", negative=True)))
    return code, sorted(positions, key=lambda p: p.id), sorted(receipts)


# ---------------------------------------------------------------------------------------
# Canonical form


def _canonical(inputs: WaterfallInputs, code: str, positions: list[_Pos], receipts: list[tuple[int, int]]) -> bytes:
    exp = exponent(code)

    def money(units: int) -> str:
        return format(Decimal(units).scaleb(-exp).quantize(Decimal(1).scaleb(-exp)), "f")

    doc = {
        "schema": CANONICAL_SCHEMA,
        "contract_id": inputs.contract_id,
        "currency": code,
        "up_to": inputs.up_to.isoformat(),
        "investments": [{"investment_id": p.id, "tranche": p.tranche, "drawn": money(p.drawn),
                         "repaid": money(p.repaid), "return_paid": money(p.return_paid),
                         "return_cap": _plain(p.cap)} for p in positions],
        "receipts": [{"payment_id": i, "amount": money(u)} for i, u in receipts],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def canonical_inputs(inputs: WaterfallInputs) -> bytes:
    """The canonical bytes of the inputs (see the module docstring); validates them first."""
    return _canonical(inputs, *_normalise(inputs))


def inputs_hash(inputs: WaterfallInputs) -> str:
    return hashlib.sha256(canonical_inputs(inputs)).hexdigest()


def inputs_from_canonical(data: bytes | str) -> WaterfallInputs:
    """The inputs `canonical_inputs` wrote, read back exactly, so a distribution can be recomputed."""
    doc = json.loads(data)
    if doc.get("schema") != CANONICAL_SCHEMA:
        raise _fail(f"unknown inputs schema {doc.get('schema')!r}", "INVALID_INPUT", "inputs")
    D = Decimal
    return WaterfallInputs(
        contract_id=doc["contract_id"], currency=doc["currency"], up_to=date.fromisoformat(doc["up_to"]),
        investments=tuple(Position(x["investment_id"], x["tranche"], D(x["drawn"]), D(x["repaid"]),
                                   D(x["return_paid"]), D(x["return_cap"])) for x in doc["investments"]),
        receipts=tuple(Receipt(x["payment_id"], D(x["amount"])) for x in doc["receipts"]),
    )


# ---------------------------------------------------------------------------------------
# The waterfall


def _share(available: int, rooms: list[tuple[int, int, int]]) -> dict[int, int]:
    """Share `available` units among (id, weight, room) pro rata to weight, none above its room.

    Largest remainder, ties to the lower id; an investment whose share would exceed its room
    gets its room and the rest is shared again among the others.
    """
    paid = {i: 0 for i, _, _ in rooms}
    open_ = [(i, w, r) for i, w, r in rooms if r > 0 and w > 0]
    while available > 0 and open_:
        if sum(r for _, _, r in open_) <= available:
            for i, _, r in open_:
                paid[i] += r
                available -= r
            break
        total_weight = sum(w for _, w, _ in open_)
        raw = [(i, available * w // total_weight, available * w % total_weight) for i, w, _ in open_]
        parts = {i: q for i, q, _ in raw}
        left = available - sum(parts.values())
        for i, _, _ in sorted(raw, key=lambda x: (-x[2], x[0]))[:left]:
            parts[i] += 1
        room = {i: r for i, _, r in open_}
        # only a share *above* its room is cut: one exactly at it is paid as it is, or the
        # others' shares would be re-rounded without need and drift more than an öre from
        # exact pro rata (drawn 5, 5, 5, 10 694, 199 679 sharing 199 698)
        over = [i for i in parts if parts[i] > room[i]]
        if not over:
            for i, q in parts.items():
                paid[i] += q
            break
        # cut the shares that reach their room to exactly it, and share the rest again
        for i in over:
            paid[i] += room[i]
            available -= room[i]
        open_ = [(i, w, r) for i, w, r in open_ if i not in over]
    return paid


def distribute(inputs: WaterfallInputs) -> Distribution:
    """The waterfall lines for the net receipts (see the module docstring)."""
    code, positions, receipts = _normalise(inputs)
    digest = hashlib.sha256(_canonical(inputs, code, positions, receipts)).hexdigest()
    exp = exponent(code)

    def amount(units: int) -> Decimal:
        return Decimal(units).scaleb(-exp).quantize(Decimal(1).scaleb(-exp))

    received = sum((u for _, u in receipts), 0)
    available = max(received, 0)
    lines: list[WaterfallLine] = []
    for tranche in TRANCHES:
        members = [p for p in positions if p.tranche == tranche]
        for kind in (PRINCIPAL, RETURN):
            rooms = [(p.id, p.drawn,
                      p.drawn - p.repaid if kind == PRINCIPAL else return_limit(p.drawn, p.cap) - p.return_paid)
                     for p in members]
            paid = _share(available, rooms)
            for p in members:
                if paid[p.id]:
                    lines.append(WaterfallLine(p.id, kind, amount(paid[p.id])))
                    available -= paid[p.id]
    if available:
        lines.append(WaterfallLine(None, RESIDUAL, amount(available)))
    return Distribution(lines=tuple(lines), received=amount(received), total=amount(max(received, 0)),
                        inputs_hash=digest)
