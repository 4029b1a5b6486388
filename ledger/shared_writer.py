"""One writer for a database, shared by the processes of a machine (issue 19; ops/SCALING.md §3).

Why: each process's group commit (`ledger.db.GroupCommit`) batches the units of work of *its*
callers. With several worker processes (`uvicorn --workers N`) each has a writer of its own, and
the writers take turns at the chain head through the writer lease: at 8 clients split over two
processes a writer's batches hold only its own 4 callers, and every hand-over costs a catch-up.
Here one process holds the *writer seat* — a PostgreSQL advisory lock, one per database and
schema, held by a session of its own for as long as the process lives — and listens on a Unix
socket; the others send it their mutations as plain data (a GraphQL request with its bearer token,
or a named unit of work with its arguments) and it runs them through its own group commit,
beside its own callers', in the same batches. Reads stay in every process.

What it never changes: the database still decides. Running a mutation in the process that received
it is always correct (its own group commit, the lease and the database's head and balance checks),
so whenever there is no writer to send to — none found, its socket gone, another machine — the
process runs the mutation itself. Once a mutation has been sent, its outcome is the writer's: if
the writer dies before answering, the caller gets `WriterLost` (the work may or may not have
committed; a retry with the same idempotency key is safe). When a writer dies its session ends and
the seat is free; the next process to look (at its next mutation after a failed send, or every
`LOOK_EVERY` seconds) takes it.

Who may connect: the socket lives in a directory only this user can open (0700), on this machine;
its file name is published in the seat session's `application_name` with a hash of the host's name,
so a process on another machine never tries it. Messages are length-prefixed JSON (never pickle).
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import struct
import tempfile
import threading
import time
from typing import Callable

from sqlalchemy.engine import Engine

from ledger.db import close_quietly

# the seat's advisory lock is (this, the schema's hashtext), as the writer lease's (ledger.db)
_SEAT = 0x7574_6602  # "utf" + 2
_SEAT_SQL = "SELECT %s(%%s, hashtext(current_schema()))"
# the seat holder's published address: advisory locks with two int4 keys show as classid, objid
# and objsubid 2 in pg_locks (negative keys as their unsigned oid)
_FIND_SQL = """
SELECT a.application_name
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %s::oid AND l.objid = hashtext(current_schema())::oid
"""
_PREFIX = "utfall-writer"
_FRAME = struct.Struct("!I")
PUBLISH_TRIES = 25  # looks, 20 ms apart, for the address of a seat taken a moment ago
MAX_MESSAGE = 64 * 1024 * 1024  # a GraphQL body is capped far below (api.app.MAX_BODY)


class NoWriter(Exception):
    """No other process's writer to send to: run the mutation here."""


class WriterLost(Exception):
    """The mutation was sent, and the writer went away before answering: its outcome is unknown."""


class WriterRefused(Exception):
    """The writer ran the forwarded unit of work and it raised (`kind` is the exception's class name)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# named units of work a process may send to the writer (`Database.write_named`): name → a
# function of the JSON arguments returning `fn(uow)`, whose result must be JSON
UNITS: dict[str, Callable[..., Callable]] = {}


def unit_of_work(name: str):
    """Register `make(**args) -> fn(uow)` as the named unit of work `name`."""
    def register(make):
        UNITS[name] = make
        return make
    return register


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _socket_dir() -> str:
    path = os.path.join(tempfile.gettempdir(), f"utfall-{os.getuid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.stat(path).st_uid != os.getuid() or os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o700)  # raises if someone else owns it: then no seat is offered from here
    return path


def _remove_dead_sockets(directory: str) -> None:
    """Remove the sockets of writers whose process is gone (killed, or it never closed): a writer's file
    is named by its pid, and the directory is shared by every database this user serves here."""
    for name in os.listdir(directory):
        if not (name.startswith("w") and name.endswith(".sock") and "-" in name):
            continue
        pid = name[1:].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass
        except OSError:  # alive, someone else's
            pass


def _send(sock: socket.socket, message: object) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    sock.sendall(_FRAME.pack(len(data)) + data)


def _receive(sock: socket.socket) -> object | None:
    head = _read_exactly(sock, _FRAME.size)
    if head is None:
        return None
    (size,) = _FRAME.unpack(head)
    if size > MAX_MESSAGE:
        raise ValueError("message too large")
    data = _read_exactly(sock, size)
    if data is None:
        return None
    return json.loads(data)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    parts, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


class SharedWriter:
    """This process's part in sharing one writer: the seat's holder serving the others, or one of
    the others sending to it. `handlers` answer the messages the writer receives, by kind: each
    takes the message's body and returns a JSON result (run in a thread per sending connection,
    so a handler may block in the group commit like any caller)."""

    LOOK_EVERY = 2.0  # seconds between looks for a writer (or a free seat) while none is known, and
    # between checks, while this process serves, that its seat session is alive
    STEP_DOWN_DRAIN_SECONDS = 10.0
    CONNECT_TIMEOUT = 1.0

    def __init__(self, engine: Engine, handlers: dict[str, Callable[[object], object]] | None = None):
        self.engine = engine
        self.handlers: dict[str, Callable[[object], object]] = dict(handlers or {})
        self._lock = threading.Lock()
        self._seat_conn = None  # the session holding the seat (the writer) or looking it up
        self._listener: socket.socket | None = None
        self._path: str | None = None
        self._address: str | None = None  # the writer's socket path, while this process sends to it
        self._looked_at = float("-inf")
        self._local = threading.local()  # each sending thread's connection to the writer
        self._closed = False
        self._accepted: set[socket.socket] = set()  # connections this writer serves, closed with it
        self._busy = 0  # messages being run now
        self.forwarded = 0  # messages sent to the writer and answered (for benchmarks and tests)
        self.served = 0  # messages this process served as the writer
        self.stepped_down = 0  # times this process stopped serving, its seat session lost

    @property
    def is_writer(self) -> bool:
        return self._listener is not None

    def writer_address(self) -> str | None:
        """The socket of the writer to send to, or None to run here (this process is the writer,
        or none is known). Looks again at most every LOOK_EVERY seconds."""
        if self._listener is not None:
            return None
        address = self._address
        if address is not None:
            return address
        if time.monotonic() - self._looked_at < self.LOOK_EVERY:
            return None
        # a first look (or one after the writer was found gone) is waited for by every caller: they are
        # about to find where to send; a routine one is one caller's, the others run their work meanwhile
        if not self._lock.acquire(blocking=self._looked_at == float("-inf")):
            return None
        try:
            if self._address is None and self._listener is None \
                    and time.monotonic() - self._looked_at >= self.LOOK_EVERY:
                self._look()
            return self._address
        finally:
            self._lock.release()

    def _connection(self):
        conn = self._seat_conn
        if conn is None:
            cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
            conn = self._seat_conn = self.engine.dialect.connect(*cargs, **cparams)
            conn.autocommit = True
        return conn

    def _look(self) -> None:
        """Take the seat if it is free, else find its holder's address (under self._lock)."""
        try:
            self._look_now()
        finally:
            self._looked_at = time.monotonic()

    def _look_now(self) -> None:
        if self._closed:
            return
        try:
            conn = self._connection()
            for _ in range(PUBLISH_TRIES):
                if conn.execute(_SEAT_SQL % "pg_try_advisory_lock", (_SEAT,)).fetchone()[0]:
                    try:
                        self._serve(conn)
                    except Exception:
                        conn.execute(_SEAT_SQL % "pg_advisory_unlock", (_SEAT,))
                        raise
                    return
                row = conn.execute(_FIND_SQL, (_SEAT,)).fetchone()
                found = self._address_in((row[0] or "") if row else "")
                if found is not False:
                    self._address = found  # a path, or None for a holder on another machine
                    return
                # a moment between two holders: one has just taken the seat and publishes its address once
                # it listens, or one has just let it go (its session ending, its socket gone) — look again
                time.sleep(0.02)
        except Exception:  # noqa: BLE001 - no database session for the seat: run everything here
            self._drop_seat_connection()

    @staticmethod
    def _address_in(name: str) -> str | None | bool:
        """The socket a holder's published name gives: its path; None if it is another machine's, or
        not one to use; False if there is none yet (or no more) to be found."""
        parts = name.split(" ")
        if len(parts) != 3 or parts[0] != _PREFIX:
            return False  # (not published yet, or the seat was let go between the two statements)
        if parts[1] != _host() or os.sep in parts[2]:
            return None
        path = os.path.join(_socket_dir(), parts[2])
        return path if os.path.exists(path) else False

    def _serve(self, conn) -> None:
        _remove_dead_sockets(_socket_dir())
        path = os.path.join(_socket_dir(), f"w{os.getpid()}-{secrets.token_hex(3)}.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
            os.chmod(path, 0o600)
            listener.listen(128)
            # published only once it listens: a process that finds it can connect
            # (the file's name only: application_name holds 63 bytes, and this user's processes on this
            # machine share the socket directory)
            conn.execute("SELECT set_config('application_name', %s, false)",
                         (f"{_PREFIX} {_host()} {os.path.basename(path)}",))
        except Exception:
            listener.close()
            if os.path.exists(path):
                os.unlink(path)
            raise
        self._listener, self._path = listener, path
        threading.Thread(target=self._accept, args=(listener,), name="utfall-writer-seat", daemon=True).start()
        threading.Thread(target=self._keep_seat, args=(conn,), name="utfall-writer-seat-check", daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                if self._closed:
                    sock.close()
                    return
                self._accepted.add(sock)
            threading.Thread(target=self._answer, args=(sock,), name="utfall-forwarded", daemon=True).start()

    def _answer(self, sock: socket.socket) -> None:
        with sock:
            try:
                self._answer_each(sock)
            finally:
                with self._lock:
                    self._accepted.discard(sock)

    def _answer_each(self, sock: socket.socket) -> None:
        while True:
            try:
                message = _receive(sock)
            except (OSError, ValueError):
                return
            if message is None:
                return
            with self._lock:
                self._busy += 1
            try:
                handler = self.handlers.get(message.get("kind")) if isinstance(message, dict) else None
                if handler is None:
                    reply = {"unknown": True}
                else:
                    reply = {"result": handler(message.get("body"))}
            except NoWriter:  # the handler cannot run it here (not ready, an unknown unit of work)
                reply = {"unknown": True}
            except Exception as exc:  # noqa: BLE001 - the sender's error, answered to it
                reply = {"error": type(exc).__name__, "message": str(exc)}
            with self._lock:
                self.served += 1
            try:
                _send(sock, reply)
            except OSError:
                return
            finally:
                with self._lock:
                    self._busy -= 1

    def send(self, kind: str, body: object) -> object:
        """Have the writer run the message; its result. Raises NoWriter when there is none to send
        to (nothing was sent: run it here), WriterLost when it went away after the message was
        sent, WriterRefused when its handler raised."""
        for _ in range(2):  # a writer found gone before anything was sent: look again at once, once
            address = self.writer_address()
            if address is None:
                raise NoWriter()
            sock = self._connected(address)
            if sock is None:
                continue
            try:
                _send(sock, {"kind": kind, "body": body})
            except OSError:
                self._drop_local()
                self._writer_gone(address)
                continue
            break
        else:
            raise NoWriter()
        try:
            reply = _receive(sock)
        except (OSError, ValueError):
            reply = None
        if reply is None:
            self._drop_local()
            self._writer_gone(address)
            raise WriterLost("the writer process went away before answering")
        if reply.get("unknown"):
            raise NoWriter()
        if "error" in reply:
            raise WriterRefused(reply["error"], reply.get("message", ""))
        with self._lock:
            self.forwarded += 1
        return reply.get("result")

    def _connected(self, address: str) -> socket.socket | None:
        """This thread's connection to the writer at `address`, made if need be; None if the writer is gone."""
        sock = getattr(self._local, "sock", None)
        if sock is not None and getattr(self._local, "address", None) == address:
            try:
                # a kept connection the writer has closed reads as its end (nothing is ever due to arrive
                # before a message is sent): found before sending, so nothing is sent into it
                closed = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
            except BlockingIOError:
                closed = False
            except OSError:
                closed = True
            if not closed:
                return sock
        self._drop_local()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.CONNECT_TIMEOUT)
            sock.connect(address)
            sock.settimeout(None)
        except OSError:
            sock.close()
            self._writer_gone(address)
            return None
        self._local.sock, self._local.address = sock, address
        return sock

    def _drop_local(self) -> None:
        sock, self._local.sock = getattr(self._local, "sock", None), None
        if sock is not None:
            sock.close()

    def _writer_gone(self, address: str) -> None:
        with self._lock:
            if self._address == address:
                self._address = None
                self._looked_at = float("-inf")  # look again at once: the seat may be free

    def _drop_seat_connection(self) -> None:
        conn, self._seat_conn = self._seat_conn, None
        close_quietly(conn)

    def close(self, drain_seconds: float = 10.0) -> None:
        """Give the seat up: take no more messages, answer the ones being run (for up to `drain_seconds`;
        call it off the event loop its handlers use), then close every connection of it."""
        with self._lock:
            self._closed = True
        self._stop_serving(drain_seconds)
        with self._lock:
            self._drop_seat_connection()  # its session's end frees the seat
        self._drop_local()

    def _stop_serving(self, drain_seconds: float) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            if listener is not None:
                try:
                    listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
                except OSError:
                    pass
                listener.close()
                if self._path and os.path.exists(self._path):
                    os.unlink(self._path)
            for sock in self._accepted:
                try:
                    # no further message is read: a sender waiting for an answer still gets it, then finds
                    # the connection closed before it sends again, and runs its next one itself
                    sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
            self._address = None
        deadline = time.monotonic() + drain_seconds
        while self._busy and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._lock:
            for sock in self._accepted:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # one still running after the drain: its sender hears WriterLost
                except OSError:
                    pass

    def _keep_seat(self, conn) -> None:
        """While this process serves, check every LOOK_EVERY seconds that its seat session is alive. A
        session the database ended (a restart, a failover, a terminated backend) has let the seat go, and
        another process may hold it now: this one stops serving (answering what it is running first) and
        looks again at its next mutation, as a process that has just started."""
        while True:
            time.sleep(self.LOOK_EVERY)
            with self._lock:
                if self._closed or self._seat_conn is not conn or self._listener is None:
                    return
                try:
                    conn.execute("SELECT 1")
                    continue
                except Exception:  # noqa: BLE001 - the session is gone, and the seat with it
                    pass
            self._stop_serving(self.STEP_DOWN_DRAIN_SECONDS)
            with self._lock:
                self._drop_seat_connection()
                self._looked_at = float("-inf")
                self.stepped_down += 1
            return
