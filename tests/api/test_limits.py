"""API hardening: limits answer with clear errors; every code a caller can get is documented."""
from __future__ import annotations

import ast
from pathlib import Path

from api.graphql.schema import schema
from ledger.errors import ERROR_CODES

ROOT = Path(__file__).resolve().parents[2]


def codes_in_source() -> dict[str, str]:
    """Every literal error code raised in ledger/ and api/, with the file it is in."""
    found = {}
    for path in [*ROOT.joinpath("ledger").rglob("*.py"), *ROOT.joinpath("api").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "code" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                        found.setdefault(kw.value.value, path.name)
                if isinstance(node.func, ast.Name) and node.func.id == "_fail" and len(node.args) > 1 \
                        and isinstance(node.args[1], ast.Constant):
                    found.setdefault(node.args[1].value, path.name)
            if isinstance(node, ast.Dict):
                for k, v in zip(node.keys, node.values):
                    if isinstance(k, ast.Constant) and k.value == "code" and isinstance(v, ast.Constant):
                        found.setdefault(v.value, path.name)
    return found


def test_every_error_code_is_in_the_published_enum():
    missing = {c: f for c, f in codes_in_source().items() if c not in ERROR_CODES}
    assert not missing, f"add to ledger.errors.ERROR_CODES: {missing}"
    sdl = str(schema)
    assert "enum UserErrorCode" in sdl and all(c in sdl for c in ERROR_CODES)


def test_a_costly_query_is_refused_before_it_runs(api):
    token = api.token("AUDITOR")
    body = api.post("{ contracts(first: 100) { nodes { evidence(first: 100) { nodes { id status metricCode } } } } }",
                    token=token)
    assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
    # a variable's value is unknown at validation, so it counts as the largest page
    body = api.post("query($n: Int) { contracts(first: $n) { nodes { evidence(first: $n) { nodes { id status metricCode } } } } }",
                    {"n": 1}, token)
    assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
    ok = api.post("{ contracts(first: 20) { nodes { evidence(first: 20) { nodes { id status } } } } }", token=token)
    assert "errors" not in ok


def test_page_size_depth_aliases_and_tokens_are_limited(api):
    token = api.token("AUDITOR")
    assert api.post("{ parties(first: 101) { nodes { id } } }", token=token)["errors"][0]["extensions"]["code"] == "PAGE_SIZE"
    inner = "title"
    for _ in range(5):
        inner = f"fund {{ contracts(first: 1) {{ nodes {{ {inner} }} }} }}"
    deep = f"{{ contracts(first: 1) {{ nodes {{ {inner} }} }} }}"
    assert "exceeds maximum operation depth" in api.post(deep, token=token)["errors"][0]["message"]
    aliases = "{ " + " ".join(f"a{i}: viewer {{ name }}" for i in range(40)) + " }"
    assert "aliases" in api.post(aliases, token=token)["errors"][0]["message"].lower()
    tokens = "{ viewer { " + " ".join("name" for _ in range(5000)) + " } }"
    assert "token" in api.post(tokens, token=token)["errors"][0]["message"].lower()


def test_an_unexpected_error_is_masked_and_logged_with_the_request_id(api, monkeypatch, caplog):
    from ledger import journal
    monkeypatch.setattr(journal, "digest", lambda s: 1 / 0)
    r = api.client.post("/graphql", json={"query": "{ ledgerDigest { sequence } }"},
                        headers={"Authorization": f"Bearer {api.token('AUDITOR')}", "X-Request-Id": "req-4711"})
    assert r.json()["errors"][0]["message"] == "Unexpected error" and "division" not in r.text
    assert r.headers["x-request-id"] == "req-4711"
    logged = [rec for rec in caplog.records if "unexpected_error" in rec.getMessage()]
    assert logged and "req-4711" in logged[0].getMessage() and logged[0].exc_info


def test_each_request_is_logged_as_json_with_its_request_id(api, caplog):
    import json as _json
    import logging
    from api.logs import JsonFormatter
    caplog.set_level(logging.INFO, logger="utfall")
    api.client.post("/graphql", json={"query": "{ viewer { name } }"},
                    headers={"Authorization": f"Bearer {api.token('AUDITOR')}", "X-Request-Id": "req-77"})
    lines = [_json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "utfall"]
    line = next(x for x in lines if x.get("event") == "request")
    assert line["request_id"] == "req-77" and line["status"] == 200 and line["level"] == "info" and "ms" in line


def test_request_body_and_operation_batches_are_limited(api):
    token = api.token("AUDITOR")
    big = "{ viewer { name } }" + " " * (1024 * 1024)
    r = api.client.post("/graphql", json={"query": big}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 413 and r.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"
    # several operations in one request (batching) are not accepted
    r = api.client.post("/graphql", json=[{"query": "{ viewer { name } }"}] * 2,
                        headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400
