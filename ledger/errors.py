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
