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
    # uploaded evidence documents, stored by their SHA-256 (UTFALL_DOCUMENT_DIR; default:
    # `documents` beside a SQLite database file, else in the working directory)
    document_dir: str = "documents"
    document_max_bytes: int = 20 * 1024 * 1024  # one uploaded document (UTFALL_DOCUMENT_MAX_BYTES)
    import_max_bytes: int = 512 * 1024 * 1024  # one evidence file imported over HTTP (UTFALL_IMPORT_MAX_BYTES)
    # PostgreSQL units of work of this process commit in batches through one writer
    # (ledger.db.GroupCommit; ops/SCALING.md); UTFALL_GROUP_COMMIT=0 commits each on its own
    group_commit: bool = True
    # PostgreSQL: a request's bounded hot reads awaited on the server's event loop, not in a worker
    # thread (api.loop_reads; ops/SCALING.md); UTFALL_READS_ON_LOOP=0 keeps every read in threads
    reads_on_loop: bool = True
    # PostgreSQL with group commit: this machine's processes share one writer (ledger.shared_writer):
    # the one holding the writer seat makes the others' mutations in its batches. UTFALL_SHARED_WRITER;
    # on by default for `uvicorn --factory api.asgi:create --workers N`, off for one process
    shared_writer: bool = False

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
    group_commit = env.get("UTFALL_GROUP_COMMIT", "1")
    if group_commit not in ("0", "1"):
        raise ConfigError(f"UTFALL_GROUP_COMMIT must be 0 or 1, not {group_commit!r}")
    reads_on_loop = env.get("UTFALL_READS_ON_LOOP", "1")
    if reads_on_loop not in ("0", "1"):
        raise ConfigError(f"UTFALL_READS_ON_LOOP must be 0 or 1, not {reads_on_loop!r}")
    shared_writer = env.get("UTFALL_SHARED_WRITER", "0")
    if shared_writer not in ("0", "1"):
        raise ConfigError(f"UTFALL_SHARED_WRITER must be 0 or 1, not {shared_writer!r}")
    return Settings(database_url=url, env=mode, secret=secret_bytes, signing_key=signing_key,
                    generate_signing_key=generate, group_commit=group_commit == "1", shared_writer=shared_writer == "1",
                    reads_on_loop=reads_on_loop == "1", document_dir=env.get("UTFALL_DOCUMENT_DIR") or default_document_dir(url),
                    document_max_bytes=_byte_count(env, "UTFALL_DOCUMENT_MAX_BYTES", 20 * 1024 * 1024),
                    import_max_bytes=_byte_count(env, "UTFALL_IMPORT_MAX_BYTES", 512 * 1024 * 1024))


def default_document_dir(database_url: str) -> str:
    """`documents` beside a SQLite database file (so the two are found, and backed up, together);
    otherwise `documents` in the working directory."""
    from pathlib import Path
    prefix = "sqlite:///"
    if database_url.startswith(prefix) and ":memory:" not in database_url and len(database_url) > len(prefix):
        return str(Path(database_url[len(prefix):]).parent / "documents")
    return "documents"


def _byte_count(env, name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name} must be a whole number of bytes, at least 1, not {raw!r}")
    return int(raw)
