"""Swedish personal identity numbers: validated, normalised, and only ever kept as a keyed hash."""
from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date

from ledger.errors import ValidationError
from ledger.parties import luhn_ok

_PNR = re.compile(r"(\d{2})?(\d{6})([-+]?)(\d{4})", re.ASCII)  # ASCII digits only: "١٢٣" is not a number here


def normalise(raw: str, today: date) -> str:
    """12 digits YYYYMMDDNNNC from a personnummer or samordningsnummer in any common form.

    10-digit numbers get their century from the separator ('+' means 100 years or older).
    A samordningsnummer has 60 added to the day. The Luhn check digit is verified.
    """
    def bad(why: str) -> ValidationError:
        # never echo the number back: error messages end up in logs
        return ValidationError(f"not a valid personal identity number ({why})", code="INVALID_PERSONAL_IDENTITY_NUMBER",
                               field=["personalIdentityNumber"])

    s = (raw or "").strip().replace(" ", "")
    match = _PNR.fullmatch(s)
    if not match:
        raise bad("10 or 12 digits, with or without a separator")
    century, body, sep, tail = match.groups()
    if not luhn_ok(body + tail):
        raise bad("check digit")
    yy, mm, dd = int(body[:2]), int(body[2:4]), int(body[4:6])
    if dd > 60:
        dd -= 60  # samordningsnummer
    if century is None:
        full = 2000 + yy if 2000 + yy <= today.year else 1900 + yy
        if sep == "+":
            full -= 100
    else:
        full = int(century + body[:2])
    try:
        born = date(full, mm, dd)
    except ValueError:
        raise bad("date") from None
    if born > today:
        raise bad("date in the future")
    return f"{full:04d}{body[2:]}{tail}"


def identity_hash(secret: bytes, contract_id: int, normalised: str) -> str:
    """HMAC-SHA256 keyed with the server secret, per contract, so hashes cannot be joined across contracts."""
    if not secret:  # a read-only command's settings carry no secret: never hash with an empty key
        raise ValueError("no UTFALL_SECRET: identity numbers cannot be hashed")
    return hmac.new(secret, f"{contract_id}:{normalised}".encode("ascii"), hashlib.sha256).hexdigest()


def redactor(secret: bytes):
    """A function that replaces an identity number by a keyed hash, for audit and idempotency records."""
    if not secret:
        raise ValueError("no UTFALL_SECRET: identity numbers cannot be hashed")
    return lambda value: "hmac:" + hmac.new(secret, value.encode("utf-8"), hashlib.sha256).hexdigest()
