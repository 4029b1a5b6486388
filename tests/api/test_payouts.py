"""Payouts through GraphQL: calculate, four-eyes approval, obligations, payments, recompute."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from api.graphql.base import to_global_id
from tests.ledger.test_calculations import case_a  # noqa: F401  (the Case A world as a fixture)

CALC = """mutation($i: CalculatePayoutInput!) { calculatePayout(input: $i) {
  payout { id status inputsHash total { amount currency } lines { metricCode kind quantity unitPrice { amount }
           gross { amount } capped { amount } net { amount } caps { kind reduction { amount currency } } } shares { party { name } amount { amount } } }
  userErrors { field code message } } }"""
APPROVE = """mutation($i: ApprovePayoutInput!) { approvePayout(input: $i) {
  payout { status approvedBy transaction { sequence kind } recomputed { matches inputsHash } } userErrors { code message } } }"""
OBLIGATIONS = """query($c: ID) { obligations(contractId: $c) { debtor { name } creditor { name } outstanding { amount currency } } }"""
PAY = """mutation($i: RecordPaymentInput!) { recordPayment(input: $i) { payment { amount { amount } reference } userErrors { field code } } }"""


def test_a_payout_from_calculation_to_payment(api, db, case_a):
    w = case_a
    cid = to_global_id("OutcomeContract", w["contract"].id)
    frida, gustav = api.token("FUND_MANAGER", name="frida"), api.token("FUND_MANAGER", name="gustav")
    # given a calculation by frida
    p = api.ok(CALC, {"i": {"contractId": cid, "periodStart": "2026-01-01", "periodEnd": "2026-06-30"}}, frida)["calculatePayout"]
    assert p["userErrors"] == []
    payout = p["payout"]
    assert payout["total"] == {"amount": "112500.00", "currency": "SEK"}
    assert [s["amount"]["amount"] for s in payout["shares"]] == ["56250.00", "56250.00"]
    attendance = next(x for x in payout["lines"] if x["metricCode"] == "ATTENDANCE")
    assert attendance["gross"]["amount"] == "64375.00" and attendance["net"]["amount"] == "26500.00"
    # the caps that bound are listed by kind, in the order they apply, and add up to what was capped
    assert attendance["caps"] and all(c["reduction"]["currency"] == "SEK" for c in attendance["caps"])
    assert sum(Decimal(c["reduction"]["amount"]) for c in attendance["caps"]) == Decimal(attendance["capped"]["amount"])
    order = ["ONCE_ONLY", "METRIC_CAP_PER_PARTICIPANT", "PARTICIPANT_CAP", "METRIC_CAP_PER_PERIOD", "METRIC_CAP_TOTAL",
             "MAX_VALUE", "PAYER_CAP"]
    kinds = [c["kind"] for c in attendance["caps"]]
    assert kinds == sorted(kinds, key=order.index)
    # frida cannot approve her own calculation; gustav can
    own = api.ok(APPROVE, {"i": {"payoutId": payout["id"]}}, frida)["approvePayout"]
    assert own["userErrors"][0]["code"] == "FOUR_EYES_REQUIRED"
    done = api.ok(APPROVE, {"i": {"payoutId": payout["id"]}}, gustav)["approvePayout"]
    assert done["payout"]["status"] == "POSTED" and done["payout"]["transaction"]["kind"] == "PAYOUT"
    assert done["payout"]["recomputed"] == {"matches": True, "inputsHash": payout["inputsHash"]}
    # obligations: the provider sees what it is owed; another provider sees nothing
    prov_tok = api.token("PROVIDER", party_id=w["prov"].id)
    owed = api.ok(OBLIGATIONS, {"c": cid}, prov_tok)["obligations"]
    assert sorted((o["debtor"]["name"], o["outstanding"]["amount"]) for o in owed) == [
        ("Statens utfallsfond", "56250.00"), ("Umeå kommun", "56250.00")]
    # the municipality pays its own debt
    muni_tok = api.token("MUNICIPALITY", party_id=w["muni"].id)
    pay = {"debtorId": to_global_id("Party", w["muni"].id), "creditorId": to_global_id("Party", w["prov"].id),
           "contractId": cid, "amount": {"amount": "56250.01", "currency": "SEK"}, "paidOn": "2026-07-10",
           "reference": "Faktura 2026-17"}
    assert api.ok(PAY, {"i": pay}, muni_tok)["recordPayment"]["userErrors"][0]["code"] == "OVERPAYMENT"
    paid = api.ok(PAY, {"i": {**pay, "amount": {"amount": "56250.00", "currency": "SEK"}}}, muni_tok)["recordPayment"]
    assert paid["payment"]["amount"]["amount"] == "56250.00"
    left = api.ok(OBLIGATIONS, {"c": cid}, api.token("AUDITOR"))["obligations"]
    assert [(o["debtor"]["name"], o["outstanding"]["amount"]) for o in left] == [("Statens utfallsfond", "56250.00")]
    # the auditor reads but cannot calculate
    denied = api.ok(CALC, {"i": {"contractId": cid, "periodStart": "2026-01-01", "periodEnd": "2026-06-30"}},
                    api.token("AUDITOR"))["calculatePayout"]
    assert denied["userErrors"][0]["code"] == "READ_ONLY_ROLE"
    listed = api.ok("query($c: ID!) { contract(id: $c) { payouts { nodes { status } } } }", {"c": cid}, prov_tok)
    assert listed["contract"]["payouts"]["nodes"] == [{"status": "POSTED"}]


def test_cli_recomputes_a_payout(db, case_a, monkeypatch, capsys):
    from api import cli
    from ledger import calculations
    from ledger.access import Actor
    with db.uow() as uow:
        p = calculations.calculate_payout(uow, actor=Actor("frida", "FUND_MANAGER"), contract_id=case_a["contract"].id,
                                          period_start=date(2026, 1, 1),
                                          period_end=date(2026, 6, 30))
        uow.commit()
    monkeypatch.setattr(cli, "_db", lambda settings: db)
    monkeypatch.setenv("UTFALL_ENV", "development")
    assert cli.main(["payout", "recompute", to_global_id("Payout", p.id)]) == 0
    assert "every figure matches" in capsys.readouterr().out


def test_cli_report_shows_the_money_by_ownership_form(db, case_a, monkeypatch, capsys):
    from api import cli
    from tests.ledger.test_calculations import approve, calc
    approve(db, calc(db, case_a))
    monkeypatch.setattr(cli, "_db", lambda settings: db)
    monkeypatch.setenv("UTFALL_ENV", "development")
    assert cli.main(["report"]) == 0
    out = capsys.readouterr().out
    assert "By ownership form" in out and "PRIVATE" in out and "112 500.00 SEK" in out
