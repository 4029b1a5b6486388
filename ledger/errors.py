"""Typed domain errors. The API turns each into a userError with its stable `code`."""
from __future__ import annotations

from collections.abc import Sequence


class DomainError(Exception):
    """An expected failure of a use case: bad input, a broken rule or a missing permission."""

    code = "INVALID_INPUT"

    def __init__(self, message: str, *, code: str | None = None, field: Sequence[str] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = list(field) if field else None

    def at(self, *prefix: str) -> "DomainError":
        """Return this error with `prefix` put before its field path (for batch items)."""
        self.field = [*prefix, *(self.field or [])]
        return self


class ValidationError(DomainError):
    code = "INVALID_INPUT"


class NotFound(DomainError):
    code = "NOT_FOUND"


class PermissionDenied(DomainError):
    code = "PERMISSION_DENIED"


class Conflict(DomainError):
    """The request contradicts the current state (a lifecycle step that is not allowed now)."""

    code = "CONFLICT"


class MultipleErrors(DomainError):
    """Several independent failures found at once (a batch, a file)."""

    code = "MULTIPLE_ERRORS"

    def __init__(self, errors: Sequence[DomainError]):
        super().__init__(f"{len(errors)} errors", code=self.code)
        self.errors = list(errors)


# Every stable code a caller can get in a userError (or a GraphQL error's extensions.code).
# The SDL publishes them as the enum UserErrorCode; a test fails when code raises one not listed.
ERROR_CODES: tuple[str, ...] = (
    "ACCOUNT_CLOSED",
    "ACCOUNT_NOT_EMPTY",
    "ALREADY_DECIDED",
    "ALREADY_DISPUTED",
    "ALREADY_POSTED",
    "ALREADY_REVERSED",
    "ALREADY_SUSPENDED",
    "AMOUNT_TOO_LARGE",
    "BAD_REQUEST",
    "BAD_ROWS",
    "BASELINE_REQUIRED",
    "BATCH_TOO_LARGE",
    "BEFORE_ENROLMENT",
    "BELOW_AMOUNT_PAID",
    "CHANGE_REQUEST_REQUIRED",
    "CLAIM_WINDOW_CLOSED",
    "CLAIM_WINDOW_OPEN",
    "CLAWBACK_CONFLICT",
    "CLAWBACK_EXCEEDS_PAID",
    "COHORT_SIZE_REQUIRED",
    "COMPARISON_REQUIRED",
    "CONFLICT",
    "CONTRACT_ENDED",
    "CONTRACT_NOT_ACTIVE",
    "CONTRACT_NOT_ENDED",
    "CONTRACT_SUSPENDED",
    "CURRENCY_MISMATCH",
    "DATE_IN_FUTURE",
    "DATE_REQUIRED",
    "DOCUMENT_HASH_MISMATCH",
    "DOCUMENT_TOO_LARGE",
    "DRAWDOWN_EXCEEDS_PRINCIPAL",
    "DISPUTE_WINDOW_CLOSED",
    "DUPLICATE_AREA",
    "DUPLICATE_CLAIM",
    "DUPLICATE_CLAWBACK",
    "DUPLICATE_COLUMN",
    "DUPLICATE_EVIDENCE",
    "DUPLICATE_MEASUREMENT",
    "DUPLICATE_METRIC",
    "DUPLICATE_METRIC_CODE",
    "DUPLICATE_ORG_NUMBER",
    "DUPLICATE_PAID_BEFORE",
    "DUPLICATE_PARTICIPANT",
    "DUPLICATE_PAYER",
    "DUPLICATE_SUPPLEMENT",
    "EFFECTIVE_DATE_BEFORE_CURRENT",
    "EMPTY_BATCH",
    "EMPTY_FILE",
    "ENROLMENT_CLOSED",
    "EVIDENCE_NOT_ALLOWED",
    "EVIDENCE_OUTSIDE_PERIOD",
    "FOUR_EYES_REQUIRED",
    "FROM_SIZE_AFTER_TO_SIZE",
    "IDEMPOTENCY_KEY_REUSED",
    "IDENTITY_REQUIRED",
    "INSUFFICIENT_FUND_CAPITAL",
    "INTERNAL_ERROR",
    "INVALID_AMOUNT",
    "INVALID_BATCH_SIZE",
    "INVALID_COHORT_SIZE",
    "INVALID_COMPARISON",
    "INVALID_CSV",
    "INVALID_CURRENCY",
    "INVALID_CURSOR",
    "INVALID_DATE",
    "INVALID_DATETIME",
    "INVALID_DECIMAL",
    "INVALID_DIRECTION",
    "INVALID_DISPUTE_WINDOW",
    "INVALID_ENCODING",
    "INVALID_FORMAT",
    "INVALID_ID",
    "INVALID_IDEMPOTENCY_KEY",
    "INVALID_INPUT",
    "INVALID_METRIC_CODE",
    "INVALID_METRIC_KIND",
    "INVALID_ORG_NUMBER",
    "INVALID_PAYER",
    "INVALID_PERCENT",
    "INVALID_PERIOD",
    "INVALID_PERSONAL_IDENTITY_NUMBER",
    "INVALID_RETURN_CAP",
    "INVALID_ROLE",
    "INVALID_SANCTION_LEVEL",
    "INVALID_SCHEDULE",
    "INVALID_SEQUENCE",
    "INVALID_SHA256",
    "INVALID_TERM",
    "INVALID_TEXT",
    "INVALID_THRESHOLD",
    "INVALID_TRANCHE",
    "INVALID_TRANSITION",
    "INVALID_TREE_HEAD",
    "INVALID_TREE_SIZE",
    "INVALID_VALUE",
    "INVESTMENTS_CLOSED",
    "INVESTOR_NOT_ON_CONTRACT",
    "LATE_CLAIM_NOT_ALLOWED",
    "MEASUREMENT_NOT_ALLOWED",
    "MEASUREMENT_NOT_CURRENT",
    "MEASUREMENT_OUTSIDE_PERIOD",
    "MISSING_BASELINE",
    "MISSING_COHORT_SIZE",
    "MISSING_COLUMN",
    "MISSING_COMPARISON",
    "MULTIPLE_ERRORS",
    "NON_POSITIVE_AMOUNT",
    "NON_POSITIVE_CAP",
    "NON_POSITIVE_PRICE",
    "NOTHING_RECEIVED",
    "NOT_A_RATE_CARD",
    "NOT_DISPUTABLE",
    "NOT_FOUND",
    "NOT_SUSPENDED",
    "NOT_VERIFIED",
    "NO_INVESTMENTS",
    "NO_METRICS",
    "NO_OBLIGATION",
    "ONCE_ONLY_NOT_ALLOWED",
    "OUTSIDE_TERM",
    "OVERLAPPING_MEASUREMENT",
    "OVERLAPPING_MEASUREMENTS",
    "OVERPAYMENT",
    "OWN_DECISION",
    "OWNERSHIP_NOT_ALLOWED",
    "OWNERSHIP_REQUIRED",
    "PAGE_SIZE",
    "PARTY_REQUIRED",
    "PAYOUT_AWAITING_APPROVAL",
    "PAYOUT_SUPERSEDED",
    "PENALTY_NOT_ALLOWED",
    "PENALTY_REQUIRED",
    "PERIOD_NOT_IN_SCHEDULE",
    "PERIOD_OUTSIDE_TERM",
    "PERIOD_OVERLAPS",
    "PERMISSION_DENIED",
    "QUERY_TOO_COSTLY",
    "READ_ONLY_ROLE",
    "REASON_REQUIRED",
    "REQUEST_TIMEOUT",
    "REQUEST_TOO_LARGE",
    "REQUIRED",
    "REVERSAL_OF_REVERSAL",
    "SELF_VERIFICATION",
    "SEQUENCE_BEYOND_TREE",
    "SERVICE_UNAVAILABLE",
    "SHARES_NOT_100",
    "SIGNING_KEY_MISSING",
    "STALE_PAYOUT",
    "TERMS_OUTSIDE_CONTRACT",
    "THRESHOLD_REQUIRED",
    "TOO_FEW_ENTRIES",
    "TOO_LONG",
    "TOO_MANY_DECIMALS",
    "TREE_SIZE_BEYOND_LEDGER",
    "UNAUTHENTICATED",
    "UNBALANCED_TRANSACTION",
    "UNKNOWN_ACCOUNT",
    "UNKNOWN_CHANGE_REQUEST",
    "UNKNOWN_COLUMN",
    "UNKNOWN_CONTRACT",
    "UNKNOWN_DISPUTE",
    "UNKNOWN_DISTRIBUTION",
    "UNKNOWN_EVIDENCE",
    "UNKNOWN_FUND",
    "UNKNOWN_INDIGO_FIELD",
    "UNKNOWN_INVESTMENT",
    "UNKNOWN_MEASUREMENT",
    "UNKNOWN_METRIC",
    "UNKNOWN_PARTICIPANT",
    "UNKNOWN_PARTY",
    "UNKNOWN_PAYOUT",
    "UNKNOWN_TOKEN",
    "UNKNOWN_TRANSACTION",
    "UNSUPPORTED_MEDIA_TYPE",
    "VALUE_REQUIRED",
    "WRONG_PARTY_ROLE",
    "ZERO_AMOUNT",
)
