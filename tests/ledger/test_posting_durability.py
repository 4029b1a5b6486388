"""A posting that was acknowledged survives the process being killed (kill -9) mid-work.

A separate process posts from several threads (each its own unit of work, or through the group
commit's writer in batches) and prints each posting's sequence only once its
unit of work has committed (what a caller is answered with); the test kills it with SIGKILL
while postings are in flight, then reads the database: every acknowledged posting is there with
its description, the sequence has no gap, the chain verifies and every balance is the sum of its
entries — whatever the killed process was doing (a pipelined write, a commit) left no trace
beyond what committed whole.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select, text

from ledger import journal
from ledger.db import Database
from ledger.models import Account, Entry, Transaction
from tests.factories import accounts

REPO = Path(__file__).resolve().parents[2]

POSTER = """
import sys, threading
from datetime import date
from ledger import journal, money as m
from ledger.db import Database, make_engine

url, ids, grouped = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], sys.argv[3] == "1"
db = Database(make_engine(url), group_commit=grouped)
out = threading.Lock()

def worker(n):
    i = 0
    while True:
        a, b = ids[(n + i) % len(ids)], ids[(n + i + 1) % len(ids)]
        tx = db.write(lambda uow: journal.post(
            uow, actor=f"w{n}", kind="TEST", description=f"{n}/{i}", effective_date=date(2026, 1, 1),
            postings=[journal.Posting(a, m.money("1.00", "SEK")), journal.Posting(b, m.money("-1.00", "SEK"))]))
        with out:  # acknowledged: the caller would now be told its posting is in the ledger
            sys.stdout.write(f"ACK {tx.sequence} {n}/{i}\\n")
            sys.stdout.flush()
        i += 1

for n in range(8):
    threading.Thread(target=worker, args=(n,), daemon=True).start()
threading.Event().wait()
"""


POSTER_NAME = "utfall_durability_poster"


def wait_for_backends_to_end(engine, application_name: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    with engine.connect() as conn:
        while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                           {"name": application_name}).scalar_one():
            assert time.monotonic() < deadline, "the killed process's backends did not end"
            conn.rollback()
            time.sleep(0.05)


@pytest.mark.parametrize("group_commit", [False, True], ids=["one commit each", "group commit"])
def test_a_kill_9_mid_posting_loses_nothing_that_was_acknowledged(fresh_engine, group_commit):
    # given a process posting from 8 threads, each posting its own unit of work or all of them
    # in batches through the group commit's writer (PostgreSQL only)
    if group_commit and fresh_engine.dialect.name != "postgresql":
        pytest.skip("group commit is for PostgreSQL")
    db = Database(fresh_engine)
    ids = [a.id for a in accounts(db, 3)]
    url = fresh_engine.url
    if url.get_backend_name() == "postgresql":
        url = url.update_query_dict({"application_name": POSTER_NAME})
    url = url.render_as_string(hide_password=False)
    proc = subprocess.Popen([sys.executable, "-c", POSTER, url, ",".join(map(str, ids)), "1" if group_commit else "0"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    acknowledged: dict[int, str] = {}
    try:
        # when it is killed once it has acknowledged 150 postings, with more in flight (a batch)
        for line in proc.stdout:
            _, sequence, description = line.split()
            acknowledged[int(sequence)] = description
            if len(acknowledged) >= 150:
                proc.send_signal(signal.SIGKILL)
                break
        for line in proc.stdout:  # acknowledgements written before the kill landed
            _, sequence, description = line.split()
            acknowledged[int(sequence)] = description
    finally:
        proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    # a COMMIT the killed process had already sent is still carried out by its server backend:
    # read the ledger once every such backend is gone, so all reads below see the same ledger
    if fresh_engine.dialect.name == "postgresql":
        wait_for_backends_to_end(fresh_engine, POSTER_NAME)

    # then every acknowledged posting is in the ledger, whole, and the ledger is consistent
    with db.reading() as s:
        stored = dict(s.execute(select(Transaction.sequence, Transaction.description)).all())
        for sequence, description in acknowledged.items():
            assert stored.get(sequence) == description
        assert sorted(stored) == list(range(1, len(stored) + 1))
        sums: dict[int, int] = defaultdict(int)
        for account_id, amount in s.execute(select(Entry.account_id, Entry.amount_minor)):
            sums[account_id] += amount
        assert {a.id: a.balance_minor for a in s.execute(select(Account)).scalars()} == {i: sums[i] for i in ids}
        assert len(list(s.execute(select(Entry.sequence)))) == 2 * len(stored)
        assert journal.verify(s).ok
