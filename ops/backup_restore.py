#!/usr/bin/env python3
"""Back up an Utfall PostgreSQL database, restore it, and prove the ledger came through unchanged.

    python -m ops.backup_restore backup SOURCE_URL DUMP_FILE [--documents DIR]
    python -m ops.backup_restore restore DUMP_FILE TARGET [--server URL] [--sequence N --hash H] [--documents DIR]
    python -m ops.backup_restore verify-restore SOURCE_URL DUMP_FILE TARGET [--documents DIR --restore-documents DIR]
    python -m ops.backup_restore verify URL --sequence N --hash H

(`python ops/backup_restore.py ...` works too when Utfall is installed.)

backup          takes the ledger's digest (sequence, hash) from SOURCE_URL *before* dumping, then
                `pg_dump -Fc` into DUMP_FILE (written to a temporary name and renamed, never
                overwriting an existing file). The digest, the dump's size and SHA-256 are
                written next to it as DUMP_FILE.digest.json. Hand the digest to whoever must be
                able to check the backup later; the JSON file is a convenience, not a proof.
restore         checks the dump against DUMP_FILE.digest.json (if present), `createdb -T template0`
                TARGET (it must not exist: nothing is ever overwritten), `pg_restore` into it
                (tables, data, functions and the append-only triggers), then verifies:
                `utfall ledger verify --sequence N --hash H` with DATABASE_URL pointing at the
                restored database must say ok, and the append-only triggers must be there and
                enabled (an UPDATE of ledger_entries is refused). The digest comes from
                --sequence/--hash, or else from DUMP_FILE.digest.json.
verify-restore  backup, then restore into TARGET on the source's server, then verify against
                the digest taken before the dump, and check the restored database has the same
                append-only triggers as the source.
verify          only the verification step, on any database (e.g. a copy someone restored by hand).

Uploaded evidence documents live outside the database, in the document store (a directory,
UTFALL_DOCUMENT_DIR). `backup --documents DIR` (default: $UTFALL_DOCUMENT_DIR) archives it
after the dump as DUMP_FILE.documents.tar, its checksum in the digest file; a file is stored
before its upload row commits, so every upload in the dump has its bytes in the archive. A
backup of a database with uploads and no document store is refused. `restore --documents DIR`
unpacks the archive into DIR (new or empty: nothing is overwritten), checks every file's
SHA-256 against its name, and fails unless every upload row of the restored database has its file.

URLs are SQLAlchemy's (`postgresql+psycopg://user:password@host:5432/db`) or libpq's
(`postgresql://...`). TARGET is a database name or a full URL; a bare name lives on --server
(restore; default: the libpq environment, PGHOST/PGPORT/PGUSER/PGPASSWORD) or on the source's
server (verify-restore). Passwords are handed to pg_dump/createdb/pg_restore through PGPASSWORD,
never on their command lines. Needs pg_dump, createdb and pg_restore on PATH (a major version at
least the server's).

Exit status: 0 when everything checked out; 1 when a verification failed (the ledger does not
hold the digest, a trigger is missing, the dump's checksum differs); 2 on a usage error or when
a PostgreSQL tool failed. A restored database is left in place when its verification fails, so
it can be inspected; drop it yourself.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

# The tables whose append-only triggers must survive any restore (the migrations add more,
# e.g. frozen contract terms; verify-restore compares the full set with the source).
CORE_APPEND_ONLY = ("ledger_transactions", "ledger_entries", "audit_events")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")


class Failed(Exception):
    """A verification failed: exit 1."""


class ToolError(Exception):
    """A usage error or a PostgreSQL tool that failed: exit 2."""


@dataclass(frozen=True)
class Digest:
    sequence: int
    hash: str


def say(message: str) -> None:
    print(message, flush=True)


# --- URLs ------------------------------------------------------------------------------------

def pg_url(raw: str) -> URL:
    """A PostgreSQL URL in SQLAlchemy's psycopg form; anything else is a usage error."""
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://"):]
    try:
        url = make_url(raw)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises ArgumentError and friends
        raise ToolError(f"not a database URL: {raw!r} ({exc})") from exc
    if url.get_backend_name() != "postgresql":
        raise ToolError(f"{redact(url)} is not PostgreSQL; back up an SQLite file with "
                        "`sqlite3 utfall.db \".backup copy.db\"` and check it with `ops/verify_chain.py`")
    return url.set(drivername="postgresql+psycopg")


def redact(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def redact_libpq(url: URL) -> str:
    return redact(url.set(drivername="postgresql"))


def libpq(url: URL) -> tuple[str, dict[str, str]]:
    """The libpq URI for command-line tools (without the password) and the environment they need."""
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return url.set(drivername="postgresql", password=None).render_as_string(hide_password=False), env


def target_url(target: str, server: URL | None) -> URL:
    """TARGET as a URL: a full URL as given, or a database name on `server` (or libpq's defaults)."""
    if "://" in target:
        return pg_url(target)
    if not _NAME.match(target):
        raise ToolError(f"not a database name: {target!r}")
    if server is None:
        return URL.create("postgresql+psycopg", database=target)  # host, user, password from PG* variables
    return server.set(database=target)


# --- the ledger, read through Utfall's own code -------------------------------------------------

def _engine(url: URL):
    from ledger.db import make_engine
    return make_engine(url.render_as_string(hide_password=False))


def take_digest(url: URL) -> Digest:
    from ledger import journal
    from ledger.db import Database
    engine = _engine(url)
    try:
        with Database(engine).reading() as s:
            d = journal.digest(s)
    finally:
        engine.dispose()
    return Digest(d.sequence, d.hash)


def append_only_triggers(conn) -> dict[tuple[str, str], bool]:
    """(table, trigger) -> enabled, for every trigger calling the migrations' refusal function."""
    rows = conn.execute(text(
        "SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid "
        "WHERE NOT t.tgisinternal AND p.proname = 'utfall_refuse_change'")).all()
    # tgenabled: O = origin (normal), A = always, R = replica only, D = disabled
    return {(table, name): enabled in ("O", "A") for table, name, enabled in rows}


def triggers_of(url: URL) -> dict[tuple[str, str], bool]:
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return append_only_triggers(conn)
    finally:
        engine.dispose()


def update_refused(conn) -> bool | None:
    """Try an UPDATE of one ledger entry, in a transaction that is rolled back whatever happens.

    True if the database refused it, False if it let it through, None if there is no entry.
    """
    trans = conn.begin()
    try:
        if conn.execute(text("SELECT 1 FROM ledger_entries LIMIT 1")).first() is None:
            return None
        conn.execute(text("UPDATE ledger_entries SET amount_minor = amount_minor "
                          "WHERE sequence = (SELECT min(sequence) FROM ledger_entries)"))
        return False
    except DBAPIError as exc:
        if "append-only" in str(exc.orig):
            return True
        raise
    finally:
        trans.rollback()


def check_triggers(url: URL, expected: set[tuple[str, str]] | None = None) -> None:
    """The append-only triggers are there and enabled, and an UPDATE of a ledger entry is refused."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            found = append_only_triggers(conn)
            conn.commit()
            refused = update_refused(conn)
    finally:
        engine.dispose()
    disabled = sorted(f"{t}.{n}" for (t, n), on in found.items() if not on)
    if disabled:
        raise Failed(f"append-only triggers disabled in {redact(url)}: {', '.join(disabled)}")
    if expected is not None:
        missing = sorted(f"{t}.{n}" for t, n in expected - set(found))
        if missing:
            raise Failed(f"append-only triggers missing in {redact(url)}: {', '.join(missing)}")
    protected = {t for t, _ in found}
    unprotected = [t for t in CORE_APPEND_ONLY if t not in protected]
    if unprotected:
        raise Failed(f"no append-only trigger on {', '.join(unprotected)} in {redact(url)}")
    if refused is False:
        raise Failed(f"{redact(url)} accepted an UPDATE of ledger_entries")
    probe = "UPDATE of ledger_entries refused" if refused else "ledger empty, UPDATE probe skipped"
    say(f"append-only: {len(found)} triggers on {len(protected)} tables, all enabled; {probe}")


def verify(url: URL, digest: Digest) -> None:
    """`utfall ledger verify --sequence N --hash H` against `url`; Failed unless it says ok."""
    env = dict(os.environ)
    env["DATABASE_URL"] = url.render_as_string(hide_password=False)
    if not env.get("UTFALL_SECRET"):
        env["UTFALL_ENV"] = "development"  # ledger verify only reads; it never uses the secret
    command = [sys.executable, "-m", "api.cli", "ledger", "verify",
               "--sequence", str(digest.sequence), "--hash", digest.hash]
    say(f"verifying {redact(url)} against digest {digest.sequence} {digest.hash}")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    result = (done.stdout.strip() or done.stderr.strip() or f"exit {done.returncode}")
    say(f"utfall ledger verify: {result}")
    if done.returncode != 0:
        if done.stderr.strip() and done.stdout.strip():
            print(done.stderr.strip(), file=sys.stderr)
        raise Failed(f"the ledger in {redact(url)} does not verify against the digest")


# --- PostgreSQL tools --------------------------------------------------------------------------

def run_tool(command: list[str], env: dict[str, str], shown: list[str]) -> None:
    if shutil.which(command[0]) is None:
        raise ToolError(f"{command[0]} is not on PATH (install the PostgreSQL client tools)")
    say("$ " + " ".join(shown))
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise ToolError(f"{command[0]} failed (exit {done.returncode}): {done.stderr.strip()}")
    if done.stderr.strip():  # warnings
        print(done.stderr.strip(), file=sys.stderr)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sidecar(dump: Path) -> Path:
    return dump.with_name(dump.name + ".digest.json")


# --- the document store ---------------------------------------------------------------------

_SHA256 = re.compile(r"[0-9a-f]{64}")


def documents_archive(dump: Path) -> Path:
    return dump.with_name(dump.name + ".documents.tar")


def uploaded_documents(url: URL) -> set[str]:
    """The SHA-256 of every uploaded document the database records (none before revision 0018c)."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            try:
                return set(conn.execute(text("SELECT DISTINCT sha256 FROM document_uploads")).scalars())
            except DBAPIError:
                return set()
    finally:
        engine.dispose()


def backup_documents(folder: Path, dump: Path) -> dict:
    """Archive the document store's files (`ab/abc…`; not `incoming/`) next to the dump."""
    if not folder.is_dir():
        raise ToolError(f"the document store {folder} is not a directory")
    archive = documents_archive(dump)
    if archive.exists():
        raise ToolError(f"{archive} exists; a backup never overwrites one")
    partial = archive.with_name(archive.name + ".partial")
    count = 0
    try:
        with tarfile.open(partial, "w") as tar:
            for path in sorted(folder.glob("??/*")):
                if path.is_file() and _SHA256.fullmatch(path.name) and path.parent.name == path.name[:2]:
                    tar.add(path, arcname=f"{path.parent.name}/{path.name}", recursive=False)
                    count += 1
        os.replace(partial, archive)
    finally:
        partial.unlink(missing_ok=True)
    checksum = sha256_file(archive)
    say(f"documents: {archive} ({count} files, sha256 {checksum})")
    return {"documentsFile": archive.name, "documentsCount": count, "documentsSha256": checksum}


def restore_documents(dump: Path, folder: Path, meta: dict | None) -> set[str]:
    """Unpack the archive into `folder` (new or empty), each file checked against its name."""
    archive = documents_archive(dump)
    if not archive.is_file():
        raise ToolError(f"{archive} is not a file: this backup has no documents")
    if meta is not None and meta.get("documentsSha256") and sha256_file(archive) != meta["documentsSha256"]:
        raise Failed(f"{archive} is not the archive that was written: its sha256 differs from {sidecar(dump).name}")
    if folder.exists() and any(folder.iterdir()):
        raise ToolError(f"{folder} is not empty; a restore never overwrites documents")
    found = set()
    with tarfile.open(archive, "r") as tar:
        for member in tar:
            head, _, name = member.name.partition("/")
            if not member.isfile() or not _SHA256.fullmatch(name) or head != name[:2]:
                raise Failed(f"{archive} holds {member.name!r}, which is not a stored document")
            data = tar.extractfile(member).read()
            if hashlib.sha256(data).hexdigest() != name:
                raise Failed(f"document {name} in {archive} does not have that SHA-256")
            (folder / head).mkdir(parents=True, exist_ok=True)
            (folder / head / name).write_bytes(data)
            found.add(name)
    say(f"documents: {len(found)} files restored into {folder}, each matching its SHA-256")
    return found


def check_documents(target: URL, folder: Path) -> None:
    missing = sorted(sha for sha in uploaded_documents(target) if not (folder / sha[:2] / sha).is_file())
    if missing:
        raise Failed(f"{len(missing)} uploaded documents are not in {folder}, e.g. {missing[0]}")
    say(f"every uploaded document of the restored database is in {folder}")


def backup(source: URL, dump: Path, documents: Path | None = None) -> Digest:
    if dump.exists():
        raise ToolError(f"{dump} exists; a backup never overwrites one")
    if documents is None and uploaded_documents(source):
        raise ToolError("the database records uploaded documents: give --documents DIR (the document store, "
                        "UTFALL_DOCUMENT_DIR) so they are backed up too")
    digest = take_digest(source)
    taken_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    say(f"ledger digest of {redact(source)}: sequence {digest.sequence} hash {digest.hash}")
    conninfo, env = libpq(source)
    partial = dump.with_name(dump.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        run_tool(["pg_dump", "-Fc", "--file", str(partial), conninfo], env,
                 ["pg_dump", "-Fc", "--file", str(partial), redact_libpq(source)])
        os.replace(partial, dump)
    finally:
        partial.unlink(missing_ok=True)
    size, checksum = dump.stat().st_size, sha256_file(dump)
    # after the dump: every upload row in it has its file by now (files are stored before rows commit)
    archived = backup_documents(documents, dump) if documents is not None else {}
    sidecar(dump).write_text(json.dumps({
        "sequence": digest.sequence, "hash": digest.hash, "takenAt": taken_at,
        "source": redact(source.set(password=None)), "dumpFile": dump.name, "dumpBytes": size, "dumpSha256": checksum,
        **archived,
    }, indent=2) + "\n", encoding="utf-8")
    say(f"dump: {dump} ({size} bytes, sha256 {checksum})")
    say(f"digest kept in {sidecar(dump)}")
    return digest


def read_sidecar(dump: Path) -> dict | None:
    path = sidecar(dump)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ToolError(f"{path} is not JSON: {exc}") from exc


def restore(dump: Path, target: URL, digest: Digest | None, *, maintenance_db: str | None = None,
            expected_triggers: set[tuple[str, str]] | None = None, documents: Path | None = None) -> None:
    if not dump.is_file():
        raise ToolError(f"{dump} is not a file")
    meta = read_sidecar(dump)
    if documents is None and meta is not None and meta.get("documentsFile"):
        raise ToolError(f"this backup holds {meta.get('documentsCount', 'the')} uploaded documents: give --documents DIR "
                        "(a new or empty directory) to restore them")
    if documents is not None:
        restore_documents(dump, documents, meta)
    size = dump.stat().st_size
    say(f"dump: {dump} ({size} bytes)")
    if meta is not None and meta.get("dumpSha256"):
        checksum = sha256_file(dump)
        if checksum != meta["dumpSha256"] or size != meta.get("dumpBytes", size):
            raise Failed(f"{dump} is not the file that was dumped: sha256 {checksum}, "
                         f"{sidecar(dump)} says {meta['dumpSha256']}")
        say(f"dump checksum matches {sidecar(dump).name} (sha256 {checksum})")
    if digest is None:
        if meta is None:
            raise ToolError(f"no digest to verify against: pass --sequence and --hash, or keep {sidecar(dump)} "
                            "next to the dump")
        try:
            digest = Digest(int(meta["sequence"]), str(meta["hash"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ToolError(f"{sidecar(dump)} holds no digest ({exc!r}); pass --sequence and --hash") from exc
        say(f"digest from {sidecar(dump).name}: sequence {digest.sequence} hash {digest.hash}")

    conninfo, env = libpq(target)
    name = target.database
    if not name:
        raise ToolError("the target URL names no database")
    # createdb connects to an existing database of the same server to run CREATE DATABASE
    maintenance = libpq(target.set(database=maintenance_db or "postgres"))[0]
    run_tool(["createdb", "--maintenance-db", maintenance, "--template", "template0", name], env,
             ["createdb", "--template", "template0", name])
    try:
        run_tool(["pg_restore", "--exit-on-error", "--no-owner", "--no-privileges", "--dbname", conninfo, str(dump)],
                 env, ["pg_restore", "--exit-on-error", "--no-owner", "--no-privileges", "--dbname", redact_libpq(target),
                       str(dump)])
    except ToolError:
        print(f"the partly restored database {name} is left for inspection; drop it when done", file=sys.stderr)
        raise
    say(f"restored into {redact(target)}")
    try:
        verify_restored(target, digest, expected_triggers)
        if documents is not None:
            check_documents(target, documents)
    except Failed:
        print(f"the restored database {name} is left in place for inspection; drop it when done", file=sys.stderr)
        raise


def verify_restored(target: URL, digest: Digest, expected_triggers: set[tuple[str, str]] | None = None) -> None:
    verify(target, digest)
    check_triggers(target, expected_triggers)


# --- command line -------------------------------------------------------------------------------

def _digest_args(args) -> Digest | None:
    if (args.sequence is None) != (args.hash is None):
        raise ToolError("--sequence and --hash go together")
    if args.sequence is None:
        return None
    if args.sequence < 0 or not re.fullmatch(r"[0-9a-f]{64}", args.hash):
        raise ToolError("a digest is a sequence >= 0 and a 64-character lowercase hex hash")
    return Digest(args.sequence, args.hash)


def _folder(raw: str | None) -> Path | None:
    return Path(raw) if raw else None


def cmd_backup(args) -> None:
    backup(pg_url(args.source), Path(args.dump), _folder(args.documents or os.environ.get("UTFALL_DOCUMENT_DIR")))


def cmd_restore(args) -> None:
    server = pg_url(args.server) if args.server else None
    restore(Path(args.dump), target_url(args.target, server), _digest_args(args),
            maintenance_db=server.database if server is not None and "://" not in args.target else None,
            documents=_folder(args.documents))


def cmd_verify_restore(args) -> None:
    source = pg_url(args.source)
    target = target_url(args.target, source)
    if target.database == source.database and target.host == source.host and target.port == source.port:
        raise ToolError("the target must be another database than the source")
    dump = Path(args.dump)
    expected = {key for key, on in triggers_of(source).items() if on}
    if (args.documents is None) != (args.restore_documents is None):
        raise ToolError("--documents and --restore-documents go together")
    digest = backup(source, dump, _folder(args.documents))
    restore(dump, target, digest, maintenance_db=None if "://" in args.target else source.database,
            expected_triggers=expected, documents=_folder(args.restore_documents))


def cmd_verify(args) -> None:
    digest = _digest_args(args)
    if digest is None:
        raise ToolError("verify needs --sequence and --hash")
    url = pg_url(args.url)
    verify_restored(url, digest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="backup_restore", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("backup", help="digest, then pg_dump -Fc")
    b.add_argument("source", help="the database to back up (URL)")
    b.add_argument("dump", help="the dump file to write (must not exist)")
    b.add_argument("--documents", metavar="DIR",
                   help="the document store to archive as DUMP.documents.tar (default: $UTFALL_DOCUMENT_DIR)")
    b.set_defaults(func=cmd_backup)

    r = sub.add_parser("restore", help="createdb + pg_restore, then verify against the digest")
    r.add_argument("dump")
    r.add_argument("target", help="a new database's name (on --server) or URL")
    r.add_argument("--server", help="URL of the server to restore on (default: libpq's PG* environment)")
    r.add_argument("--sequence", type=int, help="the digest's sequence (default: from DUMP.digest.json)")
    r.add_argument("--hash", help="the digest's hash (default: from DUMP.digest.json)")
    r.add_argument("--documents", metavar="DIR", help="a new or empty directory to restore the documents into")
    r.set_defaults(func=cmd_restore)

    vr = sub.add_parser("verify-restore", help="backup, restore into a new database, verify against the digest")
    vr.add_argument("source")
    vr.add_argument("dump")
    vr.add_argument("target", help="a new database's name (on the source's server) or URL")
    vr.add_argument("--documents", metavar="DIR", help="the source's document store")
    vr.add_argument("--restore-documents", metavar="DIR", help="a new or empty directory to restore the documents into")
    vr.set_defaults(func=cmd_verify_restore)

    v = sub.add_parser("verify", help="verify a database against a digest and check its append-only triggers")
    v.add_argument("url")
    v.add_argument("--sequence", type=int, required=True)
    v.add_argument("--hash", required=True)
    v.set_defaults(func=cmd_verify)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except Failed as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    except ToolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    say("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
