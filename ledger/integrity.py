"""Database integrity errors as domain errors: what a uniqueness race or an overflowing sum means.

Use cases check uniqueness before they insert, but two requests at once can both pass the
check; the database's unique constraint then refuses the second insert (on PostgreSQL it waits
for the first to commit). The unit of work turns that IntegrityError into the same domain
error the check gives, so a race answers DUPLICATE_PARTICIPANT, never "Unexpected error".
Integers beyond 64 bits (a balance or sum past what a BIGINT holds) become AMOUNT_TOO_LARGE.
"""
from __future__ import annotations

import logging
import re
from functools import cache

from sqlalchemy import UniqueConstraint, exc as sa_exc

from ledger.errors import Conflict, DomainError, ValidationError

log = logging.getLogger("utfall")

# (table, its unique columns) -> (code, message, field path)
UNIQUE: dict[tuple[str, frozenset[str]], tuple[str, str, list[str] | None]] = {
    ("participants", frozenset({"contract_id", "external_ref"})):
        ("DUPLICATE_PARTICIPANT", "this external reference is already enrolled", ["externalRef"]),
    ("participants", frozenset({"contract_id", "identity_hash"})):
        ("DUPLICATE_PARTICIPANT", "this person is already enrolled in the contract", ["personalIdentityNumber"]),
    ("parties", frozenset({"org_number"})):
        ("DUPLICATE_ORG_NUMBER", "a party with this organisation number exists", ["orgNumber"]),
    ("metrics", frozenset({"terms_id", "code"})):
        ("DUPLICATE_METRIC_CODE", "a metric with this code exists in these terms", ["metrics"]),
    ("payer_shares", frozenset({"terms_id", "party_id"})):
        ("DUPLICATE_PAYER", "this party already pays a share of these terms", ["payers"]),
    ("area_supplements", frozenset({"metric_id", "area"})):
        ("DUPLICATE_AREA", "this area already has a supplement", ["supplements"]),
    ("ledger_transactions", frozenset({"reverses"})):
        ("ALREADY_REVERSED", "this transaction has already been reversed", ["transactionId"]),
    ("contract_terms", frozenset({"contract_id", "version"})):
        ("CONFLICT", "the contract's terms were changed at the same time; read them again and retry", None),
    ("investment_closings", frozenset({"contract_id"})):
        ("INVESTMENTS_CLOSED", "the contract's investments are closed", ["contractId"]),
    ("distribution_receipts", frozenset({"payment_id"})):
        ("CONFLICT", "these receipts were distributed by another request at the same time; read again", None),
    ("disputes", frozenset({"subject_type", "subject_id"})):
        ("ALREADY_DISPUTED", "this decision has already been disputed", ["subjectId"]),
    ("ledger_accounts", frozenset({"key"})):
        ("CONFLICT", "another request opened the same ledger account at the same time; try again", None),
}

TOO_LARGE = "a number is too large for the ledger (amounts and sums are 64-bit integers of minor units)"


@cache
def _constraints() -> dict[str, tuple[str, frozenset[str]]]:
    """Every unique constraint's database name -> (table, columns), from the models' metadata."""
    from ledger.models import Base
    found = {}
    for table in Base.metadata.sorted_tables:
        for c in table.constraints:
            if isinstance(c, UniqueConstraint) and c.name:
                found[str(c.name)] = (table.name, frozenset(col.name for col in c.columns))
        for index in table.indexes:
            if index.unique and index.name:
                found[str(index.name)] = (table.name, frozenset(col.name for col in index.columns))
    return found


_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: ([\w.]+(?:, [\w.]+)*)")


def unique_key(err: sa_exc.IntegrityError) -> tuple[str, frozenset[str]] | None:
    """(table, columns) of the unique constraint that refused a row, or None for another integrity error."""
    orig = err.orig
    diag = getattr(orig, "diag", None)
    if diag is not None:  # psycopg
        if getattr(orig, "sqlstate", None) != "23505":
            return None
        name = diag.constraint_name or ""
        return _constraints().get(name) or ((diag.table_name or "", frozenset()) if name else None)
    match = _SQLITE_UNIQUE.search(str(orig))
    if not match:
        return None
    cols = [c.strip() for c in match.group(1).split(",")]
    table = cols[0].split(".")[0]
    return table, frozenset(c.split(".", 1)[1] for c in cols)


def domain_error(err: BaseException) -> DomainError | None:
    """The domain error a database refusal means, or None when it is not one we can explain."""
    if isinstance(err, sa_exc.IntegrityError):
        key = unique_key(err)
        if key is None:
            return None
        known = UNIQUE.get(key)
        if known is None:
            log.warning('{"event": "unmapped_unique_violation", "table": "%s"}', key[0])
            return Conflict("this conflicts with a change made at the same time; try again", code="CONFLICT")
        code, message, field = known
        return Conflict(message, code=code, field=field)
    if _out_of_range(err):
        return ValidationError(TOO_LARGE, code="AMOUNT_TOO_LARGE")
    return None


def _out_of_range(err: BaseException) -> bool:
    if isinstance(err, sa_exc.StatementError) and isinstance(err.orig, OverflowError):
        err = err.orig
    if isinstance(err, OverflowError):  # sqlite3: "Python int too large to convert to SQLite INTEGER"
        return "int too large" in str(err)
    if isinstance(err, sa_exc.DataError):
        return getattr(err.orig, "sqlstate", None) == "22003"  # numeric_value_out_of_range
    return False
