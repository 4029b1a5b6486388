"""Worker processes sharing one writer (api.forwarded_mutations, ledger.shared_writer): a mutation sent
to a worker that does not hold the writer seat is answered by the one that does, through its whole
app and its group commit, byte for byte as it would answer it itself; queries stay where they arrive.

Two servers of the same database in one test process stand for two `uvicorn --workers` processes: each
has its own engine, pool, group commit, seat session and event loop. PostgreSQL only (the seat is an
advisory lock, and group commit is PostgreSQL's).
"""
from __future__ import annotations

import contextlib
import json
import logging

import pytest
from sqlalchemy import func, select
from starlette.requests import Request

from api import forwarded_mutations
from api.app import create_app
from api.graphql.base import to_global_id
from ledger import tokens
from ledger.access import SYSTEM, Actor
from ledger.config import Settings
from ledger.db import Database
from ledger.models import Transaction
from tests.api.serving import at_once, post, serving
from tests.factories import funded

SECRET = b"shared-writer-secret-0123456789"
FM = Actor("frida", "FUND_MANAGER")
DEPOSIT = """mutation($input: DepositCapitalInput!) { depositCapital(input: $input) {
  transaction { sequence } userErrors { code field message } } }"""
FUND = """query($id: ID!) { node(id: $id) { ... on Fund { name } } }"""


@pytest.fixture
def workers(fresh_engine, caplog, tmp_path):
    if fresh_engine.dialect.name != "postgresql":
        pytest.skip("one writer shared by processes is PostgreSQL's (group commit, an advisory lock)")
    caplog.set_level(logging.INFO, logger="utfall")
    db = Database(fresh_engine)
    fund, *_ = funded(db, FM)
    with db.uow() as uow:
        fm = tokens.create_token(uow, actor=SYSTEM, name="frida", role="FUND_MANAGER").token
        uow.commit()
    settings = Settings(database_url=fresh_engine.url.render_as_string(hide_password=False), env="production",
                        secret=SECRET, document_dir=str(tmp_path / "documents"), shared_writer=True)
    apps = [create_app(settings, workers=4), create_app(settings, workers=4)]
    with contextlib.ExitStack() as stack:
        ports = [stack.enter_context(serving(app)) for app in apps]  # the first to start takes the seat
        stack.callback(lambda: [app.state.db.engine.dispose() for app in apps])
        yield {"ports": ports, "dbs": [app.state.db for app in apps], "fm": fm, "db": db,
               "fund": to_global_id("Fund", fund.id), "before": _transactions(db)}


def _deposit(fund: str, key: str, reference: str = "inbetalning") -> dict:
    return {"input": {"fundId": fund, "amount": {"amount": "100.00", "currency": "SEK"},
                      "effectiveDate": "2026-03-01", "reference": reference, "idempotencyKey": key}}


def _made(workers) -> int:
    """Transactions posted since the fund was set up."""
    return _transactions(workers["db"]) - workers["before"]


def _transactions(db: Database) -> int:
    with db.reading() as s:
        return s.execute(select(func.count()).select_from(Transaction)).scalar_one()


def test_a_mutation_sent_to_another_worker_is_made_by_the_writer_and_answered_as_the_writer_answers(workers):
    writer, other = workers["dbs"]
    assert writer.shared_writer.is_writer and not other.shared_writer.is_writer
    # when a fund manager deposits through the worker without the seat
    sent = post(workers["ports"][1], DEPOSIT, workers["fm"], _deposit(workers["fund"], "k-1"),
                headers={"X-Request-Id": "req-forwarded-1"})
    # then it is made once, by the writer's group commit, and answered with its transaction
    assert sent.status == 200, sent.body
    assert json.loads(sent.body)["data"]["depositCapital"]["userErrors"] == []
    assert other.shared_writer.forwarded == 1 and other.group_commit.committed == 0
    assert writer.group_commit.committed == 1
    # with the client's request id and the service's headers, as from the writer itself
    assert sent.headers["x-request-id"] == "req-forwarded-1"
    assert sent.headers["cache-control"] == "no-store" and "content-security-policy" in sent.headers
    # and the same request again (same key) gets the same answer, byte for byte, from either worker
    again = [post(port, DEPOSIT, workers["fm"], _deposit(workers["fund"], "k-1")) for port in workers["ports"]]
    assert [a.body for a in again] == [sent.body, sent.body]
    assert _made(workers) == 1


def test_queries_stay_in_the_worker_that_receives_them(workers):
    _, other = workers["dbs"]
    answer = post(workers["ports"][1], FUND, workers["fm"], {"id": workers["fund"]})
    assert answer.status == 200 and json.loads(answer.body)["data"]["node"]["name"]
    assert other.shared_writer.forwarded == 0


def test_a_refused_token_is_refused_the_same_through_either_worker(workers):
    answers = [post(port, DEPOSIT, "not-a-token", _deposit(workers["fund"], "k-x")) for port in workers["ports"]]
    assert [a.status for a in answers] == [401, 401]
    assert json.loads(answers[0].body) == json.loads(answers[1].body)
    assert _made(workers) == 0


def test_sixteen_deposits_at_once_through_both_workers_are_each_made_once(workers):
    ports = workers["ports"]
    answers = at_once(16, lambda i: post(ports[i % 2], DEPOSIT, workers["fm"],
                                         _deposit(workers["fund"], f"many-{i}", f"insättning {i}")))
    assert [a.status for a in answers] == [200] * 16
    sequences = [json.loads(a.body)["data"]["depositCapital"]["transaction"]["sequence"] for a in answers]
    assert len(set(sequences)) == 16
    assert _made(workers) == 16
    writer, other = workers["dbs"]
    assert other.group_commit.committed == 0 and writer.group_commit.committed == 16
    # and one key sent through both at once makes one deposit, every request answering it
    same = at_once(8, lambda i: post(ports[i % 2], DEPOSIT, workers["fm"], _deposit(workers["fund"], "one-key")))
    assert len({json.loads(a.body)["data"]["depositCapital"]["transaction"]["sequence"] for a in same}) == 1
    assert _made(workers) == 17


def test_when_the_writer_stops_the_other_worker_makes_its_mutations_itself(workers):
    writer, other = workers["dbs"]
    assert post(workers["ports"][1], DEPOSIT, workers["fm"], _deposit(workers["fund"], "before")).status == 200
    # when the writer's worker stops (its seat session ends, its socket closes)
    writer.shared_writer.close()
    # then a mutation to the other is not lost: it makes it, having taken the seat
    after = post(workers["ports"][1], DEPOSIT, workers["fm"], _deposit(workers["fund"], "after"))
    assert after.status == 200 and json.loads(after.body)["data"]["depositCapital"]["userErrors"] == []
    assert other.shared_writer.is_writer and other.group_commit.committed == 1
    assert _made(workers) == 2


def _request(body: bytes, content_type: str = "application/json", forwarded: bool = False) -> Request:
    headers = [(b"content-type", content_type.encode())]
    if forwarded:
        headers.append((forwarded_mutations.FORWARDED.encode(), b"1"))
    return Request({"type": "http", "method": "POST", "path": "/graphql", "headers": headers, "query_string": b""})


@pytest.mark.parametrize(("payload", "mutation"), [
    ({"query": "mutation { a }"}, True),
    ({"query": "query { a }"}, False),
    ({"query": "{ a }"}, False),
    ({"query": "query Q { a } mutation M { b }", "operationName": "M"}, True),
    ({"query": "query Q { a } mutation M { b }", "operationName": "Q"}, False),
    ({"query": "query Q { a } mutation M { b }"}, False),  # which one runs is not plain: answered here
    ({"query": "mutation {"}, False),  # does not parse: answered (refused) here
    ({"variables": {}}, False),
])
def test_which_requests_are_sent_to_the_writer(payload, mutation):
    body = json.dumps(payload).encode()
    assert forwarded_mutations.is_mutation(_request(body), body) is mutation


def test_a_request_already_forwarded_or_not_json_is_never_sent_on():
    body = json.dumps({"query": "mutation { a }"}).encode()
    assert not forwarded_mutations.is_mutation(_request(body, forwarded=True), body)
    assert not forwarded_mutations.is_mutation(_request(body, content_type="multipart/form-data"), body)
    assert not forwarded_mutations.is_mutation(_request(b"{not json"), b"{not json")
