"""Disclosure control: which figures may be published without identifying anyone. Pure: no DB.

The rule, applied to everything the public sees (publicResults, the results page, the public
evaluation report):
- a count of people (or of outcomes) from 1 to 4 is not published; 0 is shown as 0;
- a part k of a cohort n is not published when its complement is small (0 < n − k < 5):
  "6 of 7 achieved" identifies the one who did not;
- when n itself is not published, no part of it is (even 0: "none of the 3" says something
  about each of the three);
- a rate is published only when both its part and its whole are;
- a measurement of a cohort under 5 (or of unknown size) is not published;
- a total is the sum of the published parts only, and says how many parts it leaves out, so
  no total minus published parts ever gives back a suppressed one.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

SMALL_COUNT = 5


def is_small(n: int | Decimal | None) -> bool:
    return n is not None and 0 < n < SMALL_COUNT


def count(n: int | None) -> int | None:
    """A count as published: None for 1–4 (and for an unknown count), otherwise the count."""
    if n is None or is_small(n):
        return None
    return n


def part(k: int | None, n: int | None) -> int | None:
    """k of a cohort of n as published: suppressed when k or its complement n − k is 1–4."""
    if k is None or n is None or count(n) is None:
        return None
    if is_small(k) or is_small(n - k):
        return None
    return k


def rate(k: int | None, n: int | None, *, places: str = "0.0001") -> Decimal | None:
    """k / n, only when both are published figures (pass the published k and n) and n > 0."""
    if k is None or not n:
        return None
    return (Decimal(k) / Decimal(n)).quantize(Decimal(places), rounding=ROUND_HALF_UP)


def cohort_value(value: Decimal | None, cohort: int | None) -> Decimal | None:
    """A measurement of a cohort, published only for a cohort of at least SMALL_COUNT people."""
    if value is None or cohort is None or cohort < SMALL_COUNT:
        return None
    return value


@dataclass(frozen=True)
class Total:
    """A sum over published parts: `value` None when no part is published."""

    value: Decimal | int | None
    parts: int  # parts behind the value
    left_out: int  # parts not published, so not in the value


def total(parts: Iterable[int | Decimal | None]) -> Total:
    """The sum of the published parts (None parts are suppressed ones and are left out)."""
    shown = [p for p in parts]
    published = [p for p in shown if p is not None]
    if not published:
        return Total(None, 0, len(shown))
    return Total(sum(published), len(published), len(shown) - len(published))
