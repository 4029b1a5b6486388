"""Test databases: every database test runs on SQLite and on PostgreSQL.

Each backend gets a fresh database migrated with Alembic once per session; each test runs
inside a transaction that is rolled back, so tests never see each other's rows (units of
work commit to savepoints). Set UTFALL_TEST_BACKENDS=sqlite to run SQLite only locally;
under CI=true a PostgreSQL that cannot be reached fails the run instead of skipping.
"""
from __future__ import annotations

import os
import uuid

import psycopg
import pytest
from sqlalchemy import text

from ledger import schema
from ledger.access import Actor
from ledger.config import Settings
from ledger.db import Database, make_engine

BACKENDS = [b for b in os.environ.get("UTFALL_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]
PG_ADMIN = os.environ.get("UTFALL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"


def pg_admin() -> psycopg.Connection:
    return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)


def pg_url(name: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


def create_pg_database(prefix: str = "utfall_test") -> str:
    """A fresh, uniquely named PostgreSQL database (never test, postgres or root)."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_pg_database(name: str) -> None:
    assert name.startswith("utfall_"), name
    with pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def require_postgres() -> None:
    try:
        with pg_admin():
            pass
    except psycopg.OperationalError as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI=true and is not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")


def empty_database_url(backend: str, tmp_path, prefix: str) -> tuple[str, str | None]:
    """An empty database of `backend` to migrate step by step: (url, PostgreSQL name to drop or None)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}", None
    require_postgres()
    name = create_pg_database(prefix)
    return pg_url(name), name


@pytest.fixture(scope="session", params=BACKENDS)
def engine(request, tmp_path_factory):
    """A migrated database of each backend, for the whole session."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "utfall.db"
        url = f"sqlite:///{path}"
        schema.upgrade(url)
        eng = make_engine(url)
        yield eng
        eng.dispose()
    else:
        require_postgres()
        name = create_pg_database()
        url = pg_url(name)
        schema.upgrade(url)
        eng = make_engine(url)
        yield eng
        eng.dispose()
        drop_pg_database(name)


@pytest.fixture
def backend(engine) -> str:
    return engine.dialect.name


@pytest.fixture
def db(engine):
    """A Database bound to one connection whose transaction is rolled back after the test."""
    conn = engine.connect()
    outer = conn.begin()
    try:
        yield Database(conn)
    finally:
        outer.rollback()
        conn.close()


@pytest.fixture
def fresh_engine(request, engine, tmp_path):
    """A brand-new migrated database of the same backend whose commits are real (concurrency, dumps)."""
    if engine.dialect.name == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
        schema.upgrade(url)
        eng = make_engine(url)
        yield eng
        eng.dispose()
    else:
        name = create_pg_database("utfall_fresh")
        url = pg_url(name)
        schema.upgrade(url)
        eng = make_engine(url)
        yield eng
        eng.dispose()
        drop_pg_database(name)


@pytest.fixture
def admin() -> Actor:
    return Actor(name="ada admin", role="ADMIN", token_id=None)


@pytest.fixture
def fund_manager() -> Actor:
    return Actor(name="frida fund manager", role="FUND_MANAGER")


@pytest.fixture
def settings() -> Settings:
    return Settings(database_url="unused", env="development", secret=b"test-secret-for-hmac-0123456789")


def table_counts(db: Database) -> dict[str, int]:
    """Row counts of every table, to prove a failed use case wrote nothing."""
    from ledger.models import Base
    with db.reading() as s:
        return {t.name: s.execute(text(f"SELECT COUNT(*) FROM {t.name}")).scalar_one()
                for t in Base.metadata.sorted_tables}
