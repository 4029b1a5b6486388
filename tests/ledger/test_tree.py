"""The stored Merkle tree: written with each posting, read in O(log n) rows, append-only, backfilled."""
from __future__ import annotations

import threading
from datetime import date

import pytest
from alembic import command
from sqlalchemy import event, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from ledger import effective_balances, journal, merkle, schema, tree
from ledger import money as m
from ledger.db import Database, make_engine
from ledger.models import MerkleNode, Transaction
from tests.conftest import drop_pg_database, empty_database_url
from tests.factories import accounts, post


def _chain_hashes(s) -> list[str]:
    return s.execute(select(Transaction.hash).order_by(Transaction.sequence)).scalars().all()


def _memory_tree(s) -> merkle.MemoryTree:
    return merkle.MemoryTree(bytes.fromhex(h) for h in _chain_hashes(s))


def _stored(s) -> dict:
    return {(n.level, n.position): bytes.fromhex(n.hash) for n in s.execute(select(MerkleNode)).scalars()}


def test_each_posting_stores_exactly_the_nodes_it_completes(db):
    # given
    a, b = accounts(db, 2)
    with db.reading() as s:
        assert _stored(s) == {}
    for n in range(1, 20):
        # when
        post(db, [(a, "1.00"), (b, "-1.00")])
        # then: every complete perfect subtree above the leaves, each equal to the recomputed one
        with db.reading() as s:
            mem = _memory_tree(s)
            assert _stored(s) == {k: v for k, v in mem.nodes.items() if k[0] > 0}
            conn = s.connection()
            assert tree.root(conn, n) == mem.root() == tree.rebuilt_root(conn, n)


def test_proofs_from_the_database_verify_against_the_root_for_every_pair(db):
    a, b = accounts(db, 2)
    for _ in range(17):
        post(db, [(a, "2.00"), (b, "-2.00")])
    with db.reading() as s:
        conn = s.connection()
        hashes = _chain_hashes(s)
        for n in range(1, 18):
            r = tree.root(conn, n)
            for i in range(n):
                path = tree.inclusion_proof(conn, i, n)
                assert merkle.verify_inclusion(i, n, merkle.leaf_hash(bytes.fromhex(hashes[i])), path, r)
            for old in range(1, n + 1):
                assert merkle.verify_consistency(old, n, tree.root(conn, old), r,
                                                 tree.consistency_proof(conn, old, n))


def test_a_proof_reads_two_statements_and_log_n_rows_never_the_journal(db):
    # given 40 transactions
    a, b = accounts(db, 2)
    for _ in range(40):
        post(db, [(a, "1.00"), (b, "-1.00")])
    with db.reading() as s:
        conn = s.connection()
        statements: list[str] = []

        def count(_conn, _cursor, statement, _params, _context, _many):
            statements.append(statement)
        event.listen(conn, "before_cursor_execute", count)
        try:
            # when
            tree.inclusion_proof(conn, 22, 39)
            tree.consistency_proof(conn, 13, 40)
        finally:
            event.remove(conn, "before_cursor_execute", count)
    # then: at most one read of leaves and one of stored nodes per proof, each by key
    assert len(statements) <= 4
    assert not any("ledger_entries" in st for st in statements)


def test_the_database_refuses_changes_to_stored_nodes(db, backend):
    a, b = accounts(db, 2)
    for _ in range(4):
        post(db, [(a, "1.00"), (b, "-1.00")])
    for sql in ("UPDATE merkle_nodes SET hash = '00' WHERE level = 1",
                "DELETE FROM merkle_nodes WHERE level = 2"):
        with pytest.raises((DBAPIError, IntegrityError, OperationalError)):
            with db.uow() as uow:
                uow.session.execute(text(sql))
                uow.commit()
    if backend == "postgresql":
        with pytest.raises(DBAPIError):
            with db.uow() as uow:
                uow.session.execute(text("TRUNCATE merkle_nodes"))
                uow.commit()


def test_a_failed_posting_leaves_no_node_behind(db):
    a, b = accounts(db, 2)
    post(db, [(a, "1.00"), (b, "-1.00")])
    # when the posting that would complete node (1, 0) rolls back
    with db.uow() as uow:
        journal.post(uow, actor="t", kind="TEST", description="rolled back", effective_date=date(2026, 1, 1),
                     postings=[journal.Posting(a.id, m.money("1.00", "SEK")),
                               journal.Posting(b.id, m.money("-1.00", "SEK"))])
        # no commit
    with db.reading() as s:
        assert _stored(s) == {}
    post(db, [(a, "1.00"), (b, "-1.00")])
    with db.reading() as s:
        assert set(_stored(s)) == {(1, 0)}


def test_the_migration_backfills_the_tree_of_an_existing_journal(backend, tmp_path, monkeypatch):
    # given a journal of 37 transactions written before the tree existed
    url, pg_name = empty_database_url(backend, tmp_path, "utfall_tree")
    try:
        command.upgrade(schema.alembic_config(url), "0004")
        engine = make_engine(url)
        db = Database(engine)
        monkeypatch.setattr(tree, "completed_nodes", lambda *a, **k: [])
        monkeypatch.setattr(effective_balances, "record", lambda *a, **k: None)  # its table comes later too
        monkeypatch.setattr(effective_balances, "record_parameters", lambda *a, **k: None)
        a, b = accounts(db, 2)
        for _ in range(37):
            post(db, [(a, "3.00"), (b, "-3.00")])
        monkeypatch.undo()
        # when
        schema.upgrade(url)
        # then every complete node is there, the chain is intact, and postings go on extending the tree
        with db.reading() as s:
            mem = _memory_tree(s)
            assert _stored(s) == {k: v for k, v in mem.nodes.items() if k[0] > 0}
            assert journal.verify(s).ok
        post(db, [(a, "3.00"), (b, "-3.00")])
        with db.reading() as s:
            mem = _memory_tree(s)
            assert mem.size == 38
            assert _stored(s) == {k: v for k, v in mem.nodes.items() if k[0] > 0}
        engine.dispose()
    finally:
        if pg_name:
            drop_pg_database(pg_name)


def test_concurrent_postings_build_the_same_tree_as_the_journal(fresh_engine):
    if fresh_engine.dialect.name != "postgresql":
        pytest.skip("concurrency under row locks is a PostgreSQL matter; SQLite has one writer")
    db = Database(fresh_engine)
    accs = accounts(db, 3)
    errors = []

    def worker(n):
        try:
            for i in range(40):
                with db.uow() as uow:
                    journal.post(uow, actor=f"w{n}", kind="TEST", description=f"{n}/{i}",
                                 effective_date=date(2026, 1, 1),
                                 postings=[journal.Posting(accs[n % 3].id, m.money("1.00", "SEK")),
                                           journal.Posting(accs[(n + 1) % 3].id, m.money("-1.00", "SEK"))])
                    uow.commit()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with db.reading() as s:
        mem = _memory_tree(s)
        assert mem.size == 320
        assert _stored(s) == {k: v for k, v in mem.nodes.items() if k[0] > 0}


def test_extend_stores_the_nodes_of_a_bulk_loaded_journal(db, monkeypatch):
    # given 9 transactions with their nodes, then 14 written without (a bulk load)
    a, b = accounts(db, 2)
    for _ in range(9):
        post(db, [(a, "1.00"), (b, "-1.00")])
    monkeypatch.setattr(tree, "completed_nodes", lambda *a, **k: [])
    for _ in range(14):
        post(db, [(a, "1.00"), (b, "-1.00")])
    monkeypatch.undo()
    # when
    with db.uow() as uow:
        written = tree.extend(uow.session.connection(), 9, 23, batch=4)
        uow.commit()
    # then
    with db.reading() as s:
        mem = _memory_tree(s)
        assert _stored(s) == {k: v for k, v in mem.nodes.items() if k[0] > 0}
        assert written == len(_stored(s)) - 7  # the 9 first leaves had 4 + 2 + 1 nodes above them
