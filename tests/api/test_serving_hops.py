"""Where the contract query's database work runs: in a worker thread, or (a known token, a first page) on the
event loop — SQLite's reads called there, PostgreSQL's awaited there (api.loop_reads) with no transaction round
trips around them; with UTFALL_READS_ON_LOOP=0, PostgreSQL's in one thread hop."""
from __future__ import annotations

import dataclasses
import http.client
import json
import time
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


def _counting_hops(app) -> list[int]:
    """[the number of thread hops the app's requests have made]: its worker pool's submissions, counted."""
    hops = [0]
    submit = app.state.executor.submit

    def counted(*args, **kwargs):
        hops[0] += 1
        return submit(*args, **kwargs)
    app.state.executor.submit = counted
    return hops


@pytest.fixture(params=["loop", "threads"])
def reads(request, backend):
    """Where PostgreSQL's inline reads go: awaited on the event loop (the default) or to a worker thread
    (UTFALL_READS_ON_LOOP=0)."""
    if request.param == "threads" and backend != "postgresql":
        pytest.skip("SQLite's inline reads are called on the event loop either way")
    return request.param


@pytest.fixture
def served(fresh_engine, reads):
    """(client, the thread hops counted, the contract's global id, an auditor's token) on a real pool."""
    demo.load(Database(fresh_engine), today=date(2026, 11, 23), secret=b"hops-secret-0123456789")
    with Database(fresh_engine).reading() as s:
        contract_id = s.execute(select(OutcomeContract.id).order_by(OutcomeContract.id)).scalars().first()
    token = issue(fresh_engine)
    app = create_app(dataclasses.replace(settings("production", url_of(fresh_engine)), reads_on_loop=reads == "loop"),
                     workers=4)
    hops = _counting_hops(app)
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


def test_a_known_tokens_contract_query_needs_no_thread_hop(served, backend, reads):
    client, hops, contract, token = served
    first = _post(client, token, QUERY, {"c": contract})  # the token's first use: a hop of its own
    for _ in range(3):
        hops[0] = 0
        again = _post(client, token, QUERY, {"c": contract})
        assert again == first
        # the token check, the contract and its first page on the event loop, the session closed there;
        # PostgreSQL with its reads in threads: all of them in one hop, and closing a session without a
        # transaction needs no hop
        assert hops[0] == (1 if reads == "threads" else 0)


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


def test_a_use_due_to_be_recorded_is_recorded_in_a_thread_when_the_check_ran_as_a_read(served, fresh_engine, reads):
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
    assert hops[0] == (2 if reads == "threads" else 1)


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


def test_a_read_awaited_on_the_event_loop_leaves_the_loop_free_while_the_database_makes_it_wait(fresh_engine, backend):
    """The contract query's reads on PostgreSQL are awaited on the event loop, not called there: while one
    waits for the database (here for a table lock), the loop goes on serving other requests."""
    if backend != "postgresql":
        pytest.skip("SQLite's inline reads are calls into the library; only PostgreSQL's are awaited")
    from tests.api.serving import post, serving
    import psycopg
    import threading
    token = issue(fresh_engine)
    query = '{ contract(id: "T3V0Y29tZUNvbnRyYWN0OjE=") { title evidence(first: 5) { nodes { id } } } }'
    app = create_app(settings("production", url_of(fresh_engine)), workers=4)
    hops = _counting_hops(app)
    name = fresh_engine.url.database
    try:
        with serving(app) as port:
            before = post(port, query, token)  # the token's first use; from now on it is checked on the loop
            assert before.status == 200 and b'"errors"' not in before.body, before.body
            with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={name}") as locker:
                locker.execute("LOCK TABLE outcome_contracts IN ACCESS EXCLUSIVE MODE")
                hops[0] = 0
                answers: list = []
                waiting = threading.Thread(target=lambda: answers.append(post(port, query, token)))
                waiting.start()
                with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={name}", autocommit=True) as watch:
                    for _ in range(200):
                        if watch.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                         "AND wait_event_type = 'Lock'", (name,)).fetchone()[0]:
                            break
                        time.sleep(0.02)
                    else:
                        raise AssertionError("the contract query never reached the database")
                # the loop serves others meanwhile: a token's check in a thread, and a route with no database
                other = post(port, "{ viewer { role } }", token, timeout=5)
                assert other.status == 200 and b'"AUDITOR"' in other.body
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/healthz")
                assert conn.getresponse().status == 200
                conn.close()
                assert not answers and waiting.is_alive()
                locker.rollback()
            waiting.join(30)
            assert answers and answers[0].status == 200 and answers[0].body == before.body
            assert hops[0] == 1  # the viewer query's hop; the waiting query's reads made none
    finally:
        app.state.db.engine.dispose()


def test_reads_on_the_event_loop_answer_byte_for_byte_as_reads_in_threads(fresh_engine, backend):
    """The same queries, as callers of every kind, from one database: served with PostgreSQL's hot reads awaited
    on the event loop and with every read in a thread, the answers are the same bytes."""
    if backend != "postgresql":
        pytest.skip("only PostgreSQL awaits reads on the event loop")
    from ledger import tokens
    from ledger.access import SYSTEM
    from ledger.parties import create_party
    from tests.api.test_serving_golden import PAGES_QUERY, QUERIES
    demo.load(Database(fresh_engine), today=date(2026, 11, 23), secret=b"hops-secret-0123456789")
    with Database(fresh_engine).reading() as s:
        contract = s.execute(select(OutcomeContract).order_by(OutcomeContract.id)).scalars().first()
        contract_id, provider_id = contract.id, contract.provider_id
    with Database(fresh_engine).uow() as uow:
        stranger = create_party(uow, actor=SYSTEM, name="Annan Utförare AB", role="PROVIDER", ownership="PRIVATE").id
        callers = {name: tokens.create_token(uow, actor=SYSTEM, name=name, role=role, party_id=party).token
                   for name, role, party in (("auditor", "AUDITOR", None), ("its provider", "PROVIDER", provider_id),
                                             ("another provider", "PROVIDER", stranger))}
        uow.commit()
    documents = [(QUERIES["bench_contract"], {}), (QUERIES["contract_evidence_pages"], {}),
                 (PAGES_QUERY, {"n": 40, "s": "VERIFIED"}), (PAGES_QUERY, {"n": 3, "s": "REJECTED"})]
    answers: dict[str, list[bytes]] = {}
    for reads in ("loop", "threads"):
        app = create_app(dataclasses.replace(settings("production", url_of(fresh_engine)),
                                             reads_on_loop=reads == "loop"), workers=4)
        try:
            with TestClient(app) as client:
                got = answers[reads] = []
                for caller, token in callers.items():
                    for query, extra in documents:
                        for contract_key in (contract_id, 10 ** 9):  # one there and one not
                            variables = {"c": to_global_id("OutcomeContract", contract_key), **extra}
                            for _ in range(2):  # the token's first use, then checked with the reads
                                got.append(_post(client, token, query, variables))
        finally:
            app.state.db.engine.dispose()
    assert answers["loop"] == answers["threads"]
    per_caller = len(documents) * 2 * 2
    auditor, provider, stranger = (answers["loop"][i * per_caller:(i + 1) * per_caller] for i in range(3))
    assert provider == auditor and len(set(auditor)) == len(documents) + 1  # each query's answer, and null
    assert set(stranger) == {b'{"data":{"contract":null}}'}  # not theirs: as if it were not there
