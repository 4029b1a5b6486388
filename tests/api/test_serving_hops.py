"""Where the contract query's database work runs: in a worker thread, or (SQLite, a known token, a first page)
on the event loop; on PostgreSQL one thread hop and no transaction round trips around the reads."""
from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from sqlalchemy import select, text, update
from starlette.testclient import TestClient

from api.app import TOUCH_EVERY, create_app
from api.graphql.base import to_global_id
from ledger import demo
from ledger.db import Database
from ledger.models import ApiToken, OutcomeContract, utcnow
from ops.bench.http import QUERY
from tests.api.test_headers import settings
from tests.api.test_pressure import issue, url_of

AFTER_QUERY = """query($c: ID!, $a: String) { contract(id: $c) { title
  evidence(first: 5, after: $a) { pageInfo { hasPreviousPage } nodes { id participant { externalRef } } } } }"""


@pytest.fixture
def served(fresh_engine):
    """(client, the thread hops counted, the contract's global id, an auditor's token) on a real pool."""
    demo.load(Database(fresh_engine), today=date(2026, 11, 23), secret=b"hops-secret-0123456789")
    with Database(fresh_engine).reading() as s:
        contract_id = s.execute(select(OutcomeContract.id).order_by(OutcomeContract.id)).scalars().first()
    token = issue(fresh_engine)
    app = create_app(settings("production", url_of(fresh_engine)), workers=4)
    hops = [0]
    submit = app.state.executor.submit

    def counted(*args, **kwargs):
        hops[0] += 1
        return submit(*args, **kwargs)
    app.state.executor.submit = counted
    try:
        with TestClient(app) as client:
            yield client, hops, to_global_id("OutcomeContract", contract_id), token
    finally:
        app.state.db.engine.dispose()


def _post(client, token, query, variables) -> bytes:
    r = client.post("/graphql", json={"query": query, "variables": variables},
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and b'"errors"' not in r.content, r.text[:500]
    return r.content


def test_a_known_tokens_contract_query_hops_once_on_postgresql_and_never_on_sqlite(served, backend):
    client, hops, contract, token = served
    first = _post(client, token, QUERY, {"c": contract})  # the token's first use: a hop of its own
    for _ in range(3):
        hops[0] = 0
        again = _post(client, token, QUERY, {"c": contract})
        assert again == first
        # SQLite: the token check, the contract and its first page on the event loop, the session closed there;
        # PostgreSQL: all of them in one hop, and closing a session without a transaction needs no hop
        assert hops[0] == (0 if backend == "sqlite" else 1)


def test_a_page_after_a_cursor_is_read_in_a_worker_thread(served):
    client, hops, contract, token = served
    page = json.loads(_post(client, token, AFTER_QUERY, {"c": contract, "a": None}))
    ids = [n["id"] for n in page["data"]["contract"]["evidence"]["nodes"]]
    edges = json.loads(_post(client, token, """query($c: ID!) { contract(id: $c) { evidence(first: 3) {
        pageInfo { endCursor } } } }""", {"c": contract}))
    after = edges["data"]["contract"]["evidence"]["pageInfo"]["endCursor"]
    hops[0] = 0
    later = json.loads(_post(client, token, AFTER_QUERY, {"c": contract, "a": after}))
    assert later["data"]["contract"]["evidence"]["pageInfo"]["hasPreviousPage"] is True
    assert [n["id"] for n in later["data"]["contract"]["evidence"]["nodes"]][:2] == ids[3:]
    # the reads behind a page after a cursor may scan many rows: never on the event loop
    assert hops[0] >= 1


def test_a_use_due_to_be_recorded_is_recorded_in_a_thread_when_the_check_ran_as_a_read(served, fresh_engine, backend):
    client, hops, contract, token = served
    first = _post(client, token, QUERY, {"c": contract})
    long_ago = utcnow() - 2 * TOUCH_EVERY
    with Database(fresh_engine).uow() as uow:
        uow.session.execute(update(ApiToken).where(ApiToken.name == "auditor under load").values(last_used_at=long_ago))
        uow.commit()
    # the process saw the token used a moment ago, so it checks it as a read; the database says a use is due
    hops[0] = 0
    assert _post(client, token, QUERY, {"c": contract}) == first
    with Database(fresh_engine).reading() as s:
        last_used = s.execute(select(ApiToken.last_used_at).where(ApiToken.name == "auditor under load")).scalar_one()
    assert last_used > utcnow() - timedelta(seconds=30)
    # the write in a worker thread of its own, never on the event loop
    assert hops[0] == (1 if backend == "sqlite" else 2)


def test_the_statement_read_session_sends_no_transaction_on_postgresql(fresh_engine, backend):
    db = Database(fresh_engine)
    s = db.statement_read_session()
    try:
        assert s.execute(text("SELECT 1")).scalar_one() == 1
        if backend == "postgresql":
            assert s.info.get("closes_locally") is True
            raw = s.connection().connection.driver_connection
            assert raw.autocommit is True
            assert raw.info.transaction_status.name == "IDLE"  # no BEGIN was sent
        else:
            assert not s.info.get("closes_locally")  # SQLite's read transaction, as read_session
    finally:
        s.rollback()
        s.close()
    # the pool's connection is back as it was: the next unit of work is a transaction
    with db.uow() as uow:
        uow.session.execute(text("SELECT 1"))
        raw = uow.session.connection().connection.driver_connection
        if backend == "postgresql":
            assert raw.autocommit is False and raw.info.transaction_status.name == "INTRANS"
