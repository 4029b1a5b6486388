"""Fixed SELECTs run on the DBAPI cursor of a session's connection: the hot reads of a request.

SQLAlchemy's execute path (cache key, compiled-cache lookup, execution context, result
metadata, a Row per row with a processor call per column) costs more than the statement
itself for the small reads every request makes (the token, an evidence page, its participants
and documents). A `CursorQuery` is a Core SELECT compiled once per dialect; it runs on the
driver's cursor of the same pooled connection, inside the session's transaction, and returns
plain tuples whose columns are converted exactly as SQLAlchemy converts them (its result
processors, only for the columns that have one: dates and timestamps on SQLite, the UTC and
exact-decimal types everywhere; NULL stays None without a call, as every column type of the
schema maps it).

Only for statements whose parameters need no conversion on the way in (integers, strings):
values given by name, or the values bound in the statement when it was built.

Columns named `lazy` are left as the driver reads them: a reader that sends only some of them
converts those when first read (`conversions`, `ConvertedOnRead`), not every row's every
timestamp (a contract's evidence page: ~300 timestamps, and a query sends none of them).
"""
from __future__ import annotations

from datetime import timezone
from decimal import Decimal
from typing import Any, Callable

from sqlalchemy import Connection

from ledger.db import sync_pending
from ledger.models.base import DecimalText, UTCDateTime


def _processor(column_type: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """How SQLAlchemy converts a non-NULL value of `column_type` read on `dialect`; None: it is kept as it is.

    The schema's own types in one call each (their process_result_value after the stored type's
    conversion, without TypeDecorator's wrapper); any other type through its dialect's processor."""
    if isinstance(column_type, (UTCDateTime, DecimalText)):
        stored = column_type.impl_instance.dialect_impl(dialect).result_processor(dialect, None)
        if isinstance(column_type, DecimalText):
            return Decimal if stored is None else (lambda value: Decimal(stored(value)))
        utc = timezone.utc

        def utc_datetime(value: Any) -> Any:  # UTCDateTime.process_result_value
            if stored is not None:
                value = stored(value)
            return value.replace(tzinfo=utc) if value.tzinfo is None else value.astimezone(utc)
        return utc_datetime
    return column_type.dialect_impl(dialect).result_processor(dialect, None)


class CursorQuery:
    """A SELECT compiled once per dialect, run on the connection's DBAPI cursor; rows as tuples."""

    def __init__(self, statement: Any, lazy: frozenset[str] = frozenset()):
        self.statement = statement
        self.lazy = lazy  # names of the columns left as the driver reads them (see the module)
        # dialect name → (SQL, parameter names in order or None for named, bound values, row converter)
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None, dict, Any]] = {}
        self._conversions: dict[str, tuple] = {}

    def conversions(self, dialect: Any) -> tuple:
        """Per column, how SQLAlchemy converts a non-NULL value of it on `dialect` (None: kept as it is)."""
        found = self._conversions.get(dialect.name)
        if found is None:
            found = self._conversions[dialect.name] = tuple(
                _processor(column.type, dialect) for column in self.statement.selected_columns)
        return found

    def _compile(self, dialect: Any) -> tuple:
        compiled = self.statement.compile(dialect=dialect)
        processors = [None if column.name in self.lazy else p
                      for column, p in zip(self.statement.selected_columns, self.conversions(dialect))]
        convert = None
        if any(processors):
            # one tuple expression for the whole row: a call only where a column has a processor
            names = {f"p{i}": p for i, p in enumerate(processors) if p is not None}
            items = ", ".join(f"(None if r[{i}] is None else p{i}(r[{i}]))" if p is not None else f"r[{i}]"
                              for i, p in enumerate(processors))
            source = f"def convert(rows):\n    return [({items},) for r in rows]\n"
            exec(compile(source, "<cursor query row>", "exec"), names)  # noqa: S102 - our own source
            convert = names["convert"]
        positional = tuple(compiled.positiontup) if compiled.positiontup is not None else None
        found = self._compiled[dialect.name] = (compiled.string, positional, dict(compiled.params), convert)
        return found

    def rows(self, connection: Connection, params: dict | None = None) -> list[tuple]:
        """The statement's rows on `connection` (a session's connection: its transaction has begun)."""
        dialect = connection.dialect
        found = self._compiled.get(dialect.name)
        if found is None:
            found = self._compile(dialect)
        sql, positional, bound, convert = found
        values = {**bound, **params} if params else bound
        sync_pending(connection)  # a group commit batch's postings before it, sent first
        args = [values[name] for name in positional] if positional is not None else values
        raw = connection.connection.driver_connection
        if connection.dialect.is_async:  # a read on the event loop (api.loop_reads), in its greenlet
            rows = _fetch_awaited(connection, raw, sql, args, values)
        else:
            cursor = raw.cursor()
            try:
                cursor.execute(sql, args)
                rows = cursor.fetchall()
            except connection.dialect.loaded_dbapi.Error as err:
                # as SQLAlchemy's execute would: wrapped in its DBAPIError and, for a connection the database
                # dropped, the pool's connections invalidated (connection_invalidated says so to the caller)
                connection._handle_dbapi_exception(err, sql, values, cursor, None)
            finally:
                cursor.close()
        return convert(rows) if convert is not None else rows


def _fetch_awaited(connection: Connection, raw: Any, sql: str, args: Any, values: dict) -> list[tuple]:
    """The rows of `sql` on psycopg's asynchronous connection, each of the driver's coroutines awaited in
    the greenlet the read runs in; errors as CursorQuery.rows raises them."""
    from sqlalchemy.util import await_only
    cursor = raw.cursor()
    try:
        await_only(cursor.execute(sql, args))
        return await_only(cursor.fetchall())
    except connection.dialect.loaded_dbapi.Error as err:
        connection._handle_dbapi_exception(err, sql, values, cursor, None)
    finally:
        await_only(cursor.close())


class ConvertedOnRead:
    """An attribute converted from a row of a lazy CursorQuery when first read, then kept in the instance.

    The instance holds the row as `_row` and the query's `conversions` as `_conversions`; a
    non-data descriptor, so once the value is in the instance's dict, reads never come here again."""

    def __init__(self, index: int):
        self.index = index
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = instance._row[self.index]
        convert = instance._conversions[self.index]
        if value is not None and convert is not None:
            value = convert(value)
        instance.__dict__[self.name] = value
        return value


_PAGES: dict[tuple, CursorQuery] = {}


def child_page(table: Any, parent_column: Any, filter_columns: tuple[str, ...], *, after: bool, before: bool,
               backward: bool, limit: int, lazy: frozenset[str] = frozenset()) -> CursorQuery:
    """The SELECT of one parent's page of `table`'s rows (all columns) by primary key: parameters `parent`,
    one per filter column (by its name), `after` and `before` (keys) when given; `limit` rows, ordered
    descending when reading backwards; the `lazy` columns unconverted. Made once per shape."""
    shape = (table.name, parent_column.key, filter_columns, after, before, backward, limit, lazy)
    found = _PAGES.get(shape)
    if found is None:
        from sqlalchemy import bindparam, select
        pk = table.primary_key.columns[0]
        stmt = select(table).where(parent_column == bindparam("parent"))
        for name in filter_columns:
            stmt = stmt.where(table.c[name] == bindparam(name))
        if after:
            stmt = stmt.where(pk > bindparam("after"))
        if before:
            stmt = stmt.where(pk < bindparam("before"))
        found = _PAGES[shape] = CursorQuery(stmt.order_by(pk.desc() if backward else pk).limit(limit), lazy)
    return found
