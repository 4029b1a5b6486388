"""The dual-control rule inside the use cases themselves, not only on the API's path.

Under a fund's `dual_control`, reversing a transaction, amending or terminating a contract,
a PENALTY and a DEAUTHORISATION are made only through a change request
(ledger/corrections/change_requests.py): `submit` runs the use case to check a request and
rolls it back, and approval by a second fund manager runs it for real. Both do so inside
`cleared(uow)`; any other call of those use cases on such a fund (a script, a CLI, a future
endpoint) is refused with CHANGE_REQUEST_REQUIRED, nothing written.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ledger.db import UnitOfWork
from ledger.errors import Conflict
from ledger.models import OutcomeContract, OutcomesFund

_CLEARED = "dual_control_cleared"


@contextmanager
def cleared(uow: UnitOfWork) -> Iterator[None]:
    """Run a controlled use case as the change-request path does (checked, or approved)."""
    info = uow.session.info
    before = info.get(_CLEARED, False)
    info[_CLEARED] = True
    try:
        yield
    finally:
        info[_CLEARED] = before


def require_change_request(uow: UnitOfWork, contract: OutcomeContract | None, what: str) -> None:
    """Refuse `what` on a contract of a dual-control fund unless it comes through a change request."""
    if contract is None or uow.session.info.get(_CLEARED):
        return
    fund = uow.session.get(OutcomesFund, contract.fund_id)
    if fund is not None and fund.dual_control:
        raise Conflict(f"{what} needs a change request approved by a second fund manager (the fund has dual "
                       "control)", code="CHANGE_REQUEST_REQUIRED")
