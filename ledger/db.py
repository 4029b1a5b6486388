"""Engine, sessions and the unit of work.

SQLite is the embedded default; PostgreSQL is chosen with DATABASE_URL
(`postgresql+psycopg://...`). A unit of work wraps exactly one use case: it opens a session,
the use case does its work, and only the unit of work commits. Anything that escapes rolls
everything back, so a use case is never half-written.
"""
from __future__ import annotations

import functools
import os
import queue
import threading
import time
import weakref
from contextlib import contextmanager
from collections.abc import Iterator

from sqlalchemy import create_engine, event, exc
from sqlalchemy.exc import ResourceClosedError
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ledger.errors import DomainError

DEFAULT_URL = "sqlite:///utfall.db"


def database_url() -> str:
    return os.environ.get("DATABASE_URL") or DEFAULT_URL


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str | None = None, **kwargs) -> Engine:
    """An engine for `url` (default: DATABASE_URL or an SQLite file in the working directory).

    On SQLite, pysqlite's own transaction handling is switched off and we emit BEGIN
    ourselves: writes use BEGIN IMMEDIATE, which takes SQLite's single writer lock up front,
    so two postings can never read the same chain head. `with_for_update()` is a no-op on
    SQLite; this is what serialises the ledger there.
    """
    url = url or database_url()
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(url, **kwargs)
        memory = ":memory:" in url or url in ("sqlite://", "sqlite:///")

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN IMMEDIATE"))

        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # No ping at every checkout: pool_pre_ping costs a round trip per unit of work (a SELECT 1,
    # about a tenth of a posting's time). Pooled connections die mostly while idle (a server,
    # proxy or firewall idle timeout; a restart in a quiet hour), so instead:
    # - pool_recycle replaces any connection older than 30 minutes before it is used, below
    #   the usual idle limits of proxies and managed servers;
    # - a connection that sat in the pool for IDLE_PING_SECONDS or more is pinged at checkout,
    #   and a dead one invalidates the pool and is replaced, as pre-ping would do.
    # A busy pool therefore pings nothing. A connection that breaks between two close uses
    # fails that one unit of work, which rolls back whole (nothing is half-written), and
    # SQLAlchemy then invalidates the pool, so the next one reconnects. Pass
    # pool_pre_ping=True to ping at every checkout instead.
    kwargs.setdefault("pool_pre_ping", False)
    kwargs.setdefault("pool_recycle", 1800)
    # The connection used last is checked out first: a pool sized for many clients otherwise hands
    # a lone client each of its connections in turn, every backend cold in the CPU's caches and
    # planning the posting afresh (five custom plans after each ANALYZE) — 0.80× the server CPU per
    # posting (ops/SCALING.md, session 8). (Session 7 measured it slower: that was a held posting's
    # prepared statement dropped by psycopg's DEALLOCATE ALL, failing on the one connection reused.)
    kwargs.setdefault("pool_use_lifo", True)
    engine = create_engine(url, **kwargs)
    if engine.dialect.driver == "psycopg" and _can_hold():
        global _HeldFirstCursor
        if _HeldFirstCursor is None:
            _HeldFirstCursor = _held_first_cursor()

        @event.listens_for(engine, "connect")
        def _cursors(dbapi_conn, _record):
            dbapi_conn.cursor_factory = _HeldFirstCursor  # a posting held back goes before anything else
            _forget_prepared_on_deallocate(dbapi_conn)

        @event.listens_for(engine.pool, "checkin")
        def _drop_held(dbapi_conn, record):
            # a statement still held when its connection goes back (its unit of work ended without
            # committing, rolled back) was never sent: it must never go with another unit of work
            held = getattr(dbapi_conn, "_utfall_held", None)
            if held is not None:
                held.drop()
    if not kwargs["pool_pre_ping"]:
        _ping_when_idle(engine)
    return engine


IDLE_PING_SECONDS = 10.0


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection at checkout only if it has been idle IDLE_PING_SECONDS or more."""
    dialect = engine.dialect

    @event.listens_for(engine.pool, "checkin")
    def _checkin(_dbapi_conn, record):
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _checkout(dbapi_conn, record, _proxy):
        idle_since = record.info.get("idle_since")  # none on a fresh connection: nothing to check
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as err:
            if dialect.is_disconnect(err, dbapi_conn, None):
                # the pool replaces this connection (and every older one) and checks out again
                raise exc.InvalidatePoolError() from err
            raise


def read_engine(engine: Engine) -> Engine:
    """The same pool, for read-only sessions: on SQLite a deferred BEGIN that takes no write lock."""
    return engine.execution_options(sqlite_begin="BEGIN")


class StaleChainMemory(Exception):
    """A posting from the chain memory (ledger.journal.ChainMemory) found it out of date in a
    unit of work that may be rerun (`UnitOfWork.may_rerun`): its transaction has failed, and
    whoever runs the unit of work rolls it back and runs it again, reading the head afresh."""


class UnitOfWork:
    """One use case, one database transaction. Use as a context manager; call `commit()`.

    `may_rerun`: whoever runs it will roll it back and run it again, whole, if its chain memory
    was out of date (`chain_memory_failed`), so a posting needs no savepoint of its own to fall
    back to (one statement less on PostgreSQL). Only runners that do so set it (`run_rerunnable`).
    """

    may_rerun = False
    chain_memory_failed = False  # a posting from the chain memory failed: the transaction with it
    # its postings from the chain memory are queued in the connection's pipeline, not waited for
    # (`queue_statement`): a group commit batch's first run, whose runner syncs them
    queue_postings = False
    # its postings from the chain memory are not even sent one by one: each adds its rows to the
    # batch's buffer (`ledger.journal._BatchedPostings`), sent as ONE statement for all of them
    # before anything else goes on the connection (`send_buffered`): a group commit batch's first run
    buffer_postings = False
    # it owns its transaction and its queued postings (`run_rerunnable`'s first run): its commit
    # sends COMMIT behind them in the same pipeline, one round trip for the posting and the commit
    commits_queued = False
    queued_on = None  # the connection its postings were queued on (`ledger.journal.post` sets it)
    commit_sent = False  # its COMMIT was (or was about to be) sent: an error now may follow a commit
    lent_memory = None  # the chain memory its queued posting keeps lent until its commit (`journal.post`)

    def __init__(self, engine: Engine):
        self.engine = engine
        self.session: Session | None = None
        self._committed = False
        self._factory = lambda: Session(bind=self.engine, expire_on_commit=False)

    def __enter__(self) -> "UnitOfWork":
        self.session = self._factory()
        self._committed = False
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.session is not None
        if self.lent_memory is not None:  # not committed: what it learned may be undone
            self.lent_memory.forget()
            self._give_back_memory()
        try:
            if self.commits_queued and self.queued_on is not None:
                # out of pipeline mode before the rollback and the pool's checkin (after an error the
                # transaction is rolled back anyway)
                try:
                    sync_queued(self.queued_on, discard=True)
                except ResourceClosedError:  # its connection already went back (a failed commit)
                    pass
            if not self._committed:
                self.session.rollback()
        finally:
            self._end_session()
        if exc is not None and not isinstance(exc, DomainError):
            # a uniqueness race lost, or a sum past 64 bits: the domain error it means (ledger.integrity)
            from ledger.integrity import domain_error
            mapped = domain_error(exc)
            if mapped is not None:
                raise mapped from exc

    def commit(self) -> None:
        assert self.session is not None
        if self.chain_memory_failed:
            # its transaction failed (a use case swallowed the error): never report it committed
            raise StaleChainMemory("the unit of work's transaction failed on an out-of-date chain memory")
        if self.commits_queued and self.queued_on is not None and _QUEUE in self.queued_on.info:
            self.session.flush()  # its other writes, if any (their statements wait for the queue first)
            if _QUEUE in self.queued_on.info:
                self.commit_sent = True
                try:
                    commit_queued(self.queued_on)
                except Exception as err:
                    if not _transaction_failed(self.queued_on):
                        raise  # not a statement's failure (a connection lost): whether COMMIT ran is unknown
                    # a queued posting failed, and COMMIT was skipped: most likely the chain memory was out
                    # of date (another process posted); whose fault it was otherwise, the rerun says
                    self.chain_memory_failed = True
                    _forget_chain_memory(self.engine, stale=True)
                    raise StaleChainMemory("a queued posting failed: the unit of work is rerun") from err
                # committed: whatever happens now, it must never run again
                self.queued_on = None
        self.commit_sent = True  # from here a failure may leave it committed or not: never rerun it
        self.session.commit()  # after commit_queued the driver's transaction is over: it sends nothing
        self.queued_on = None  # its connection went back to the pool with the commit
        self._committed = True
        self._give_back_memory()

    def _end_session(self) -> None:
        self.session.close()

    def _give_back_memory(self) -> None:
        memory, self.lent_memory = self.lent_memory, None
        if memory is not None:
            memory.release()

    def flush(self) -> None:
        assert self.session is not None
        self.session.flush()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name


class _BatchedUnitOfWork(UnitOfWork):
    """A unit of work in a group commit batch (`GroupCommit._run_all`): its session joined the
    batch's transaction, so its commit commits nothing — the batch's COMMIT does.

    The batch's units of work take turns with ONE session: each leaves it as a new one would be
    found, nothing in it (`_end_session`: what it loaded or added let go, its `info` emptied), so a
    unit of work sees nothing of the one before it but the rows it wrote, as when each had a
    session of its own; the session's setup and its transaction's begin and close, a tenth of a
    batched posting's Python, are paid once a batch. One that raises rolls the batch's
    transaction back, and the batch runs again with a session afresh.

    Its commit therefore only flushes what the session holds, and only if it holds anything: a
    unit of work that only posts (the postings go on the driver, not through the session) skips
    the session's commit machinery, a sixth of a batched posting's Python. With a savepoint of
    its own still open (`begin_nested`), the session's commit is what releases it, so it runs."""

    def commit(self) -> None:
        session = self.session
        assert session is not None
        if self.chain_memory_failed:
            raise StaleChainMemory("the unit of work's transaction failed on an out-of-date chain memory")
        self.commit_sent = True
        if session.new or session.dirty or session.deleted or session.in_nested_transaction():
            session.commit()
        self._committed = True
        self._give_back_memory()

    def _end_session(self) -> None:
        session = self.session
        if not self._committed:  # rolled back: the batch runs again (its session is closed then)
            return
        session.expunge_all()
        session.info.clear()


def run_rerunnable(make_uow, fn):
    """`fn(uow)` in a unit of work from `make_uow()`, committed unless `fn` did; `fn`'s result.
    If its chain memory turned out to be out of date (no savepoint was spent on that chance), it
    is rolled back and run once more, then with savepoints for its postings to fall back to."""
    for may_rerun in (True, False):
        uow = make_uow()
        uow.may_rerun = may_rerun
        if may_rerun and uow.engine.dialect.name == "postgresql":
            # its postings from the chain memory are queued, and its commit follows them in the same
            # round trip (`UnitOfWork.commit`): BEGIN, the posting and COMMIT, one wait
            _sync_before_statements(uow.engine)
            uow.queue_postings = uow.commits_queued = True
        try:
            with uow:
                result = fn(uow)
                if not uow._committed:
                    uow.commit()
                return result
        except BaseException as exc:
            # with postings queued, an error may be a queued posting's, come out late: the run
            # without queueing says whose it is
            # (never once its COMMIT was sent, unless the database said the COMMIT never ran)
            queued_failed = uow.queued_on is not None and not uow.commit_sent and isinstance(exc, Exception)
            if not (uow.chain_memory_failed or queued_failed):
                raise
            _forget_chain_memory(uow.engine)  # it holds what the rollback undid
    raise AssertionError("unreachable: the second run has no chain memory to fail on")


class GroupCommit:
    """Units of work from many threads committed in batches by one writer at a time (PostgreSQL).

    Why: a posting holds the chain head lock through its commit's disk flush, so one posting
    at a time per database commits, each paying a flush; more clients only queue for the lock.
    Here a caller hands its unit of work (`fn(uow)`) over and waits. Whoever finds no writer
    at work becomes the writer (leader/follower: no extra thread, and a lone caller runs its
    own work without a hand-over): it takes every waiting unit of work (up to `max_batch`) and
    runs them one after another in ONE database transaction on one connection, then commits
    once — one head lock acquisition and one flush for the whole batch — and goes on while
    others wait; once its own unit of work is answered, it hands the writing over to a caller
    whose batch is at the server and goes back to its own work (`_drain`).

    No savepoint per unit of work (a round trip's worth of Python each): if one raises, the
    whole transaction is rolled back, that caller gets its error, the chain memory is forgotten
    and the batch's other units of work run again without it, from the start. That is correct
    because nothing of the batch was committed, and each unit of work is whole by itself: run
    again, it reads what the database holds then. (A unit of work may therefore run more than
    once; only its last run commits, and its caller gets that run's result.) The rerun gives each
    unit of work a savepoint of its own (`_commit`): a further refusal is rolled back alone, so
    refusals no longer multiply the runs — one rerun takes them all.

    Nor does the writer send each posting's statement: in a batch's first run, postings from the
    chain memory add their rows to a buffer (`ledger.journal._BatchedPostings`), sent as ONE
    statement for all of them — the head moved once, each table written once — before anything
    else goes on the connection (SQLAlchemy's statements, a posting read from the database, a
    raw driver statement through `sync_pending`) and before the commit; it is queued in a psycopg
    pipeline (`queue_statement`), and the batch waits for it before its commit. If it failed —
    the memory was out of date because another process posted — or any unit of work raised
    while postings were buffered or queued (whose error it is cannot be told then), the batch is
    rolled back and run again without buffering or queueing and with a savepoint per posting,
    where each error is its own caller's.

    What stays as it was:
    - Each caller's unit of work is whole: its posting and its other writes (payout rows,
      evidence status, the idempotency record) commit together or not at all. A caller whose
      work raises gets its error at once and leaves nothing behind; the rest of the batch
      commits without it.
    - A caller is answered only after the batch's COMMIT has returned, so an acknowledged
      unit of work is durable; a process killed mid-batch loses only unanswered work (the
      transaction never committed). If the COMMIT itself fails, every caller of the batch
      gets that error, as a unit of work whose commit fails does.
    - The chain is one linear sequence: units of work in a batch run one at a time in one
      transaction, each posting taking the head its predecessor in the batch wrote (from the
      process's chain memory, `ledger.journal.ChainMemory`, checked by the database when the
      head moves; if the memory was out of date — another process posted — the batch is
      rolled back and run again, its first posting reading the head afresh).
    - A batch of one (a lone caller, the writer idle) runs as a unit of work of its own: one
      client pays nothing for the group commit.
    - Idempotency: a repeated key within a batch sees the first one's record (same
      transaction); across processes the unique key waits for the other's commit, as before.

    What changes: units of work of one process no longer run side by side — a long one (a
    payout over 100 000 items) delays the writes queued behind it, as its head lock already
    delays every posting. One writer per process; several processes posting at once share the
    database's writing by the writer lease: once another process's posting has made a batch
    refused, each writer takes the lease before its batches, holds it for a few, and catches its
    chain memory up with what the others posted when it takes it (`_lease_if_contended`); a
    writer that cannot have it in time builds its batches from the database instead
    (`_forget_if_contended`). ops/SCALING.md: what that gains. Processes of one machine can also
    share one writer (`ledger.shared_writer`): the others send their units of work to the process
    holding the writer seat, whose group commit makes them in its batches.
    """

    def __init__(self, engine: Engine, max_batch: int = 64):
        self.engine = engine
        self.max_batch = max_batch
        self._jobs: "queue.SimpleQueue[_Job]" = queue.SimpleQueue()
        self._writer = threading.Lock()  # held by the caller that is writing batches
        self.batches = 0  # committed batches and the units of work in them, for benchmarks
        self.committed = 0
        self.reruns = 0  # batches run again after a unit of work failed or the chain memory was stale
        self.overlapped = 0  # batches built while the one before them was committing
        self._counting = threading.Lock()
        self._taking = threading.Lock()  # a queued unit of work is taken by the writer or back by its caller
        self.taken_back = 0  # units of work their callers ran themselves, the writer held up (`submit`)
        self._in_flight: _InFlight | None = None  # the batch whose statement and COMMIT are out, unanswered
        self._redo: list[_Job] | None = None  # an in-flight batch's units of work, to run again (it failed)
        # connections of committed batches, kept for the next ones while the writer is at work: a
        # pool checkout and checkin per batch cost a tenth of a small batch's Python (`_keep`)
        self._spare: list = []
        self._contended_until = 0.0
        # the writer lease (`_lease_if_contended`): a connection of its own holding a session-level
        # advisory lock while this process's writer posts and others are posting too
        self._lease_conn = None
        self._lease_since: float | None = None
        self._lease_off_until = 0.0  # no lease tried before this (a holder stuck, or no session to hold it)
        self.leases = 0  # leases taken (for benchmarks and tests)
        self.leases_given_up = 0  # waits for the lease given up (LEASE_WAIT), or leases found not held
        # while the writer waits for the batch out and takes callers come meanwhile into the one it
        # built (`_absorb`), a caller queuing writes a byte here to wake it
        self._absorbing = False
        self._wake_r = self._wake_w = None
        _sync_before_statements(engine)

    # a caller whose unit of work the writer has not taken for this long runs it itself (`submit`)
    WAIT_FOR_WRITER_SECONDS = 0.5

    def submit(self, fn):
        """Run `fn(uow)` in a batch; its result once the batch is durable, or its error.

        If the writer has not taken it after `WAIT_FOR_WRITER_SECONDS`, the caller takes it back
        and runs it as a unit of work of its own, as without group commit. Why: the writer runs one
        batch at a time, and a batch can be held up — a unit of work in it waiting for a row lock
        that a transaction outside the batches holds (an evidence file being imported locks its
        contract's participants until it commits; another process's payout holds the head lock
        through its posting), or a long one (a payout over 100 000 items). Without this, every
        mutation of the process queued behind it for as long; now only those in the held-up batch
        do, as each would have waited for its own rows. Taking back is decided under a lock with
        the writer's taking (`_take`), so a unit of work runs in a batch or alone, never both."""
        job = _Job(fn)
        self._jobs.put(job)
        if self._absorbing:  # (read after the put: the writer looks at the queue after setting it)
            try:
                os.write(self._wake_w, b"\0")
            except (BlockingIOError, OSError, TypeError):  # full (it is awake anyway), or closed
                pass
        waited_since = time.monotonic()
        while not job.done.is_set():
            if not self._write_batches(job):
                job.done.wait(0.05)  # woken by its answer, or to write on; the timeout re-checks for a vacant writer
                if (not job.done.is_set() and time.monotonic() - waited_since >= self.WAIT_FOR_WRITER_SECONDS
                        and self._take_back(job)):
                    return run_rerunnable(lambda: UnitOfWork(self.engine), fn)
        # a unit of work queued after the writer's last look at the queue, but before it let go,
        # found the writer busy and waits: take it now rather than leave it to its timeout
        if not self._jobs.empty():
            self._write_batches(job)
        if job.error is not None:
            raise job.error
        return job.result

    def _write_batches(self, own: "_Job") -> bool:
        """Be the writer if none is at work (`_drain`); whether this caller was. If it hands the
        writing over to a caller whose batch is at the server, that caller is woken to write on."""
        if not self._writer.acquire(blocking=False):
            return False
        try:
            successor = self._drain(own)
        finally:
            self._writer.release()
        if successor is not None:
            successor.done.wake()  # (after the release: it takes the writer's lock at once)
        return True

    def close(self) -> None:
        """Let the connections kept for batches go back to the pool and close the lease's (the writer
        is always one of the callers: nothing else to stop)."""
        self._release_spares()
        self._drop_lease_connection()

    SPARE_CONNECTIONS = 2  # one batch in flight, one built: two connections take turns
    BATCHES_PER_CONNECTION = 1000  # then it goes back to the pool (its recycling and idle checks apply)

    def _connection(self):
        """A connection for the next batch: a spare one if the writer kept one, else the pool's."""
        try:
            return self._spare.pop()
        except IndexError:
            return self.engine.connect()

    def _keep(self, conn) -> None:
        """`conn`, its batch committed, kept for the next batch (or closed if enough are kept)."""
        if conn.closed:
            return
        if conn.invalidated:
            conn.close()
            return
        # (counted in the pooled connection's own info: it outlives this checkout)
        uses = conn.info.get(_USES, 0) + 1
        if uses >= self.BATCHES_PER_CONNECTION or len(self._spare) >= self.SPARE_CONNECTIONS:
            _give_back(conn)
            return
        conn.info[_USES] = uses
        self._spare.append(conn)

    def _release_spares(self) -> None:
        while self._spare:
            _give_back(self._spare.pop())

    def _drain(self, own: "_Job") -> "_Job | None":
        """Write batches until nobody waits; or, once `own` (this caller's unit of work) is answered
        and another batch is at the server, stop and return a caller of that batch to write on
        (everything the writer holds — the batch in flight, kept connections, the lease — goes to
        it with the writer's lock). Why hand over: the writer is one of the callers, and while it
        wrote the others' batches its own client waited; with 2 clients that made every posting
        a batch of one committed after the other (slower than 1 client), with 4 and 8 one client
        in four or eight idle."""
        successor = None
        try:
            while True:
                in_flight = self._in_flight
                if in_flight is not None and self._redo is None and own.done.is_set():
                    successor = in_flight.jobs[0]  # waiting for its answer: not taken back, not answered
                    return successor
                batch = self._take_waiting(self.max_batch)
                if not batch and self._in_flight is None and self._redo is None and self._lease_since is not None:
                    # holding the lease, all answered: the callers just answered are about to come back
                    try:
                        job = self._jobs.get(timeout=self.LEASE_IDLE_SECONDS)
                    except queue.Empty:
                        pass
                    else:
                        if self._take(job):
                            batch.append(job)
                if not batch:
                    if self._in_flight is None and self._redo is None:
                        return
                    # nobody waiting: the batch in flight waited for and answered (callers who come
                    # meanwhile go in the next batch)
                    self._answer(self._settle)
                    continue
                self._answer(self._lease_if_contended)
                if len(batch) == 1 and self._in_flight is None and self._redo is None and not own.done.is_set():
                    # a lone caller's own unit of work, committed as one of its own (not once the writer's own
                    # is answered: it sends even one without waiting for it, and hands over)
                    self._answer(lambda batch: self._commit_alone(batch[0]), batch)
                else:
                    self._answer(self._send, batch)
                if self._lease_since is not None and time.monotonic() - self._lease_since >= self.LEASE_SECONDS:
                    self._answer(self._settle)  # its batches committed before the next writer reads the head
                    self._release_lease()
        finally:
            if successor is None:
                # the writer never leaves a batch unanswered (a caller could wait for ever)
                self._answer(self._settle)
                self._release_lease()
                self._release_spares()  # idle now: the pool has them back

    def _take_waiting(self, most: int) -> list["_Job"]:
        """Up to `most` of the units of work waiting in the queue, taken (`_take`), oldest first."""
        taken: list[_Job] = []
        while len(taken) < most:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if self._take(job):
                taken.append(job)
        return taken

    def _take(self, job: "_Job") -> bool:
        """Whether the writer may run `job` in a batch: not if its caller took it back (`submit`)."""
        with self._taking:
            if job.taken_back:
                return False
            job.taken = True
            return True

    def _take_back(self, job: "_Job") -> bool:
        """Whether `job`'s caller may run it itself: not once the writer has taken it."""
        with self._taking:
            if job.taken:
                return False
            job.taken_back = True
        with self._counting:
            self.taken_back += 1
        return True

    def _answer(self, step, batch: list["_Job"] = ()) -> None:
        """`step(*batch)`; if it raises, every caller it left unanswered gets the error."""
        try:
            step(batch) if batch else step()
        except BaseException as exc:  # noqa: BLE001 - every waiting caller must be answered
            redo, self._redo = self._redo, None
            for job in [*batch, *(redo or ())]:
                if not job.done.is_set():
                    job.error = exc
                    job.done.set()

    def _send(self, batch: list["_Job"]) -> None:
        """Build `batch` while the batch before it (if any) commits, and send its statement and its
        COMMIT together without waiting for them: the next batch is built meanwhile (`_drain`),
        and this one is waited for and its callers answered just before the next goes (`_finish`).

        Why: a batch's postings are Python in the writer, its statement and COMMIT a wait for the
        server and the disk; one after the other, the writer idled through each, and callers
        came in only between batches. Now batch N+1 is built (on a connection of its own) while
        N's round trip and flush are out. Nothing of N+1 goes to the server before N's COMMIT is
        back (`_finish`, called before the first thing sent on N+1's connection): its statements
        see N committed, as one after another they did — its postings' checks (head, balances) and
        the business-date totals read N's rows — and N+1 never waits on a lock of N's. If N
        failed, its units of work and then N+1's run again one batch after another (`_commit`),
        as a batch whose memory was out of date does."""
        self._forget_if_contended()
        conn = self._connection()
        raw = conn.connection.driver_connection
        if raw.cursor_factory is not _HeldFirstCursor:  # not make_engine's: no hook to wait for N first
            conn.close()
            self._settle()
            self._commit(batch)
            return
        if self._in_flight is not None:
            raw._utfall_before_sending = self._finish  # N's COMMIT back before N+1 sends anything
            self.overlapped += 1
        try:
            transaction = conn.begin()
            conn.info.pop(_QUEUED, None)
            conn.info.pop(_BUFFER, None)
            failed = self._run_all(conn, transaction, batch, True, sync=False)
            if failed is None:
                failed = self._absorb(conn, transaction, batch)
            held = None
            buffer = conn.info.get(_BUFFER)
            if failed is None and _QUEUE not in conn.info and buffer is not None and buffer.first is not None:
                # only its postings' one statement to send: with BEGIN and COMMIT, in one write
                # straight through libpq (`_Held`), not psycopg's pipeline (a fifth of a batch's Python);
                # made ready (parameters gathered and dumped) while the server is still at the batch
                # before, so only the write to the socket is left once that is back
                held = _Held(raw, *buffer.statement(), conn.info)
                held.convert()
            _before_sending(raw)  # (if the batch sent nothing yet)
            if failed is None and self._redo is None:
                if held is not None:
                    del conn.info[_BUFFER]
                    wait = held.send_unawaited(commit=True)
                else:
                    send_buffered(conn)
                    queued = conn.info.pop(_QUEUE, None)
                    if queued is None:  # nothing queued: its statements were waited for; commit as usual
                        transaction.commit()
                        self._keep(conn)
                        self._done(batch)
                        return
                    pipeline, cursor = queued
                    try:
                        cursor.execute("COMMIT", prepare=False)  # sent with the statement, not waited for
                    except Exception:  # the statement's error, come in early (psycopg reads what has arrived)
                        try:
                            pipeline.__exit__(None, None, None)
                        except Exception:  # noqa: BLE001 - that same error
                            pass
                        if not _transaction_failed(conn):
                            raise  # not a statement's failure (a connection lost)
                        wait = None
                    else:
                        wait = functools.partial(pipeline.__exit__, None, None, None)
                if wait is not None:
                    self._in_flight = _InFlight(conn, transaction, wait, batch)
                    return
        except BaseException:
            _before_sending(raw)
            sync_queued(conn, discard=True)
            conn.close()
            raise
        # a unit of work raised, its statement failed (the memory was out of date), or the batch
        # before it failed: nothing of this one was committed
        sync_queued(conn, discard=True)
        conn.close()  # (rolls back)
        _forget_chain_memory(self.engine)  # it holds what the rollback undid
        self._settle()
        self.reruns += 1
        self._commit(batch, isolated=True)

    def _absorb(self, conn, transaction, batch: list["_Job"]):
        """Callers who come while the batch before is still out run into `batch` too (it is built,
        and cannot go before that one is back): as `_run_all`, None or what failed.

        Why: the callers a batch answers come back while the writer builds the next one or waits
        for the one out; those who came once it had taken its batch waited a whole batch more,
        in the queue, while the writer waited for the server (at 8 clients ~0.85 a batch, a
        quarter of one)."""
        in_flight = self._in_flight
        poll = getattr(in_flight.wait, "poll", None) if in_flight is not None else None
        if poll is None or self._redo is not None:
            return None
        if self._wake_r is None:
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            weakref.finalize(self, _close_fds, self._wake_r, self._wake_w)
        self._absorbing = True
        try:
            while self._in_flight is in_flight and len(batch) < self.max_batch:
                more = self._take_waiting(self.max_batch - len(batch))
                if more:
                    batch += more  # (in place: whatever answers `batch` answers them too)
                    failed = self._run_all(conn, transaction, more, True, sync=False)
                    if failed is not None:
                        return failed
                elif poll(None, self._wake_r):
                    return None
                else:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
        finally:
            self._absorbing = False
        return None

    def _await(self, in_flight: "_InFlight") -> None:
        """Wait for an in-flight batch's statement and COMMIT; answer its callers once it is durable,
        or with the error if whether it committed is unknown; if a statement failed (COMMIT skipped)
        the writer runs its units of work again (`_finish`)."""
        conn = in_flight.conn
        try:
            try:
                in_flight.wait()
            except Exception as exc:  # noqa: BLE001 - a statement failed, the rerun says whose fault
                if not _transaction_failed(conn):  # a connection lost: whether COMMIT ran is unknown
                    conn.invalidate()
                    for job in in_flight.jobs:
                        job.error = exc
                        job.done.set()
                    return
                in_flight.transaction.rollback()
                conn.close()
                _forget_chain_memory(self.engine)  # it holds what the rollback undid
                in_flight.failed = True
                self._contended()  # its statement refused: the memory was out of date, another process posted
                return
            in_flight.transaction.commit()  # the driver's transaction is over: this sends nothing
            self._keep(conn)
            self._done(in_flight.jobs)
        except BaseException as exc:  # noqa: BLE001 - every caller must be answered
            for job in in_flight.jobs:
                if not job.done.is_set():
                    job.error = exc
                    job.done.set()

    def _finish(self) -> None:
        """Wait for the in-flight batch and answer its callers (`_await`); if it failed, keep its units
        of work to run again (`_redo`) before anything built after it commits.

        The writer waits for it itself, just before the next batch goes out (or when nobody is
        waiting), by which time its results are mostly in: a thread of its own, waiting for it at
        once, had to take the GIL from the writer in the middle of a batch to do so — the writer
        waited ~1.3 ms a batch at 8 clients for a COMMIT the server had long returned."""
        in_flight = self._in_flight
        if in_flight is None:
            return
        self._in_flight = None
        self._await(in_flight)
        if in_flight.failed:
            self.reruns += 1
            self._redo = (self._redo or []) + in_flight.jobs

    def _settle(self) -> None:
        """The in-flight batch answered, and any that failed run again (not while a batch is built)."""
        self._finish()
        redo, self._redo = self._redo, None
        if redo:
            self._commit(redo)

    def _done(self, batch: list["_Job"]) -> None:
        with self._counting:  # (read by benchmarks in other threads)
            self.batches += 1
            self.committed += len(batch) - sum(job.error is not None for job in batch)
        for job in batch:
            job.done.set()

    # after the database refused a batch built from the chain memory (another process posted),
    # batches start from the database for this long (`_forget_if_contended`). Short: while the
    # other process goes on posting, the first batch after it is refused again (one in ~50 at 8
    # clients), and once it has stopped, a lone process reads the head for at most this long
    CONTENDED_SECONDS = 0.25

    def _contended(self) -> None:
        self._contended_until = time.monotonic() + self.CONTENDED_SECONDS

    def _forget_if_contended(self) -> None:
        """Forget the chain memory before a batch if another process posted lately.

        Why: with two processes posting, each one's memory is out of date by the time its next
        batch reaches the head lock (the other has posted meanwhile), so a batch built from it
        failed at the server, was rolled back, and ran again reading the head: every batch paid
        for two, and held the other process's batch waiting at the lock through both. Started from
        the database (its first posting reads the head and its accounts under the lock), it is
        built once. A lone process never gets here: its memory is never refused."""
        if self._lease_since is None and time.monotonic() < self._contended_until:
            _forget_chain_memory(self.engine)

    # how long a writer holds the lease before it lets another process's writer have it: long
    # enough that the hand-over (a round trip each way, the catch-up, the Merkle nodes read again)
    # is a small part of it — 2 processes at 8 / 32 clients made 617 / 1 187 postings/s with 10 ms,
    # 846 / 1 739 with 60 ms, 898 / 1 910 with 100 ms (ops/SCALING.md) — and short enough that the
    # other processes' callers, who wait for it while they post at once, wait tens of milliseconds
    LEASE_SECONDS = 0.05
    LEASE_IDLE_SECONDS = 0.002  # how long a writer holding it waits for callers before letting it go
    LEASE_WAIT = "2s"  # longest wait for the lease (a long batch holds it): then the writer goes without
    LEASE_BACKOFF_SECONDS = 30.0  # ... and tries it again only after this (its holder may be stuck)

    def _lease_if_contended(self) -> None:
        """While other processes are posting too, take the writer lease before the next batch.

        Why: with a writer per process, each process's batches took turns at the head lock one
        by one, and each found the chain moved by the other's: built from the database every
        time (`_forget_if_contended`), holding the head lock through one more round trip, with
        the other process idle at the lock meanwhile. Under the lease — a PostgreSQL advisory
        lock, one per database and schema, held by one process's writer at a time — a writer reads the head
        once when it takes it, then posts batch after batch from its memory for LEASE_SECONDS,
        while the other processes' callers gather into batches of their own; it then lets go
        (its batches committed) and waits its turn if it has more. One writer for the database
        at a time, handed over every few batches rather than every batch.

        The lease is never trusted for correctness: the database checks every posting's head and
        balances as before, and a process that posts without it (group commit off, or waiting
        longer than LEASE_WAIT) is caught there. A lone process never takes it: only once
        another process's posting has made a batch refused (`_contended`), and while other
        writers are found holding it. A writer that dies lets it go with its session."""
        now = time.monotonic()
        if self._lease_since is not None or now >= self._contended_until or now < self._lease_off_until:
            return
        self._settle()  # nothing of this writer in flight while it waits for another's
        try:
            conn = self._lease_conn
            if conn is None:
                cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
                conn = self._lease_conn = self.engine.dialect.connect(*cargs, **cparams)
                conn.autocommit = True
                conn.execute("SELECT set_config('lock_timeout', %s, false)", (self.LEASE_WAIT,))
            if not conn.execute(_LEASE % "pg_try_advisory_lock", (_WRITER_LEASE,)).fetchone()[0]:
                self._contended()  # another process's writer has it: they are still posting
                conn.execute(_LEASE % "pg_advisory_lock", (_WRITER_LEASE,))
        except Exception:  # noqa: BLE001 - waited too long, or the connection is gone: post without the lease
            self._drop_lease_connection()
            _forget_chain_memory(self.engine)
            self.leases_given_up += 1
            self._lease_off_until = time.monotonic() + self.LEASE_BACKOFF_SECONDS
            return
        self._lease_since = time.monotonic()
        self.leases += 1
        from ledger.journal import chain_memory  # the journal builds on this module
        try:
            chain_memory(self.engine).catch_up(conn)  # what the other writers posted since this one last did
        except Exception:  # noqa: BLE001 - the postings read what they need instead
            _forget_chain_memory(self.engine)

    def _release_lease(self) -> None:
        if self._lease_since is None:
            return
        self._lease_since = None
        try:
            held = self._lease_conn.execute(_LEASE % "pg_advisory_unlock", (_WRITER_LEASE,)).fetchone()[0]
        except Exception:  # noqa: BLE001 - closing the session lets it go too
            self._drop_lease_connection()
            return
        if not held:
            # the lock was taken in another server session than this one: a pooler in transaction
            # mode hands each statement a session of its own, so a session's lock is nobody's to
            # hold. Never again in this process (the others give it up after LEASE_WAIT)
            self.leases_given_up += 1
            self._lease_off_until = float("inf")
            self._drop_lease_connection()

    def _drop_lease_connection(self) -> None:
        conn, self._lease_conn = self._lease_conn, None
        close_quietly(conn)

    def _commit(self, batch: list["_Job"], *, isolated: bool = False) -> None:
        """Run `batch` in one transaction and commit it; if a run fails, roll it back, answer the unit
        of work that failed with its error and run the rest again, now `isolated`: each unit of work
        in a savepoint of its own, so that one refused is rolled back alone and the others go on.

        Why isolated after the first failure: without savepoints a run stops at its first refusal
        and the whole batch starts over, so a batch of n with k callers refused (an adversary's
        invalid mutations among valid ones) ran its valid units of work up to k + 1 times each —
        hundreds of runs for a batch of 64. A savepoint costs a round trip, only in a rerun."""
        self._forget_if_contended()
        pending = list(batch)
        may_rerun = not isolated  # postings may go without a savepoint; once a run failed, with one
        with self.engine.connect() as conn:
            while pending:
                transaction = conn.begin()
                conn.info.pop(_QUEUED, None)
                conn.info.pop(_BUFFER, None)
                try:
                    failed = self._run_all(conn, transaction, pending, may_rerun, isolated=not may_rerun)
                    if failed is None:
                        transaction.commit()  # durable now
                        break
                finally:
                    sync_queued(conn, discard=True)
                    if transaction.is_active:
                        transaction.rollback()
                # nothing of this run committed: answer the one that failed, run the others again
                self.reruns += 1
                job, error = failed
                if error is not None:  # (else not its fault: the chain memory was out of date)
                    job.error = error
                    job.done.set()
                # the rest run again: not the one that failed, nor those refused in their savepoints
                pending = [job for job in pending if not job.done.is_set()]
                may_rerun = False
                _forget_chain_memory(self.engine)  # it holds what the rollback undid
        self._done(batch)

    @staticmethod
    def _run_all(conn, transaction, jobs: list["_Job"], may_rerun: bool, *, sync: bool = True,
                 isolated: bool = False):
        """Run `jobs` in order in `transaction`: None if all ran; else (the job that failed, its
        error, or None if it failed only on an out-of-date chain memory). `sync=False`: what they
        buffered or queued is left for the caller to send. `isolated`: each in a savepoint of its
        own (`_run_isolated`)."""
        if isolated:
            return GroupCommit._run_isolated(conn, transaction, jobs)
        # the session joins the batch's transaction: its commit commits nothing, its rollback
        # (a unit of work that raised) rolls the whole transaction back
        session = Session(bind=conn, expire_on_commit=False, join_transaction_mode="rollback_only")
        try:
            for job in jobs:
                uow = _BatchedUnitOfWork(conn.engine)
                uow._factory = lambda: session  # one after another (`_BatchedUnitOfWork`)
                uow.may_rerun = uow.queue_postings = uow.buffer_postings = may_rerun
                try:
                    job.run_in(uow)
                except BaseException as exc:  # noqa: BLE001 - the caller's own error, for the caller
                    # with postings queued, the error may be an earlier one's, come out late: the
                    # run without queueing says whose it is
                    return job, None if uow.chain_memory_failed or conn.info.get(_QUEUED) else exc
                if not transaction.is_active:
                    return job, RuntimeError("a unit of work ended its group commit batch's transaction")
        finally:
            session.close()
        if not sync:
            return None
        try:
            sync_queued(conn)
        except Exception:  # noqa: BLE001 - a queued posting failed (the memory was out of date): whose, the rerun says
            return jobs[0], None
        return None

    @staticmethod
    def _run_isolated(conn, transaction, jobs: list["_Job"]):
        """`_run_all` with each unit of work in a savepoint of its own (a session joining the batch's
        transaction by one): one that raises is rolled back to it and answered with its error at
        once, and the next one runs; None once all ran; (the job, its error) if an error reached
        past its savepoint (the transaction failed, or the connection went)."""
        for job in jobs:
            uow = UnitOfWork(conn.engine)  # its commit releases its savepoint; the batch's COMMIT commits
            uow._factory = lambda: Session(bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint")
            try:
                job.run_in(uow)
            except Exception as exc:  # noqa: BLE001 - the caller's own error, for the caller
                if not transaction.is_active or _transaction_failed(conn):
                    return job, exc
                _forget_chain_memory(conn.engine)  # it may hold a posting its savepoint's rollback undid
                job.error = exc
                job.done.set()
            except BaseException as exc:  # noqa: BLE001 - for the caller, and the batch stops
                return job, exc
            if not transaction.is_active:
                return job, RuntimeError("a unit of work ended its group commit batch's transaction")
        return None

    def _commit_alone(self, job: "_Job") -> None:
        """A batch of one unit of work: its own transaction, as without group commit (a lone
        caller pays nothing for the group commit)."""
        self._forget_if_contended()
        runs = []

        def unit_of_work() -> UnitOfWork:
            if runs:  # run again: its chain memory was refused
                self._contended()
            runs.append(1)
            return UnitOfWork(self.engine)
        try:
            job.result = run_rerunnable(unit_of_work, job.fn)
        except BaseException as exc:  # noqa: BLE001 - the caller's own error, for the caller
            job.error = exc
        else:
            with self._counting:
                self.batches += 1
                self.committed += 1
        job.done.set()


# the writer lease's advisory lock (`GroupCommit._lease_if_contended`) is (this, the schema's
# hashtext): advisory locks are per database, and a database may hold several ledgers' schemas
_WRITER_LEASE = 0x7574_6601  # "utf" + 1
_LEASE = "SELECT %s(%%s, hashtext(current_schema()))"  # % the advisory lock function: try, take or let go

_QUEUE = "utfall_queued_statements"  # in a batch connection's info: its open pipeline and cursor
_QUEUED = "utfall_queued_in_run"  # set once a statement was queued in the batch's current run
_BUFFER = "utfall_buffered_postings"  # in a batch connection's info: postings not yet sent (`send_buffered`)
_USES = "utfall_batches_committed"  # in a kept batch connection's info: how many batches it committed


def close_quietly(conn) -> None:
    """Close a raw driver connection of the writer's own (the lease's, the writer seat's), if any; one
    already gone is closed anyway."""
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - already gone
            pass


def _give_back(conn) -> None:
    """A kept batch connection back to the pool, its count of batches forgotten with its checkout."""
    conn.info.pop(_USES, None)
    conn.close()


def buffered(conn, make):
    """The postings buffered on `conn` (a group commit batch's connection), made by `make()` if none."""
    buffer = conn.info.get(_BUFFER)
    if buffer is None:
        buffer = conn.info[_BUFFER] = make()
    conn.info[_QUEUED] = True  # an error from now on may be a buffered posting's: the rerun says whose
    return buffer


def send_buffered(conn) -> None:
    """Queue the postings buffered on `conn` as one statement (`queue_statement`): before anything
    else is sent on the connection, which may read or reference what they write, and before the
    batch's commit (`sync_queued`)."""
    buffer = conn.info.pop(_BUFFER, None)
    if buffer is not None:
        buffer.send(conn)


def has_pending(conn) -> bool:
    """Whether postings wait on `conn` (buffered, queued or held back, `ledger.journal.post`): what is
    sent next goes behind them, and whatever reads a result waits for them too."""
    return _BUFFER in conn.info or _QUEUE in conn.info


def sync_pending(conn) -> None:
    """Before a statement sent on `conn`'s driver connection directly (not through SQLAlchemy, whose
    statements do this themselves): the postings buffered or queued before it, sent and waited for."""
    if _BUFFER in conn.info or _QUEUE in conn.info:
        sync_queued(conn)


def queue_statement(conn, sql: str, params, *, alone: bool = False) -> None:
    """Send `sql` on `conn` (PostgreSQL) in a pipeline left open, without waiting for its
    result: in a group commit batch the next unit of work is built while the server runs this
    one's posting. Its error, if any, comes out when the pipeline is synced (`sync_queued`),
    which the batch does before its commit, and before any statement SQLAlchemy sends.

    `alone`: a unit of work's only queued statement, its COMMIT to follow (`commit_queued`): it is
    held back, not sent, and goes with its BEGIN and the COMMIT in ONE write (`_Held`)."""
    queued = conn.info.get(_QUEUE)
    if queued is None:
        _before_sending(conn.connection.driver_connection)  # (BEGIN may go first, unsynced)
    if alone and queued is None:
        raw = conn.connection.driver_connection
        if raw.cursor_factory is _HeldFirstCursor:  # (make_engine's connections)
            conn.info[_QUEUE] = raw._utfall_held = _Held(raw, sql, params, conn.info)
            return
    _pipeline(conn)[1].execute(sql, params)


def _pipeline(conn):
    """(pipeline, cursor) of the statements queued on `conn`, a pipeline opened if none is: a statement
    held back alone goes first in it (`_Held`)."""
    queued = conn.info.get(_QUEUE)
    if isinstance(queued, _Held):  # another statement after it: the held one goes first, in a pipeline
        # no longer held: were it left on the connection, the pipeline's cursor would send it first
        # (`_held_first_cursor`), and then once more as queued — the second failing, and the unit of
        # work rerun for nothing
        queued.drop()
        queue_statement(conn, queued.sql, queued.params)
        queued = conn.info[_QUEUE]
    if queued is None:
        raw = conn.connection.driver_connection
        pipeline = raw.pipeline()
        _begin_unsynced(raw, pipeline.__enter__())
        queued = conn.info[_QUEUE] = (pipeline, raw.cursor())
    conn.info[_QUEUED] = True
    return queued


def fetch_after_pending(conn, sql: str, params):
    """`sql` (in the driver's parameter style) sent behind the postings pending on `conn`, all waited
    for in ONE round trip, where syncing them and then sending it took two: its first row, or None.
    Raises the first pending statement's error, as `sync_queued` does (an earlier unit of work's, in
    a batch: the rerun says whose). Call it only where something is pending (`has_pending`)."""
    send_buffered(conn)
    if _QUEUE not in conn.info:  # (nothing was pending after all: what must precede anything sent, first)
        _before_sending(conn.connection.driver_connection)
    _pipeline(conn)
    cursor = conn.connection.driver_connection.cursor()  # its own: the queue's cursor holds their results
    cursor.execute(sql, params)
    sync_queued(conn)
    return cursor.fetchone()


def _begin_unsynced(raw, pipeline) -> None:
    """At a transaction's start, queue its BEGIN in `pipeline` without waiting for it.

    psycopg, starting a transaction in a pipeline, syncs right after its BEGIN (to learn the
    transaction status): a round trip of its own. Sent unsynced here, libpq reports the
    transaction ACTIVE, so psycopg adds no BEGIN of its own to the statements queued next, and
    BEGIN, the posting and COMMIT go in one round trip (`commit_queued`). If psycopg lacks the
    internals used, it keeps its own BEGIN (one round trip more, nothing else changes)."""
    import psycopg
    if raw.autocommit or raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return
    try:
        begin, communicate = raw._get_tx_start_command(), pipeline._communicate_gen
        exec_command = raw._exec_command
    except AttributeError:
        return
    raw.wait(exec_command(begin))
    raw.wait(communicate())


class _Held:
    """A statement queued alone (`queue_statement(alone=True)`), not yet sent: sent with the
    transaction's BEGIN (if it has not begun) and, at `commit_queued`, its COMMIT, all in one
    write to the socket and one wait, straight through libpq.

    Through psycopg's pipeline the same three statements cost five writes to the socket (BEGIN,
    the statement, COMMIT, the sync and a flush: each one a wake-up of the server's backend) and
    ~90 µs of Python more. The statement is prepared on the connection on its first use (named
    `utfall_<n>`, by its text and parameter types, as psycopg names its own), so the server
    plans it as it did through psycopg's prepared statements."""

    __slots__ = ("raw", "sql", "params", "info", "query")
    MOST_PREPARED = 64  # statements prepared per connection; past that they go unnamed

    def __init__(self, raw, sql: str, params, info: dict):
        self.raw, self.sql, self.params, self.info = raw, sql, params, info  # info: its connection's
        self.query = None

    def convert(self):
        """Its query and parameters as libpq takes them (no I/O): done once, ahead of sending if
        the caller has the time then."""
        if self.query is None:
            import psycopg
            from psycopg._queries import PostgresQuery
            query = PostgresQuery(psycopg.adapt.Transformer(self.raw))
            query.convert(self.sql, self.params)
            self.query = query
        return self.query

    def drop(self) -> None:
        """Never to be sent (its transaction is rolled back), nor to go before another statement."""
        if getattr(self.raw, "_utfall_held", None) is self:
            del self.raw._utfall_held
        if self.info.get(_QUEUE) is self:
            del self.info[_QUEUE]

    def send(self, *, commit: bool) -> None:
        """Send it ([BEGIN,] the statement[, COMMIT], sync) and wait for every result; raise
        the first failed one's error (a psycopg error, as the pipeline raised it). A failed
        statement skips what follows it: the transaction is then left failed, for a rollback."""
        self.send_unawaited(commit=commit)()

    def send_unawaited(self, *, commit: bool):
        """Send it as `send` does, without waiting: returns what waits for its results (and raises
        as `send` does). Nothing else may use the connection until that has returned: a group
        commit batch's statement and COMMIT are waited for only just before the next batch goes
        (`GroupCommit._finish`)."""
        import psycopg
        from psycopg import pq
        self.drop()
        raw = self.raw
        if getattr(raw, "_pipeline", None) is not None:  # psycopg's own pipeline is open: in it, in order
            cursor = psycopg.Cursor(raw)
            cursor.execute(self.sql, self.params)
            if commit:
                cursor.execute("COMMIT", prepare=False)
            return _nothing_to_wait_for
        pgconn = raw.pgconn
        with raw.lock:
            query = self.convert()
            prepared = _PREPARED.get(raw)
            if prepared is None:
                prepared = _PREPARED[raw] = {}
            key = (query.query, query.types)
            name = prepared.get(key)
            begin = pgconn.transaction_status == pq.TransactionStatus.IDLE
            pgconn.enter_pipeline_mode()
            try:
                if begin:
                    pgconn.send_query_params(raw._get_tx_start_command(), None)
                preparing = name is None and len(prepared) < self.MOST_PREPARED
                if preparing:
                    name = b"utfall_%d" % len(prepared)
                    pgconn.send_prepare(name, query.query, param_types=query.types)
                if name is None:
                    pgconn.send_query_params(query.query, query.params, param_formats=query.formats,
                                             param_types=query.types)
                else:
                    pgconn.send_query_prepared(name, query.params, param_formats=query.formats)
                if commit:
                    pgconn.send_query_params(b"COMMIT", None)
                pgconn.pipeline_sync()
                raw.wait(_flush(pgconn))
            except BaseException:
                if pgconn.pipeline_status != pq.PipelineStatus.OFF:
                    pgconn.exit_pipeline_mode()
                raise

        results: list = []
        arrived = []  # [True] once every result up to the sync is in `results`

        def wait() -> None:
            with raw.lock:
                try:
                    if not arrived:
                        raw.wait(_fetch(pgconn, results))
                finally:
                    if pgconn.pipeline_status != pq.PipelineStatus.OFF:
                        pgconn.exit_pipeline_mode()
            if preparing and results[int(begin)].status == pq.ExecStatus.COMMAND_OK:
                prepared[key] = name  # prepared: the server keeps it past a rollback, until the session ends
            _raise_failed(raw, results)

        def poll(timeout: float | None, wake: int | None = None) -> bool:
            """Whether every result is in, waiting at most `timeout` seconds (None: no limit) for
            them or until `wake` (a file descriptor) is readable (`wait` then only takes them)."""
            if not arrived:
                with raw.lock:
                    if _results_arrived(pgconn, results, timeout, wake):
                        arrived.append(True)
            return bool(arrived)
        wait.poll = poll
        return wait


def _nothing_to_wait_for() -> None:
    pass


def _raise_failed(raw, results) -> None:
    """The first failed statement's error among a pipeline's `results` (a psycopg error), if any."""
    from psycopg import errors, pq
    for result in results:
        if result.status in (pq.ExecStatus.FATAL_ERROR, pq.ExecStatus.PIPELINE_ABORTED):
            error = errors.error_from_result(result, encoding=raw.pgconn._encoding)
            if isinstance(error, errors.InvalidSqlStatementName):
                # deallocated behind psycopg's back (a DEALLOCATE ALL sent as SQL): prepare afresh
                _PREPARED.pop(raw, None)
            raise error


_PREPARED: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()  # per psycopg connection


def _before_sending(raw) -> None:
    """What must happen before anything is sent on `raw` (a psycopg connection): a group commit
    batch built while the one before it commits waits for that COMMIT first (`GroupCommit._send`)."""
    before = getattr(raw, "_utfall_before_sending", None)
    if before is not None:
        del raw._utfall_before_sending
        before()


@contextmanager
def reading_ahead(raw):
    """Statements on `raw` (a psycopg connection) that may go before what must precede anything
    sent on it (`_before_sending`): reads whose results the posting's own writes check (an
    account's balance read without the head lock). In a group commit batch built while the one
    before it commits, they need not wait for that COMMIT: a balance it moved is in the chain
    memory, not read; one read before it that it moved fails the write's check, and is rerun."""
    before = getattr(raw, "_utfall_before_sending", None)
    if before is None:
        yield
        return
    del raw._utfall_before_sending
    try:
        yield
    finally:
        if getattr(raw, "_utfall_before_sending", None) is None:
            raw._utfall_before_sending = before


def _forget_prepared_on_deallocate(raw) -> None:
    """Forget the statements `_Held` prepared on `raw` whenever psycopg deallocates all of them.

    psycopg sends DEALLOCATE ALL after any ROLLBACK (a unit of work that raised, a stale chain
    memory's rerun, a group commit batch run again) once it has prepared statements of its own on
    the connection; that drops `utfall_<n>` with its own. Remembered as prepared, the next held
    posting on that connection would execute a statement the server no longer has: it failed,
    the chain memory was forgotten and the unit of work rerun, on that connection every time —
    in the posting bench a lone client lost half its postings/s after the busy runs (ops/SCALING.md,
    session 8). (A DEALLOCATE ALL psycopg did not send is caught in `_Held.send` instead.)"""
    manager = getattr(raw, "_prepared", None)
    clear = getattr(manager, "clear", None)
    if clear is None:
        return

    connection = weakref.ref(raw)  # (the manager is the connection's: no cycle through it)

    def clear_and_forget() -> bool:
        deallocating = clear()
        if deallocating and connection() is not None:
            _PREPARED.pop(connection(), None)
        return deallocating
    manager.clear = clear_and_forget


def _send_held(conn) -> None:
    """Send the statement held on `conn` (a psycopg connection), if any, and wait for it; first
    whatever must go before anything is sent on it (`_before_sending`)."""
    _before_sending(conn)
    held = getattr(conn, "_utfall_held", None)
    if held is not None:
        held.send(commit=False)


def _held_first_cursor():
    """A cursor class that first sends the statement held on its connection (`_Held`): whatever
    the unit of work sends after its posting — through SQLAlchemy or the driver, a statement or a
    COPY — runs after it, in order, as in a pipeline. (Not a server-side cursor: none is opened in
    a unit of work that posts.)"""
    import psycopg

    def held_first(name):
        @functools.wraps(getattr(psycopg.Cursor, name))
        def call(cursor, *args, **kwargs):
            _send_held(cursor._conn)
            return getattr(psycopg.Cursor, name)(cursor, *args, **kwargs)  # looked up now: it may be wrapped
        return call

    return type("HeldFirstCursor", (psycopg.Cursor,), {
        "__slots__": (), **{name: held_first(name) for name in ("execute", "executemany", "stream", "copy")}})


_HeldFirstCursor = None  # the cursor class of make_engine's PostgreSQL connections (made with the first)


def _can_hold() -> bool:
    """Whether this psycopg has the private pieces `_Held` sends through (3.3 has). Without them a
    lone posting goes through psycopg's pipeline instead (`queue_statement`): one round trip as
    well, a few more writes to the socket; nothing else changes."""
    try:
        import psycopg
        from psycopg._queries import PostgresQuery  # noqa: F401
    except ImportError:
        return False
    return hasattr(psycopg.Connection, "_get_tx_start_command") and hasattr(psycopg.adapt, "Transformer")


def _flush(pgconn):
    """libpq: flush what was sent (a generator for psycopg's `Connection.wait`)."""
    from psycopg.waiting import Wait
    while pgconn.flush():
        yield Wait.RW


def _fetch(pgconn, results: list | None = None):
    """libpq: every result up to the pipeline's sync (a generator for psycopg's `Connection.wait`),
    after `results` (those already taken)."""
    from psycopg.waiting import Wait
    results = [] if results is None else results
    while not _take_results(pgconn, results):
        yield Wait.R
        pgconn.consume_input()
    return results


def _take_results(pgconn, results: list) -> bool:
    """libpq: the pipeline's results already read from the socket, into `results`; whether all up
    to its sync are in."""
    from psycopg import pq
    while not pgconn.is_busy():
        result = pgconn.get_result()
        if result is None:
            continue
        if result.status == pq.ExecStatus.PIPELINE_SYNC:
            return True
        results.append(result)
    return False


def _results_arrived(pgconn, results: list, timeout: float | None, wake: int | None = None) -> bool:
    """libpq: take the pipeline's results that have come (into `results`), waiting at most `timeout`
    seconds (None: no limit) for more or until `wake` is readable; whether all up to its sync are in."""
    import select
    fds = [pgconn.socket] if wake is None else [pgconn.socket, wake]
    while not _take_results(pgconn, results):
        ready = select.select(fds, [], [], timeout)[0]
        if pgconn.socket not in ready:
            return False
        pgconn.consume_input()
        timeout = 0.0
    return True


def _close_fds(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def commit_queued(conn) -> None:
    """COMMIT behind the statements queued on `conn`, then wait once for them all and leave
    pipeline mode: the transaction is durable, or the first failed statement's error is raised
    (and the transaction is left failed, for the unit of work's rollback)."""
    queued = conn.info.pop(_QUEUE)
    if isinstance(queued, _Held):
        queued.send(commit=True)
        return
    pipeline, cursor = queued
    try:
        cursor.execute("COMMIT", prepare=False)
    except BaseException:
        pipeline.__exit__(None, None, None)  # raises the queued statement's error if one came in early
        raise
    pipeline.__exit__(None, None, None)


def _transaction_failed(conn) -> bool:
    """Whether `conn`'s transaction is open and failed (a statement of it raised; nothing after it ran)."""
    import psycopg
    return conn.connection.driver_connection.info.transaction_status == psycopg.pq.TransactionStatus.INERROR


def sync_queued(conn, *, discard: bool = False) -> None:
    """Wait for the statements queued on `conn` and leave pipeline mode; raises the first one's
    error (unless `discard`: the transaction is being rolled back anyway). Postings still buffered
    are sent first (dropped, with `discard`)."""
    if discard:
        conn.info.pop(_BUFFER, None)
    else:
        send_buffered(conn)
    queued = conn.info.pop(_QUEUE, None)
    if queued is None:
        return
    if isinstance(queued, _Held):
        if discard:  # nothing was sent; for a rollback it never need be
            queued.drop()
        else:
            queued.send(commit=False)
        return
    try:
        queued[0].__exit__(None, None, None)
    except Exception:  # noqa: BLE001 - for a rollback, what failed no longer matters
        if not discard:
            raise


def _sync_before_statements(engine: Engine) -> None:
    """SQLAlchemy's statements on a batch connection wait for the postings queued before them
    (their results, a rowcount, must be the statement's own)."""
    if getattr(engine, "_utfall_syncs_queued", False):
        return

    @event.listens_for(engine, "before_cursor_execute")
    def _sync(conn, *_args):
        if _QUEUE in conn.info or _BUFFER in conn.info:
            sync_queued(conn)
    engine._utfall_syncs_queued = True


def _forget_chain_memory(engine: Engine, *, stale: bool = False) -> None:
    from ledger.journal import chain_memory  # the journal builds on this module
    memory = chain_memory(engine)
    if stale:
        memory.stale += 1
    memory.forget()


class _InFlight:
    """A group commit batch whose statement and COMMIT were sent, not yet waited for (`GroupCommit._send`);
    `wait()` waits for them, raising the first failed statement's error."""
    __slots__ = ("conn", "transaction", "wait", "jobs", "failed")

    def __init__(self, conn, transaction, wait, jobs: list["_Job"]):
        self.conn, self.transaction, self.wait, self.jobs = conn, transaction, wait, jobs
        self.failed = False  # a statement failed, COMMIT skipped: its units of work are to run again




class _Answered:
    """Set once a caller's unit of work is answered; what the caller waits on (`GroupCommit.submit`).

    A threading.Event's set and wait go through a Condition in Python (a lock allocated per wait, a
    loop over waiters per set): in a busy group commit, the thread answering the batches spent a
    quarter of its Python setting them. This is one lock, held until set: set releases it, wait
    acquires it."""

    __slots__ = ("_lock", "_set")

    def __init__(self):
        self._lock = threading.Lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        if not self._set:
            self._set = True
            try:
                self._lock.release()
            except RuntimeError:  # set by another thread at the same moment: released already
                pass

    def is_set(self) -> bool:
        return self._set

    def wake(self) -> None:
        """Wake the caller waiting on it without answering it (it is to write on, `GroupCommit._drain`)."""
        try:
            self._lock.release()
        except RuntimeError:  # released already: set, or woken before
            pass

    def wait(self, timeout: float) -> bool:
        # acquired while not set: woken, and the lock stays held for the next wait
        if not self._set and self._lock.acquire(timeout=timeout) and self._set:
            try:
                self._lock.release()  # (for anyone else waiting on it)
            except RuntimeError:  # set after a wake was taken: set released it
                pass
        return self._set


class _Job:
    __slots__ = ("fn", "result", "error", "done", "taken", "taken_back")

    def __init__(self, fn):
        self.fn = fn
        self.result = None
        self.error: BaseException | None = None
        self.done = _Answered()
        self.taken = False  # by the writer, into a batch
        self.taken_back = False  # by its caller, to run alone

    def run_in(self, uow: UnitOfWork) -> None:
        """Its unit of work run in `uow`, committed unless it did; its result kept."""
        with uow:
            self.result = self.fn(uow)
            if not uow._committed:
                uow.commit()


class Database:
    """Where use cases run: units of work for writes, sessions for reads.

    Bound to an Engine in the service; tests bind it to one Connection inside a transaction
    that is rolled back, and every unit of work then commits to a savepoint only.
    `group_commit=True` (PostgreSQL, bound to an Engine) sends `write` through a GroupCommit.
    """

    def __init__(self, bind, *, group_commit: bool = False, shared_writer: bool = False):
        self.bind = bind
        self.engine = bind if isinstance(bind, Engine) else bind.engine
        self._shared = not isinstance(bind, Engine)
        self._autocommit_engine: Engine | None = None  # statement_read_session's, made on first use
        use_group = group_commit and not self._shared and self.engine.dialect.name == "postgresql"
        self.group_commit: GroupCommit | None = GroupCommit(self.engine) if use_group else None
        # one writer shared by this machine's processes (ledger.shared_writer): only with a group commit
        self.shared_writer = None
        if shared_writer and self.group_commit is not None:
            from ledger.shared_writer import SharedWriter
            self.shared_writer = SharedWriter(self.engine, {"unit": self._run_named})

    def write_named(self, name: str, **args):
        """`write` of the registered unit of work `name` (`ledger.shared_writer.unit_of_work`) made from
        JSON `args`: sent to the machine's shared writer when another process holds it, so that it
        joins that writer's batches, else run here. Its result must be JSON."""
        from ledger.shared_writer import UNITS, NoWriter, WriterRefused
        if self.shared_writer is not None:
            try:
                return self.shared_writer.send("unit", {"name": name, "args": args})
            except NoWriter:
                pass
            except WriterRefused as err:
                raise RuntimeError(f"the shared writer refused {name}: {err.kind}: {err}") from None
        return self.write(UNITS[name](**args))

    def _run_named(self, body):
        from ledger.shared_writer import UNITS, NoWriter
        make = UNITS.get(body["name"]) if isinstance(body, dict) else None
        if make is None:
            raise NoWriter()  # not known in this process: the sender runs it itself
        return self.write(make(**body["args"]))

    def close(self) -> None:
        """Stop this Database's writing: the shared writer's seat given up, the group commit's connections
        back to the pool (the engine itself is its owner's to dispose)."""
        if self.shared_writer is not None:
            self.shared_writer.close()
        if self.group_commit is not None:
            self.group_commit.close()

    def write(self, fn):
        """Run `fn(uow)` as one unit of work and commit it (unless `fn` did); `fn`'s result.
        `fn` may run more than once (`run_rerunnable`); only its last run commits."""
        if self.group_commit is not None:
            return self.group_commit.submit(fn)
        if self._shared:  # a savepoint of a test's transaction: its postings keep savepoints of their own
            with self.uow() as uow:
                result = fn(uow)
                if not uow._committed:
                    uow.commit()
                return result
        return run_rerunnable(self.uow, fn)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _session(self, bind) -> Session:
        if self._shared:
            return Session(bind=self.bind, expire_on_commit=False, join_transaction_mode="create_savepoint")
        return Session(bind=bind, expire_on_commit=False)

    def uow(self) -> "UnitOfWork":
        u = UnitOfWork(self.engine)
        u._factory = lambda: self._session(self.engine)
        return u

    def read_session(self) -> Session:
        return self._session(read_engine(self.engine))

    def statement_read_session(self) -> Session:
        """A read session whose statements each see what is committed when they start, as in read_session.

        On PostgreSQL its connection is in autocommit: at READ COMMITTED, the default, each
        statement of a transaction takes its own snapshot anyway, so a transaction around reads
        adds only its BEGIN and ROLLBACK round trips, and giving the connection back then needs
        no round trip at all. Only for reads that need no snapshot shared between statements and
        no transaction (no server-side cursor): the service's GraphQL reads (api.graphql.base.RequestDB).
        Elsewhere, and in tests bound to one connection, the same as read_session."""
        if self._shared or self.engine.dialect.name != "postgresql":
            return self.read_session()
        engine = self._autocommit_engine
        if engine is None:
            engine = self._autocommit_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        session = Session(bind=engine, expire_on_commit=False)
        # closing it sends nothing to the server (psycopg's rollback of an idle connection is local)
        session.info["closes_locally"] = True
        return session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        s = self.read_session()
        try:
            yield s
        finally:
            s.rollback()
            s.close()
