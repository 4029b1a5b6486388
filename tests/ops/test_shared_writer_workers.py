"""`uvicorn --factory api.asgi:create --workers 2` as an operator starts it (README, ops/SCALING.md): the
workers share one writer, so mutations that land on the worker without the writer seat are made by the
one with it, and every mutation is made once whichever worker a client's connection lands on."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from api.graphql.base import to_global_id
from ledger import tokens
from ledger.access import SYSTEM, Actor
from ledger.db import Database
from tests.api.serving import at_once, post
from tests.factories import funded

FM = Actor("frida", "FUND_MANAGER")
DEPOSIT = """mutation($input: DepositCapitalInput!) { depositCapital(input: $input) {
  transaction { sequence } userErrors { code field message } } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _input(fund_id: str, key: str) -> dict:
    return {"input": {"fundId": fund_id, "amount": {"amount": "10.00", "currency": "SEK"},
                      "effectiveDate": "2026-03-01", "reference": f"insättning {key}", "idempotencyKey": key}}


def _deposit_retrying(port: int, token: str, fund_id: str, key: str):
    for _ in range(20):
        answer = post(port, DEPOSIT, token, _input(fund_id, key), timeout=30)
        if answer.status not in (0, 503):
            return answer
        time.sleep(0.2)
    return answer


def _seat_holder(engine) -> int | None:
    """The process holding the writer seat, by the pid in its socket's name (ledger.shared_writer)."""
    from ledger.shared_writer import _FIND_SQL, _SEAT
    with engine.connect() as conn:
        row = conn.exec_driver_sql(_FIND_SQL, (_SEAT,)).fetchone()
    if row is None or not row[0].startswith("utfall-writer "):
        return None
    return int(os.path.basename(row[0].split(" ")[2]).split("-")[0][1:])


def _transactions(engine) -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM ledger_transactions").scalar_one()


def test_two_uvicorn_workers_share_one_writer_and_make_each_mutation_once(fresh_engine, tmp_path):
    if fresh_engine.dialect.name != "postgresql":
        pytest.skip("workers share a writer on PostgreSQL (group commit, an advisory lock)")
    db = Database(fresh_engine)
    fund, *_ = funded(db, FM)
    with db.uow() as uow:
        fm = tokens.create_token(uow, actor=SYSTEM, name="frida", role="FUND_MANAGER").token
        uow.commit()
    fund_id = to_global_id("Fund", fund.id)
    port = _free_port()
    log_path = tmp_path / "server.log"
    env = {**os.environ, "DATABASE_URL": fresh_engine.url.render_as_string(hide_password=False),
           "UTFALL_ENV": "production", "UTFALL_SECRET": "workers-test-secret-0123456789",
           "UTFALL_DOCUMENT_DIR": str(tmp_path / "documents")}
    env.pop("UTFALL_SHARED_WRITER", None)  # the factory's default
    with open(log_path, "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "api.asgi:create", "--workers", "2",
                                   "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                                  env=env)
    try:
        deadline = time.monotonic() + 60
        while not _ready(port):
            assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        time.sleep(1.0)  # both workers up (readyz answered by one of them)
        # when 64 deposits arrive at once on 64 connections, which the two workers accept between them
        before = _transactions(fresh_engine)
        answers = at_once(64, lambda i: post(port, DEPOSIT, fm, _input(fund_id, f"w-{i}")))
        assert [a.status for a in answers] == [200] * 64, [a.body for a in answers if a.status != 200]
        payloads = [json.loads(a.body)["data"]["depositCapital"] for a in answers]
        assert all(p["userErrors"] == [] for p in payloads)
        assert len({p["transaction"]["sequence"] for p in payloads}) == 64
        # made by the writer: the worker without the seat sent what it received on (and the writer logged it too)
        lines = [json.loads(line[line.index("{"):]) for line in log_path.read_text().splitlines()
                 if '"event": "request"' in line]
        deposits = [line for line in lines if line.get("method") == "POST"]
        forwarded = [line for line in deposits if line.get("forwarded")]
        assert forwarded, "no mutation reached the worker without the writer seat"
        assert len(deposits) == 64 + len(forwarded)
        # and when the writer's worker is killed (kill -9: no goodbye) while 32 more are under way
        writer_pid = _seat_holder(fresh_engine)
        assert writer_pid is not None and writer_pid != server.pid
        killer = threading.Timer(0.05, os.kill, (writer_pid, signal.SIGKILL))
        killer.start()
        # then every mutation is made once: one that met the dead worker (no answer, or 503
        # WRITER_UNAVAILABLE) is sent again with its key, as a client does, and the survivor takes the seat
        after = at_once(32, lambda i: _deposit_retrying(port, fm, fund_id, f"after-{i}"))
        killer.join()
        assert all(a.status == 200 for a in after), [(a.status, a.body) for a in after if a.status != 200]
        after_payloads = [json.loads(a.body)["data"]["depositCapital"] for a in after]
        assert len({p["transaction"]["sequence"] for p in after_payloads}) == 32
        assert _transactions(fresh_engine) - before == 96
        deadline = time.monotonic() + 30
        while _seat_holder(fresh_engine) in (None, writer_pid):
            assert time.monotonic() < deadline, "no live worker took the writer seat"
            post(port, DEPOSIT, fm, _input(fund_id, "nudge"))
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(30)
