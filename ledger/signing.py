"""Signed tree heads: Ed25519 signatures over (tree size, root hash, time).

The signed bytes, 68 of them, are exactly:

    b"utfall tree head v1\\n"            20 bytes of ASCII, the format's name and version
    tree_size                          8 bytes, unsigned big-endian
    root_hash                          32 bytes, the RFC 9162 tree hash (ledger/merkle.py)
    timestamp                          8 bytes, unsigned big-endian, milliseconds since
                                       1970-01-01T00:00:00Z (the time of signing)

The signature is Ed25519 (RFC 8032) over those bytes. `keyId` is the hex SHA-256 of the
32-byte raw public key. The key is a PKCS#8 PEM file (`utfall keys create PATH`) named by
UTFALL_SIGNING_KEY; in development without one, a key file is made on first use next to the
SQLite database (or in UTFALL_KEY_DIR, or the working directory).
"""
from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.config import ConfigError

SIGNED_PREFIX = b"utfall tree head v1\n"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DEV_KEY_FILE = "utfall-signing-key.pem"


class SigningKeyError(ConfigError):
    """The signing key cannot be made or read (a configuration problem, not a user's)."""


@dataclass(frozen=True)
class SignedTreeHead:
    tree_size: int
    root_hash: bytes
    timestamp: datetime  # UTC, whole milliseconds
    signature: bytes
    key_id: str


def timestamp_ms(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError("a tree head's time needs a timezone")
    return (ts - EPOCH) // timedelta(milliseconds=1)


def signed_bytes(tree_size: int, root_hash: bytes, timestamp: datetime) -> bytes:
    if len(root_hash) != 32:
        raise ValueError("a root hash is 32 bytes")
    return SIGNED_PREFIX + struct.pack(">Q", tree_size) + root_hash + struct.pack(">Q", timestamp_ms(timestamp))


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


class Signer:
    """Signs tree heads with one private key and checks them against its public key."""

    def __init__(self, private_key: Ed25519PrivateKey):
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def generate(cls) -> "Signer":
        return cls(Ed25519PrivateKey.generate())

    def public_key_pem(self) -> str:
        return self.public_key.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")

    def sign(self, tree_size: int, root_hash: bytes, at: datetime) -> SignedTreeHead:
        at = at.astimezone(timezone.utc)
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)  # the signed bytes hold milliseconds
        return SignedTreeHead(tree_size, root_hash, at, self._key.sign(signed_bytes(tree_size, root_hash, at)),
                              self.key_id)

    def verify(self, head: SignedTreeHead) -> bool:
        if head.key_id.lower() != self.key_id:
            return False
        try:
            self.public_key.verify(head.signature, signed_bytes(head.tree_size, head.root_hash, head.timestamp))
        except (InvalidSignature, ValueError, OverflowError, struct.error):
            return False
        return True


# --- key files ------------------------------------------------------------------------------

def create_key_file(path: str | os.PathLike) -> Signer:
    """Write a new private key to `path` (readable by its owner only); never overwrites."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SigningKeyError(f"{path} already exists: a signing key is never overwritten") from None
    except OSError as exc:
        raise SigningKeyError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return Signer(key)


def load_key_file(path: str | os.PathLike) -> Signer:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the signing key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise SigningKeyError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 key")
    return Signer(key)


def development_key_path(database_url: str, environ: dict) -> Path:
    """Where development keeps its generated key: UTFALL_KEY_DIR, beside the SQLite file, or here."""
    if environ.get("UTFALL_KEY_DIR"):
        return Path(environ["UTFALL_KEY_DIR"]) / DEV_KEY_FILE
    prefix = "sqlite:///"
    if database_url.startswith(prefix) and ":memory:" not in database_url and len(database_url) > len(prefix):
        return Path(database_url[len(prefix):]).resolve().parent / DEV_KEY_FILE
    return Path.cwd() / DEV_KEY_FILE


def signer_from(path: str | None, *, generate: bool) -> Signer | None:
    """The signer for a configured key file; with `generate`, the file is made when missing."""
    if path is None:
        return None
    if generate and not Path(path).exists():
        try:
            return create_key_file(path)
        except SigningKeyError:
            if not Path(path).exists():  # not a race with another process making it
                raise
    return load_key_file(path)


def signer_for(settings) -> Signer | None:
    """The service's signer: the configured key file (made first in development), a key for
    this process only when development settings name none (tests), or none in production
    without UTFALL_SIGNING_KEY (tree heads are then refused with SIGNING_KEY_MISSING)."""
    if settings.signing_key:
        return signer_from(settings.signing_key, generate=settings.generate_signing_key)
    return None if settings.production else Signer.generate()
