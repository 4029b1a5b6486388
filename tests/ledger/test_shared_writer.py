"""One writer shared by the processes of a machine (ledger.shared_writer): the process holding the
writer seat runs the others' units of work in its own batches; the others run theirs themselves
whenever there is no writer to send to. Each "process" here is a Database of its own (its own
engine, pool, group commit and seat session) on one PostgreSQL schema.

What a caller depends on: a unit of work is answered once, with its result, whichever process ran
it; nothing is run twice or lost; the chain stays whole; and a writer going away never leaves the
others stuck — they run their work themselves, and one of them takes the seat.
"""
from __future__ import annotations

import os
import threading

import pytest

from ledger.db import Database, make_engine
from ledger.shared_writer import NoWriter, SharedWriter, WriterLost, unit_of_work
from tests.factories import accounts
from tests.ledger.chain_checks import chain_length_if_whole
from tests.ledger.transfers import transfer


@unit_of_work("test.transfer")
def _transfer(a: int, b: int, description: str):
    return transfer(a, b, description)


@unit_of_work("test.refused")
def _refused(reason: str):
    def work(uow):
        raise ValueError(reason)
    return work


def _process(url: str) -> Database:
    return Database(make_engine(url), group_commit=True, shared_writer=True)


@pytest.fixture
def processes(grouped):
    """Two processes on the grouped database's schema, each offering to share its writer."""
    url = grouped.engine.url.render_as_string(hide_password=False)
    made = [_process(url), _process(url)]
    yield made
    for db in made:
        db.close()
        db.engine.dispose()


def test_the_first_process_to_write_takes_the_seat_and_the_other_sends_it_its_work(grouped, processes):
    first, second = processes
    a, b = (acc.id for acc in accounts(grouped, 2))
    # when the first process writes, then the second
    one = first.write_named("test.transfer", a=a, b=b, description="first")
    two = second.write_named("test.transfer", a=b, b=a, description="second")
    # then the first holds the seat and ran both: the second's came back with its result
    assert first.shared_writer.is_writer and not second.shared_writer.is_writer
    assert (one, two) == (1, 2)
    assert second.shared_writer.forwarded == 1 and first.shared_writer.served == 1
    assert first.group_commit.committed == 2 and second.group_commit.committed == 0
    assert chain_length_if_whole(grouped) == 2


def test_units_of_work_from_both_processes_share_the_writers_batches_and_each_is_answered_once(grouped, processes):
    first, second = processes
    accs = [acc.id for acc in accounts(grouped, 4)]
    first.write_named("test.transfer", a=accs[0], b=accs[1], description="seat")  # the first takes the seat
    answered: list[int] = []
    errors: list[BaseException] = []

    def client(db: Database, n: int):
        try:
            for i in range(30):
                answered.append(db.write_named("test.transfer", a=accs[(n + i) % 4], b=accs[(n + i + 1) % 4],
                                               description=f"{n}/{i}"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    # when 4 clients of each process post 30 times at once
    threads = [threading.Thread(target=client, args=(db, n)) for n, db in enumerate([first, second] * 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then each of the 240 was answered once, with its own place in one whole chain
    assert not errors
    assert sorted(answered) == list(range(2, 242))
    assert chain_length_if_whole(grouped) == 241
    # and the seat's holder committed them all, in batches shared by both processes' callers
    assert second.shared_writer.forwarded == 120 and second.group_commit.committed == 0
    assert first.group_commit.committed == 241
    assert first.group_commit.batches < 241


def test_a_unit_of_work_that_raises_in_the_writer_is_its_senders_error_and_leaves_nothing(grouped, processes):
    first, second = processes
    a, b = (acc.id for acc in accounts(grouped, 2))
    first.write_named("test.transfer", a=a, b=b, description="seat")
    with pytest.raises(RuntimeError, match="ValueError: no such thing"):
        second.write_named("test.refused", reason="no such thing")
    assert chain_length_if_whole(grouped) == 1
    # and the next one goes through
    assert second.write_named("test.transfer", a=b, b=a, description="after") == 2


def test_a_unit_of_work_the_writer_does_not_know_is_run_by_its_sender(grouped, processes):
    first, second = processes
    a, b = (acc.id for acc in accounts(grouped, 2))
    first.write_named("test.transfer", a=a, b=b, description="seat")
    # the writer's process never registered this one (another version of the code, say)
    def unknown(body):
        raise NoWriter()
    first.shared_writer.handlers["unit"] = unknown
    assert second.write_named("test.transfer", a=b, b=a, description="here") == 2
    assert second.group_commit.committed == 1 and second.shared_writer.forwarded == 0


def test_when_the_writer_goes_away_the_others_run_their_work_and_one_takes_the_seat(grouped, processes):
    first, second = processes
    a, b = (acc.id for acc in accounts(grouped, 2))
    first.write_named("test.transfer", a=a, b=b, description="seat")
    assert second.write_named("test.transfer", a=b, b=a, description="sent") == 2
    # when the writer's process stops (its socket closed, its seat session ended)
    first.close()
    # then the other's next unit of work is not lost: it runs it itself, having taken the seat
    assert second.write_named("test.transfer", a=a, b=b, description="after") == 3
    assert second.shared_writer.is_writer
    assert chain_length_if_whole(grouped) == 3


def test_a_writer_that_dies_with_a_unit_of_work_in_hand_leaves_its_sender_told_so(grouped, processes):
    first, second = processes
    a, b = (acc.id for acc in accounts(grouped, 2))
    first.write_named("test.transfer", a=a, b=b, description="seat")
    started, release = threading.Event(), threading.Event()

    @unit_of_work("test.held")
    def _held():
        def work(uow):
            started.set()
            release.wait(10)
            return 0
        return work

    outcome: list[object] = []
    sender = threading.Thread(target=lambda: outcome.append(_outcome(second, "test.held")))
    sender.start()
    assert started.wait(10)
    first.shared_writer.close(drain_seconds=0.2)  # stopped, and its connections to its senders gone, the work still held
    sender.join(10)
    release.set()
    # then the sender is told its outcome is unknown (a retry with its idempotency key is safe)
    assert outcome and isinstance(outcome[0], WriterLost)


def test_a_writer_stopping_answers_what_it_is_running_first(grouped, processes):
    first, second = processes
    a, b = (acc.id for acc in accounts(grouped, 2))
    first.write_named("test.transfer", a=a, b=b, description="seat")
    started = threading.Event()

    @unit_of_work("test.slow")
    def _slow(a: int, b: int):
        work = transfer(a, b, "slow")

        def slow(uow):
            started.set()
            threading.Event().wait(0.3)
            return work(uow)
        return slow

    outcome: list[object] = []
    sender = threading.Thread(target=lambda: outcome.append(second.write_named("test.slow", a=b, b=a)))
    sender.start()
    assert started.wait(10)
    # when the writer stops while it runs the other's unit of work
    first.close()
    sender.join(10)
    # then that unit of work is answered, and the next one is run by its sender, now the writer
    assert outcome == [2]
    assert second.write_named("test.transfer", a=a, b=b, description="next") == 3
    assert second.shared_writer.is_writer
    assert chain_length_if_whole(grouped) == 3


def _outcome(db: Database, name: str):
    try:
        return db.write_named(name)
    except Exception as exc:  # noqa: BLE001 - the test looks at it
        return exc


def test_a_process_without_the_seat_and_without_a_writer_runs_its_work_itself(grouped):
    # a lone process that cannot hold a seat session (no database for it) still writes
    url = grouped.engine.url.render_as_string(hide_password=False)
    db = _process(url)
    try:
        db.shared_writer._connection = lambda: (_ for _ in ()).throw(OSError("no session"))
        a, b = (acc.id for acc in accounts(grouped, 2))
        assert db.write_named("test.transfer", a=a, b=b, description="alone") == 1
        assert not db.shared_writer.is_writer
    finally:
        db.close()
        db.engine.dispose()


def test_the_writers_address_names_this_machine_and_a_socket_only_its_user_may_open(grouped, processes):
    import os
    import stat
    first, second = processes
    a, b = (acc.id for acc in accounts(grouped, 2))
    first.write_named("test.transfer", a=a, b=b, description="seat")
    address = second.shared_writer.writer_address()
    assert address == first.shared_writer._path
    assert stat.S_IMODE(os.stat(address).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(address)).st_mode) == 0o700
    # and another machine's writer is never sent to
    other = SharedWriter(second.engine)
    import ledger.shared_writer as sw
    real_host = sw._host
    try:
        sw._host = lambda: "elsewhere"
        assert other.writer_address() is None
    finally:
        sw._host = real_host
        other.close()


def test_a_process_that_looks_just_as_the_seat_is_taken_waits_for_the_holders_address(grouped, tmp_path):
    # a holder that has taken the seat and publishes its address a moment later (it binds its socket first)
    import socket

    import psycopg

    import ledger.shared_writer as sw
    path = os.path.join(sw._socket_dir(), f"test-{os.getpid()}.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    conninfo = grouped.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    holder = psycopg.connect(conninfo, autocommit=True)
    looking = SharedWriter(grouped.engine)
    try:
        assert holder.execute(sw._SEAT_SQL % "pg_try_advisory_lock", (sw._SEAT,)).fetchone()[0]
        publish = threading.Timer(0.1, lambda: holder.execute("SELECT set_config('application_name', %s, false)",
                                                              (f"{sw._PREFIX} {sw._host()} {os.path.basename(path)}",)))
        publish.start()
        # then the looking process sends to it, rather than making its own work for the next LOOK_EVERY seconds
        assert looking.writer_address() == path
        publish.join()
    finally:
        looking.close()
        holder.close()
        listener.close()
        os.unlink(path)


def test_a_writer_whose_seat_session_the_database_ends_stops_serving_and_the_seat_is_taken_again(
        grouped, processes, monkeypatch):
    import psycopg

    monkeypatch.setattr(SharedWriter, "LOOK_EVERY", 0.1)
    first, second = processes
    a, b = (acc.id for acc in accounts(grouped, 2))
    first.write_named("test.transfer", a=a, b=b, description="seat")
    assert second.write_named("test.transfer", a=b, b=a, description="sent") == 2
    # when the database ends the writer's seat session (a restart, a failover, a terminated backend)
    conninfo = grouped.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        pid = first.shared_writer._seat_conn.info.backend_pid
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    # then it stops serving within a check or two
    for _ in range(100):
        if not first.shared_writer.is_writer:
            break
        threading.Event().wait(0.05)
    assert not first.shared_writer.is_writer and first.shared_writer.stepped_down == 1
    # and both go on writing, each unit of work once, through whichever process takes the seat next
    assert second.write_named("test.transfer", a=a, b=b, description="after, second") == 3
    assert first.write_named("test.transfer", a=b, b=a, description="after, first") == 4
    assert first.shared_writer.is_writer != second.shared_writer.is_writer
    assert chain_length_if_whole(grouped) == 4


def test_a_writer_taking_the_seat_removes_the_sockets_of_writers_whose_process_is_gone(grouped, processes):
    import subprocess
    import sys

    import ledger.shared_writer as sw
    directory = sw._socket_dir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead = os.path.join(directory, f"w{gone.stdout.strip()}-test00.sock")  # a writer killed before it closed
    alive = os.path.join(directory, f"w{os.getppid()}-test00.sock")  # a live process's (another database's)
    for path in (dead, alive):
        with open(path, "w"):
            pass
    try:
        first, _ = processes
        a, b = (acc.id for acc in accounts(grouped, 2))
        first.write_named("test.transfer", a=a, b=b, description="seat")
        assert first.shared_writer.is_writer
        assert not os.path.exists(dead) and os.path.exists(alive)
    finally:
        for path in (dead, alive):
            if os.path.exists(path):
                os.unlink(path)
