"""Settings, read from the environment only."""
from __future__ import annotations

import os
from dataclasses import dataclass

from ledger.db import database_url


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    database_url: str
    env: str  # "development" or "production"
    secret: bytes  # the key for hashing identity numbers
    # the Ed25519 key file that signs tree heads (UTFALL_SIGNING_KEY); in development a
    # generated one, made on first use when `generate_signing_key`
    signing_key: str | None = None
    generate_signing_key: bool = False
    # UTFALL_GROUP_COMMIT=1: PostgreSQL units of work of this process commit in batches through
    # one writer thread (ledger.db.GroupCommit; ops/SCALING.md says when it pays)
    group_commit: bool = False

    @property
    def production(self) -> bool:
        return self.env != "development"


DEV_SECRET = b"utfall-development-secret-not-for-production"


def load(environ: dict | None = None, *, require_secret: bool = True) -> Settings:
    """Settings from the environment; outside development UTFALL_SECRET is required, unless the
    caller never hashes an identity number (read-only commands), which then gets no secret at all."""
    env = os.environ if environ is None else environ
    mode = env.get("UTFALL_ENV", "production")
    if mode not in ("development", "production"):
        raise ConfigError(f"UTFALL_ENV must be development or production, not {mode!r}")
    secret = env.get("UTFALL_SECRET")
    if not secret:
        if mode != "development" and not require_secret:
            secret_bytes = b""  # nothing this caller does may hash an identity number
        elif mode != "development":
            raise ConfigError("UTFALL_SECRET is required unless UTFALL_ENV=development")
        else:
            secret_bytes = DEV_SECRET
    else:
        if len(secret) < 16:
            raise ConfigError("UTFALL_SECRET must be at least 16 characters")
        secret_bytes = secret.encode("utf-8")
    url = env.get("DATABASE_URL") or database_url()
    signing_key, generate = env.get("UTFALL_SIGNING_KEY") or None, False
    if signing_key is None and mode == "development":
        from ledger.signing import development_key_path
        signing_key, generate = str(development_key_path(url, env)), True
    group_commit = env.get("UTFALL_GROUP_COMMIT", "0")
    if group_commit not in ("0", "1"):
        raise ConfigError(f"UTFALL_GROUP_COMMIT must be 0 or 1, not {group_commit!r}")
    return Settings(database_url=url, env=mode, secret=secret_bytes, signing_key=signing_key,
                    generate_signing_key=generate, group_commit=group_commit == "1")
