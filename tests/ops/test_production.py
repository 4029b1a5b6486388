"""Production mode: no GraphiQL, no introspection, no static assets, and no start without a secret."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from ledger.config import DEV_SECRET, ConfigError, Settings, load

SECRET = b"production-test-secret-0123456789"
INTROSPECTION = ("{ __schema { types { name } } }", '{ __type(name: "Query") { name fields { name } } }')


def client(db, env: str) -> TestClient:
    return TestClient(create_app(Settings(database_url="unused", env=env, secret=SECRET), db, workers=2))


@pytest.fixture
def production(db):
    with client(db, "production") as c:
        yield c


def test_production_serves_no_graphiql(production):
    r = production.get("/graphql", headers={"Accept": "text/html"})
    assert r.status_code != 200
    assert "text/html" not in r.headers.get("content-type", "")
    assert "graphiql" not in r.text.lower()


@pytest.mark.parametrize("query", INTROSPECTION)
def test_production_refuses_introspection(production, query):
    body = production.post("/graphql", json={"query": query}).json()
    assert body.get("data") is None
    assert body["errors"] and all("introspection" in e["message"].lower() for e in body["errors"])


def test_production_still_answers_queries_and_health(production):
    assert production.get("/healthz").json() == {"status": "ok"}
    body = production.post("/graphql", json={"query": "{ __typename }"}).json()
    assert body == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("path", ["/static/graphiql/graphiql.html", "/static/graphiql/graphiql/graphiql.min.js",
                                  "/static/"])
def test_production_serves_no_static_assets(production, path):
    assert production.get(path).status_code == 404


def test_development_has_what_production_turns_off(db):
    # the control: the same requests succeed in development, so the refusals above are not vacuous
    with client(db, "development") as dev:
        page = dev.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert dev.get("/static/graphiql/graphiql.html").status_code == 200
        body = dev.post("/graphql", json={"query": INTROSPECTION[0]}).json()
        assert "errors" not in body and body["data"]["__schema"]["types"]


def test_production_requires_a_secret():
    with pytest.raises(ConfigError, match="UTFALL_SECRET"):
        load({"UTFALL_ENV": "production"})
    with pytest.raises(ConfigError, match="UTFALL_SECRET"):
        load({})  # production is the default
    with pytest.raises(ConfigError, match="16"):
        load({"UTFALL_ENV": "production", "UTFALL_SECRET": "too-short"})
    with pytest.raises(ConfigError, match="UTFALL_ENV"):
        load({"UTFALL_ENV": "staging", "UTFALL_SECRET": SECRET.decode()})
    settings = load({"UTFALL_ENV": "production", "UTFALL_SECRET": SECRET.decode(),
                     "DATABASE_URL": "postgresql+psycopg://u@db:5432/utfall"})
    assert settings.production and settings.secret == SECRET
    assert settings.database_url == "postgresql+psycopg://u@db:5432/utfall"


def test_development_works_without_a_secret():
    settings = load({"UTFALL_ENV": "development"})
    assert not settings.production and settings.secret == DEV_SECRET


def test_group_commit_is_on_unless_turned_off_and_a_typo_is_refused():
    assert load({"UTFALL_ENV": "development"}).group_commit is True
    assert load({"UTFALL_ENV": "development", "UTFALL_GROUP_COMMIT": "0"}).group_commit is False
    with pytest.raises(ConfigError, match="UTFALL_GROUP_COMMIT"):
        load({"UTFALL_ENV": "development", "UTFALL_GROUP_COMMIT": "yes"})


def test_reads_on_the_event_loop_are_on_unless_turned_off_and_a_typo_is_refused():
    assert load({"UTFALL_ENV": "development"}).reads_on_loop is True
    assert load({"UTFALL_ENV": "development", "UTFALL_READS_ON_LOOP": "0"}).reads_on_loop is False
    with pytest.raises(ConfigError, match="UTFALL_READS_ON_LOOP"):
        load({"UTFALL_ENV": "development", "UTFALL_READS_ON_LOOP": "off"})


def test_the_shared_writer_is_off_for_one_process_on_for_the_workers_factory_and_a_typo_is_refused(monkeypatch, tmp_path):
    assert load({"UTFALL_ENV": "development"}).shared_writer is False
    assert load({"UTFALL_ENV": "development", "UTFALL_SHARED_WRITER": "1"}).shared_writer is True
    with pytest.raises(ConfigError, match="UTFALL_SHARED_WRITER"):
        load({"UTFALL_ENV": "development", "UTFALL_SHARED_WRITER": "yes"})
    from api import asgi
    monkeypatch.setenv("UTFALL_ENV", "development")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.delenv("UTFALL_SHARED_WRITER", raising=False)
    assert asgi.create().state.settings.shared_writer is True  # `uvicorn --workers N` starts it
    monkeypatch.setenv("UTFALL_SHARED_WRITER", "0")
    assert asgi.create().state.settings.shared_writer is False


def serve(env: dict[str, str], cwd) -> tuple[subprocess.CompletedProcess, float]:
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
                          env=clean, cwd=cwd, capture_output=True, text=True, timeout=60)
    return done, time.monotonic() - started


@pytest.mark.parametrize("env", [{}, {"UTFALL_ENV": "production"}, {"UTFALL_ENV": "production", "UTFALL_SECRET": "short"}],
                         ids=["nothing set", "production", "short secret"])
def test_serve_refuses_to_start_without_a_secret(env, tmp_path):
    done, seconds = serve(env, tmp_path)
    assert done.returncode != 0
    assert "UTFALL_SECRET" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    # it stopped at the settings: the server never started, nothing was bound or written
    assert "Uvicorn running" not in done.stdout + done.stderr
    assert "Started server" not in done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []
    assert seconds < 30


def test_the_image_and_the_compose_file_hold_together():
    """No Docker engine here: at least the exec-form arrays parse and the pieces name each other."""
    import json
    import re
    from pathlib import Path

    ops = Path(__file__).resolve().parents[2] / "ops"
    dockerfile = (ops / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    forms = {m.group(1): json.loads(m.group(2))
             for m in re.finditer(r"^(ENTRYPOINT|CMD|HEALTHCHECK)\b.*?(\[.*\])\s*$", dockerfile, re.M)}
    assert forms["CMD"] == ["utfall", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert "utfall db upgrade" in forms["ENTRYPOINT"][2] and 'exec "$@"' in forms["ENTRYPOINT"][2]
    assert "/healthz" in forms["HEALTHCHECK"][-1]
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    assert "pip install ." in dockerfile and "[test]" not in dockerfile

    import yaml  # pyyaml is in the test extra
    compose = yaml.safe_load((ops / "compose.yaml").read_text(encoding="utf-8"))
    app, db = compose["services"]["app"], compose["services"]["db"]
    assert db["image"] == "postgres:15" and "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert app["environment"]["UTFALL_ENV"] == "production"
    assert app["environment"]["UTFALL_SECRET"] == "${UTFALL_SECRET:?set UTFALL_SECRET}"
    assert app["environment"]["DATABASE_URL"].startswith("postgresql+psycopg://utfall:")
    assert app["environment"]["DATABASE_URL"].endswith("@db:5432/utfall")
    assert any(v.split(":")[0] in compose["volumes"] for v in db["volumes"])
    assert app["build"]["dockerfile"] == "ops/Dockerfile"


def test_the_asgi_factory_builds_an_app_from_the_environment(monkeypatch, tmp_path):
    from api import asgi
    monkeypatch.setenv("UTFALL_ENV", "development")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    app = asgi.create()
    assert app.state.settings.database_url.endswith("x.db")
