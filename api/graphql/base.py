"""Shared GraphQL pieces: scalars, Money, UserError, global IDs, connections, the context."""
from __future__ import annotations

import asyncio
import base64
import bisect
import dataclasses
import enum
import functools
import json
import re
from operator import attrgetter, itemgetter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import strawberry
from graphql import GraphQLError
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from strawberry.types import Info

from ledger import cursor_reads
from ledger import money as m
from ledger.access import Actor
from ledger.audit import IdempotencyRace, run_mutation
from ledger.db import Database, UnitOfWork
from ledger.errors import ERROR_CODES, DomainError, MultipleErrors, ValidationError

if TYPE_CHECKING:
    from api.loop_reads import LoopReads

T = TypeVar("T")
MAX_PAGE = 100
DEFAULT_PAGE = 20  # small enough that a page of pages (funds → contracts) stays within the cost limit
MAX_NODES = 100  # ids in one nodes(ids:) call
MAX_LIST = 1000  # rows of a plain list (obligations, ledgerAccounts) without `first`
LAST = strawberry.argument(description=f"The last this many (up to {MAX_PAGE}) before `before`, or at the end: "
                                      "pages backward. Not together with `first`.")
BEFORE = strawberry.argument(
    description="Only items before this cursor: a page's `startCursor` for the page before it.")
LIST_FIRST = strawberry.argument(description=f"At most this many (up to {MAX_PAGE}); without it, at most {MAX_LIST}.")
LIST_AFTER = strawberry.argument(description="Only those after this one: the `id` of the last one you have.")


# --- scalars --------------------------------------------------------------------------------

def _serialize_decimal(value: Decimal) -> str:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError("not a finite Decimal")
    text = format(value, "f")
    return "0" + text[2:] if text.startswith("-0") and Decimal(text) == 0 else text


class ScalarError(ValueError):
    """A value that is not of a scalar's form: the caller's mistake, answered as a validation error."""


_KEY = re.compile(r"[0-9]{1,18}", re.ASCII)  # a row's key in an ID or cursor: ASCII digits, what a BIGINT holds
_DECIMAL = re.compile(r"-?[0-9]{1,18}(\.[0-9]{1,12})?", re.ASCII)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
                       r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)?", re.ASCII)


def _parse_decimal(value: Any) -> Decimal:
    # strings only: JSON numbers lose precision in clients, and NaN/Infinity are not amounts;
    # only ASCII digits: "١٢٣" and "１２３" are not numbers here, nor "1,5", "1e3" or " 1"
    if not isinstance(value, str):
        raise ScalarError("Decimal values are strings such as \"1250.00\"")
    if not _DECIMAL.fullmatch(value):
        raise ScalarError(f"{value[:40]!r} is not a plain decimal number such as \"1250.00\"")
    return Decimal(value)


def _parse_date(value: Any) -> date:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ScalarError(f"{str(value)[:40]!r} is not a date such as \"2026-01-31\"")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ScalarError(f"{value!r} is not a date of the calendar") from None


def _parse_datetime(value: Any) -> datetime:
    if not isinstance(value, str) or not _DATETIME.fullmatch(value):
        raise ScalarError(f"{str(value)[:40]!r} is not a date and time such as \"2026-01-31T12:00:00+01:00\"")
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            parsed.astimezone(timezone.utc)  # 9999-12-31T23:59:59-14:00 is past the last UTC instant
    except (ValueError, OverflowError):
        raise ScalarError(f"{value!r} is not a date and time within years 1 to 9999 UTC") from None
    return parsed


DecimalScalar = strawberry.scalar(
    name="Decimal", description="A decimal number as a string, e.g. \"1250.00\"; never a float.",
    serialize=_serialize_decimal, parse_value=_parse_decimal,
)
DateScalar = strawberry.scalar(
    name="Date", description="A calendar date, ISO 8601: \"2026-01-31\".",
    serialize=lambda d: d.isoformat(), parse_value=_parse_date,
)
DateTimeScalar = strawberry.scalar(
    name="DateTime", description="A date and time, ISO 8601 with an offset: \"2026-01-31T12:00:00+01:00\".",
    serialize=lambda d: d.isoformat(), parse_value=_parse_datetime,
)

SCALAR_MAP = {Decimal: DecimalScalar, date: DateScalar, datetime: DateTimeScalar}


# --- shared types ---------------------------------------------------------------------------

def _currencies() -> dict[str, str]:
    """Every code ledger.money accepts, with its name: the enum is exactly what input validation allows."""
    import moneyed
    names = {}
    for code in sorted(moneyed.CURRENCIES):
        try:
            names[code] = m.currency(code).name
        except DomainError:
            continue
    return names


CURRENCY_NAMES = _currencies()
Currency = strawberry.enum(
    enum.Enum("Currency", {code: strawberry.enum_value(code, description=f"{name} (ISO 4217 {code}).")
                           for code, name in CURRENCY_NAMES.items()}),
    name="Currency",
    description="An ISO 4217 currency code, e.g. SEK (Swedish krona). A MoneyInput's currency must be one of these "
                "(INVALID_CURRENCY otherwise).",
)


@strawberry.type
class Money:
    amount: Decimal
    currency: Currency

    @classmethod
    def of(cls, value: m.Money) -> "Money":
        return cls(amount=value.amount, currency=Currency(value.currency.code))

    @property
    def code(self) -> str:
        """The currency code as a plain string, for building more Money from this one."""
        return self.currency.value

    @classmethod
    def minor(cls, units: int, currency: "str | Currency") -> "Money":
        return cls.of(m.from_minor(units, currency.value if isinstance(currency, enum.Enum) else currency))


@strawberry.input
class MoneyInput:
    amount: Decimal
    currency: str

    def to_money(self, field: str = "amount") -> m.Money:
        return m.money(self.amount, self.currency, field=field)


UserErrorCode = strawberry.enum(
    enum.Enum("UserErrorCode", {c: c for c in ERROR_CODES}), name="UserErrorCode",
    description="Every stable code a userError (or a GraphQL error's extensions.code) can carry.",
)


@strawberry.type
class UserError:
    field: list[str] | None = strawberry.field(description="The path to the input field at fault, if any.")
    message: str
    code: UserErrorCode = strawberry.field(description="A stable code a client can act on; the message may change.")


def user_errors(err: DomainError) -> list[UserError]:
    errs = err.errors if isinstance(err, MultipleErrors) else [err]
    return [UserError(field=e.field, message=e.message, code=UserErrorCode(e.code)) for e in errs]


# --- global IDs -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=65536)  # a page of a hundred items asks for a hundred, again on every request
def to_global_id(type_name: str, pk: int | str) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


def from_global_id(gid: str, expected: str | Sequence[str] | None = None, *, field: str = "id") -> int:
    """The integer key inside a global ID of the expected type, or INVALID_ID."""
    try:
        raw = base64.b64decode(str(gid).encode("ascii"), validate=True).decode("ascii")
        type_name, _, pk = raw.partition(":")
        if not _KEY.fullmatch(pk):
            raise ValueError
        key = int(pk)
    except Exception:
        raise ValidationError(f"{str(gid)[:60]!r} is not a valid ID", code="INVALID_ID", field=[field]) from None
    allowed = [expected] if isinstance(expected, str) else expected
    if allowed and type_name not in allowed:
        raise ValidationError(f"{gid!r} is not the ID of a {' or '.join(allowed)}", code="INVALID_ID", field=[field])
    return key


def split_global_id(gid: str) -> tuple[str, int] | None:
    try:
        raw = base64.b64decode(str(gid).encode("ascii"), validate=True).decode("ascii")
        type_name, _, pk = raw.partition(":")
        if not _KEY.fullmatch(pk):
            return None
        return type_name, int(pk)
    except Exception:
        return None


@strawberry.interface(description="An object with a global ID.")
class Node:
    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id(type(self).__name__, self.pk))

    pk: strawberry.Private[int]


# --- connections (keyset cursors on the primary key) -----------------------------------------

@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


def _edges(self: "Connection"):  # the type is the field's: list[Edge[T]]
    # made only when a query asks for them: most ask for nodes, and an edge and a cursor per item cost
    # as much as the rest of a hundred-item page's completion
    return [Edge(cursor=self.encode(k), node=n) for k, n in zip(self.keys, self.node_list)]


@strawberry.type(description="A page of items: `first`/`after` pages forward (pass `endCursor` as `after` for the "
                             "next page), `last`/`before` backward (pass `startCursor` as `before`). A page holds 20 "
                             "items unless you ask for up to 100.")
class Connection(Generic[T]):
    edges: list[Edge[T]] = strawberry.field(resolver=_edges)
    page_info: PageInfo
    node_list: strawberry.Private[list[Any]]
    keys: strawberry.Private[list[Any]]  # each node's key, made a cursor by `encode`
    encode: strawberry.Private[Callable[[Any], str]] = None  # type: ignore[assignment]
    counter: strawberry.Private[Callable[[], Awaitable[int]] | None] = None

    @strawberry.field
    def nodes(self) -> list[T]:
        return self.node_list

    @strawberry.field(description="How many items there are in all pages together, with the same filters.")
    async def total_count(self) -> int:
        return 0 if self.counter is None else await self.counter()

    def mapped(self, to_node: Callable[[Any], Any]) -> "Connection":
        """The same page with each node made into another: rows into their GraphQL type, given what a row lacks."""
        return Connection(page_info=self.page_info, node_list=[to_node(n) for n in self.node_list], keys=self.keys,
                          encode=self.encode, counter=self.counter)


def encode_cursor(key: int) -> str:
    return base64.b64encode(f"k:{key}".encode()).decode()


def not_a_cursor(cursor: str) -> GraphQLError:
    return GraphQLError(f"{cursor[:60]!r} is not a cursor from this API", extensions={"code": "INVALID_CURSOR"})


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        raw = base64.b64decode(cursor.encode("ascii"), validate=True).decode("ascii")
        if not raw.startswith("k:") or not _KEY.fullmatch(raw[2:]):
            raise ValueError
        return int(raw[2:])
    except Exception:
        raise not_a_cursor(cursor) from None


def page_size(first: int | None, name: str = "first") -> int:
    if first is None:
        return DEFAULT_PAGE
    if first < 0 or first > MAX_PAGE:
        raise GraphQLError(f"{name} must be between 0 and {MAX_PAGE}", extensions={"code": "PAGE_SIZE"})
    return first


@dataclass(frozen=True)
class Window:
    """Which page of a connection is asked for: Relay's first/after or last/before, as keys."""
    size: int
    after: int | None
    before: int | None
    backward: bool  # last/before: the page ends at `before`, counted back from there

    @classmethod
    def of(cls, first: int | None, after: str | None, last: int | None = None, before: str | None = None,
           decode: Callable[[str | None], Any] = decode_cursor) -> "Window":
        if first is not None and last is not None:
            raise GraphQLError("ask for first or last, not both", extensions={"code": "PAGE_SIZE"})
        backward = last is not None or (before is not None and first is None)
        size = page_size(last, "last") if backward else page_size(first)
        return cls(size, decode(after), decode(before), backward)

    def bounded(self, stmt: Any, key: Any) -> Any:
        if self.after is not None:
            stmt = stmt.where(key > self.after)
        if self.before is not None:
            stmt = stmt.where(key < self.before)
        return stmt


def _exists(session: Session, stmt: Any, key: Any) -> bool:
    return session.execute(stmt.with_only_columns(key).order_by(None).limit(1)).first() is not None


def edges_of(rows: Sequence[Any], key: Callable[[Any], Any], to_node: Callable[[Any], T], window: Window,
             beyond_start: bool, beyond_end: bool,
             encode: Callable[[Any], str] = encode_cursor, counter: Callable[[], Awaitable[int]] | None = None
             ) -> "Connection[T]":
    """A page from up to size+1 rows in the window's direction (the extra row means 'more').

    beyond_start/beyond_end: whether items exist on the far side of the cursor the page starts from.
    Only the first and last cursors are made here (pageInfo); an edge's when a query asks for edges."""
    more = len(rows) > window.size
    rows = list(rows[:window.size])
    if window.backward:
        rows.reverse()
    keys = [key(r) for r in rows]
    return Connection(page_info=PageInfo(
        has_next_page=beyond_end if window.backward else more,
        has_previous_page=more if window.backward else beyond_start,
        start_cursor=encode(keys[0]) if keys else None, end_cursor=encode(keys[-1]) if keys else None,
    ), node_list=[to_node(r) for r in rows], keys=keys, encode=encode, counter=counter)


async def keyset_page(info: Info, build: Callable[[Session], Any], key: Any, to_node: Callable[[Any], T],
                      window: Window) -> "Connection[T]":
    """A page of `build(session)` (a SELECT of one model, filtered, unordered) in key order.

    One SELECT for the page (and one EXISTS when a cursor is given, for the page info); the
    total is one COUNT, run only when a client asks for totalCount."""
    db = ctx(info).db

    def q(s: Session) -> Connection[T]:
        stmt = build(s)
        page = window.bounded(stmt, key).order_by(key.desc() if window.backward else key).limit(window.size + 1)
        rows = s.execute(page).scalars().all()
        start_beyond = (window.after is not None and not window.backward
                        and _exists(s, stmt.where(key <= window.after), key))
        end_beyond = window.before is not None and window.backward and _exists(s, stmt.where(key >= window.before), key)
        return edges_of(rows, lambda r: getattr(r, key.key), to_node, window, start_beyond, end_beyond,
                        counter=lambda: db.read(lambda s2: s2.execute(
                            select(func.count()).select_from(build(s2).order_by(None).subquery())).scalar_one()))
    return await db.read(q)


# --- connections over computed lists (sums, forecasts: no row key to page on) -----------------

_SORT_KEY_PARTS = 6  # the most parts a computed list's sort key has


def encode_key_cursor(key: tuple) -> str:
    return base64.b64encode(("s:" + json.dumps(list(key), separators=(",", ":"))).encode()).decode()


def decode_key_cursor(cursor: str | None) -> tuple | None:
    """The sort key inside a cursor of a computed list: its parts are whole numbers and short strings."""
    if cursor is None:
        return None
    try:
        raw = base64.b64decode(cursor.encode("ascii"), validate=True).decode("ascii")
        if not raw.startswith("s:"):
            raise ValueError
        parts = json.loads(raw[2:])
        if (not isinstance(parts, list) or not 0 < len(parts) <= _SORT_KEY_PARTS
                or not all((isinstance(p, int) and not isinstance(p, bool) and abs(p) < 10 ** 18)
                           or (isinstance(p, str) and len(p) <= 40) for p in parts)):
            raise ValueError
        return tuple(parts)
    except Exception:
        raise not_a_cursor(cursor) from None


def list_page(kind: str, items: Sequence[Any], key: Callable[[Any], tuple], to_node: Callable[[Any], T],
              window: Window) -> "Connection[T]":
    """A page of a list computed in full (obligations are sums of journal rows, a forecast is projected).

    The cursor is the list's `kind` and the item's sort key, not its position, so a cursor stays
    valid when items before it appear or disappear between pages; a cursor of another list is refused."""
    def tagged(x: Any) -> tuple:
        return (kind, *key(x))

    for cursor in (window.after, window.before):
        if cursor is not None and cursor[0] != kind:
            raise GraphQLError("this cursor is not from this list", extensions={"code": "INVALID_CURSOR"})
    ordered = sorted(items, key=key)
    keys = [tagged(x) for x in ordered]
    try:
        start = bisect.bisect_right(keys, window.after) if window.after is not None else 0
        end = bisect.bisect_left(keys, window.before) if window.before is not None else len(keys)
    except TypeError:  # a key whose parts are of other kinds than this list's: not one this API gave out
        raise GraphQLError("this cursor is not from this list", extensions={"code": "INVALID_CURSOR"}) from None
    chosen = ordered[start:max(start, end)]
    rows = chosen[::-1][:window.size + 1] if window.backward else chosen[:window.size + 1]
    beyond_start = window.after is not None and not window.backward and start > 0
    beyond_end = window.before is not None and window.backward and end < len(keys)
    total = len(ordered)

    async def count() -> int:
        return total
    return edges_of(rows, tagged, to_node, window, beyond_start, beyond_end, encode_key_cursor, count)


# --- request context ------------------------------------------------------------------------

class RequestDB:
    """Database access for one request.

    Blocking database work runs in a worker thread, never on the event loop. Reads of one
    request share one session, used by one thread at a time (the lock); each mutation is its
    own unit of work, after which the read session starts afresh so it sees the result.

    One exception: a read its caller marks `inline` (a few indexed SELECTs with a bounded result,
    such as a contract and its first page of evidence) runs on the event loop, and its session
    is closed there. On SQLite it is called there: a thread hop costs more CPU than such a read
    (the wake-up of a worker and the GIL handed back and forth), a reader in WAL mode never
    waits for a writer, and closing a read transaction is a call into the library. On PostgreSQL
    (with `loop_reads`, api.loop_reads) the same code runs in a greenlet over psycopg's
    asynchronous connection, each statement awaited: the loop serves other requests while the
    server answers. Anything that may write stays in a thread: a token check that is due to
    record its use, every read not marked inline; on SQLite, also a read that would have to wait
    for a pooled connection.
    """

    def __init__(self, db: Database, executor: ThreadPoolExecutor, loop_reads: "LoopReads | None" = None):
        self.db = db
        self.executor = executor
        self._lock = asyncio.Lock()
        self._session: Session | None = None
        self.loop_reads = loop_reads  # PostgreSQL: inline reads awaited on the event loop (LoopReads)
        self._loop_session: Any = None  # its AsyncSession, opened by the first inline read
        self._on_loop = False  # whether the read running now is on the event loop (session() gives its session)
        # a check that must pass, in the worker thread, before this request's first database work
        # (the token of a caller already known to the process): see check_first
        self._first: Callable[[], None] | None = None
        self.refused: BaseException | None = None  # what the first check raised; nothing runs after it
        self.wrote = False  # whether a unit of work was started: then the request is never run again
        self.reads_inline = db.engine.dialect.name == "sqlite" or loop_reads is not None  # see the class
        self._first_inline = False  # whether the first check may run on the event loop

    def check_first(self, check: Callable[[], None], *, inline: bool = False) -> None:
        """Run `check` in the thread of this request's first hop, before that hop's work.

        It saves a thread hop of its own: the token of a caller the process has seen is checked
        in the same hop as the query's first read (or write). If it raises, that work never runs,
        nor any after it; `pending` says whether it still has to run (a query that read nothing).
        `inline`: the check only reads (it will not write), so it may run with an inline read."""
        self._first = check
        self._first_inline = inline

    @property
    def pending(self) -> bool:
        return self._first is not None

    def _checked(self, fn: Callable[[], T]) -> Callable[[], T]:
        def call() -> T:
            if self.refused is not None:
                raise self.refused
            if self._first is not None:
                check, self._first = self._first, None
                try:
                    check()
                except BaseException as exc:
                    self.refused = exc
                    raise
            return fn()
        return call

    async def in_thread(self, fn: Callable[[], T]) -> T:
        """Run `fn` in a worker thread, one at a time with this request's other database work."""
        return await self._in_thread(fn)

    def end_reads(self) -> None:
        """(In a worker thread) give the read session's connection back; the next read opens a new one."""
        self._reset()

    def session(self) -> Session:
        """(In a worker thread) the request's read session, opened on first use; (in a read on the event
        loop) that read's session."""
        if self._on_loop:
            return self._loop_session.sync_session
        if self._session is None:
            # PostgreSQL: no BEGIN and ROLLBACK round trips around a request's reads (see the method)
            self._session = self.db.statement_read_session()
        return self._session

    async def _in_thread(self, fn: Callable[[], T], checked: bool = True) -> T:
        async with self._lock:
            future = asyncio.get_running_loop().run_in_executor(self.executor, self._checked(fn) if checked else fn)
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                # graphql-core cancels sibling fields when one fails; the thread still runs
                # with the session, so hold the lock until it is done
                await asyncio.wait([future])
                raise

    async def read(self, fn: Callable[[Session], T], *, inline: bool = False) -> T:
        """`fn(session)` in a worker thread; with `inline` (a read of a few indexed rows that never writes)
        on the event loop where that is safe (see the class): on PostgreSQL `fn`'s statements are awaited
        there, so `fn` must read through its session only (SQLAlchemy, or ledger.cursor_reads)."""
        def call() -> T:
            return fn(self.session())
        if inline and self._may_run_inline():
            async with self._lock:
                if self.loop_reads is not None:
                    return await self._on_event_loop(self._checked(call))
                return self._checked(call)()
        return await self._in_thread(call)

    async def _on_event_loop(self, fn: Callable[[], T]) -> T:
        """(PostgreSQL) `fn` on the event loop, its statements awaited (LoopReads): no thread hop."""
        if self._loop_session is None:
            self._loop_session = self.loop_reads.session()

        def run(_sync_session) -> T:
            self._on_loop = True
            try:
                return fn()
            finally:
                self._on_loop = False
        task = asyncio.ensure_future(self._loop_session.run_sync(run))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # graphql-core cancels sibling fields when one fails: the read still runs with the session
            # (a statement half-read would leave its connection unusable), so hold the lock until it is done
            await asyncio.wait([task])
            raise

    def _may_run_inline(self) -> bool:
        if not self.reads_inline or (self._first is not None and not self._first_inline):
            return False
        if self.loop_reads is not None:
            return True  # waiting for a pooled connection is awaited, not blocking the loop
        if self._session is None:
            # opening the session takes a pooled connection: never wait for one on the event loop
            pool = self.db.engine.pool
            checked_out, size = getattr(pool, "checkedout", None), getattr(pool, "size", None)
            if checked_out is not None and size is not None and checked_out() >= size():
                return False
        return True

    async def write(self, fn: Callable[[UnitOfWork], T]) -> T:
        self.wrote = True

        def call() -> T:
            self._reset()
            for attempt in (1, 2):
                try:
                    # one unit of work, committed; through the group commit when it is on
                    return self.db.write(fn)
                except IdempotencyRace:
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")
        return await self._in_thread(call)

    def _reset(self) -> None:
        if self._session is not None:
            self._session.rollback()
            self._session.close()
            self._session = None

    async def close(self) -> None:
        if self._loop_session is not None:
            loop_session, self._loop_session = self._loop_session, None
            async with self._lock:
                await loop_session.close()
        if self._session is not None:
            if self.reads_inline or self._session.info.get("closes_locally"):
                # SQLite: ending a read transaction and giving the connection back to the pool never waits;
                # PostgreSQL: the statement read session has no transaction to end (Database.statement_read_session)
                async with self._lock:
                    self._reset()
                return
            await self._in_thread(self._reset, checked=False)  # giving the connection back needs no check


@dataclass
class Context:
    db: RequestDB
    actor: Actor | None
    request: Any = None
    loaders: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""
    secret: bytes = b""  # the key for hashing identity numbers
    unavailable: BaseException | None = None  # set when the database could not be reached: the answer is a 503
    signer: Any = None  # signs tree heads (ledger.signing.Signer); None without a signing key

    def loader(self, name: str, factory: Callable[[], Any]) -> Any:
        """A DataLoader made once per request (never shared across requests or callers)."""
        if name not in self.loaders:
            self.loaders[name] = factory()
        return self.loaders[name]


def ctx(info: Info) -> Context:
    return info.context


def require_actor(info: Info) -> Actor:
    actor = ctx(info).actor
    if actor is None:
        raise GraphQLError("this needs a bearer token", extensions={"code": "UNAUTHENTICATED"})
    return actor


def query_error(err: DomainError) -> GraphQLError:
    return GraphQLError(err.message, extensions={"code": err.code, "field": err.field})


def aware(dt: datetime | None, field: str) -> datetime | None:
    if dt is None:
        return None
    if dt.tzinfo is None:
        raise ValidationError("a DateTime needs an offset, e.g. 2026-01-31T12:00:00+00:00",
                              code="INVALID_DATETIME", field=[field])
    try:
        return dt.astimezone(timezone.utc)
    except OverflowError:
        raise ValidationError("this DateTime is outside years 1 to 9999 in UTC", code="INVALID_DATETIME",
                              field=[field]) from None


def input_params(value: Any) -> Any:
    """A mutation input as plain JSON-able values, for the idempotency hash and the audit trail."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: input_params(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.name != "idempotency_key"}
    if isinstance(value, (list, tuple)):
        return [input_params(v) for v in value]
    return value


def audited(uow: UnitOfWork, actor: Actor, operation: str, input: Any, action: Callable[[], T], **kw: Any) -> T:
    """Run a use case under the input's idempotency key and write its audit event."""
    return run_mutation(uow, actor=actor, operation=operation, params=input_params(input),
                        idempotency_key=getattr(input, "idempotency_key", None), action=action, **kw)


async def mutate(info: Info, payload_cls: type, fn: Callable[[UnitOfWork, Actor], Any],
                 to_fields: Callable[[Any], dict]) -> Any:
    """Run one use case as the caller in its own unit of work; map the result or the domain
    error onto the payload. `to_fields` runs inside the unit of work, while rows are loaded."""
    empty = {f.name: None for f in dataclasses.fields(payload_cls) if f.name != "user_errors" and f.init}
    actor = ctx(info).actor
    if actor is None:
        return payload_cls(**empty, user_errors=[
            UserError(field=None, message="this needs a bearer token", code=UserErrorCode("UNAUTHENTICATED"))])
    try:
        fields = await ctx(info).db.write(lambda uow: to_fields(fn(uow, actor)))
    except DomainError as err:
        return payload_cls(**empty, user_errors=user_errors(err))
    return payload_cls(**{**empty, **fields}, user_errors=[])  # a field not given (a pending change request's) is null


# --- batched loading (no N+1) -----------------------------------------------------------------

def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


async def load_rows(info: Info, name: str, model: Any, column: Any, key: Any, to_node: Callable[[Any], T],
                    *, many: bool = False, where: Callable[[], Any] | None = None) -> Any:
    """Rows of `model` whose `column` equals `key`, through one per-request DataLoader per `name`.

    With many=False the first row (or None); with many=True a list, ordered by primary key.
    All keys asked for while a query resolves are fetched in one SELECT.
    """
    from sqlalchemy import select
    from strawberry.dataloader import DataLoader
    c = ctx(info)

    async def batch(keys: list[Any]) -> list[Any]:
        def q(s):
            stmt = select(model).where(column.in_(keys))
            if where is not None:
                stmt = stmt.where(where())
            pk = model.__mapper__.primary_key[0]
            found: dict[Any, list] = {}
            for row in s.execute(stmt.order_by(pk)).scalars():
                found.setdefault(getattr(row, column.key), []).append(to_node(row))
            return found
        found = await c.db.read(q)
        return [found.get(k, []) if many else (found.get(k) or [None])[0] for k in keys]

    return await c.loader(name, lambda: DataLoader(batch)).load(key)


async def child_page(info: Info, name: str, model: Any, parent_column: Any, parent_id: int, **page: Any
                     ) -> "Connection[T]":
    """A page of a parent's children; the pages of all parents in one query resolve in one SELECT
    (see child_pages for the arguments)."""
    loader, _read = child_pages(info, name, model, parent_column, **page)
    return await loader.load((parent_id,))


def child_pages(info: Info, name: str, model: Any, parent_column: Any, *, first: int | None,
                after: str | None, to_node: Callable[[Any], T], filters: dict | None = None,
                where: Callable[[Any], Any] | None = None, last: int | None = None,
                before: str | None = None,
                to_nodes: Callable[[Session, list[Any]], dict[int, T]] | None = None,
                lazy_columns: frozenset[str] = frozenset()) -> tuple[Any, Callable]:
    """The request's loader of these pages (keyed by `(parent_id,)`) and `read(session, parents)`, which
    reads the pages of `parents` in the calling thread: a resolver that loads the parents can read
    their pages in the same thread hop and prime the loader with them.

    to_nodes, when given, builds the nodes of all the pages at once from plain rows of the
    model's table (keyed by primary key) instead of ORM instances, one at a time by to_node:
    building ORM instances was most of the time a hundred-item page took to serve. With
    lazy_columns, a page read on the driver's cursor leaves those columns unconverted and calls
    to_nodes(session, rows, conversions) (ledger.cursor_reads: the nodes convert what is read).

    Keyset pagination on the primary key per parent, done with ROW_NUMBER() OVER (PARTITION BY
    parent) so fifty contracts' evidence is one statement, not fifty. Their totalCounts, when
    asked for, are one GROUP BY between them.
    """
    from sqlalchemy.orm import aliased
    from strawberry.dataloader import DataLoader
    window = Window.of(first, after, last, before)
    filters = filters or {}
    c = ctx(info)
    pk = model.__mapper__.primary_key[0]

    def filtered(stmt: Any) -> Any:
        for col, value in filters.items():
            stmt = stmt.where(getattr(model, col) == value)
        if where is not None:
            stmt = stmt.where(where(model))
        return stmt

    def beyond(s: Session, parents: list[int], cond: Any) -> set[int]:
        stmt = filtered(select(parent_column).where(parent_column.in_(parents), cond).distinct())
        return set(s.execute(stmt).scalars())

    async def count_batch(keys: list[int]) -> list[int]:
        def q(s):
            stmt = filtered(select(parent_column, func.count()).where(parent_column.in_(keys))).group_by(parent_column)
            return dict(s.execute(stmt).all())
        found = await c.db.read(q)
        return [found.get(k, 0) for k in keys]

    counts = c.loader(f"count:{name}:{_hashable(filters)}", lambda: DataLoader(count_batch))

    if to_nodes is None:  # ORM instances
        key_of, parent_of = attrgetter(pk.key), attrgetter(parent_column.key)
    else:  # plain rows of the table, its columns in order
        columns = list(model.__table__.columns.keys())
        key_of, parent_of = itemgetter(columns.index(pk.key)), itemgetter(columns.index(parent_column.key))

    def read(s: Session, parents: list[int]) -> dict[int, Connection]:
        order = pk.desc() if window.backward else pk
        if len(parents) == 1 and to_nodes is not None and where is None:
            # one parent (the usual query, a contract's page) on the driver's cursor: a plain LIMIT, not a
            # window function over every child of the parent
            page = cursor_reads.child_page(model.__table__, parent_column, tuple(filters), after=window.after is not None,
                                           before=window.before is not None, backward=window.backward,
                                           limit=window.size + 1, lazy=lazy_columns)
            conn = s.connection()
            rows = sorted(page.rows(conn, {"parent": parents[0], "after": window.after,
                                           "before": window.before, **filters}), key=key_of)
            nodes = to_nodes(s, rows, page.conversions(conn.dialect)) if lazy_columns else to_nodes(s, rows)
            node_of = lambda r: nodes[key_of(r)]  # noqa: E731
        elif len(parents) == 1:
            page = filtered(window.bounded(select(model if to_nodes is None else model.__table__)
                                           .where(parent_column == parents[0]), pk)).order_by(order)
            page = page.limit(window.size + 1)
            if to_nodes is None:
                rows = sorted(s.execute(page).scalars().all(), key=key_of)
                node_of = to_node
            else:
                rows = sorted(s.connection().execute(page).all(), key=key_of)
                nodes = to_nodes(s, rows)
                node_of = lambda r: nodes[key_of(r)]  # noqa: E731
        else:
            inner = filtered(window.bounded(
                select(model, func.row_number().over(partition_by=parent_column, order_by=order).label("rn"))
                .where(parent_column.in_(parents)), pk))
            sub = inner.subquery()
            if to_nodes is None:
                row = aliased(model, sub)
                rows = s.execute(select(row).where(sub.c.rn <= window.size + 1)
                                 .order_by(sub.c[pk.key])).scalars().all()
                node_of = to_node
            else:
                columns = [sub.c[col.name] for col in model.__table__.columns]
                rows = s.execute(select(*columns).where(sub.c.rn <= window.size + 1).order_by(sub.c[pk.key])).all()
                nodes = to_nodes(s, rows)
                node_of = lambda r: nodes[key_of(r)]  # noqa: E731
        grouped: dict[int, list] = {}
        for r in rows:
            grouped.setdefault(parent_of(r), []).append(r)
        forward_from = window.after is not None and not window.backward
        back_from = window.before is not None and window.backward
        before_start = beyond(s, parents, pk <= window.after) if forward_from else set()
        after_end = beyond(s, parents, pk >= window.before) if back_from else set()
        out = {}
        for p in parents:
            mine = grouped.get(p, [])
            if window.backward:
                mine.sort(key=key_of, reverse=True)
            out[p] = edges_of(mine, key_of, node_of, window, p in before_start, p in after_end,
                              counter=lambda p=p: counts.load(p))
        return out

    async def batch(keys: list[tuple]) -> list[Connection]:
        parents = [k[0] for k in keys]
        found = await c.db.read(lambda s: read(s, parents))
        return [found[k[0]] for k in keys]

    loader = c.loader(f"page:{name}:{_hashable(filters)}:{window}", lambda: DataLoader(batch))
    # a first page (or a last one) of one parent, unfiltered, is a LIMIT on an index of the parent and the key,
    # and its children's rows lie between its first and last key: a read that may run inline (RequestDB.read).
    # A cursor or a filter may make the reads behind the page scan far more rows than it holds.
    read.inline = (to_nodes is not None and where is None and not filters and window.after is None
                   and window.before is None)
    return loader, read
