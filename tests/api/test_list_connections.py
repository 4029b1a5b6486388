"""Every list that can grow has a connection: the same items as the list, a page at a time both ways."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from api.graphql.base import to_global_id as G
from ledger import evidence as ev
from ledger import sanctions
from ledger.access import Actor
from ledger.contracts import MetricSpec
from tests.api.test_n_plus_one import FM, build
from tests.factories import contract, funded, party, rate_card, sek
from tests.ledger.test_calculations import case_a  # noqa: F401
from tests.ledger.test_investments import MUNI, bond, distribute, pay  # noqa: F401

TODAY = date(2026, 11, 23)
PAGE = "totalCount edges { cursor node { %s } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"


def walk(api, token, query: str, path: list[str], variables: dict | None = None, size: int = 2) -> tuple[list, int]:
    """Every node of a connection by pages of `size` forward, checked against the pages backward.

    `query` takes $first, $after, $last and $before; `path` leads from `data` to the connection
    (a list in the path is entered at its first element)."""
    def page(**args) -> dict:
        data = api.ok(query, {**(variables or {}), **args}, token)
        for key in path:
            data = data[key] if not isinstance(data, list) else data[0][key]
        return data

    forward, after = [], None
    while True:
        conn = page(first=size, after=after)
        assert len(conn["edges"]) <= size
        forward += [e["node"] for e in conn["edges"]]
        assert conn["pageInfo"]["hasPreviousPage"] is (after is not None and bool(forward))
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    backward, before = [], None
    while True:
        conn = page(last=size, before=before)
        backward = [e["node"] for e in conn["edges"]] + backward
        if not conn["pageInfo"]["hasPreviousPage"]:
            break
        before = conn["pageInfo"]["startCursor"]
    assert backward == forward
    assert page(first=100)["totalCount"] == len(forward)
    return forward, conn["totalCount"]


def key(node: dict) -> str:
    return repr(sorted(node.items()))


def same_set(pages: list[dict], listed: list[dict]) -> None:
    assert sorted(map(key, pages)) == sorted(map(key, listed)) and len(pages) == len(listed)


OBLIGATION = "debtor { name } creditor { name } contract { title } outstanding { amount }"
ARGS = "$first: Int, $after: String, $last: Int, $before: String"
PAGING = "first: $first, after: $after, last: $last, before: $before"


def test_top_level_connections_hold_the_lists_items_with_the_same_filters(api, db):
    build(db, 3)  # three contracts with a posted payout: two obligations each, a forecast, accounts
    token = api.token("AUDITOR")
    listed = api.ok("{ obligations { %s } }" % OBLIGATION, token=token)["obligations"]
    paged, total = walk(api, token, f"query({ARGS}) {{ obligationsConnection({PAGING}) {{ {PAGE % OBLIGATION} }} }}",
                        ["obligationsConnection"])
    same_set(paged, listed)
    assert total == len(listed) == 6

    contract_id = api.ok("{ contracts(first: 1) { nodes { id } } }", token=token)["contracts"]["nodes"][0]["id"]
    listed = api.ok("query($c: ID) { obligations(contractId: $c, effectiveOn: \"2026-12-31\") { %s } }" % OBLIGATION,
                    {"c": contract_id}, token)["obligations"]
    paged, total = walk(api, token, f"query($c: ID, {ARGS}) {{ obligationsConnection(contractId: $c, effectiveOn: "
                                    f"\"2026-12-31\", {PAGING}) {{ {PAGE % OBLIGATION} }} }}",
                        ["obligationsConnection"], {"c": contract_id}, size=1)
    same_set(paged, listed)
    assert total == 2

    account = "id code balance { amount } party { name }"
    listed = api.ok("{ ledgerAccounts { %s } }" % account, token=token)["ledgerAccounts"]
    paged, total = walk(api, token, f"query({ARGS}) {{ ledgerAccountsConnection({PAGING}) {{ {PAGE % account} }} }}",
                        ["ledgerAccountsConnection"], size=7)
    assert paged == listed and total == len(listed) > 7  # the same order: the order accounts were opened in
    past = "query($at: DateTime) { ledgerAccounts(asOf: $at, effectiveOn: \"2026-03-01\") { %s } }" % account
    listed = api.ok(past, {"at": "2099-01-01T00:00:00+00:00"}, token)["ledgerAccounts"]
    paged, _ = walk(api, token, f"query($at: DateTime, {ARGS}) {{ ledgerAccountsConnection(asOf: $at, effectiveOn: "
                                f"\"2026-03-01\", {PAGING}) {{ {PAGE % account} }} }}",
                    ["ledgerAccountsConnection"], {"at": "2099-01-01T00:00:00+00:00"}, size=7)
    assert paged == listed

    line = "contract { title } party { name } periodStart periodEnd certain { amount } maximum { amount }"
    listed = api.ok("{ forecast { %s } }" % line, token=api.token("FUND_MANAGER"))["forecast"]
    paged, total = walk(api, api.token("FUND_MANAGER"),
                        f"query({ARGS}) {{ forecastConnection({PAGING}) {{ {PAGE % line} }} }}", ["forecastConnection"],
                        size=2)
    same_set(paged, listed)
    assert total == len(listed) > 2


def test_another_partys_rows_never_appear_and_a_hidden_contract_answers_like_a_missing_one(api, db):
    build(db, 2)
    stranger = party(db, name="Annan kommun", role="MUNICIPALITY")
    token = api.token("MUNICIPALITY", party_id=stranger.id)
    contract_id = api.ok("{ contracts(first: 1) { nodes { id } } }",
                         token=api.token("AUDITOR"))["contracts"]["nodes"][0]["id"]
    missing = G("OutcomeContract", 999_999)
    for cid in (contract_id, missing):
        data = api.ok("""query($c: ID!) {
          obligationsConnection(contractId: $c) { totalCount nodes { outstanding { amount } } }
          ledgerAccountsConnection(contractId: $c) { totalCount nodes { id } }
          forecastConnection(contractId: $c) { totalCount nodes { periodStart } }
          distributionsConnection(contractId: $c) { totalCount nodes { id } }
          contract(id: $c) { id } }""", {"c": cid}, token)
        assert data == {"obligationsConnection": {"totalCount": 0, "nodes": []},
                        "ledgerAccountsConnection": {"totalCount": 0, "nodes": []},
                        "forecastConnection": {"totalCount": 0, "nodes": []},
                        "distributionsConnection": {"totalCount": 0, "nodes": []}, "contract": None}
    # the contracts' own municipality sees its part only: what it owes, its own forecast lines
    muni = api.ok("{ contracts(first: 1) { nodes { municipality { id name } } } }",
                  token=api.token("AUDITOR"))["contracts"]["nodes"][0]["municipality"]
    from api.graphql.base import from_global_id
    own = api.token("MUNICIPALITY", party_id=from_global_id(muni["id"], "Party"))
    data = api.ok("""{ obligationsConnection(first: 100) { totalCount nodes { debtor { name } creditor { name } } }
                       obligations { debtor { name } creditor { name } }
                       forecastConnection(first: 100) { totalCount nodes { party { name } } } }""", token=own)
    assert data["obligationsConnection"]["totalCount"] == len(data["obligations"]) > 0
    assert all(muni["name"] in (o["debtor"]["name"], o["creditor"]["name"])
               for o in data["obligationsConnection"]["nodes"])
    assert data["forecastConnection"]["totalCount"] > 0
    assert {x["party"]["name"] for x in data["forecastConnection"]["nodes"]} == {muni["name"]}


def grow(db, n: int) -> None:
    """`n` contracts, each with three measurements, three sanctions (one a penalty, vite) and its obligation."""
    fund, manager, muni, prov, ver = funded(db, FM, capital="900000000.00")
    care = MetricSpec(code="CARE_DAYS", name="Vårddygn", kind="BASELINE_IMPROVEMENT", direction="LOWER_IS_BETTER",
                      unit_price=sek("1850.00"), baseline=Decimal(3650))
    verifier = Actor("vera", "VERIFIER", ver.id)
    for i in range(n):
        c = contract(db, FM, fund, manager, muni, prov, ver, activate=True, title=f"G{i}",
                     metrics=(rate_card(), care))
        with db.uow() as uow:
            for month in (1, 4, 7):
                ev.record_measurement(uow, actor=verifier, contract_id=c.id, metric_code="CARE_DAYS",
                                      period_start=date(2026, month, 1), period_end=date(2026, month + 2, 28),
                                      observed_value=Decimal(3000 + month), comparison_value=None, cohort_size=None,
                                      today=TODAY)
            sanctions.issue_sanction(uow, actor=FM, contract_id=c.id, level="WARNING", reason="Sen rapport")
            sanctions.issue_sanction(uow, actor=FM, contract_id=c.id, level="PENALTY", reason="Brister",
                                     penalty=sek(f"{1000 + i}.00"))
            sanctions.issue_sanction(uow, actor=FM, contract_id=c.id, level="WARNING", reason="Igen")
            uow.commit()


@pytest.mark.parametrize("field, node", [("measurements", "id metricCode observedValue"),
                                         ("sanctions", "id level penalty { amount }"),
                                         ("obligations", OBLIGATION)])
def test_a_contracts_connections_hold_its_lists_items(api, db, field, node):
    grow(db, 2)
    build(db, 1)  # a contract with a posted payout: its obligations to the provider
    token = api.token("AUDITOR")
    seen = 0
    for c in api.ok("{ contracts { nodes { id } } }", token=token)["contracts"]["nodes"]:
        query = (f"query($c: ID!, {ARGS}) {{ contract(id: $c) {{ {field} {{ {node} }} "
                 f"{field}Connection({PAGING}) {{ {PAGE % node} }} }} }}")
        listed = api.ok(query, {"c": c["id"], "first": 0}, token)["contract"][field]
        paged, total = walk(api, token, query, ["contract", f"{field}Connection"], {"c": c["id"]}, size=1)
        same_set(paged, listed)
        assert total == len(listed)
        if field != "obligations":  # rows with a key: the list's order
            assert paged == listed
        seen += total
    assert seen >= {"measurements": 6, "sanctions": 6, "obligations": 4}[field]


def test_a_contracts_connections_count_for_each_contract_and_page_backward(api, db):
    grow(db, 3)
    data = api.ok("""{ contracts { nodes { title
      measurementsConnection(last: 1) { totalCount nodes { observedValue } pageInfo { hasPreviousPage } }
      sanctionsConnection(last: 2) { totalCount nodes { level } }
      obligationsConnection { totalCount nodes { outstanding { amount } } } } } }""",
                  token=api.token("AUDITOR"))["contracts"]["nodes"]
    assert len(data) == 3
    for i, c in enumerate(sorted(data, key=lambda c: c["title"])):
        assert c["measurementsConnection"] == {"totalCount": 3, "nodes": [{"observedValue": "3007"}],
                                               "pageInfo": {"hasPreviousPage": True}}
        assert c["sanctionsConnection"] == {"totalCount": 3, "nodes": [{"level": "PENALTY"}, {"level": "WARNING"}]}
        assert c["obligationsConnection"] == {"totalCount": 1, "nodes": [{"outstanding": {"amount": f"{1000 + i}.00"}}]}


def test_distributions_page_like_the_list_and_an_investor_sees_its_own_lines_only(api, db, bond):
    w = bond
    pay(db, w, w["muni"], w["prov"], "30000.00", actor=MUNI(w))
    distribute(db, w, up_to=date(2026, 7, 10))
    for day in (11, 12):
        pay(db, w, w["manager"], w["prov"], "5000.00", on=date(2026, 7, day))
        distribute(db, w, up_to=date(2026, 7, day))
    c = G("OutcomeContract", w["contract"].id)
    node = "id upTo total { amount } lines { kind amount { amount } }"
    query = f"query($c: ID!, {ARGS}) {{ distributions(contractId: $c) {{ {node} }} " \
            f"distributionsConnection(contractId: $c, {PAGING}) {{ {PAGE % node} }} }}"
    for token in (api.token("AUDITOR"), api.token("INVESTOR", party_id=w["investor"].id)):
        listed = api.ok(query, {"c": c, "first": 0}, token)["distributions"]
        paged, total = walk(api, token, query, ["distributionsConnection"], {"c": c}, size=1)
        assert paged == listed and total == 3
    other = api.token("INVESTOR", party_id=party(db, role="INVESTOR", name="Annan investerare AB").id)
    assert api.ok(query, {"c": c}, other) == {"distributions": [], "distributionsConnection": {
        "totalCount": 0, "edges": [], "pageInfo": {"hasNextPage": False, "hasPreviousPage": False,
                                                   "startCursor": None, "endCursor": None}}}


def test_the_cost_limit_counts_the_new_connections_like_the_others(api):
    token = api.token("AUDITOR")

    def cost(query: str) -> int:
        body = api.post("{ contracts(first: 100) { nodes { evidence(first: 100) { nodes { id } } } } %s }" % query,
                        token=token)
        return body["errors"][0]["extensions"]["cost"]
    base = cost("")
    # a page of 100 counts 100 for the field, 100 for `nodes` and 100 for each field of a node
    for field in ("obligationsConnection(first: 100) { nodes { cursor } }",
                  "ledgerAccountsConnection(first: 100) { nodes { id } }",
                  "forecastConnection(first: 100) { nodes { periodStart } }",
                  "distributionsConnection(contractId: \"x\", first: 100) { nodes { id } }"):
        assert cost(field) - base == 300, field
    # and a contract's connections like its evidence: the page of each contract on a page of contracts
    for field, scalar in (("measurementsConnection", "id"), ("sanctionsConnection", "id"),
                          ("obligationsConnection", "cursor")):
        body = api.post("{ contracts(first: 100) { nodes { %s(first: 100) { nodes { %s } } } } }" % (field, scalar),
                        token=token)
        assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY", field
        assert body["errors"][0]["extensions"]["cost"] == 100 + 100 + 10_000 * 3
        assert "errors" not in api.post("{ contracts(first: 20) { nodes { %s(first: 20) { nodes { %s } } } } }"
                                        % (field, scalar), token=token)
    body = api.post("{ payouts(first: 100) { nodes { itemsConnection(first: 100) { nodes { metricCode } } } } }",
                    token=token)
    assert body["errors"][0]["extensions"]["cost"] == 100 + 100 + 10_000 * 3


def test_a_cursor_of_another_list_is_refused(api, db):
    build(db, 1)
    token = api.token("AUDITOR")
    accounts = api.ok("{ ledgerAccountsConnection(first: 1) { pageInfo { endCursor } } }", token=token)
    cursor = accounts["ledgerAccountsConnection"]["pageInfo"]["endCursor"]
    owed = api.ok("{ obligationsConnection(first: 1) { pageInfo { endCursor } } }", token=token)
    other = owed["obligationsConnection"]["pageInfo"]["endCursor"]
    for query, after in (("{ obligationsConnection(after: \"%s\") { totalCount } }", cursor),
                         ("{ forecastConnection(after: \"%s\") { totalCount } }", other),
                         ("{ ledgerAccountsConnection(after: \"%s\") { totalCount } }", other),
                         ("{ obligationsConnection(after: \"%s\") { totalCount } }", "bm90IGEgY3Vyc29y")):
        assert api.post(query % after, token=token)["errors"][0]["extensions"]["code"] == "INVALID_CURSOR"


def test_a_page_of_contracts_reads_their_measurements_sanctions_and_obligations_in_a_fixed_number_of_statements(
        api, db):
    from tests.api.test_n_plus_one import selects
    query = """{ contracts(first: 50) { nodes { title
      measurementsConnection(first: 2) { totalCount nodes { observedValue } pageInfo { hasNextPage } }
      sanctionsConnection(last: 2) { totalCount nodes { level penalty { amount } } }
      obligationsConnection(first: 2) { totalCount nodes { debtor { name } outstanding { amount } } } } } }"""
    token = api.token("AUDITOR")
    grow(db, 3)
    few, data = selects(api, token, query)
    grow(db, 12)
    many, data = selects(api, token, query)
    nodes = data["contracts"]["nodes"]
    assert len(nodes) == 15
    assert all(n["measurementsConnection"]["totalCount"] == 3 and n["sanctionsConnection"]["totalCount"] == 3
               and n["obligationsConnection"]["totalCount"] == 1 for n in nodes)
    assert many == few, f"{few} SELECTs for 3 contracts, {many} for 15"


def test_a_payouts_items_page_like_its_list_with_the_same_metric_filter(api, db):
    build(db, 2)  # each payout paid two verified claims
    token = api.token("AUDITOR")
    node = "kind metricCode net { amount } evidence { id }"
    for p in api.ok("{ payouts(first: 100) { nodes { id } } }", token=token)["payouts"]["nodes"]:
        for metric in (None, "SCHOOL_PASS", "NOPE"):
            query = (f"query($p: ID!, $m: String, {ARGS}) {{ payout(id: $p) {{ items(metricCode: $m) {{ {node} }} "
                     f"itemsConnection(metricCode: $m, {PAGING}) {{ {PAGE % node} }} }} }}")
            listed = api.ok(query, {"p": p["id"], "m": metric, "first": 0}, token)["payout"]["items"]
            paged, total = walk(api, token, query, ["payout", "itemsConnection"], {"p": p["id"], "m": metric}, size=1)
            assert paged == listed and total == len(listed) == (0 if metric == "NOPE" else 2)
