"""The HTTP benchmark (ops/bench/http.py) runs end to end on SQLite, and its served-mutation figure
is honest: every `depositCapital` answered posted once, each with an idempotency key of its own,
and the strawberry reference answers in the service's shape. The full runs are
`python -m ops.bench.http`."""
from __future__ import annotations

import json

import pytest

from ops.bench import http

GENERATORS = ["python client"] + (["wrk"] if http.WRK else [])


@pytest.mark.parametrize("generator", GENERATORS)
def test_the_http_bench_measures_the_query_and_a_mutation_that_posts_once_per_answer(generator):
    results = http.run(backends=("sqlite",), log=lambda _m: None, seconds=1.0, rounds=1, generator=generator)
    query_strawberry, query_bare, mutation = results
    assert [r["generator"] for r in results] == [generator] * 3
    for r in results:
        assert r["errors"] == 0, r["failures"]
        assert r["median"] > 0 and r["reference"]["median"] > 0
        assert r["reference_same_response"], r["operation"]
    assert "contract" in query_strawberry["operation"] and "Starlette" in query_bare["reference"]["operation"]
    assert "depositCapital" in mutation["operation"] and "in-memory ledger" in mutation["reference"]["operation"]
    (answered,), (posted,) = mutation["answered"], mutation["posted"]
    # the ledger grew by the answers, plus at most one request a connection still in flight at the end
    assert answered > 0 and answered <= posted <= answered + 8
    assert "every answer posted once" in http.table(results)


def test_a_mutation_answer_with_user_errors_or_without_data_counts_as_refused():
    ok = {"data": {"depositCapital": {"transaction": {"sequence": 3, "hash": "ab"}, "userErrors": []}}}
    refused = {"data": {"depositCapital": {"transaction": None, "userErrors": [{"code": "INVALID_AMOUNT"}]}}}
    assert not http._refused(json.dumps(ok).encode())
    assert http._refused(json.dumps(refused).encode())
    assert http._refused(b'{"data": null, "errors": [{"message": "x"}]}')
    assert http._refused(b"not json")


def test_the_reference_shape_check_compares_keys_and_kinds_not_values():
    a = {"data": {"x": {"transaction": {"sequence": 1, "hash": "a"}, "userErrors": []}}}
    assert http._same_shape(a, {"data": {"x": {"transaction": {"sequence": 9, "hash": "b"}, "userErrors": []}}})
    assert not http._same_shape(a, {"data": {"x": {"transaction": {"sequence": "9", "hash": "b"}, "userErrors": []}}})
    assert not http._same_shape(a, {"data": {"x": {"transaction": {"hash": "b"}, "userErrors": []}}})
