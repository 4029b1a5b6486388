"""Security headers on every response; pooled connections recycled after the database dropped
them; a JSON 503 with a request id while the database is down (issue 14)."""
from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from ledger.config import Settings
from tests.api.serving import post, serving
from tests.api.test_pressure import issue, url_of
from tests.conftest import pg_admin

SECRET = b"headers-test-secret-0123456789"


def settings(env: str = "development", url: str = "unused") -> Settings:
    return Settings(database_url=url, env=env, secret=SECRET)


def assert_secure(r, path: str) -> None:
    h = r.headers
    assert h.get("x-content-type-options") == "nosniff", (path, dict(h))
    assert h.get("x-frame-options") == "DENY", path
    assert h.get("referrer-policy") == "no-referrer", path
    assert "frame-ancestors 'none'" in h.get("content-security-policy", ""), path
    if path.startswith("/graphql"):
        assert h.get("cache-control") == "no-store", path


@pytest.mark.parametrize("env", ["development", "production"])
def test_every_response_carries_the_security_headers(db, env):
    app = create_app(settings(env), db, workers=2)
    with TestClient(app, raise_server_exceptions=False) as client:
        answers = [
            ("/graphql", client.post("/graphql", json={"query": "{ viewer { role } }"})),
            ("/graphql", client.post("/graphql", json={"query": "{ nope }"})),
            ("/graphql", client.post("/graphql", content=b"{", headers={"Content-Type": "application/json"})),
            ("/graphql", client.post("/graphql", json={"query": "{ viewer { role } }"},
                                     headers={"Authorization": "Bearer utf_wrong"})),
            ("/graphql", client.post("/graphql", content=b"x" * (2 * 1024 * 1024),
                                     headers={"Content-Type": "application/json"})),
            ("/graphql", client.get("/graphql", headers={"Accept": "text/html"})),
            ("/healthz", client.get("/healthz")),
            ("/readyz", client.get("/readyz")),
            ("/results", client.get("/results")),
            ("/nowhere", client.get("/nowhere")),
        ]
        if env == "development":
            answers.append(("/static", client.get("/static/graphiql/graphiql/graphiql.min.css")))
        for path, r in answers:
            assert r.status_code < 500, (path, r.status_code, r.text[:200])
            assert_secure(r, path)


def test_graphiql_page_csp_allows_its_own_inline_script_only(db):
    app = create_app(settings("development"), db, workers=2)
    with TestClient(app) as client:
        r = client.get("/graphql", headers={"Accept": "text/html"})
    csp = r.headers["content-security-policy"]
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "script-src 'self' 'sha256-" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert "connect-src 'self'" in csp


@pytest.mark.parametrize("document", ["{ viewer { role } }", "{ ledgerDigest { sequence } }",
                                      '{ contract(id: "T3V0Y29tZUNvbnRyYWN0OjE=") { title evidence(first: 5) '
                                      '{ nodes { id } } } }'],
                         ids=["token check only", "token check and a read", "reads awaited on the event loop"])
def test_a_request_right_after_the_database_dropped_its_connections_succeeds(fresh_engine, backend, document):
    """Without a ping per request: a request that meets a dropped connection and wrote nothing runs again."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL drops connections; SQLite has none to drop")
    token = issue(fresh_engine)
    app = create_app(settings("production", url_of(fresh_engine)), workers=4)
    name = fresh_engine.url.database
    try:
        with serving(app) as port:
            for _ in range(3):
                first = post(port, document, token)
                assert first.status == 200 and b'"errors"' not in first.body, first.body
                with pg_admin() as admin:
                    killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                           "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchone()[0]
                assert killed >= 1
                second = post(port, document, token)
                assert second.status == 200 and b'"errors"' not in second.body, second.body
                assert second.body == first.body
    finally:
        app.state.db.engine.dispose()


CONTRACT_QUERY = '{ contract(id: "T3V0Y29tZUNvbnRyYWN0OjE=") { title evidence(first: 5) { nodes { id } } } }'


def test_a_dropped_connection_met_in_one_pool_has_the_other_pools_forgotten_too(fresh_engine, backend):
    """Reads awaited on the event loop have a pool of their own (api.loop_reads): a request that met a dropped
    connection in one pool and runs again must not meet the other pool's dropped one."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL drops connections; SQLite has none to drop")
    app = create_app(settings("production", url_of(fresh_engine)), workers=4)
    name = fresh_engine.url.database
    try:
        with serving(app) as port:
            for round_ in range(3):
                known, new = issue(fresh_engine), issue(fresh_engine)
                fresh_engine.dispose()  # (the test's own connections are ended below too)
                # both pools in use: a known token's contract query reads on the event loop, a thread
                # hop reads the ledger's digest
                for document in (CONTRACT_QUERY, "{ ledgerDigest { sequence } }", CONTRACT_QUERY):
                    assert post(port, document, known).status == 200
                with pg_admin() as admin:
                    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
                # a token new to the process is checked in a thread first (the thread pool's dropped
                # connection), then its query reads on the event loop (the loop's pool); in the next round a
                # known token's check meets the loop's dropped connection first
                first_in = new if round_ % 2 == 0 else known
                answer = post(port, CONTRACT_QUERY, first_in)
                assert answer.status == 200 and b'"errors"' not in answer.body, answer.body
    finally:
        app.state.db.engine.dispose()


@pytest.mark.parametrize("url", ["postgresql+psycopg://postgres@127.0.0.1:1/utfall_nowhere?connect_timeout=2",
                                 "sqlite:////nonexistent-dir/for/utfall.db"])
def test_a_database_that_is_down_gives_a_json_503_with_a_request_id(url):
    app = create_app(settings("production", url), workers=2)
    with TestClient(app, raise_server_exceptions=False) as client:
        for headers, doc in (({"Authorization": "Bearer utf_some-token"}, "{ viewer { role } }"),
                             ({}, '{ publicResults(contractId: "T3V0Y29tZUNvbnRyYWN0OjE=") { title } }'),
                             ({"X-Request-Id": "abc-123", "Authorization": "Bearer utf_x"}, "{ ledgerDigest { sequence } }")):
            r = client.post("/graphql", json={"query": doc}, headers=headers)
            assert r.status_code == 503, (doc, r.status_code, r.text[:300])
            body = r.json()
            assert body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
            assert body["errors"][0]["extensions"]["requestId"] == r.headers["x-request-id"]
            assert_secure(r, "/graphql")
        assert client.get("/readyz").status_code == 503
        assert client.get("/results").status_code in (500, 503)
        assert json.loads(client.get("/results").text)["errors"][0]["extensions"]["requestId"]
