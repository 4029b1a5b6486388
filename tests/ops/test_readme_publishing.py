"""Every command of the README's publishing section runs: the CLI in-process, curl against a real server."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = "readme-test-secret-0123456789"


def publishing_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Publishing: INDIGO, the annual report, finance exports", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


@pytest.mark.skipif(not os.access("/usr/bin/curl", os.X_OK), reason="needs curl")
def test_the_readme_publishing_examples_run(tmp_path, monkeypatch, capsys):
    import uvicorn

    from api import cli
    from api.app import create_app
    from ledger import tokens
    from ledger.access import SYSTEM
    from ledger.config import Settings
    from ledger.db import Database, make_engine

    url = f"sqlite:///{tmp_path / 'utfall.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("UTFALL_ENV", "development")
    monkeypatch.setenv("UTFALL_SECRET", SECRET)
    commands = publishing_commands()
    assert any(c.startswith("utfall export indigo") for c in commands) and any("/exports/" in c for c in commands)
    server = None
    try:
        for line in commands:
            if line.startswith("utfall "):
                assert cli.main(line.split()[1:]) == 0, line
                capsys.readouterr()
                continue
            if server is None:  # the demo is loaded by now: serve it
                engine = make_engine(url)
                db = Database(engine)
                with db.uow() as uow:
                    token = tokens.create_token(uow, actor=SYSTEM, name="Anders Revisor", role="AUDITOR",
                                                party_id=None).token
                    uow.commit()
                app = create_app(Settings(database_url=url, env="development", secret=SECRET.encode()), db)
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind(("127.0.0.1", 0))
                origin = f"http://127.0.0.1:{sock.getsockname()[1]}"
                server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
                thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
                thread.start()
                deadline = time.monotonic() + 20
                while not server.started:
                    assert thread.is_alive() and time.monotonic() < deadline
                    time.sleep(0.05)
            run = subprocess.run(["bash", "-c", line.replace("http://127.0.0.1:8000", origin)],
                                 env={**os.environ, "TOKEN": token}, capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, (line, run.stderr)
    finally:
        if server is not None:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()
            engine.dispose()
    # then: what the commands wrote is what the README says
    assert json.loads((tmp_path / "project.json").read_text(encoding="utf-8"))["project"]["id"] == \
        "INDIGOPROJECT-SE-UTF-1"
    assert (tmp_path / "skulder.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert (tmp_path / "utbetalningar.xlsx").read_bytes().startswith(b"PK")
    assert ";" in (tmp_path / "huvudbok.csv").read_text(encoding="utf-8-sig").splitlines()[0]
    assert "Årsrapport 2025" in (tmp_path / "arsrapport.html").read_text(encoding="utf-8")
