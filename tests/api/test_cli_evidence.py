"""`utfall evidence import` end to end, on a real SQLite file made with `utfall db upgrade`."""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from api import cli_evidence
from api.graphql.base import to_global_id
from ledger import evidence as uc
from ledger import evidence_import as imp
from ledger.access import Actor
from ledger.db import Database, make_engine
from ledger.models import AuditEvent, Evidence
from tests.conftest import table_counts
from tests.factories import contract, funded, rate_card

FM = Actor("frida", "FUND_MANAGER")
ROOT = Path(__file__).resolve().parents[2]
HEADER = "participantId,metricCode,achievedOn,document_sha256,document_filename,document_media_type"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A database file created by `utfall db upgrade`, with an active contract and three participants."""
    where = tmp_path_factory.mktemp("cli")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{where / 'utfall.db'}", "UTFALL_ENV": "development"}
    env.pop("UTFALL_SECRET", None)
    done = subprocess.run([sys.executable, "-m", "api.cli", "db", "upgrade"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    engine = make_engine(env["DATABASE_URL"])
    db = Database(engine)
    fund, manager, muni, prov, ver = funded(db, FM)
    c = contract(db, FM, fund, manager, muni, prov, ver, activate=True,
                 metrics=(rate_card(once_only=True), rate_card("ATTENDANCE", "12500.00")))
    provider = Actor("pia", "PROVIDER", prov.id)
    with db.uow() as uow:
        ps = [uc.enroll_participant(uow, actor=provider, secret=b"unused", contract_id=c.id, personal_identity_number=None,
                                    external_ref=f"ELEV-{i}", area=None, enrolled_on=date(2026, 2, 1),
                                    today=date(2026, 11, 23)).id for i in range(3)]
        uow.commit()
    yield env, db, c, ps, where
    engine.dispose()


@pytest.fixture
def cli(site, monkeypatch):
    env, *_ = site
    for key in ("DATABASE_URL", "UTFALL_ENV"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("UTFALL_SECRET", raising=False)
    return lambda *argv: cli_evidence.main(["evidence", "import", *argv])


def write(path: Path, *rows: str) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def test_register_adds_the_evidence_import_command_to_a_parser():
    parser = argparse.ArgumentParser(prog="utfall")
    cli_evidence.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["evidence", "import", "f.csv", "--contract", "7", "--skip-bad", "--rejects", "r.csv"])
    assert (args.func, args.file, args.contract, args.skip_bad, args.rejects, args.actor, args.quiet) == (
        cli_evidence.cmd_evidence_import, "f.csv", "7", True, "r.csv", "cli import", False)


def test_a_good_file_is_imported_and_audited(site, cli, capsys):
    # given
    env, db, c, (p0, p1, _), where = site
    path = write(where / "good.csv", f"{p0},ATTENDANCE,2026-06-01,{'c' * 64},närvaro.pdf,application/pdf",
                 f"{to_global_id('Participant', p1)},ATTENDANCE,2026-06-02,,,")
    # when
    code = cli(str(path), "--contract", to_global_id("OutcomeContract", c.id), "--actor", "Olle Operatör")
    # then
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "imported 2 evidence rows (1 documents) from good.csv" in out
    assert err == ""  # no progress bar off a terminal
    with db.reading() as s:
        rows = s.execute(select(Evidence.participant_id, Evidence.submitted_by).where(
            Evidence.contract_id == c.id, Evidence.submitted_by.like("Olle%"))).all()
        audit = json.loads(s.execute(select(AuditEvent.input).where(AuditEvent.operation == "importEvidence")
                                     .order_by(AuditEvent.id.desc()).limit(1)).scalar_one())
    assert sorted(r.participant_id for r in rows) == [p0, p1]
    assert rows[0].submitted_by == f"Olle Operatör (PROVIDER, party {c.provider_id})"
    assert (audit["file"], audit["imported"]) == ("good.csv", 2)


def test_a_bad_file_exits_non_zero_names_every_bad_line_and_imports_nothing(site):
    # given, through a real process
    env, db, c, (p0, *_), where = site
    path = write(where / "bad.csv", f"{p0},ATTENDANCE,2026-06-03,,,", f"{p0},NO_SUCH,2026-06-03,,,",
                 f"{p0},ATTENDANCE,2026-13-03,,,", f"{p0},ATTENDANCE,2026-06-04,,,")
    before = table_counts(db)
    # when
    rejects = where / "bad-rejects.csv"
    done = subprocess.run([sys.executable, "-m", "api.cli_evidence", "evidence", "import", str(path), "--contract",
                           str(c.id), "--rejects", str(rejects)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    # then
    assert done.returncode == 1
    assert "line 3: UNKNOWN_METRIC (metricCode)" in done.stderr
    assert "line 4: INVALID_DATE (achievedOn)" in done.stderr
    assert "2 of 4 rows are bad; nothing was imported" in done.stderr
    assert done.stdout == ""
    assert table_counts(db) == before
    assert [r[:2] for r in csv.reader(rejects.open(encoding="utf-8"))][1:] == [["3", "UNKNOWN_METRIC"],
                                                                              ["4", "INVALID_DATE"]]


def test_skip_bad_imports_the_good_rows_and_writes_a_reject_file(site, cli, capsys):
    env, db, c, (_, _, p2), where = site
    path = write(where / "mixed.csv", f"{p2},SCHOOL_PASS,2026-06-05,,,", f"{p2},SCHOOL_PASS,2026-06-06,,,",
                 f"{p2},ATTENDANCE,2026-06-07,{'z' * 64},a.pdf,application/pdf")
    rejects = where / "rejects.csv"
    assert cli(str(path), "--contract", str(c.id), "--skip-bad", "--rejects", str(rejects), "-q") == 0
    out, err = capsys.readouterr()
    assert "imported 1 evidence rows" in out and f"skipped 2 bad rows, written to {rejects}" in out
    assert "line 3: DUPLICATE_CLAIM" in err and "line 4: INVALID_SHA256" in err
    lines = list(csv.reader(rejects.open(encoding="utf-8")))
    assert [r[:2] for r in lines] == [["line", "code"], ["3", "DUPLICATE_CLAIM"], ["4", "INVALID_SHA256"]]
    assert lines[1][4:] == [str(p2), "SCHOOL_PASS", "2026-06-06", "", "", ""]
    assert not [p for p in where.iterdir() if p.name.startswith(".rejects-")]


def test_usage_errors(site, cli, capsys):
    env, db, c, _, where = site
    good = write(where / "one.csv", f"{site[3][0]},ATTENDANCE,2026-06-08,,,")
    assert cli(str(good), "--contract", str(c.id), "--skip-bad") == 2  # bad rows are never dropped unseen
    assert cli(str(where / "missing.csv"), "--contract", str(c.id)) == 2
    assert cli(str(where / "one.txt"), "--contract", str(c.id)) == 2
    assert cli(str(good), "--contract", "999999") == 1
    err = capsys.readouterr().err
    assert "--skip-bad needs --rejects" in err and "INVALID_FORMAT" in err and "UNKNOWN_CONTRACT" in err


def test_the_importer_reads_global_ids_as_the_api_writes_them():
    assert imp._participant_id(to_global_id("Participant", 4711)) == 4711
    with pytest.raises(Exception) as err:
        imp._participant_id(to_global_id("Party", 4711))
    assert err.value.code == "INVALID_ID"
