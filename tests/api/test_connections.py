"""Connections page both ways with Relay's arguments, count without loading rows, and nodes(ids:) hides like node."""
from __future__ import annotations

from api.graphql.base import MAX_NODES, to_global_id
from tests.api.test_n_plus_one import build
from tests.factories import party

PAGE = """query($first: Int, $after: String, $last: Int, $before: String) {
  evidence(first: $first, after: $after, last: $last, before: $before) {
    totalCount edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""


def ids(conn) -> list[str]:
    return [e["node"]["id"] for e in conn["edges"]]


def test_pages_forward_and_backward_meet_and_say_what_lies_beyond(api, db):
    build(db, 3)  # six evidence items
    token = api.token("AUDITOR")
    everything = api.ok(PAGE, {"first": 100}, token)["evidence"]
    all_ids = ids(everything)
    assert everything["totalCount"] == len(all_ids) == 6
    assert everything["pageInfo"]["hasNextPage"] is False and everything["pageInfo"]["hasPreviousPage"] is False

    first = api.ok(PAGE, {"first": 2}, token)["evidence"]
    assert ids(first) == all_ids[:2] and first["totalCount"] == 6
    assert first["pageInfo"]["hasNextPage"] is True and first["pageInfo"]["hasPreviousPage"] is False
    second = api.ok(PAGE, {"first": 2, "after": first["pageInfo"]["endCursor"]}, token)["evidence"]
    assert ids(second) == all_ids[2:4]
    assert second["pageInfo"]["hasNextPage"] is True and second["pageInfo"]["hasPreviousPage"] is True

    last = api.ok(PAGE, {"last": 2}, token)["evidence"]
    assert ids(last) == all_ids[-2:]
    assert last["pageInfo"]["hasNextPage"] is False and last["pageInfo"]["hasPreviousPage"] is True
    back = api.ok(PAGE, {"last": 3, "before": last["pageInfo"]["startCursor"]}, token)["evidence"]
    assert ids(back) == all_ids[1:4]
    assert back["pageInfo"]["hasNextPage"] is True and back["pageInfo"]["hasPreviousPage"] is True
    start = api.ok(PAGE, {"last": 5, "before": second["edges"][0]["cursor"]}, token)["evidence"]
    assert ids(start) == all_ids[:2] and start["pageInfo"]["hasPreviousPage"] is False

    both = api.post(PAGE, {"first": 1, "last": 1}, token)
    assert both["errors"][0]["extensions"]["code"] == "PAGE_SIZE"


def test_nested_pages_page_backward_and_count_per_parent(api, db):
    build(db, 2)
    token = api.token("AUDITOR")
    data = api.ok("""{ contracts { totalCount nodes { participants(last: 1) { totalCount nodes { externalRef }
      pageInfo { hasPreviousPage hasNextPage } } } } }""", token=token)["contracts"]
    assert data["totalCount"] == 2
    for i, c in enumerate(data["nodes"]):
        assert c["participants"]["totalCount"] == 2
        assert c["participants"]["nodes"] == [{"externalRef": f"{i}-1"}]
        assert c["participants"]["pageInfo"] == {"hasPreviousPage": True, "hasNextPage": False}


def test_nodes_answers_a_hidden_id_exactly_like_a_missing_one(api, db):
    build(db, 1)
    seen = api.ok("{ contracts { nodes { id } } }", token=api.token("AUDITOR"))["contracts"]["nodes"][0]["id"]
    missing = to_global_id("OutcomeContract", 999_999)
    stranger = api.token("PROVIDER", party_id=party(db, name="Annan AB", role="PROVIDER").id)  # of no contract
    query = "query($ids: [ID!]!) { nodes(ids: $ids) { id ... on OutcomeContract { title } } }"
    assert api.ok(query, {"ids": [seen, missing]}, api.token("AUDITOR"))["nodes"] == [
        {"id": seen, "title": "C0"}, None]
    assert api.ok(query, {"ids": [seen, missing]}, stranger)["nodes"] == [None, None]
    too_many = api.post(query, {"ids": [missing] * (MAX_NODES + 1)}, api.token("AUDITOR"))
    assert too_many["errors"][0]["extensions"]["code"] == "PAGE_SIZE"
    bad = api.post(query, {"ids": ["not an id"]}, api.token("AUDITOR"))
    assert bad["errors"][0]["extensions"]["code"] == "INVALID_ID"


def test_plain_lists_take_first_and_after(api, db):
    build(db, 2)
    token = api.token("AUDITOR")
    accounts = api.ok("{ ledgerAccounts { id } }", token=token)["ledgerAccounts"]
    one = api.ok("{ ledgerAccounts(first: 1) { id } }", token=token)["ledgerAccounts"]
    rest = api.ok("query($a: ID) { ledgerAccounts(after: $a) { id } }", {"a": one[0]["id"]}, token)["ledgerAccounts"]
    assert one + rest == accounts and len(accounts) > 2
    owed = api.ok("{ obligations { cursor outstanding { amount } } }", token=token)["obligations"]
    head = api.ok("{ obligations(first: 1) { cursor } }", token=token)["obligations"]
    tail = api.ok("query($a: String) { obligations(after: $a) { cursor } }", {"a": head[0]["cursor"]}, token)["obligations"]
    assert [o["cursor"] for o in head + tail] == [o["cursor"] for o in owed] and len(owed) > 1
