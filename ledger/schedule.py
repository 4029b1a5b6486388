"""A contract's payment schedule (PAYOUTS.md §6): pure date arithmetic, no database, no clock.

The scheduled periods tile [startDate, outcomesEndDate]: the first starts on startDate, period
k starts k calendar steps of the frequency after startDate (counted from startDate, so a contract
starting on 31 January has periods starting 28 February, 31 March, ...), and the last ends on
outcomesEndDate (it may be shorter). A termination on T ends the schedule at T. Each period's
claims are accepted until its end + claimWindowDays.
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta

MONTHS = {"MONTHLY": 1, "QUARTERLY": 3, "HALF_YEARLY": 6, "YEARLY": 12}


@dataclass(frozen=True)
class Period:
    start: date
    end: date
    claim_deadline: date

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end


def add_months(day: date, months: int) -> date:
    """The same day `months` later, or the month's last day when it is shorter."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def periods(start: date, last_day: date, frequency: str, claim_window_days: int) -> tuple[Period, ...]:
    """The scheduled periods from `start` up to and including `last_day`."""
    step = MONTHS[frequency]
    out: list[Period] = []
    k = 0
    while True:
        begin = add_months(start, k * step)
        if begin > last_day:
            break
        end = min(add_months(start, (k + 1) * step) - timedelta(days=1), last_day)
        out.append(Period(begin, end, end + timedelta(days=claim_window_days)))
        k += 1
    return tuple(out)


def outcomes_end(contract) -> date:
    """The last day on which an outcome of the contract counts (its termination date if earlier)."""
    last = contract.outcomes_end_date or contract.end_date
    if contract.terminated_on is not None:
        last = min(last, contract.terminated_on)
    return last


def service_end(contract) -> date:
    """The last day of delivery: no enrolment after it."""
    last = contract.service_end_date or contract.end_date
    if contract.terminated_on is not None:
        last = min(last, contract.terminated_on)
    return last


def claim_window_days(contract) -> int:
    from ledger.models.contracts import DEFAULT_CLAIM_WINDOW_DAYS
    return DEFAULT_CLAIM_WINDOW_DAYS if contract.claim_window_days is None else contract.claim_window_days


def of(contract) -> tuple[Period, ...]:
    """The contract's scheduled periods (empty for a contract without a payment frequency)."""
    if contract.payment_frequency is None:
        return ()
    return periods(contract.start_date, outcomes_end(contract), contract.payment_frequency, claim_window_days(contract))


def period_containing(contract, day: date) -> Period | None:
    for p in of(contract):
        if p.contains(day):
            return p
    return None


def last_claim_deadline(contract) -> date | None:
    """When the last claim window closes; None for a contract without a schedule."""
    ps = of(contract)
    return ps[-1].claim_deadline if ps else None
