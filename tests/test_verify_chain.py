"""ops/verify_chain.py: verifying a database copy with nothing of this service's code."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select, text

from ledger import journal
from ledger.db import Database
from ledger.models import Entry, Transaction
from tests.factories import accounts, post

SCRIPT = Path(__file__).resolve().parents[1] / "ops" / "verify_chain.py"


def run_script(*args: str) -> subprocess.CompletedProcess:
    # -I: isolated, the script's own directory is not put on sys.path
    return subprocess.run([sys.executable, "-I", str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def target(engine) -> str:
    if engine.dialect.name == "sqlite":
        return engine.url.database
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def build_ledger(engine) -> Database:
    """Four committed transactions on a real database: non-ASCII text, quotes and a reversal."""
    db = Database(engine)
    a, b, c = accounts(db, 3)
    post(db, [(a, "100.00"), (b, "-100.00")], description='Kapital från fonden – åäö "citat" \\ €')
    post(db, [(a, "-40.50"), (c, "40.50")])
    third = post(db, [(b, "12.00"), (c, "-12.00")])
    with db.uow() as uow:
        journal.reverse(uow, actor="test", sequence=third.sequence, reason="fel konto")
        uow.commit()
    return db


def tamper(engine, *statements: tuple[str, dict]) -> None:
    """Switch the append-only triggers off, as someone with the database's keys could, and change rows."""
    with engine.begin() as conn:
        for table in ("ledger_transactions", "ledger_entries"):
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            else:
                for verb in ("update", "delete"):
                    conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
        for sql, params in statements:
            conn.execute(text(sql), params)


def service_verdict(db: Database) -> journal.Verification:
    with db.reading() as s:
        return journal.verify(s)


def failed_at(result: subprocess.CompletedProcess) -> int:
    assert result.returncode == 1, result.stdout + result.stderr
    found = re.match(r"FAILED at sequence (\d+): ", result.stdout)
    assert found, result.stdout
    return int(found[1])


def test_the_script_imports_only_the_standard_library_and_psycopg():
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"))
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert modules - set(sys.stdlib_module_names) - {"__future__"} == {"psycopg"}


def test_an_untouched_ledger_verifies_with_and_without_a_digest(fresh_engine, tmp_path):
    # an empty ledger verifies; a missing database is an error, not a verdict
    empty = run_script(target(fresh_engine))
    assert empty.returncode == 0 and empty.stdout.startswith("ok 0 transactions")
    missing = run_script(str(tmp_path / "nowhere.db"))
    assert missing.returncode == 2 and "no such database file" in missing.stderr
    # given
    db = build_ledger(fresh_engine)
    with db.reading() as s:
        head = journal.digest(s)
        second = s.execute(select(Transaction.hash).where(Transaction.sequence == 2)).scalar_one()
    # when / then: in one batch and in batches of two
    for extra in ((), ("--batch", "2")):
        ok = run_script(target(fresh_engine), *extra)
        assert (ok.returncode, ok.stderr) == (0, "")
        assert ok.stdout.startswith(f"ok 4 transactions (last: sequence 4, hash {head.hash})")
    # a digest handed out earlier still holds; a wrong one or one beyond the ledger does not
    assert run_script(target(fresh_engine), "--sequence", "2", "--hash", second).returncode == 0
    assert failed_at(run_script(target(fresh_engine), "--sequence", "2", "--hash", head.hash)) == 2
    assert failed_at(run_script(target(fresh_engine), "--sequence", "9", "--hash", head.hash)) == 9
    assert run_script(target(fresh_engine), "--sequence", "2").returncode == 2


def rewrite_second(db: Database, description: str, *, rehash: bool) -> tuple[str, dict]:
    """Transaction 2 with another description, and (rehash) the hash of its new contents."""
    with db.reading() as s:
        tx = s.execute(select(*Transaction.__table__.c).where(Transaction.sequence == 2)).one()._asdict()
        entries = [e._asdict() for e in s.execute(select(*Entry.__table__.c).where(Entry.sequence == 2)
                                                   .order_by(Entry.line)).all()]
    tx["description"] = description
    new_hash = journal.chain_hash(tx["previous_hash"], journal.canonical_bytes(tx, entries)) if rehash else tx["hash"]
    return ("UPDATE ledger_transactions SET description = :d, hash = :h WHERE sequence = 2",
            {"d": description, "h": new_hash})


def test_tampering_names_the_first_bad_sequence(fresh_engine):
    # given a verified ledger
    db = build_ledger(fresh_engine)
    assert run_script(target(fresh_engine)).returncode == 0
    with db.reading() as s:
        original = s.execute(select(Transaction.description).where(Transaction.sequence == 2)).scalar_one()
    entry_plus_one = ("UPDATE ledger_entries SET amount_minor = amount_minor + :d, "
                      "balance_after_minor = balance_after_minor + :d WHERE sequence = 2 AND line = 1")
    delete_tail = [("DELETE FROM ledger_entries WHERE sequence = 4", {}),
                   ("DELETE FROM ledger_transactions WHERE sequence = 4", {})]
    scenarios = [
        # (what someone with the keys to the database does, the first bad sequence, how it is undone)
        ([(entry_plus_one, {"d": 1})], 2, [(entry_plus_one, {"d": -1})]),
        # rewritten with a hash that matches its new contents: the next one's previous hash does not
        ([rewrite_second(db, "nothing to see here", rehash=True)], 3, [rewrite_second(db, original, rehash=True)]),
        # the last transaction removed: the chain head still names it
        (delete_tail, 4, None),
    ]
    for changes, first_bad, undo in scenarios:
        tamper(fresh_engine, *changes)
        # then the script names the first bad sequence, as the service's own verification does
        assert failed_at(run_script(target(fresh_engine))) == first_bad, changes
        assert service_verdict(db).first_invalid_sequence == first_bad
        if undo is not None:
            tamper(fresh_engine, *undo)
            assert run_script(target(fresh_engine)).returncode == 0
