"""Impact bonds over GraphQL: a fund manager runs the bond, an investor sees its own position only."""
from __future__ import annotations

from datetime import date

from api.graphql.base import to_global_id as G
from tests.conftest import table_counts
from tests.factories import party
from tests.ledger.test_calculations import case_a  # noqa: F401
from tests.ledger.test_investments import MUNI, bond, distribute, pay  # noqa: F401

CREATE = """mutation($i: CreateInvestmentInput!) { createInvestment(input: $i) {
    investment { id tranche principal { amount } returnCap drawn { amount } investor { name } }
    userErrors { code field } } }"""
DRAW = """mutation($i: RecordDrawdownInput!) { recordDrawdown(input: $i) {
    drawdown { id amount { amount } paidOn transaction { kind } } userErrors { code field } } }"""
DISTRIBUTE = """mutation($i: DistributeReceiptsInput!) { distributeReceipts(input: $i) {
    distribution { id upTo total { amount } inputsHash transaction { sequence kind }
                   lines { kind amount { amount } investment { tranche } } recomputed { matches } }
    userErrors { code field } } }"""
CLOSE = """mutation($i: CloseInvestmentsInput!) { closeInvestments(input: $i) {
    investments { tranche loss { amount } multiple } userErrors { code } } }"""
INVESTMENTS = """query($c: ID!) { investments(contractId: $c) {
    id tranche principal { amount } drawn { amount } repaidPrincipal { amount } returnPaid { amount }
    returnPercent multiple loss { amount } drawdowns { amount { amount } } } }"""


def test_a_fund_manager_runs_an_impact_bond_from_investment_to_distribution(api, db, bond):
    w = bond
    fm = api.token("FUND_MANAGER")
    c = G("OutcomeContract", w["contract"].id)
    # given a third, senior investment made through the API and drawn in full
    made = api.ok(CREATE, {"i": {"contractId": c, "investorId": G("Party", w["investor"].id), "tranche": "SENIOR",
                                 "principal": {"amount": "5000.00", "currency": "SEK"}, "returnCap": "0.10"}}, fm)
    x = made["createInvestment"]
    assert x["userErrors"] == [] and x["investment"]["returnCap"] == "0.1"
    assert x["investment"]["investor"]["name"] == "Social Finance Norden AB"
    drawn = api.ok(DRAW, {"i": {"investmentId": x["investment"]["id"], "amount": {"amount": "5000.00", "currency": "SEK"},
                                "paidOn": "2026-02-01", "reference": "Avrop"}}, fm)["recordDrawdown"]
    assert drawn["userErrors"] == [] and drawn["drawdown"]["transaction"]["kind"] == "DRAWDOWN"
    pay(db, w, w["muni"], w["prov"], "11000.00", actor=MUNI(w))
    # when the receipts are distributed, twice with one idempotency key
    inp = {"contractId": c, "upTo": "2026-12-31", "idempotencyKey": "utdelning-1"}
    first = api.ok(DISTRIBUTE, {"i": inp}, fm)["distributeReceipts"]
    counts = table_counts(db)
    again = api.ok(DISTRIBUTE, {"i": inp}, fm)["distributeReceipts"]
    # then the two senior investments share 11 000 pro rata to 50 000 : 5 000, and the replay writes nothing
    d = first["distribution"]
    assert first["userErrors"] == [] and again == first and table_counts(db) == counts
    assert [(x["kind"], x["amount"]["amount"], x["investment"]["tranche"]) for x in d["lines"]] == [
        ("PRINCIPAL", "10000.00", "SENIOR"), ("PRINCIPAL", "1000.00", "SENIOR")]
    assert d["total"]["amount"] == "11000.00" and len(d["inputsHash"]) == 64 and d["recomputed"]["matches"]
    assert d["transaction"]["kind"] == "DISTRIBUTION"
    got = api.ok(INVESTMENTS, {"c": c}, fm)["investments"]
    assert [(i["tranche"], i["drawn"]["amount"], i["repaidPrincipal"]["amount"], i["multiple"]) for i in got] == [
        ("SENIOR", "50000.00", "10000.00", "0.20"), ("SUBORDINATE", "25000.00", "0.00", "0.00"),
        ("SENIOR", "5000.00", "1000.00", "0.20")]
    assert [len(i["drawdowns"]) for i in got] == [1, 2, 1]
    # and closing an ended contract writes off what was not repaid
    api.ok('mutation($i: TerminateContractInput!) { terminateContract(input: $i) { userErrors { code } } }',
           {"i": {"contractId": c, "reason": "Avbrutet"}}, fm)
    closed = api.ok(CLOSE, {"i": {"contractId": c}}, fm)["closeInvestments"]
    assert [(i["tranche"], i["loss"]["amount"]) for i in closed["investments"]] == [
        ("SENIOR", "40000.00"), ("SUBORDINATE", "25000.00"), ("SENIOR", "4000.00")]


def test_bad_requests_get_stable_codes_and_write_nothing(api, db, bond):
    w = bond
    fm = api.token("FUND_MANAGER")
    c = G("OutcomeContract", w["contract"].id)
    stranger = party(db, role="INVESTOR", name="Annan investerare AB")
    base = {"contractId": c, "investorId": G("Party", w["investor"].id), "tranche": "SENIOR",
            "principal": {"amount": "100.00", "currency": "SEK"}, "returnCap": "0.2"}
    before = table_counts(db)
    for doc, name, inp, code in [
        (CREATE, "createInvestment", {**base, "investorId": G("Party", stranger.id)}, "INVESTOR_NOT_ON_CONTRACT"),
        (CREATE, "createInvestment", {**base, "returnCap": "10.5"}, "INVALID_RETURN_CAP"),
        (CREATE, "createInvestment", {**base, "returnCap": "-1"}, "INVALID_RETURN_CAP"),
        (DRAW, "recordDrawdown", {"investmentId": G("Investment", w["a"].id), "paidOn": "2026-03-01", "reference": "r",
                                  "amount": {"amount": "0.01", "currency": "SEK"}}, "DRAWDOWN_EXCEEDS_PRINCIPAL"),
        (DISTRIBUTE, "distributeReceipts", {"contractId": c, "upTo": "2026-12-31"}, "NOTHING_RECEIVED"),
        (CLOSE, "closeInvestments", {"contractId": c}, "CONTRACT_NOT_ENDED"),
    ]:
        body = api.ok(doc, {"i": inp}, fm)[name]
        assert [e["code"] for e in body["userErrors"]] == [code], (name, body)
    assert table_counts(db) == before


def test_an_investor_sees_its_own_position_and_nothing_of_another_investors(api, db, bond):
    w = bond
    c = G("OutcomeContract", w["contract"].id)
    pay(db, w, w["muni"], w["prov"], "30000.00", actor=MUNI(w))
    dist = distribute(db, w)
    own = api.token("INVESTOR", party_id=w["investor"].id)
    other = api.token("INVESTOR", party_id=party(db, role="INVESTOR", name="Annan investerare AB").id)
    ids = {"c": c, "i": G("Investment", w["a"].id), "d": G("Distribution", dist.id)}
    doc = """query($c: ID!, $i: ID!, $d: ID!) {
        investments(contractId: $c) { tranche repaidPrincipal { amount } }
        distributions(contractId: $c) { lines { kind amount { amount } } }
        distribution(id: $d) { total { amount } }
        node(id: $i) { id }
        obligations { outstanding { amount } }
        contract(id: $c) { title } }"""
    mine = api.ok(doc, ids, own)
    assert mine["investments"] == [{"tranche": "SENIOR", "repaidPrincipal": {"amount": "30000.00"}},
                                   {"tranche": "SUBORDINATE", "repaidPrincipal": {"amount": "0.00"}}]
    assert mine["distributions"] == [{"lines": [{"kind": "PRINCIPAL", "amount": {"amount": "30000.00"}}]}]
    assert mine["distribution"] and mine["node"] == {"id": ids["i"]}
    assert mine["obligations"] == [{"outstanding": {"amount": "30000.00"}}]
    # the contract's own pages (participants, evidence) are not the investor's to read
    assert mine["contract"] is None
    theirs = api.ok(doc, ids, other)
    assert theirs == {"investments": [], "distributions": [], "distribution": None, "node": None, "obligations": [],
                      "contract": None}


def test_cli_recomputes_a_distribution(db, bond, monkeypatch, capsys):
    from api import cli
    w = bond
    pay(db, w, w["muni"], w["prov"], "1000.00", actor=MUNI(w))
    d = distribute(db, w, up_to=date(2026, 12, 31))
    monkeypatch.setattr(cli, "_db", lambda settings: db)
    monkeypatch.setenv("UTFALL_ENV", "development")
    assert cli.main(["distribution", "recompute", G("Distribution", d.id)]) == 0
    assert "every figure matches" in capsys.readouterr().out


def test_the_evaluation_report_the_results_page_and_the_cli_show_what_investors_put_in_and_got_back(
        api, db, bond, monkeypatch, capsys):
    # given a bond that has repaid 30 000 of 75 000 drawn
    w = bond
    pay(db, w, w["muni"], w["prov"], "30000.00", actor=MUNI(w))
    distribute(db, w)
    # when anyone reads the evaluation report
    got = api.ok("""{ evaluationReport { investorReturns { contract tranche investments putIn { amount }
        gotBack { amount } returnPercent multiple loss { amount } } } }""")["evaluationReport"]["investorReturns"]
    # then the whole bond and each tranche
    title = "Skolresultat i Umeå"
    assert [(r["contract"], r["tranche"], r["investments"], r["putIn"]["amount"], r["gotBack"]["amount"],
             r["returnPercent"], r["multiple"]) for r in got] == [
        (title, None, 2, "75000.00", "30000.00", "0.00", "0.40"),
        (title, "SENIOR", 1, "50000.00", "30000.00", "0.00", "0.60"),
        (title, "SUBORDINATE", 1, "25000.00", "0.00", "0.00", "0.00")]
    # and the public pages show the same figures
    nnbsp = "\u202f"
    index = api.client.get("/results?lang=en").text
    assert "Impact bonds: what investors put in and got back" in index
    assert f"75{nnbsp}000.00{nnbsp}SEK" in index and f"30{nnbsp}000.00{nnbsp}SEK" in index and ">0.4<" in index
    page = api.client.get(f"/results/{G('OutcomeContract', w['contract'].id)}?lang=en").text
    assert "Senior tranche" in page and "Subordinate tranche" in page and ">0.6<" in page
    # in Swedish by default, with a decimal comma
    swedish = api.client.get("/results").text
    assert "vad investerarna satte in och fick tillbaka" in swedish
    assert f"75{nnbsp}000,00{nnbsp}SEK" in swedish and ">0,4<" in swedish
    # and so does `utfall report`
    from api import cli
    monkeypatch.setattr(cli, "_db", lambda settings: db)
    monkeypatch.setenv("UTFALL_ENV", "development")
    assert cli.main(["report"]) == 0
    out = capsys.readouterr().out
    assert "Impact bonds: what investors put in and got back" in out
    assert "75 000.00 SEK" in out and "0.40" in out


def test_distributions_and_their_investments_load_in_a_fixed_number_of_statements(api, db, bond):
    from sqlalchemy import event
    w = bond
    token = api.token("AUDITOR")
    c = G("OutcomeContract", w["contract"].id)
    query = ('{ distributions(contractId: "%s") { total { amount } transaction { sequence } lines { kind '
             'investment { tranche investor { name } drawdowns { amount { amount } } } } } '
             'investments(contractId: "%s") { drawn { amount } drawdowns { paidOn } investor { name } } }' % (c, c))

    def count() -> tuple[int, dict]:
        n = [0]

        def on_execute(conn, cursor, statement, *args):
            if statement.lstrip().upper().startswith(("SELECT", "WITH")):
                n[0] += 1
        event.listen(api.db.engine, "before_cursor_execute", on_execute)
        try:
            data = api.ok(query, token=token)
        finally:
            event.remove(api.db.engine, "before_cursor_execute", on_execute)
        return n[0], data

    pay(db, w, w["muni"], w["prov"], "50000.00", actor=MUNI(w))
    distribute(db, w, up_to=date(2026, 7, 10))
    few, data = count()
    for day in (11, 12, 13):
        pay(db, w, w["manager"], w["prov"], "5000.00", on=date(2026, 7, day))
        distribute(db, w, up_to=date(2026, 7, day))
    many, data = count()
    assert len(data["distributions"]) == 4 and sum(len(d["lines"]) for d in data["distributions"]) == 4
    assert many == few, f"{few} SELECTs for 1 distribution, {many} for 4"
