"""Money as `moneyed.Money` over `Decimal`, never float; stored as integer minor units.

py-moneyed accepts floats silently and never rounds by itself, so every Money in Utfall is
built here, and every rounding names its mode.
"""
from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from collections.abc import Sequence

from moneyed import Currency, CurrencyDoesNotExist, Money, get_currency

from ledger.errors import ValidationError

# amounts are stored as 64-bit integers of minor units (BIGINT): no amount, balance or sum beyond
MAX_MINOR = 2**63 - 1
TOO_LARGE = "the amount is too large for the ledger (at most 9 223 372 036 854 775 807 minor units)"

__all__ = [
    "MAX_MINOR", "TOO_LARGE", "Money", "currency", "decimal", "money", "minor_units", "from_minor", "quantize",
    "exponent", "split_largest_remainder", "zero",
]


def currency(code: str) -> Currency:
    """The ISO 4217 currency for `code`, or INVALID_CURRENCY.

    Codes starting with X are precious metals, fund units and test codes: not money a
    contract can be paid in.
    """
    if not isinstance(code, str) or len(code) != 3 or not code.isalpha() or not code.isupper() or code.startswith("X"):
        raise ValidationError(f"{code!r} is not an ISO 4217 currency code", code="INVALID_CURRENCY", field=["currency"])
    try:
        return get_currency(code)
    except CurrencyDoesNotExist:
        raise ValidationError(f"{code!r} is not an ISO 4217 currency code", code="INVALID_CURRENCY", field=["currency"]) from None


def exponent(code: str) -> int:
    """Number of decimals of the currency's minor unit (2 for SEK, 0 for JPY)."""
    sub = currency(code).sub_unit
    return len(str(sub)) - 1


def decimal(value: str | Decimal | int, *, field: str = "amount") -> Decimal:
    """A finite Decimal from a str, Decimal or int; floats and NaN are refused."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ValidationError("amounts must be given as decimal strings, not floats", code="INVALID_AMOUNT", field=[field])
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValidationError(f"{value!r} is not a decimal number", code="INVALID_AMOUNT", field=[field]) from None
    if not d.is_finite():
        raise ValidationError(f"{value!r} is not a finite number", code="INVALID_AMOUNT", field=[field])
    return d


def money(amount: str | Decimal | int, code: str, *, field: str = "amount") -> Money:
    """Money with an exact amount that fits the currency's minor unit (no silent rounding)."""
    d = decimal(amount, field=field)
    cur = currency(code)
    exp = exponent(code)
    if d != d.quantize(Decimal(1).scaleb(-exp), rounding=ROUND_DOWN):
        raise ValidationError(
            f"{d} has more decimals than {code} allows ({exp})", code="TOO_MANY_DECIMALS", field=[field]
        )
    if abs(d.scaleb(exp)) > MAX_MINOR:
        raise ValidationError(TOO_LARGE, code="AMOUNT_TOO_LARGE", field=[field])
    return Money(d.quantize(Decimal(1).scaleb(-exp)) + 0, cur)


def zero(code: str) -> Money:
    return Money(Decimal(0).quantize(Decimal(1).scaleb(-exponent(code))), currency(code))


def minor_units(m: Money) -> int:
    """The amount in integer minor units (öre); refuses an amount finer than the minor unit."""
    exp = exponent(m.currency.code)
    scaled = m.amount.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise ValidationError(
            f"{m.amount} has more decimals than {m.currency.code} allows ({exp})", code="TOO_MANY_DECIMALS"
        )
    if abs(scaled) > MAX_MINOR:
        raise ValidationError(TOO_LARGE, code="AMOUNT_TOO_LARGE")
    return int(scaled)


def from_minor(units: int, code: str) -> Money:
    exp = exponent(code)
    return Money(Decimal(units).scaleb(-exp).quantize(Decimal(1).scaleb(-exp)), currency(code))


def quantize(value: Decimal, code: str, rounding: str = ROUND_HALF_UP) -> Decimal:
    """Round a Decimal to the currency's minor unit with an explicit mode (half-up by default)."""
    return value.quantize(Decimal(1).scaleb(-exponent(code)), rounding=rounding)


def split_largest_remainder(total_minor: int, percents: Sequence[Decimal]) -> list[int]:
    """Split integer minor units by percentages summing to 100, exactly.

    Each part is rounded toward zero; the units left over go one at a time to the parts with
    the largest remainders, ties to the earlier share. Works for negative totals by symmetry.
    """
    if sum(percents, Decimal(0)) != Decimal(100):
        raise ValidationError("shares must sum to exactly 100", code="SHARES_NOT_100")
    sign = -1 if total_minor < 0 else 1
    whole = abs(total_minor)
    raw = [Decimal(whole) * p / Decimal(100) for p in percents]
    parts = [int(r.to_integral_value(rounding=ROUND_DOWN)) for r in raw]
    left = whole - sum(parts)
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - parts[i]), i))
    for i in order[:left]:
        parts[i] += 1
    return [sign * p for p in parts]
