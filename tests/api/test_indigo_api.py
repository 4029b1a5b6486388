"""indigoProject and setIndigoFieldStatus over GraphQL, and `utfall export indigo`."""
from __future__ import annotations

import json

from api.graphql.base import to_global_id as G
from tests.indigo_schema import assert_valid_export
from tests.ledger.test_evaluation_report import passes_and_care_days

EXPORT = "query($c: ID!, $p: Boolean) { indigoProject(contractId: $c, public: $p) }"
MARK = """mutation($i: SetIndigoFieldStatusInput!) { setIndigoFieldStatus(input: $i) {
  indigoFieldStatus { path status setBy } userErrors { code field } } }"""


def test_a_fund_manager_marks_a_field_private_and_the_public_export_leaves_it_out(api, db):
    # given
    c = passes_and_care_days(db, 10, policy_area="Skola")
    cid = G("OutcomeContract", c.id)
    fm, auditor = api.token("FUND_MANAGER", name="Frida"), api.token("AUDITOR")
    # when
    marked = api.ok(MARK, {"i": {"contractId": cid, "path": "outcome_payments", "status": "PRIVATE",
                                 "idempotencyKey": "mark-1"}}, fm)["setIndigoFieldStatus"]
    public = api.ok(EXPORT, {"c": cid})["indigoProject"]
    private = api.ok(EXPORT, {"c": cid, "p": False}, auditor)["indigoProject"]
    # then
    assert marked["userErrors"] == [] and marked["indigoFieldStatus"]["status"] == "PRIVATE"
    assert_valid_export(public)
    assert_valid_export(private)
    assert "outcome_payments" not in public["project"]["data"]
    assert private["project"]["data"]["outcome_payments"][0]["status"] == "PRIVATE"
    events = api.ok("{ auditEvents(first: 100) { nodes { operation } } }", token=auditor)["auditEvents"]["nodes"]
    assert "setIndigoFieldStatus" in [e["operation"] for e in events]


def test_an_unknown_field_is_a_user_error_and_nothing_is_written(api, db):
    c = passes_and_care_days(db, 10)
    fm = api.token("FUND_MANAGER")
    res = api.ok(MARK, {"i": {"contractId": G("OutcomeContract", c.id), "path": "name.secret",
                              "status": "PRIVATE"}}, fm)["setIndigoFieldStatus"]
    assert res["indigoFieldStatus"] is None and res["userErrors"] == [{"code": "UNKNOWN_INDIGO_FIELD",
                                                                        "field": ["path"]}]
    from ledger.models import IndigoFieldStatus
    with db.reading() as s:
        assert s.query(IndigoFieldStatus).count() == 0


def test_cli_exports_indigo_public_and_private(db, monkeypatch, capsys, tmp_path):
    from api import cli
    c = passes_and_care_days(db, 10)
    monkeypatch.setattr(cli, "_db", lambda settings: db)
    monkeypatch.setenv("UTFALL_ENV", "development")
    out = tmp_path / "project.json"
    assert cli.main(["export", "indigo", "--contract", G("OutcomeContract", c.id), "--output", str(out)]) == 0
    assert f"INDIGOPROJECT-SE-UTF-{c.id}" in capsys.readouterr().out
    assert_valid_export(json.loads(out.read_text(encoding="utf-8")))
    assert cli.main(["export", "indigo", "--contract", str(c.id), "--private"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert_valid_export(doc)
    assert doc["project"]["data"]["service_and_beneficiaries"]["actual_number_service_users_or_beneficiaries_total"]
