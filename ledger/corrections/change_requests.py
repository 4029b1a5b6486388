"""Dual control: under a fund's `dual_control`, corrections become change requests that a second
fund manager approves (the stored input is then replayed through the same use case) or rejects.

Covered: reversing a ledger transaction, amending and terminating a contract, and the heavy
sanctions (PENALTY, DEAUTHORISATION). A request is checked when it is made (the use case
runs in a savepoint that is rolled back), so bad input is refused at once; approval runs it
again on the state of that moment, and refuses, writing nothing, if it no longer applies.
With dual control off, `submit` simply runs the use case.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from ledger import contracts, journal, sanctions
from ledger import money as m
from ledger.access import Actor, require_role
from ledger.audit import result_ref
from ledger.contracts import MetricSpec, ShareSpec, get_contract
from ledger.corrections import dual_control, reversals
from ledger.db import UnitOfWork
from ledger.errors import Conflict, NotFound
from ledger.models import ChangeRequest, OutcomesFund, Transaction, utcnow
from ledger.parties import clean_text

USE_CASES: dict[str, Callable[..., Any]] = {
    "REVERSE_TRANSACTION": reversals.reverse_transaction,
    "AMEND_CONTRACT": contracts.amend_contract,
    "TERMINATE_CONTRACT": contracts.terminate_contract,
    "ISSUE_SANCTION": sanctions.issue_sanction,
}
CONTROLLED_SANCTIONS = sanctions.CONTROLLED_LEVELS


# --- the stored input: JSON with tags for the few non-JSON types the use cases take ---------------

_SPECS = {"MetricSpec": MetricSpec, "ShareSpec": ShareSpec}


def _encode(value: Any) -> Any:
    if isinstance(value, m.Money):
        return {"$money": [format(value.amount, "f"), value.currency.code]}
    if isinstance(value, Decimal):
        return {"$decimal": format(value, "f")}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if dataclasses.is_dataclass(value) and type(value).__name__ in _SPECS:
        return {"$" + type(value).__name__: {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        (tag, inner), = value.items()
        if tag == "$money":
            return m.money(inner[0], inner[1])
        if tag == "$decimal":
            return Decimal(inner)
        if tag == "$date":
            return date.fromisoformat(inner)
        if tag[1:] in _SPECS:
            fields = {k: _decode(v) for k, v in inner.items()}
            if "area_supplements" in fields:
                fields["area_supplements"] = tuple(tuple(p) for p in fields["area_supplements"])
            return _SPECS[tag[1:]](**fields)
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    return value


def encode_params(params: dict[str, Any]) -> str:
    return json.dumps({k: _encode(v) for k, v in params.items()}, sort_keys=True, ensure_ascii=False)


def decode_params(payload: str) -> dict[str, Any]:
    return {k: _decode(v) for k, v in json.loads(payload).items()}


# --- use cases ------------------------------------------------------------------------------------

def _scope(uow: UnitOfWork, kind: str, params: dict[str, Any]) -> tuple[OutcomesFund | None, int | None]:
    """(the fund whose dual control applies, the contract) of a request; no fund: not controlled."""
    s = uow.session
    if kind == "REVERSE_TRANSACTION":
        tx = s.get(Transaction, params["transaction_id"])
        contract_id = tx.contract_id if tx is not None else None
    else:
        contract_id = params["contract_id"]
    if contract_id is None:
        return None, None
    contract = get_contract(uow, contract_id)
    return s.get(OutcomesFund, contract.fund_id), contract.id


def submit(uow: UnitOfWork, *, actor: Actor, kind: str, **params: Any) -> Any:
    """Run the use case `kind`, or, under dual control, check it and record a PENDING change request."""
    require_role(actor, "FUND_MANAGER")
    run = USE_CASES[kind]
    fund, contract_id = _scope(uow, kind, params)
    controlled = fund is not None and fund.dual_control and (
        kind != "ISSUE_SANCTION" or params.get("level") in CONTROLLED_SANCTIONS)
    if not controlled:
        with dual_control.cleared(uow):
            return run(uow, actor=actor, **params)
    s = uow.session
    # the request must be one that would succeed now: run it, then undo it
    with s.begin_nested() as trial, dual_control.cleared(uow):
        run(uow, actor=actor, **params)
        trial.rollback()
    request = ChangeRequest(fund_id=fund.id, contract_id=contract_id, kind=kind, payload=encode_params(params),
                            status="PENDING", requested_by=actor.name, requested_by_label=actor.label)
    s.add(request)
    s.flush()
    return request


def _pending(uow: UnitOfWork, change_request_id: int) -> ChangeRequest:
    request = uow.session.execute(select(ChangeRequest).where(ChangeRequest.id == change_request_id)
                                  .with_for_update()).scalar_one_or_none()
    if request is None:
        raise NotFound(f"change request {change_request_id} does not exist", code="UNKNOWN_CHANGE_REQUEST",
                       field=["changeRequestId"])
    if request.status != "PENDING":
        raise Conflict(f"the change request is already {request.status}", code="ALREADY_DECIDED",
                       field=["changeRequestId"])
    return request


def approve_change_request(uow: UnitOfWork, *, actor: Actor, change_request_id: int) -> ChangeRequest:
    """A second fund manager approves: the stored input runs through the same use case, now."""
    require_role(actor, "FUND_MANAGER")
    journal.lock(uow)  # the replay posts; take the chain lock before the request's row lock, as postings do
    request = _pending(uow, change_request_id)
    if request.requested_by == actor.name:
        raise Conflict("the person who asked for a change cannot approve it", code="FOUR_EYES_REQUIRED",
                       field=["changeRequestId"])
    with dual_control.cleared(uow):
        result = USE_CASES[request.kind](uow, actor=actor, **decode_params(request.payload))
    request.result_type, request.result_id = result_ref(result)
    request.status, request.decided_by, request.decided_at = "APPROVED", actor.label, utcnow()
    uow.session.flush()
    return request


def reject_change_request(uow: UnitOfWork, *, actor: Actor, change_request_id: int, reason: str) -> ChangeRequest:
    """A fund manager (the requester too, to withdraw it) ends a request without carrying it out."""
    require_role(actor, "FUND_MANAGER")
    reason = clean_text(reason, "reason", max_len=2000)
    request = _pending(uow, change_request_id)
    request.status, request.decided_by, request.decided_at = "REJECTED", actor.label, utcnow()
    request.decision_reason = reason
    uow.session.flush()
    return request

