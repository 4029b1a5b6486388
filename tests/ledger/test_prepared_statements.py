"""Prepared statements outlive a rollback on the service's PostgreSQL connections.

psycopg drops every prepared statement of a connection after a ROLLBACK (DEALLOCATE ALL); the
service's units of work create no database objects, so `make_engine`'s connections roll back
without it: a refused mutation, or a group commit batch run again, no longer makes the server
parse and plan every statement of that connection afresh.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from ledger.models import Account, Party
from tests.factories import accounts
from ledger.db import Database


def _prepared(conn) -> set[str]:
    return set(conn.exec_driver_sql("SELECT name FROM pg_prepared_statements").scalars())


def test_a_rolled_back_transaction_keeps_its_connection_prepared_statements(fresh_engine):
    if fresh_engine.dialect.name != "postgresql":
        pytest.skip("prepared statements are the PostgreSQL driver's")
    (account,) = accounts(Database(fresh_engine), 1)
    with fresh_engine.connect() as conn:
        # given a connection whose statement ran often enough for psycopg to prepare it
        for _ in range(6):
            conn.execute(select(Account.name).where(Account.id == account.id)).one()
        before = _prepared(conn)
        names = dict(conn.connection.driver_connection._prepared._names)
        assert before and names
        conn.commit()
        # when a transaction that wrote is rolled back (a refused mutation's)
        conn.execute(Party.__table__.insert().values(name="refused", role="PROVIDER"))
        conn.rollback()
        # then what it wrote is gone, and the server and psycopg still hold the prepared statements
        assert conn.execute(select(Party.id).where(Party.name == "refused")).first() is None
        assert before <= _prepared(conn)
        assert dict(conn.connection.driver_connection._prepared._names) == names
        # and the next run of the statement uses it, as before the rollback
        assert conn.execute(select(Account.name).where(Account.id == account.id)).one() == (account.name,)
        conn.rollback()


def test_a_rollback_with_psycopg_transaction_block_open_is_psycopgs(fresh_engine):
    # a `with conn.transaction()` block on the driver connection: psycopg refuses a bare rollback
    # inside it, and so does the service's
    if fresh_engine.dialect.name != "postgresql":
        pytest.skip("the PostgreSQL driver's transaction blocks")
    import psycopg
    with fresh_engine.connect() as conn:
        raw = conn.connection.driver_connection
        with raw.transaction():
            raw.execute("SELECT 1")
            with pytest.raises(psycopg.ProgrammingError):
                fresh_engine.dialect.do_rollback(raw)
