"""The `utfall` command line as an operator meets it: help, usage errors, no secrets printed,
no tracebacks for foreseeable failures, read-only commands without UTFALL_SECRET."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from api import cli
from tests.conftest import create_pg_database, drop_pg_database, pg_url, require_postgres

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("UTFALL_") and k != "DATABASE_URL"}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=cwd, env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def commands(parser: argparse.ArgumentParser, path=()):
    """Every command and command group of the parser, as argument paths."""
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands(child, (*path, name))


def test_every_command_has_help_naming_the_environment_it_reads():
    # given every command of the parser
    paths = list(commands(cli.build_parser()))
    assert ("serve",) in paths and ("report",) in paths and ("demo",) in paths
    for path in paths:
        # when its help is printed
        parser = cli.build_parser()
        with pytest.raises(SystemExit) as exit_, \
                __import__("contextlib").redirect_stdout(__import__("io").StringIO()) as out:
            parser.parse_args([*path, "--help"])
        # then it exits 0 and names the environment
        assert exit_.value.code == 0
        text = out.getvalue()
        for name in ("DATABASE_URL", "UTFALL_ENV", "UTFALL_SECRET"):
            assert name in text, (path, name)


def test_read_only_commands_need_no_secret_but_serve_does(tmp_path):
    # given a production environment without UTFALL_SECRET and a migrated database
    url = f"sqlite:///{tmp_path / 'u.db'}"
    assert run("db", "upgrade", DATABASE_URL=url, UTFALL_ENV="production").returncode == 0
    # when read-only commands run
    report = run("report", DATABASE_URL=url, UTFALL_ENV="production")
    verify = run("ledger", "verify", DATABASE_URL=url, UTFALL_ENV="production")
    # then they work
    assert report.returncode == 0, report.stderr
    assert verify.returncode == 0 and verify.stdout.startswith("ok"), verify.stderr
    # while serving (which hashes identity numbers) still demands the secret, with a clean message
    serve = run("serve", "--port", "1", DATABASE_URL=url, UTFALL_ENV="production")
    assert serve.returncode == 2 and "UTFALL_SECRET is required" in serve.stderr
    assert "Traceback" not in serve.stderr


def test_an_empty_secret_never_hashes_an_identity_number():
    from ledger import identity
    with pytest.raises(ValueError):
        identity.identity_hash(b"", 1, "199001011234")
    with pytest.raises(ValueError):
        identity.redactor(b"")


def test_ledger_verify_sequence_without_hash_is_a_usage_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'u.db'}"
    run("db", "upgrade", DATABASE_URL=url, UTFALL_ENV="development")
    done = run("ledger", "verify", "--sequence", "3", DATABASE_URL=url, UTFALL_ENV="development")
    assert done.returncode == 2
    assert "--sequence and --hash go together" in done.stderr
    assert "FAILED" not in done.stdout


def test_an_unreachable_database_is_a_message_not_a_traceback():
    # given a PostgreSQL URL with a password, on a port where nothing listens
    url = "postgresql+psycopg://postgres:hunter2-secret@127.0.0.1:1/nowhere"
    # when a command needs the database
    done = run("report", DATABASE_URL=url, UTFALL_ENV="development")
    # then one clear line, exit 1, no traceback and no password
    assert done.returncode == 1
    assert "cannot use postgresql+psycopg://postgres:***@127.0.0.1:1/nowhere" in done.stderr
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr + done.stdout


def test_schema_export_outside_the_repository_prints_the_sdl(tmp_path):
    done = run("schema", "export", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "type Query" in done.stdout and "Traceback" not in done.stderr
    assert not (tmp_path / "schemas").exists()


def test_schema_export_to_a_missing_directory_is_a_message(tmp_path):
    done = run("schema", "export", "--output", str(tmp_path / "no" / "such" / "schema.graphql"), cwd=tmp_path)
    assert done.returncode == 1
    assert "No such file or directory" in done.stderr and "Traceback" not in done.stderr


def test_redacted_urls_hide_the_password():
    assert cli.redact_url("postgresql+psycopg://u:pw@h:5432/db") == "postgresql+psycopg://u:***@h:5432/db"
    assert cli.redact_url("sqlite:///utfall.db") == "sqlite:///utfall.db"


def test_the_demo_never_prints_the_database_password(capsys, monkeypatch):
    # given a PostgreSQL URL with a password (trust auth ignores it)
    require_postgres()
    name = create_pg_database("utfall_cli_demo")
    try:
        url = pg_url(name).replace("postgres@", "postgres:pa55-w0rd-demo@", 1)
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("UTFALL_ENV", "development")
        monkeypatch.delenv("UTFALL_SECRET", raising=False)
        # when the demo is loaded
        code = cli.main(["demo"])
        out = capsys.readouterr()
        # then it reports where, without the password
        assert code == 0
        assert "pa55-w0rd-demo" not in out.out + out.err
        assert "***@" in out.out
    finally:
        drop_pg_database(name)  # WITH (FORCE): the demo's pooled connections go with it


def test_serve_puts_the_start_up_heap_out_of_the_collectors_reach_before_serving(monkeypatch):
    import gc

    import uvicorn

    from api import app as app_module, logs
    served = []
    monkeypatch.setattr(logs, "configure", lambda: None)
    monkeypatch.setattr(app_module, "create_app", lambda settings: "the app")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append((app, gc.get_freeze_count())))
    gc.unfreeze()
    try:
        assert cli.cmd_serve(argparse.Namespace(host="127.0.0.1", port=1), settings=None) == 0
    finally:
        gc.unfreeze()
    assert served and served[0][0] == "the app" and served[0][1] > 0
