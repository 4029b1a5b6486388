"""PostgreSQL reads awaited on the event loop: a request's hot reads without a thread hop.

A read in a worker thread (`RequestDB`) costs the process more than the read itself on
PostgreSQL: the hand-over to a worker, then the GIL handed back and forth between that worker
and the event loop around each of its round trips (~75 context switches a request for the
contract query's five statements). Here the same synchronous read code runs on the event loop
in a greenlet (SQLAlchemy's `AsyncSession.run_sync`) over psycopg's asynchronous connection:
where it waits for the server, the loop serves other requests; nothing blocks it.

Only for reads a resolver marks `inline` (a few indexed SELECTs with bounded results, in
autocommit as the statement read session is: `Database.statement_read_session`); the rest,
and every write, stay in worker threads. Made by the app's lifespan, on the loop that serves,
and disposed with it; without a lifespan (a test client that never starts one) reads stay in
threads. `UTFALL_READS_ON_LOOP=0` (`Settings.reads_on_loop`) keeps them there too.
"""
from __future__ import annotations

import json
import logging
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from ledger.db import Database, _ping_when_idle

log = logging.getLogger("utfall")


class LoopReads:
    """The event loop's own pool of autocommit connections to the service's PostgreSQL database."""

    def __init__(self, db: Database, size: int):
        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
        # as many connections as requests may hold database slots (DbGate): a request never waits
        # for one that another request holds; the same idle limits as the service's engine (make_engine)
        self.engine = create_async_engine(db.engine.url, pool_size=size, max_overflow=0, pool_timeout=10,
                                          pool_recycle=1800, pool_use_lifo=True, isolation_level="AUTOCOMMIT")
        _ping_when_idle(self.engine.sync_engine)  # a connection idle for a while is pinged at checkout, as there
        _forget_together(db.engine, self.engine.sync_engine)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def for_database(cls, db: Database, size: int, *, enabled: bool = True) -> "LoopReads | None":
        """The loop's reads for `db`, or None where reads stay in threads (SQLite, a test's shared
        connection, not `enabled`: UTFALL_READS_ON_LOOP=0)."""
        if not enabled or db.dialect != "postgresql" or db._shared:
            return None
        try:
            import greenlet  # noqa: F401 - what SQLAlchemy runs the synchronous read code in (sqlalchemy[asyncio])
        except ImportError:
            log.warning(json.dumps({"event": "reads_in_threads", "reason": "greenlet is not installed"}))
            return None
        return cls(db, size)

    def session(self) -> Any:
        """A new AsyncSession; its reads run through `run_sync` (RequestDB._on_event_loop)."""
        return self._sessions()

    async def dispose(self) -> None:
        await self.engine.dispose()


def _forget_together(threads: Engine, loop: Engine) -> None:
    """A connection found dropped by the database in either pool has the other pool's idle connections
    forgotten too (a restart, or an administrator ending the backends, drops them all): a request that
    met it runs again (api.app) on fresh connections in both, not on the other pool's dead one."""
    engines = (weakref.ref(threads), weakref.ref(loop))
    for this, other in ((engines[0], engines[1]), (engines[1], engines[0])):
        def forget_other(context, other=other) -> None:
            engine = other()
            if context.is_disconnect and engine is not None:
                engine.dispose(close=False)  # its checked-in connections let go; fresh ones made as needed
        event.listen(this(), "handle_error", forget_other)
