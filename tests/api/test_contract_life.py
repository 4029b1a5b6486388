"""A scheduled contract with three payers through GraphQL: schedule, commitments seen by each payer,
late claims, termination at a date, and the bad inputs of issue 12."""
from __future__ import annotations

from tests.api.test_contracts import ACTIVATE, CREATE_FUND, DEPOSIT, PARTY, contract_input, setup_parties
from tests.conftest import table_counts

CREATE = """mutation($i: CreateContractInput!) { createContract(input: $i) {
  contract { id paymentFrequency serviceEndDate outcomesEndDate claimWindowDays
             schedule { periodStart periodEnd claimDeadline }
             terms { payerShares { percent maxAmount { amount } } } }
  userErrors { field code } } }"""
COMMITMENTS = """query($id: ID!) { contract(id: $id) { title commitments { party { name } percent
  maxAmount { amount } committed { amount } paid { amount } } } }"""
GRANT = """mutation($i: GrantLateClaimInput!) { grantLateClaim(input: $i) {
  lateClaim { reason until grantedBy } contract { id } userErrors { field code } } }"""
TERMINATE = """mutation($i: TerminateContractInput!) { terminateContract(input: $i) {
  contract { status terminatedOn closedAt schedule { periodEnd } } userErrors { field code } } }"""


def world(api):
    fm = api.token("FUND_MANAGER", "Frida")
    ids = setup_parties(api, fm)
    ids["region"] = api.ok(PARTY, {"i": {"name": "Region Västerbotten", "role": "MUNICIPALITY"}}, fm)["createParty"]["party"]["id"]
    fund = api.ok(CREATE_FUND, {"i": {"name": "Utfallsfonden", "managerId": ids["fund"], "currency": "SEK", "dualControl": False}}, fm)["createFund"]["fund"]
    api.ok(DEPOSIT, {"i": {"fundId": fund["id"], "amount": {"amount": "50000000.00", "currency": "SEK"},
                           "effectiveDate": "2026-01-01", "reference": "Anslag"}}, fm)
    inp = contract_input(ids, fund["id"], paymentFrequency="QUARTERLY", serviceEndDate="2027-12-31",
                         outcomesEndDate="2028-06-30", claimWindowDays=60, payerShares=[
                             {"partyId": ids["fund"], "percent": "20"}, {"partyId": ids["muni"], "percent": "50"},
                             {"partyId": ids["region"], "percent": "30",
                              "maxAmount": {"amount": "2000000.00", "currency": "SEK"}}])
    return fm, ids, fund, inp


def test_a_scheduled_three_payer_contract_as_each_payer_sees_it(api):
    fm, ids, fund, inp = world(api)
    # when the fund manager creates and activates a quarterly contract with a run-off
    c = api.ok(CREATE, {"i": inp}, fm)["createContract"]
    assert c["userErrors"] == []
    c = c["contract"]
    assert (c["paymentFrequency"], c["serviceEndDate"], c["outcomesEndDate"], c["claimWindowDays"]) == \
        ("QUARTERLY", "2027-12-31", "2028-06-30", 60)
    assert c["schedule"][0] == {"periodStart": "2026-01-01", "periodEnd": "2026-03-31", "claimDeadline": "2026-05-30"}
    assert c["schedule"][-1]["periodEnd"] == "2028-06-30" and len(c["schedule"]) == 10
    assert [p["maxAmount"] for p in c["terms"]["payerShares"]] == [None, None, {"amount": "2000000.00"}]
    assert api.ok(ACTIVATE, {"i": {"contractId": c["id"]}}, fm)["activateContract"]["userErrors"] == []
    # then each payer's commitment is its share, the region's capped at its maxAmount
    want = [("Statens utfallsfond", "2000000.00"), ("Umeå kommun", "5000000.00"), ("Region Västerbotten", "2000000.00")]
    got = api.ok(COMMITMENTS, {"id": c["id"]}, fm)["contract"]["commitments"]
    assert [(x["party"]["name"], x["committed"]["amount"]) for x in got] == want
    # and the region, a payer but not the commissioning municipality, sees the contract and its commitment
    region = api.token("MUNICIPALITY", "Regionens controller", party_id=int(_pk(ids["region"])))
    seen = api.ok(COMMITMENTS, {"id": c["id"]}, region)["contract"]
    assert seen["title"] == "Skolresultat i Umeå"
    assert seen["commitments"][2]["committed"] == {"amount": "2000000.00"}
    # a late claim is granted and audited; termination at a date shortens the schedule
    g = api.ok(GRANT, {"i": {"contractId": c["id"], "reason": "Betygen kom sent", "until": "2099-01-31"}}, fm)["grantLateClaim"]
    assert g["userErrors"] == [] and g["lateClaim"]["reason"] == "Betygen kom sent"
    t = api.ok(TERMINATE, {"i": {"contractId": c["id"], "reason": "Avtalsbrott", "effectiveDate": "2026-05-15"}}, fm)["terminateContract"]
    assert t["contract"]["status"] == "TERMINATED" and t["contract"]["terminatedOn"] == "2026-05-15"
    assert t["contract"]["schedule"][-1]["periodEnd"] == "2026-05-15"


def _pk(gid):
    from api.graphql.base import from_global_id
    return from_global_id(gid, "Party")


def test_bad_schedules_and_payers_are_refused_with_stable_codes_and_nothing_written(api, db):
    fm, ids, fund, inp = world(api)
    before = table_counts(db)
    cases = [
        (dict(outcomesEndDate="2027-06-30"), "INVALID_SCHEDULE", ["outcomesEndDate"]),
        (dict(claimWindowDays=-1), "INVALID_SCHEDULE", ["claimWindowDays"]),
        (dict(serviceEndDate="2025-01-01"), "INVALID_SCHEDULE", ["serviceEndDate"]),
        (dict(payerShares=inp["payerShares"][:2]), "SHARES_NOT_100", ["payerShares"]),
        (dict(payerShares=[*inp["payerShares"][:2], {**inp["payerShares"][2], "maxAmount": {"amount": "1.00", "currency": "EUR"}}]),
         "CURRENCY_MISMATCH", ["payerShares", "2", "maxAmount", "currency"]),
    ]
    for over, code, field in cases:
        out = api.ok(CREATE, {"i": {**inp, **over}}, fm)["createContract"]
        assert out["contract"] is None and [(e["code"], e["field"]) for e in out["userErrors"]] == [(code, field)], over
    assert table_counts(db) == before


FORECAST = """query($c: ID) { forecast(contractId: $c) { periodStart periodEnd claimDeadline party { name }
  certain { amount } probable { amount } maximum { amount } contract { title } } }"""


def test_forecast_as_the_fund_manager_and_as_a_paying_region_see_it(api):
    fm, ids, fund, inp = world(api)
    c = api.ok(CREATE, {"i": inp}, fm)["createContract"]["contract"]
    api.ok(ACTIVATE, {"i": {"contractId": c["id"]}}, fm)
    lines = api.ok(FORECAST, {"c": c["id"]}, fm)["forecast"]
    assert len(lines) == 3 * 10  # three payers × ten quarters
    first = [x for x in lines if x["periodStart"] == "2028-04-01"]  # a period whose claims are still open
    assert [(x["party"]["name"], x["maximum"]["amount"]) for x in first] == [
        ("Statens utfallsfond", "2000000.00"), ("Umeå kommun", "5000000.00"), ("Region Västerbotten", "2000000.00")]
    region = api.token("MUNICIPALITY", "Regionens controller", party_id=int(_pk(ids["region"])))
    own = api.ok(FORECAST, {"c": c["id"]}, region)["forecast"]
    assert {x["party"]["name"] for x in own} == {"Region Västerbotten"} and len(own) == 10
