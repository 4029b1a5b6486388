"""Engine, sessions and the unit of work.

SQLite is the embedded default; PostgreSQL is chosen with DATABASE_URL
(`postgresql+psycopg://...`). A unit of work wraps exactly one use case: it opens a session,
the use case does its work, and only the unit of work commits. Anything that escapes rolls
everything back, so a use case is never half-written.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from collections.abc import Iterator

from sqlalchemy import create_engine, event, exc
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
    engine = create_engine(url, **kwargs)
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


class UnitOfWork:
    """One use case, one database transaction. Use as a context manager; call `commit()`."""

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
        try:
            if not self._committed:
                self.session.rollback()
        finally:
            self.session.close()
        if exc is not None and not isinstance(exc, DomainError):
            # a uniqueness race lost, or a sum past 64 bits: the domain error it means (ledger.integrity)
            from ledger.integrity import domain_error
            mapped = domain_error(exc)
            if mapped is not None:
                raise mapped from exc

    def commit(self) -> None:
        assert self.session is not None
        self.session.commit()
        self._committed = True

    def flush(self) -> None:
        assert self.session is not None
        self.session.flush()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name


class Database:
    """Where use cases run: units of work for writes, sessions for reads.

    Bound to an Engine in the service; tests bind it to one Connection inside a transaction
    that is rolled back, and every unit of work then commits to a savepoint only.
    """

    def __init__(self, bind):
        self.bind = bind
        self.engine = bind if isinstance(bind, Engine) else bind.engine
        self._shared = not isinstance(bind, Engine)

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

    @contextmanager
    def reading(self) -> Iterator[Session]:
        s = self.read_session()
        try:
            yield s
        finally:
            s.rollback()
            s.close()
