"""Structured logs: one JSON object per line, so a log pipeline can filter by request id.

No identity number reaches a log line, whatever a client sends: every string in every entry
(messages, error texts, tracebacks) has digit runs shaped like a Swedish personal identity or
co-ordination number (10 or 12 digits, with or without a hyphen, plus or space, in any
script's digits) replaced by "[redacted]" before the line is written.
"""
from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone

# YYMMDD-NNNN, YYMMDD+NNNN, YYMMDDNNNN, YYYYMMDD-NNNN, YYYYMMDDNNNN (\d: any script's digits)
IDENTITY_NUMBER = re.compile(r"(?<!\d)(?:\d{2})?\d{6}[-+ ]?\d{4}(?!\d)")
REDACTED = "[redacted]"
# fields that are ours and never carry client text (a request id may hold ten digits in a row)
_KEEP = frozenset({"ts", "level", "logger", "request_id"})


def redact(text: str) -> str:
    """`text` with anything shaped like an identity number replaced."""
    return IDENTITY_NUMBER.sub(REDACTED, text)


def _scrub(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: (v if k in _KEEP else _scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    """Formats every record as JSON; a message that is itself a JSON object is merged in."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "logger": record.name}
        message = record.getMessage()
        try:
            parsed = json.loads(message)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            entry.update(parsed)
        else:
            entry["message"] = message
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(_scrub(entry), ensure_ascii=False, default=str)


def configure(level: int = logging.INFO, stream=None) -> None:
    """Send every logger (ours, uvicorn's, strawberry's) through the JSON formatter on stderr."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "strawberry.execution"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
