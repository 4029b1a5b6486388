"""ops/backup_restore.py on the real PostgreSQL: a dump restores to a ledger that proves the digest
taken before the dump, with its append-only triggers, and a changed copy is caught.

PostgreSQL only (pg_dump/pg_restore): never parametrized over SQLite.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from ledger import demo, journal, schema
from ledger.db import Database, make_engine
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database, pg_url, require_postgres

pytestmark = pytest.mark.postgres_only

REPO = Path(__file__).resolve().parents[2]
SECRET = b"backup-restore-test-secret-0123456789"


def run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "UTFALL_SECRET", "UTFALL_ENV")}
    return subprocess.run([sys.executable, "-m", "ops.backup_restore", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def new_name(role: str) -> str:
    return f"utfall_ops_{role}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def source():
    """A migrated PostgreSQL database holding the demo fund, committed for real; and its digest."""
    if "postgresql" not in BACKENDS:
        pytest.skip("UTFALL_TEST_BACKENDS leaves PostgreSQL out")
    require_postgres()
    name = create_pg_database("utfall_ops_source")
    url = pg_url(name)
    engine = make_engine(url)
    try:
        schema.upgrade(url)
        db = Database(engine)
        demo.load(db, today=date.today(), secret=SECRET)
        with db.reading() as s:
            digest = journal.digest(s)
        assert digest.sequence > 0
        yield url, digest
    finally:
        engine.dispose()
        drop_pg_database(name)


@pytest.fixture(scope="module")
def backup(source, tmp_path_factory):
    """One dump of the source made by the script, with its digest file, for the tests that restore."""
    url, _ = source
    dump = tmp_path_factory.mktemp("backup") / "utfall.dump"
    done = run("backup", url, str(dump))
    assert done.returncode == 0, done.stdout + done.stderr
    return dump


def copy_of(dump: Path, to: Path) -> Path:
    """The dump and its digest file, copied into `to`."""
    for path in (dump, dump.with_name(dump.name + ".digest.json")):
        (to / path.name).write_bytes(path.read_bytes())
    return to / dump.name


def restore(dump: Path, source_url: str, role: str, databases: list[str]) -> str:
    target = new_name(role)
    databases.append(target)
    done = run("restore", str(dump), restored_url(source_url, target))
    assert done.returncode == 0, done.stdout + done.stderr
    return restored_url(source_url, target)


@pytest.fixture
def databases():
    """Names of databases a test makes the script create; every one is dropped afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        drop_pg_database(name)


def restored_url(source_url: str, name: str) -> str:
    return make_url(source_url).set(database=name).render_as_string(hide_password=False)


def verdict(url: str, digest: journal.Digest | None = None) -> journal.Verification:
    engine = make_engine(url)
    try:
        with Database(engine).reading() as s:
            return journal.verify(s, digest)
    finally:
        engine.dispose()


def test_backup_restores_to_a_ledger_that_proves_the_digest(source, databases, tmp_path):
    url, digest = source
    target = new_name("restored")
    databases.append(target)
    dump = tmp_path / "utfall.dump"
    # when
    done = run("verify-restore", url, str(dump), target)
    # then
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"sequence {digest.sequence} hash {digest.hash}" in out
    size = dump.stat().st_size
    assert size > 0 and f"dump: {dump} ({size} bytes" in out
    assert f"ok: {digest.sequence} transactions verified" in out
    assert "UPDATE of ledger_entries refused" in out
    assert out.rstrip().endswith("OK")
    kept = json.loads((tmp_path / "utfall.dump.digest.json").read_text())
    assert (kept["sequence"], kept["hash"], kept["dumpBytes"]) == (digest.sequence, digest.hash, size)
    assert "postgres@" in kept["source"]  # the source without its password
    assert not (tmp_path / "utfall.dump.partial").exists()

    # the restored copy proves the digest by Utfall's own code, independently of the script
    restored = restored_url(url, target)
    assert verdict(restored, journal.Digest(digest.sequence, digest.hash)).ok
    # and it is still append-only: the triggers came back with the data
    with psycopg.connect(libpq(restored), autocommit=True) as conn:
        for statement in ("UPDATE ledger_entries SET amount_minor = amount_minor + 1 WHERE sequence = 1",
                          "DELETE FROM ledger_transactions WHERE sequence = 1",
                          "TRUNCATE ledger_entries"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
        # the demo's other data came back too
        assert conn.execute("SELECT count(*) FROM participants").fetchone()[0] > 0


def test_restore_alone_verifies_against_the_kept_digest_or_a_given_one(source, backup, databases, tmp_path):
    url, digest = source
    dump = copy_of(backup, tmp_path)
    server = make_url(url).set(database="postgres").render_as_string(hide_password=False)

    first = new_name("restored")
    databases.append(first)
    done = run("restore", str(dump), first, "--server", server)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"digest from utfall.dump.digest.json: sequence {digest.sequence} hash {digest.hash}" in done.stdout
    assert f"ok: {digest.sequence} transactions verified" in done.stdout

    # with the digest given on the command line (as an auditor who kept it would), and no JSON file
    (tmp_path / "utfall.dump.digest.json").unlink()
    second = new_name("restored")
    databases.append(second)
    done = run("restore", str(dump), restored_url(url, second), "--sequence", str(digest.sequence),
               "--hash", digest.hash)
    assert done.returncode == 0, done.stdout + done.stderr

    # a digest the ledger never held, or a sequence beyond it: refused
    for sequence, hash_ in ((digest.sequence, "0" * 64), (digest.sequence + 1, digest.hash)):
        done = run("verify", restored_url(url, second), "--sequence", str(sequence), "--hash", hash_)
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"FAILED at sequence {sequence}" in done.stdout
        assert "FAILED" in done.stderr
    # without any digest, a restore is refused before it creates anything
    third = new_name("restored")
    databases.append(third)
    done = run("restore", str(dump), restored_url(url, third))
    assert done.returncode == 2 and "no digest" in done.stderr


def test_a_tampered_restore_fails_the_digest(source, backup, databases):
    url, digest = source
    restored = restore(backup, url, "tampered", databases)
    # someone with the restored copy's keys switches the triggers off and changes one entry
    with psycopg.connect(libpq(restored), autocommit=True) as conn:
        conn.execute("ALTER TABLE ledger_entries DISABLE TRIGGER USER")
        changed = conn.execute("UPDATE ledger_entries SET amount_minor = amount_minor + 100 "
                               "WHERE sequence = 2 AND line = 1").rowcount
        conn.execute("ALTER TABLE ledger_entries ENABLE TRIGGER USER")
    assert changed == 1
    # when
    done = run("verify", restored, "--sequence", str(digest.sequence), "--hash", digest.hash)
    # then
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"FAILED at sequence 2: hash does not match", done.stdout), done.stdout
    assert not verdict(restored, journal.Digest(digest.sequence, digest.hash)).ok
    # the service's own command says the same, with DATABASE_URL pointing at the copy
    env = {**os.environ, "DATABASE_URL": restored, "UTFALL_ENV": "development"}
    cli = subprocess.run([sys.executable, "-m", "api.cli", "ledger", "verify", "--sequence", str(digest.sequence),
                          "--hash", digest.hash], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 1 and "FAILED at sequence 2" in cli.stdout, cli.stdout + cli.stderr


def test_a_restore_with_a_trigger_switched_off_fails(source, backup, databases):
    url, digest = source
    restored = restore(backup, url, "notrigger", databases)
    with psycopg.connect(libpq(restored), autocommit=True) as conn:
        conn.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only")
    done = run("verify", restored, "--sequence", str(digest.sequence), "--hash", digest.hash)
    assert done.returncode == 1
    assert "ledger_entries.ledger_entries_append_only" in done.stderr


def test_a_changed_dump_file_is_refused_before_restoring(source, backup, databases, tmp_path):
    url, _ = source
    dump = copy_of(backup, tmp_path)
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    target = new_name("changed")
    databases.append(target)
    done = run("restore", str(dump), restored_url(url, target))
    assert done.returncode == 1
    assert "is not the file that was dumped" in done.stderr
    with psycopg.connect(libpq(pg_url("postgres")), autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target,)).fetchone() is None


def test_nothing_is_overwritten(source, backup, tmp_path):
    url, _ = source
    older = tmp_path / "o.dump"
    older.write_bytes(b"an older backup")
    done = run("backup", url, str(older))
    assert done.returncode == 2 and "never overwrites" in done.stderr
    assert older.read_bytes() == b"an older backup"
    dump = copy_of(backup, tmp_path)
    # restoring into an existing database (here: the source itself) is refused by createdb
    done = run("restore", str(dump), url)
    assert done.returncode == 2 and "already exists" in done.stderr
    # verify-restore into the source itself is refused before anything is dumped
    done = run("verify-restore", url, str(tmp_path / "again.dump"), url)
    assert done.returncode == 2 and not (tmp_path / "again.dump").exists()


def test_sqlite_is_not_backed_up_this_way(tmp_path):
    done = run("backup", f"sqlite:///{tmp_path / 'utfall.db'}", str(tmp_path / "x.dump"))
    assert done.returncode == 2 and "not PostgreSQL" in done.stderr


@pytest.fixture
def with_documents(tmp_path):
    """A migrated database with two uploaded documents, and its document store."""
    if "postgresql" not in BACKENDS:
        pytest.skip("UTFALL_TEST_BACKENDS leaves PostgreSQL out")
    require_postgres()
    import hashlib
    from ledger import documents
    from ledger.access import Actor
    from tests.factories import party
    name = create_pg_database("utfall_ops_docs")
    url = pg_url(name)
    engine = make_engine(url)
    try:
        schema.upgrade(url)
        db = Database(engine)
        provider = Actor("pia", "PROVIDER", party(db, role="PROVIDER", name="Skolframgång AB").id)
        store = documents.DocumentStore(tmp_path / "documents")
        shas = []
        for body in (b"%PDF-1.4 one", b"%PDF-1.4 two"):
            sha = hashlib.sha256(body).hexdigest()
            fd, temporary = store.incoming()
            os.write(fd, body)
            os.close(fd)
            store.keep(temporary, sha)
            with db.uow() as uow:
                documents.record_upload(uow, actor=provider, sha256=sha, media_type="application/pdf",
                                        size_bytes=len(body))
                uow.commit()
            shas.append(sha)
        yield url, store.root, shas
    finally:
        engine.dispose()
        drop_pg_database(name)


def test_uploaded_documents_are_backed_up_and_restored_with_the_database(with_documents, databases, tmp_path):
    url, store, shas = with_documents
    target = new_name("docs")
    databases.append(target)
    dump, restored = tmp_path / "utfall.dump", tmp_path / "restored-documents"
    # a backup that would leave the documents behind is refused
    done = run("backup", url, str(tmp_path / "no-docs.dump"))
    assert done.returncode == 2 and "--documents" in done.stderr
    # when
    done = run("verify-restore", url, str(dump), target, "--documents", str(store),
               "--restore-documents", str(restored))
    # then
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 files restored" in done.stdout and "every uploaded document" in done.stdout
    for sha in shas:
        assert (restored / sha[:2] / sha).read_bytes() == (store / sha[:2] / sha).read_bytes()
    kept = json.loads((tmp_path / "utfall.dump.digest.json").read_text())
    assert kept["documentsCount"] == 2 and kept["documentsFile"] == "utfall.dump.documents.tar"
    # a restore without a place for the documents is refused; into a non-empty one too
    again = new_name("docs2")
    assert (r := run("restore", str(dump), restored_url(url, again))).returncode == 2 and "--documents" in r.stderr
    r = run("restore", str(dump), restored_url(url, again), "--documents", str(restored))
    assert r.returncode == 2 and "not empty" in r.stderr


def test_a_changed_document_archive_is_refused(with_documents, databases, tmp_path):
    url, store, _ = with_documents
    dump = tmp_path / "utfall.dump"
    assert run("backup", url, str(dump), "--documents", str(store)).returncode == 0
    archive = tmp_path / "utfall.dump.documents.tar"
    archive.write_bytes(archive.read_bytes().replace(b"%PDF-1.4 one", b"%PDF-1.4 0ne"))
    target = new_name("tampered")
    databases.append(target)
    done = run("restore", str(dump), restored_url(url, target), "--documents", str(tmp_path / "out"))
    assert done.returncode == 1 and "documents.tar is not the archive" in done.stderr
