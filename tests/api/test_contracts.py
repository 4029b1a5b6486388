"""Funds and contracts through GraphQL, as a fund manager sets them up and as each role reads them."""
from __future__ import annotations

from api.graphql.base import to_global_id
from tests.conftest import table_counts
from tests.factories import party

PARTY = "mutation($i: CreatePartyInput!) { createParty(input: $i) { party { id } userErrors { code } } }"
CREATE_FUND = "mutation($i: CreateFundInput!) { createFund(input: $i) { fund { id name currency } userErrors { field code message } } }"
DEPOSIT = """mutation($i: DepositCapitalInput!) { depositCapital(input: $i) {
  fund { capital { amount currency } available { amount } } transaction { sequence kind } userErrors { field code message } } }"""
CREATE_CONTRACT = """mutation($i: CreateContractInput!) { createContract(input: $i) {
  contract { id status title terms { version maxValue { amount } payerShares { percent party { name } } }
             metrics { code kind direction unitPrice { amount currency } baseline threshold onceOnly
                       capPerParticipant { amount } areaSupplements { area percent } } }
  userErrors { field code message } } }"""
ACTIVATE = "mutation($i: ActivateContractInput!) { activateContract(input: $i) { contract { status committed { amount } } userErrors { code message } } }"
AMEND = """mutation($i: AmendContractInput!) { amendContract(input: $i) {
  contract { termsHistory { version effectiveFrom reason maxValue { amount } } } userErrors { field code message } } }"""
SANCTION = """mutation($i: IssueSanctionInput!) { issueSanction(input: $i) {
  sanction { level penalty { amount } } contract { status } userErrors { field code message } } }"""
FUND = "query($id: ID!) { fund(id: $id) { capital { amount } committed { amount } available { amount } paidOut { amount } contracts { nodes { title status } } } }"
CONTRACTS = "query($s: ContractStatus) { contracts(status: $s) { nodes { id title status provider { name } } } }"


def setup_parties(api, fm):
    ids = {}
    for key, inp in {
        "fund": {"name": "Statens utfallsfond", "role": "FUND"},
        "muni": {"name": "Umeå kommun", "role": "MUNICIPALITY", "orgNumber": "212000-2627"},
        "prov": {"name": "Skolframgång AB", "role": "PROVIDER", "ownership": "PRIVATE"},
        "inhouse": {"name": "Umeå kommuns egen regi", "role": "PROVIDER", "ownership": "PUBLIC_IN_HOUSE"},
        "ver": {"name": "Oberoende utvärdering AB", "role": "VERIFIER"},
    }.items():
        out = api.ok(PARTY, {"i": inp}, fm)["createParty"]
        assert out["userErrors"] == [], (key, out)
        ids[key] = out["party"]["id"]
    return ids


def contract_input(ids, fund_id, provider="prov", **over):
    inp = {
        "title": "Skolresultat i Umeå", "fundId": fund_id, "municipalityId": ids["muni"], "providerId": ids[provider],
        "verifierId": ids["ver"], "policyArea": "school", "startDate": "2026-01-01", "endDate": "2028-12-31",
        "maxValue": {"amount": "10000000.00", "currency": "SEK"},
        "participantCap": {"amount": "50000.00", "currency": "SEK"},
        "payerShares": [{"partyId": ids["fund"], "percent": "50"}, {"partyId": ids["muni"], "percent": "50.00"}],
        "metrics": [
            {"code": "SCHOOL_PASS", "name": "Godkänt i alla ämnen", "kind": "RATE_CARD", "direction": "HIGHER_IS_BETTER",
             "unitPrice": {"amount": "40000.00", "currency": "SEK"}, "onceOnly": True,
             "areaSupplements": [{"area": "RURAL", "percent": "15"}]},
            {"code": "ATTENDANCE", "name": "Närvaro", "kind": "RATE_CARD", "direction": "HIGHER_IS_BETTER",
             "unitPrice": {"amount": "12500.00", "currency": "SEK"},
             "capPerParticipant": {"amount": "25000.00", "currency": "SEK"}},
            {"code": "CARE_DAYS", "name": "Vårddygn", "kind": "BASELINE_IMPROVEMENT", "direction": "LOWER_IS_BETTER",
             "unitPrice": {"amount": "1850.00", "currency": "SEK"}, "baseline": "3650",
             "capPerPeriod": {"amount": "2000000.00", "currency": "SEK"}},
            {"code": "RECONVICTIONS", "name": "Återfall", "kind": "COMPARISON_THRESHOLD", "direction": "LOWER_IS_BETTER",
             "unitPrice": {"amount": "3000.00", "currency": "SEK"}, "threshold": "0.10", "baseline": "1.60"},
        ],
    }
    inp.update(over)
    return inp


def test_a_fund_manager_sets_up_a_fund_and_runs_a_contract_through_its_life(api, db):
    fm = api.token("FUND_MANAGER", name="frida")
    ids = setup_parties(api, fm)
    # a fund with capital
    # without dual control (see tests/api/test_corrections.py for it): every change is made at once
    fund = api.ok(CREATE_FUND, {"i": {"name": "Utfallsfonden", "managerId": ids["fund"], "currency": "SEK",
                                      "dualControl": False}}, fm)["createFund"]["fund"]
    dep = api.ok(DEPOSIT, {"i": {"fundId": fund["id"], "amount": {"amount": "50000000.00", "currency": "SEK"},
                                 "effectiveDate": "2026-01-01", "reference": "Anslag 2026", "idempotencyKey": "dep-1"}}, fm)
    assert dep["depositCapital"]["fund"]["capital"] == {"amount": "50000000.00", "currency": "SEK"}
    # a retry with the same key posts nothing new
    api.ok(DEPOSIT, {"i": {"fundId": fund["id"], "amount": {"amount": "50000000.00", "currency": "SEK"},
                           "effectiveDate": "2026-01-01", "reference": "Anslag 2026", "idempotencyKey": "dep-1"}}, fm)
    # a contract with metrics of all three kinds
    created = api.ok(CREATE_CONTRACT, {"i": contract_input(ids, fund["id"])}, fm)["createContract"]
    assert created["userErrors"] == []
    c = created["contract"]
    assert c["status"] == "DRAFT" and [x["code"] for x in c["metrics"]] == ["SCHOOL_PASS", "ATTENDANCE", "CARE_DAYS", "RECONVICTIONS"]
    assert c["metrics"][0]["areaSupplements"] == [{"area": "RURAL", "percent": "15"}]
    assert c["metrics"][3]["threshold"] == "0.10"
    act = api.ok(ACTIVATE, {"i": {"contractId": c["id"]}}, fm)["activateContract"]
    # the fund commits its 50 % share of maxValue
    assert act["contract"] == {"status": "ACTIVE", "committed": {"amount": "5000000.00"}}
    again = api.ok(ACTIVATE, {"i": {"contractId": c["id"]}}, fm)["activateContract"]
    assert again["userErrors"][0]["code"] == "INVALID_TRANSITION"
    f = api.ok(FUND, {"id": fund["id"]}, fm)["fund"]
    assert (f["capital"]["amount"], f["committed"]["amount"], f["available"]["amount"], f["paidOut"]["amount"]) == \
        ("50000000.00", "5000000.00", "45000000.00", "0.00")
    # an amendment is a new version
    am = api.ok(AMEND, {"i": {"contractId": c["id"], "effectiveDate": "2026-07-01", "reason": "Fler deltagare",
                              "maxValue": {"amount": "12000000.00", "currency": "SEK"}}}, fm)["amendContract"]
    assert [(t["version"], t["maxValue"]["amount"]) for t in am["contract"]["termsHistory"]] == [(1, "10000000.00"), (2, "12000000.00")]
    # sanctions
    pen = api.ok(SANCTION, {"i": {"contractId": c["id"], "level": "PENALTY", "reason": "Sen rapportering",
                                  "penalty": {"amount": "25000.00", "currency": "SEK"}}}, fm)["issueSanction"]
    assert pen["sanction"] == {"level": "PENALTY", "penalty": {"amount": "25000.00"}}
    sus = api.ok(SANCTION, {"i": {"contractId": c["id"], "level": "SUSPENSION", "reason": "Brister"}}, fm)["issueSanction"]
    assert sus["contract"]["status"] == "SUSPENDED"
    term = api.ok("mutation($i: TerminateContractInput!) { terminateContract(input: $i) { contract { status endReason } userErrors { code } } }",
                  {"i": {"contractId": c["id"], "reason": "Avslutat"}}, fm)["terminateContract"]
    assert term["contract"]["status"] == "TERMINATED"
    f = api.ok(FUND, {"id": fund["id"]}, fm)["fund"]
    assert (f["committed"]["amount"], f["available"]["amount"]) == ("0.00", "50000000.00")


def test_bad_contract_input_gives_user_errors_and_writes_nothing(api, db):
    fm = api.token("FUND_MANAGER")
    ids = setup_parties(api, fm)
    fund = api.ok(CREATE_FUND, {"i": {"name": "F", "managerId": ids["fund"], "currency": "SEK"}}, fm)["createFund"]["fund"]
    before = table_counts(db)
    cases = [
        (dict(endDate="2025-01-01"), "INVALID_TERM"),
        (dict(payerShares=[{"partyId": ids["fund"], "percent": "33.33"}, {"partyId": ids["muni"], "percent": "66.66"}]), "SHARES_NOT_100"),
        (dict(maxValue={"amount": "10.00", "currency": "EUR"}), "CURRENCY_MISMATCH"),
        (dict(maxValue={"amount": "10.001", "currency": "SEK"}), "TOO_MANY_DECIMALS"),
        (dict(providerId=ids["muni"]), "WRONG_PARTY_ROLE"),
        (dict(fundId="garbage"), "INVALID_ID"),
    ]
    for over, code in cases:
        errs = api.ok(CREATE_CONTRACT, {"i": contract_input(ids, fund["id"], **over)}, fm)["createContract"]["userErrors"]
        assert [e["code"] for e in errs] == [code], over
    bad_currency = api.ok(CREATE_FUND, {"i": {"name": "F", "managerId": ids["fund"], "currency": "XYZ"}}, fm)["createFund"]
    assert bad_currency["userErrors"][0]["code"] == "INVALID_CURRENCY"
    body = api.post(CREATE_CONTRACT, {"i": contract_input(ids, fund["id"], maxValue={"amount": "1e5", "currency": "SEK"})}, fm)
    assert "errors" in body  # a Decimal must be a plain decimal string
    assert table_counts(db) == before


def test_each_role_sees_only_its_contracts(api, db):
    fm = api.token("FUND_MANAGER")
    ids = setup_parties(api, fm)
    fund = api.ok(CREATE_FUND, {"i": {"name": "F", "managerId": ids["fund"], "currency": "SEK"}}, fm)["createFund"]["fund"]
    mine = api.ok(CREATE_CONTRACT, {"i": contract_input(ids, fund["id"], title="Privat")}, fm)["createContract"]["contract"]
    other = api.ok(CREATE_CONTRACT, {"i": contract_input(ids, fund["id"], provider="inhouse", title="Egen regi")}, fm)["createContract"]["contract"]
    pk = lambda gid: int(__import__("base64").b64decode(gid).decode().split(":")[1])  # noqa: E731
    prov_tok = api.token("PROVIDER", party_id=pk(ids["prov"]))
    muni_tok = api.token("MUNICIPALITY", party_id=pk(ids["muni"]))
    ver_tok = api.token("VERIFIER", party_id=pk(ids["ver"]))
    auditor = api.token("AUDITOR")
    stranger = api.token("MUNICIPALITY", party_id=party(db, role="MUNICIPALITY").id)
    titles = lambda tok: sorted(n["title"] for n in api.ok(CONTRACTS, {}, tok)["contracts"]["nodes"])  # noqa: E731
    assert titles(prov_tok) == ["Privat"]
    assert titles(muni_tok) == ["Egen regi", "Privat"]
    assert titles(ver_tok) == ["Egen regi", "Privat"]
    assert titles(auditor) == ["Egen regi", "Privat"]
    assert titles(stranger) == []
    # another provider's contract is invisible by id, through node(), and through the fund
    assert api.ok("query($id: ID!) { contract(id: $id) { title } }", {"id": other["id"]}, prov_tok)["contract"] is None
    assert api.ok("query($id: ID!) { node(id: $id) { id } }", {"id": other["id"]}, prov_tok)["node"] is None
    via_fund = api.ok(FUND, {"id": fund["id"]}, prov_tok)["fund"]["contracts"]["nodes"]
    assert [n["title"] for n in via_fund] == ["Privat"]
    assert api.ok(FUND, {"id": fund["id"]}, stranger)["fund"] is None
    # read-only and party-bound roles cannot change anything
    for tok, code in [(auditor, "READ_ONLY_ROLE"), (prov_tok, "PERMISSION_DENIED"), (muni_tok, "PERMISSION_DENIED")]:
        out = api.ok(ACTIVATE, {"i": {"contractId": mine["id"]}}, tok)["activateContract"]
        assert out["userErrors"][0]["code"] == code
    assert api.ok(CONTRACTS, {"s": "ACTIVE"}, auditor)["contracts"]["nodes"] == []
    assert to_global_id("OutcomeContract", pk(mine["id"])) == mine["id"]
