"""`utfall report`: full figures, --public as the public sees them, --year as an annual report per fund."""
from __future__ import annotations

from tests.ledger.test_evaluation_report import passes_and_care_days


def run(db, monkeypatch, capsys, *argv) -> str:
    from api import cli
    monkeypatch.setattr(cli, "_db", lambda settings: db)
    monkeypatch.setenv("UTFALL_ENV", "development")
    assert cli.main(["report", *argv]) == 0
    return capsys.readouterr().out


def test_report_shows_each_metric_in_its_unit_and_suppresses_only_for_the_public(db, monkeypatch, capsys):
    # given: 10 passes and 100 care days avoided in one contract, 2 passes in another
    passes_and_care_days(db, 10)
    passes_and_care_days(db, 2)
    # when
    full = run(db, monkeypatch, capsys)
    public = run(db, monkeypatch, capsys, "--public")
    # then
    assert "40 000.00 SEK" in full and "52 500.00 SEK" not in full
    assert "undvikna vårddygn" in full and "1 250.00 SEK" in full
    assert "By policy area" in full and "suppressed" not in full
    assert "suppressed" in public and "figure(s) left out" in public


def test_annual_report_per_fund_and_year(db, monkeypatch, capsys):
    passes_and_care_days(db, 10)
    out = run(db, monkeypatch, capsys, "--year", "2026")
    assert "=== Annual report 2026: Utfallsfonden ===" in out and "40 000.00 SEK" in out
    empty = run(db, monkeypatch, capsys, "--year", "2025")
    assert "=== Annual report 2025" in empty and "40 000.00 SEK" not in empty
