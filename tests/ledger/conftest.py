"""Fixtures shared by the ledger's posting tests."""
import pytest

from ledger.db import Database


@pytest.fixture
def grouped(fresh_engine):
    """A Database whose units of work go through the group commit (PostgreSQL only)."""
    if fresh_engine.dialect.name != "postgresql":
        pytest.skip("group commit is for PostgreSQL; SQLite has one writer and a cheap commit")
    db = Database(fresh_engine, group_commit=True)
    yield db
    db.group_commit.close()
