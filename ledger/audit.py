"""Every mutation runs through here: idempotency keys and the audit trail.

The idempotency key row is inserted before the use case runs (`INSERT … ON CONFLICT DO
NOTHING`): a concurrent request with the same key waits on the unique index until the first
commits, then inserts nothing and finds the stored result instead: retries never duplicate
money. The key row, its result and the audit event are written through the connection (Core),
not as ORM objects: one statement each, with no savepoint and no flush of their own — the ORM's
were most of a mutation's own Python (ops/SCALING.md).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import bindparam, insert, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ledger.access import Actor
from ledger.db import UnitOfWork, fetch_after_pending, has_pending, queue_statement, send_buffered
from ledger.errors import Conflict, ValidationError
from ledger.models import AuditEvent, Base, IdempotencyKey
from ledger.models.base import utcnow

T = TypeVar("T")

# Inputs never written anywhere in clear: identity numbers are replaced by a keyed hash
# before the input is hashed for idempotency or stored in the audit trail.
SENSITIVE_KEYS = frozenset({"personalIdentityNumber", "personal_identity_number"})


class IdempotencyRace(Exception):
    """Another request with the same key committed first; retry to get its result."""


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (Decimal, date, datetime)):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def sanitise(params: Mapping[str, Any], redact: Callable[[str], str]) -> dict:
    """The input with sensitive values replaced by `redact(value)`, recursively."""
    def walk(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: (redact(str(x)) if k in SENSITIVE_KEYS and x is not None else walk(x)) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        return v
    return walk(_plain(params))


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def result_ref(obj: Any) -> tuple[str, str]:
    """(class name, primary key) of an ORM object, to find it again on a retry."""
    ident = inspect(obj).identity
    return type(obj).__name__, ",".join(str(i) for i in ident)


def load_ref(uow: UnitOfWork, type_name: str, ident: str) -> Any:
    for mapper in Base.registry.mappers:
        if mapper.class_.__name__ == type_name:
            key = tuple(int(x) for x in ident.split(","))
            return uow.session.get(mapper.class_, key if len(key) > 1 else key[0])
    raise LookupError(type_name)


def run_mutation(
    uow: UnitOfWork, *, actor: Actor, operation: str, params: Mapping[str, Any],
    idempotency_key: str | None, action: Callable[[], T],
    ref: Callable[[T], tuple[str, str]] = result_ref,
    load: Callable[[UnitOfWork, str, str], T] = load_ref,
    redact: Callable[[str], str] = lambda v: "[redacted]",
) -> T:
    """Run `action` once per idempotency key, and record who did it with which input."""
    clean = sanitise(params, redact)
    body = canonical_json({"operation": operation, "input": clean})
    key_id = None
    if idempotency_key is not None:
        if not idempotency_key.strip() or len(idempotency_key) > 200 or "\x00" in idempotency_key:
            raise ValidationError("an idempotency key is 1 to 200 characters", code="INVALID_IDEMPOTENCY_KEY",
                                  field=["idempotencyKey"])
        scope = f"token:{actor.token_id}" if actor.token_id is not None else f"name:{actor.name}"
        request_hash = hashlib.sha256(body.encode("utf-8")).hexdigest()
        conn = uow.session.connection()
        claim = {"scope": scope, "key": idempotency_key, "operation": operation, "request_hash": request_hash,
                 "result_type": "", "result_id": ""}
        if conn.dialect.name == "postgresql" and uow.may_rerun and has_pending(conn):
            # in a group commit batch, behind the mutation before it (its posting and event): one round
            # trip for both, where that one's sync and then the claim took two
            row = fetch_after_pending(conn, _CLAIM_POSTGRESQL, {**claim, "created_at": utcnow()})
            key_id = row[0] if row is not None else None
        else:
            key_id = conn.execute(_CLAIMS[conn.dialect.name], claim).scalar_one_or_none()
        if key_id is None:  # the key is taken: by a committed request, or by an earlier one of this transaction
            existing = conn.execute(_EXISTING, {"scope": scope, "key": idempotency_key}).first()
            if existing is None:  # (taken by a transaction that then rolled back: run again)
                raise IdempotencyRace(idempotency_key)
            if existing.request_hash != request_hash:
                raise Conflict(
                    "this idempotency key was used before with a different input",
                    code="IDEMPOTENCY_KEY_REUSED", field=["idempotencyKey"],
                )
            return load(uow, existing.result_type, existing.result_id)
    result = action()
    rtype, rid = ref(result) if result is not None else (None, None)
    conn = uow.session.connection()
    event = {"actor": actor.name, "role": actor.role, "party_id": actor.party_id, "operation": operation,
             "input": canonical_json(clean), "result_type": rtype, "result_id": rid}
    if conn.dialect.name == "postgresql":
        # the key's result and the audit event in one statement (SQLite has no round trip to save, nor
        # UPDATE in WITH); nothing reads its result, so behind a posting still waiting on the connection
        # it waits too, and goes with whatever is sent next or the commit: no round trip of its own. A
        # unit of work that may run again does so if it fails there (as for the posting), without queueing
        sql, params = _POSTGRESQL_AUDIT[key_id is not None], {**event, "occurred_at": utcnow()}
        if key_id is not None:
            params.update(key_id=key_id, new_type=rtype or "", new_id=rid or "")
        if uow.may_rerun and has_pending(conn):
            send_buffered(conn)  # (the posting first, then what records it)
            queue_statement(conn, sql, params)
        else:
            conn.exec_driver_sql(sql, params)
    else:
        if key_id is not None:
            conn.execute(_RESULT, {"key_id": key_id, "new_type": rtype or "", "new_id": rid or ""})
        conn.execute(_AUDIT, event)
    uow.session.flush()  # whatever the use case left pending, as before
    return result


_KEYS, _EVENTS = IdempotencyKey.__table__, AuditEvent.__table__
# INSERT of a key row that inserts nothing (and returns no id) when the key is taken
_CLAIMS = {name: dialect.insert(_KEYS).on_conflict_do_nothing(index_elements=["scope", "key"]).returning(_KEYS.c.id)
           for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}
# _CLAIMS' PostgreSQL statement in the driver's own parameter style, for `fetch_after_pending` (which
# queues it on the raw connection), compiled from it once: `created_at` is then given explicitly
_CLAIM_POSTGRESQL = str(_CLAIMS["postgresql"].compile(dialect=postgresql.psycopg.dialect(), column_keys=[
    "scope", "key", "operation", "request_hash", "result_type", "result_id", "created_at"]))
_EXISTING = select(_KEYS.c.request_hash, _KEYS.c.result_type, _KEYS.c.result_id).where(
    _KEYS.c.scope == bindparam("scope"), _KEYS.c.key == bindparam("key"))
_RESULT = update(_KEYS).where(_KEYS.c.id == bindparam("key_id")).values(
    result_type=bindparam("new_type"), result_id=bindparam("new_id"))
_AUDIT = insert(_EVENTS)
# PostgreSQL, in the driver's own parameter style (they may be queued on it): by whether a key's result
# is written with the event. Written out rather than as an INSERT with the UPDATE added as a CTE:
# SQLAlchemy would add every execution parameter named like a key column (the event's `operation`)
# to the UPDATE's SET.
_EVENT_SQL = ("INSERT INTO audit_events (occurred_at, actor, role, party_id, operation, input, result_type, "
              "result_id) VALUES (%(occurred_at)s, %(actor)s, %(role)s, %(party_id)s, %(operation)s, %(input)s, "
              "%(result_type)s, %(result_id)s)")
_POSTGRESQL_AUDIT = {
    False: _EVENT_SQL,
    True: "WITH result AS (UPDATE idempotency_keys SET result_type = %(new_type)s, result_id = %(new_id)s "
          "WHERE id = %(key_id)s) " + _EVENT_SQL,
}
