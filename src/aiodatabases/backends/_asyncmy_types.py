"""The asyncmy backend's parts besides connections: dialect, errors, binding, options, cursor.

The dialect is SQLAlchemy's asyncmy dialect, set up from one query on the first connection
instead of ``dialect.initialize()`` (which needs a synchronous DBAPI connection), with two
changes that make results match the other backends:

- ``DateTime(timezone=True)`` keeps time zones: aware values are stored as UTC (MySQL's
  DATETIME has no zone) and read back aware, in UTC.
- DDL it renders for the generic types keeps what SQLite and PostgreSQL keep: ``DateTime``
  and ``Time`` get microseconds (``DATETIME(6)``, ``TIME(6)``); ``Text``, ``String`` and
  ``LargeBinary`` without a length become ``LONGTEXT`` and ``LONGBLOB`` instead of 64 KiB
  columns or a compile error. Explicit MySQL types (``mysql.DATETIME``, ``mysql.TEXT``...)
  render as given.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
import time
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncmy
from asyncmy import errors as mysql_errors
from asyncmy.constants import CLIENT
from asyncmy.cursors import Cursor
from sqlalchemy.dialects.mysql import base as mysql_base
from sqlalchemy.dialects.mysql.asyncmy import MySQLDialect_asyncmy
from sqlalchemy.dialects.mysql.types import DATETIME
from sqlalchemy.sql import sqltypes

from .. import exceptions
from .._compiler import CompiledQuery
from .._records import Record, ResultMeta, bool_to_int
from .._url import DatabaseURL
from ._errors import combined_error
from ._options import OptionReader
from .base import TransactionOptions

if TYPE_CHECKING:
    from .asyncmy import AsyncmyConnection

__all__ = [
    "AsyncmyCursor",
    "AsyncmyDialect",
    "Killer",
    "begin_statements",
    "check_rows",
    "connect_args",
    "errno_of",
    "is_disconnect",
    "quit_politely",
    "render",
    "translate",
]

UTC = dt.UTC
pool_logger = logging.getLogger("aiodatabases.pool")

# -- types and dialect ------------------------------------------------------------------------


class _Boolean(sqltypes.Boolean):
    """Boolean whose bind conversion (``True`` -> 1) runs in C when the speedups are built; it
    accepts and refuses exactly what SQLAlchemy's does."""

    def bind_processor(self, dialect: Any) -> Any:
        return bool_to_int


class _DateTime(DATETIME):
    """DATETIME that keeps time zones: aware values are stored as UTC and read back aware,
    so ``DateTime(timezone=True)`` behaves as on PostgreSQL."""

    def bind_processor(self, dialect: Any) -> Any:
        process = super().bind_processor(dialect)
        if not self.timezone:
            return process

        def to_utc(value: Any) -> Any:
            if isinstance(value, dt.datetime) and value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            return process(value) if process is not None else value

        return to_utc

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        process = super().result_processor(dialect, coltype)
        if not self.timezone:
            return process

        def from_utc(value: Any) -> Any:
            value = process(value) if process is not None else value
            if isinstance(value, dt.datetime):
                return value.replace(tzinfo=UTC)
            return value

        return from_utc


class _TypeCompiler(mysql_base.MySQLTypeCompiler):
    """DDL for the generic types that keeps what the other backends keep (see the module doc)."""

    def visit_datetime(self, type_: sqltypes.DateTime, **kw: Any) -> str:
        return "DATETIME(6)"

    def visit_time(self, type_: sqltypes.Time, **kw: Any) -> str:
        return "TIME(6)"

    def visit_string(self, type_: sqltypes.String, **kw: Any) -> str:
        # MySQL has no VARCHAR without a length; SQLite and PostgreSQL read it as unbounded.
        if type_.length is not None:
            return super().visit_string(type_, **kw)
        return self.visit_text(type_, **kw)  # type: ignore[arg-type]  # read as Text

    def visit_unicode(self, type_: sqltypes.Unicode, **kw: Any) -> str:
        return self.visit_string(type_, **kw)

    def visit_text(self, type_: sqltypes.Text, **kw: Any) -> str:
        if type_.length is not None:
            return super().visit_text(type_, **kw)
        return self._extend_string(type_, {}, "LONGTEXT")  # type: ignore[arg-type]  # a generic Text carries no MySQL string options, which _extend_string reads with getattr

    def visit_unicode_text(self, type_: sqltypes.UnicodeText, **kw: Any) -> str:
        return self.visit_text(type_, **kw)

    def visit_large_binary(self, type_: sqltypes.LargeBinary, **kw: Any) -> str:
        if type_.length is not None:
            return super().visit_large_binary(type_, **kw)
        return "LONGBLOB"


class AsyncmyDialect(MySQLDialect_asyncmy):
    """SQLAlchemy's asyncmy dialect with zone-keeping DateTime and lossless generic DDL."""

    colspecs = {
        **MySQLDialect_asyncmy.colspecs,
        sqltypes.DateTime: _DateTime,
        sqltypes.Boolean: _Boolean,
    }
    type_compiler_cls = _TypeCompiler
    supports_statement_cache = True

    def configure(self, version: str, sql_mode: str, lower_case_table_names: int) -> None:
        """Set what ``initialize()`` would learn from a live connection."""
        self._parse_server_version(version)
        self._backslash_escapes = "NO_BACKSLASH_ESCAPES" not in sql_mode.upper()
        self._server_ansiquotes = "ANSI_QUOTES" in sql_mode.upper()
        self._casing = lower_case_table_names
        if self._server_ansiquotes:
            self.identifier_preparer = self.preparer(self, server_ansiquotes=True)
            if self.is_mariadb:
                self.identifier_preparer._set_mariadb()
        if self.is_mariadb:
            self._initialize_mariadb(None)  # type: ignore[arg-type]  # it reads only the version
        else:
            self._initialize_mysql(None)  # type: ignore[arg-type]  # it reads only the version


# -- errors -----------------------------------------------------------------------------------

# MySQL error numbers whose class is clearer than the driver's or the SQLSTATE's.
_BY_ERRNO: dict[int, type[exceptions.Error]] = {
    1205: exceptions.OperationalError,  # lock wait timeout exceeded
    1213: exceptions.OperationalError,  # deadlock found; restart the transaction
    1364: exceptions.IntegrityError,  # field has no default value (a NOT NULL column)
    3819: exceptions.IntegrityError,  # MySQL: check constraint violated
    4025: exceptions.IntegrityError,  # MariaDB: check constraint failed
    1792: exceptions.OperationalError,  # write in a READ ONLY transaction
}

# Deadlock (the server rolled the transaction back) and lock wait timeout (only the statement
# was rolled back; running the whole transaction again may succeed).
_RETRYABLE_ERRNOS = frozenset({1205, 1213})

_BY_SQLSTATE_CLASS: dict[str, type[exceptions.Error]] = {
    "08": exceptions.OperationalError,  # connection exception
    "0A": exceptions.NotSupportedError,
    "21": exceptions.ProgrammingError,  # cardinality violation (column count)
    "22": exceptions.DataError,
    "23": exceptions.IntegrityError,
    "28": exceptions.OperationalError,  # invalid authorization
    "3D": exceptions.ProgrammingError,  # no database selected
    "40": exceptions.OperationalError,  # transaction rollback: deadlock, serialization
    "42": exceptions.ProgrammingError,  # syntax error or access rule violation
    "70": exceptions.OperationalError,  # query interrupted (KILL QUERY)
}

_BY_DRIVER_CLASS: list[tuple[type[BaseException], type[exceptions.Error]]] = [
    (mysql_errors.IntegrityError, exceptions.IntegrityError),
    (mysql_errors.ProgrammingError, exceptions.ProgrammingError),
    (mysql_errors.DataError, exceptions.DataError),
    (mysql_errors.NotSupportedError, exceptions.NotSupportedError),
    (mysql_errors.OperationalError, exceptions.OperationalError),
    # Internal errors (packet out of order) and interface errors (not connected) both mean
    # the connection is unusable.
    (mysql_errors.InternalError, exceptions.OperationalError),
    (mysql_errors.InterfaceError, exceptions.OperationalError),
    (mysql_errors.MySQLError, exceptions.DatabaseError),
]

# Client-side error numbers (2xxx) and server ones that mean the connection is gone.
_DISCONNECT_ERRNOS = frozenset(
    {
        1053,  # server shutdown in progress
        1927,  # connection was killed
        2006,  # MySQL server has gone away
        2013,  # lost connection during query
        2014,  # commands out of sync
        2045,
        2055,  # lost connection (system error)
        4031,  # disconnected by the server because of inactivity
    }
)


def errno_of(exc: BaseException) -> int:
    """Return the MySQL error number of a driver error, or 0."""
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return 0


def is_disconnect(exc: BaseException) -> bool:
    """Whether a driver error leaves the connection unusable."""
    if isinstance(exc, mysql_errors.InterfaceError | mysql_errors.InternalError | OSError):
        return True
    return errno_of(exc) in _DISCONNECT_ERRNOS


def translate(exc: BaseException) -> BaseException:
    """Return the aiodatabases error for a driver error; the driver's class stays catchable."""
    if not isinstance(exc, mysql_errors.MySQLError):
        if isinstance(exc, OSError):
            new_os = exceptions.OperationalError(f"lost connection to the MySQL server: {exc}")
            new_os.__cause__ = exc
            return new_os
        return exc
    sqlstate = getattr(exc, "sqlstate", None)
    ours = _BY_ERRNO.get(errno_of(exc))
    if ours is None and isinstance(sqlstate, str) and not sqlstate.startswith("HY"):
        ours = _BY_SQLSTATE_CLASS.get(sqlstate[:2])
    if ours is None:
        for driver_class, candidate in _BY_DRIVER_CLASS:
            if isinstance(exc, driver_class):
                ours = candidate
                break
    cls = combined_error(ours or exceptions.DatabaseError, type(exc), "Asyncmy")
    new = cls(*exc.args)
    if isinstance(sqlstate, str):
        new.sqlstate = sqlstate  # type: ignore[attr-defined]  # both bases declare it
    if errno_of(exc) in _RETRYABLE_ERRNOS or sqlstate == "40001":
        new.retryable = True  # type: ignore[attr-defined]  # set on every DatabaseError
    new.__cause__ = exc
    return new


# -- binding values ---------------------------------------------------------------------------

_SCALARS: frozenset[type] = frozenset(
    {
        str,
        int,
        float,
        bool,
        Decimal,
        bytes,
        bytearray,
        type(None),
        dt.date,
        dt.datetime,
        dt.time,
        dt.timedelta,
        time.struct_time,
    }
)
_SEQUENCES = (tuple, list, set, frozenset)


def _datetime(value: dt.datetime) -> dt.datetime:
    return dt.datetime(*value.timetuple()[:6], value.microsecond, value.tzinfo)


# Subclasses (IntEnum, a str-mixin Enum, pendulum datetimes...) bind as their base value, as
# sqlite3 binds them; the driver would quote str(value) ("Color.RED") instead.
_BASES: tuple[tuple[type, Any], ...] = (
    (str, str.__str__),
    (int, int.__index__),
    (float, float.__float__),
    (Decimal, Decimal),
    (bytes, bytes),
    (bytearray, bytes),
    (dt.datetime, _datetime),
    (dt.date, lambda v: dt.date(v.year, v.month, v.day)),
    (dt.time, lambda v: dt.time(v.hour, v.minute, v.second, v.microsecond)),
    (dt.timedelta, lambda v: dt.timedelta(v.days, v.seconds, v.microseconds)),
)


def _check(value: Any) -> Any:
    """Return ``value`` in a form the driver escapes faithfully, or raise ProgrammingError."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if isinstance(value, _SEQUENCES):
        return tuple(_check(item) for item in value)
    for base, convert in _BASES:
        if isinstance(value, base):
            return convert(value)
    # The driver would quote str(value). Keep that for types that define a text form (UUID),
    # as databases 0.9 did; refuse objects whose text is just their address.
    text_form = getattr(kind, "__str__", None), getattr(kind, "__repr__", None)
    if text_form == (object.__str__, object.__repr__):
        raise exceptions.ProgrammingError(
            f"cannot bind a value of type {kind.__module__}.{kind.__qualname__}: "
            "pass str, int, float, Decimal, bytes, bool, None, date/time values or a "
            "sequence of them"
        )
    return str(value)


def check_values(args: Sequence[Any]) -> Sequence[Any]:
    """Return ``args`` with every value checked for binding (see ``_check``)."""
    for value in args:
        if type(value) not in _SCALARS:
            return [_check(v) for v in args]
    return args


def check_rows(rows: Iterable[Sequence[Any]]) -> list[Sequence[Any]]:
    """Check every value of an ``execute_many`` call."""
    return [check_values(row) for row in rows]


def render(raw: Any, sql: str, args: Sequence[Any]) -> str:
    """Bind ``args`` into ``sql`` (``format`` paramstyle) as the driver would.

    The ``%`` operator runs even without arguments: compiled SQL has every literal ``%``
    doubled (SQLAlchemy does that for the format paramstyle), and this turns ``%%`` back.
    """
    try:
        return sql % tuple(map(raw.literal, check_values(args)))
    except mysql_errors.MySQLError as exc:
        raise translate(exc) from None
    except (TypeError, ValueError) as exc:
        raise exceptions.ProgrammingError(
            f"cannot bind the query's values: {exc} ({len(args)} values given)"
        ) from None


# -- options ----------------------------------------------------------------------------------

_SSL_OFF = {"false", "0", "no", "off", "disable", "disabled"}
_SSL_MODES = {"true", "1", "yes", "on", "require", "required", "verify-ca", "verify-full"}
_DRIVER_STRINGS = ("init_command", "sql_mode", "program_name")
_DRIVER_OBJECTS = ("server_public_key", "auth_plugin_map", "password_creator")


def ssl_option(value: Any) -> ssl.SSLContext | None:
    """Turn the ``ssl`` option (bool, mode or ``SSLContext``) into what asyncmy takes.

    ``true``/``verify-full``: verify the certificate and host name; ``verify-ca``: verify
    the certificate only; ``require``: encrypt without verifying; ``false``: plain TCP.
    """
    if value is None or value is False:
        return None
    if isinstance(value, ssl.SSLContext):
        return value
    mode = "true" if value is True else str(value).lower()
    if mode in _SSL_OFF:
        return None
    if mode not in _SSL_MODES:
        raise exceptions.ConfigurationError(
            f"option ssl={value!r} must be true, false, require, verify-ca or verify-full "
            "(or an ssl.SSLContext)"
        )
    context = ssl.create_default_context()
    if mode in {"require", "required"}:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif mode == "verify-ca":
        context.check_hostname = False
    return context


def connect_args(url: DatabaseURL, reader: OptionReader, timeout: float | None) -> dict[str, Any]:
    """Return the ``asyncmy.connect()`` arguments for ``url`` and the driver's options."""
    if reader.has("autocommit"):
        raise exceptions.ConfigurationError(
            "option autocommit is not supported: aiodatabases runs MySQL in autocommit "
            "mode and opens transactions itself; use database.transaction()"
        )
    args: dict[str, Any] = {
        "host": url.components.hostname or reader.raw("host") or "localhost",
        "port": url.port or 3306,
        "user": url.username,
        "password": url.password or "",
        "database": url.database or None,
        "unix_socket": reader.raw("unix_socket") or reader.raw("unix_sock"),
        "charset": str(reader.raw("charset", "utf8mb4")),
        "ssl": ssl_option(reader.raw("ssl")),
        "autocommit": True,
        # Matched rather than changed rows, as SQLite and PostgreSQL count them.
        "client_flag": CLIENT.FOUND_ROWS if reader.bool("found_rows", True) else 0,
        "connect_timeout": timeout or 31_536_000,
    }
    for name in _DRIVER_STRINGS:
        if reader.has(name):
            args[name] = str(reader.raw(name))
    if reader.has("local_infile"):
        args["local_infile"] = reader.bool("local_infile", False)
    if reader.has("max_allowed_packet"):
        args["max_allowed_packet"] = reader.int("max_allowed_packet", 0, minimum=1)
    for name in _DRIVER_OBJECTS:
        if reader.has(name):
            args[name] = reader.raw(name)
    return args


# -- connections ------------------------------------------------------------------------------

_ER_NO_SUCH_THREAD = 1094


async def quit_politely(raw: Any, seconds: float | None) -> None:
    """Close a driver connection with COM_QUIT, or at once if that fails or takes too long."""
    try:
        async with asyncio.timeout(seconds):
            await raw.ensure_closed()
    except (Exception, asyncio.CancelledError):
        raw.close()


class Killer:
    """A connection kept aside to run ``KILL``; its kills run one at a time.

    Safe to share between the tasks of one event loop.
    """

    def __init__(self, connect_args: dict[str, Any], timeout: float | None) -> None:
        self._connect_args = connect_args
        self._timeout = timeout
        self._raw: Any = None
        self._lock = asyncio.Lock()

    async def kill(self, thread_id: int, query_only: bool = False) -> bool:
        """End a server thread (or only its running statement); failures are only logged.

        Returns whether the server confirmed it (or the thread had already ended).
        """
        sql = f"KILL {'QUERY ' if query_only else ''}{int(thread_id)}"
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout):
                    if self._raw is None or not self._raw.connected:
                        self._raw = await asyncmy.connect(**self._connect_args)
                    await self._raw.cursor().execute(sql)
                return True
            except mysql_errors.MySQLError as exc:
                if errno_of(exc) == _ER_NO_SUCH_THREAD:
                    return True
                pool_logger.info("%s failed: %s", sql, exc)
                if is_disconnect(exc):
                    self._drop()
            except (OSError, TimeoutError) as exc:
                pool_logger.info("%s failed: %s", sql, exc)
                self._drop()
            return False

    def _drop(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()

    async def close(self) -> None:
        """Close the killer connection."""
        raw, self._raw = self._raw, None
        if raw is not None:
            await quit_politely(raw, self._timeout)


# -- transactions -----------------------------------------------------------------------------

_ISOLATION = {
    "serializable": "SERIALIZABLE",
    "repeatable_read": "REPEATABLE READ",
    "read_committed": "READ COMMITTED",
    "read_uncommitted": "READ UNCOMMITTED",
}


def begin_statements(options: TransactionOptions) -> list[str]:
    """Return the statements that open a transaction as ``options`` ask.

    Raises:
        ConfigurationError: An option MySQL cannot honour.
    """
    statements = []
    if options.isolation is not None:
        level = _ISOLATION.get(options.isolation)
        if level is None:
            raise exceptions.ConfigurationError(
                f"unknown isolation level {options.isolation!r}; use one of "
                f"{', '.join(sorted(_ISOLATION))}"
            )
        # Applies to the next transaction only.
        statements.append(f"SET TRANSACTION ISOLATION LEVEL {level}")
    if options.deferrable:
        raise exceptions.ConfigurationError(
            "deferrable transactions exist only on PostgreSQL; drop deferrable=True"
        )
    characteristics = []
    if options.mode is not None:
        if options.mode.lower() != "consistent_snapshot":
            raise exceptions.ConfigurationError(
                f"unknown MySQL transaction mode {options.mode!r}; use consistent_snapshot"
            )
        characteristics.append("WITH CONSISTENT SNAPSHOT")
    if options.readonly:
        characteristics.append("READ ONLY")
    statements.append(" ".join(["START TRANSACTION", ", ".join(characteristics)]).strip())
    return statements


# -- iterate() ----------------------------------------------------------------------------------

ITERATE_BATCH = 500
# Batches a closed-but-unfinished stream is drained for, outside a transaction, before the
# connection is replaced instead (a new connection is cheaper than a long drain).
_DRAIN_BATCHES = 16
_DRAIN_SIZE = 4096


class AsyncmyCursor:
    """The rows of one ``iterate()`` query, streamed in batches (unbuffered).

    MySQL cannot run another statement while rows are pending, so when another statement
    needs the connection, ``detach()`` first reads the rest into memory.
    """

    def __init__(
        self, connection: AsyncmyConnection, entry: CompiledQuery, sql: str, args: Any
    ) -> None:
        self._connection = connection
        self._entry = entry
        self._sql = sql
        self._args = args
        self._stream: Cursor | None = None
        self._raw: Any = None
        self._meta: ResultMeta | None = None
        self._spilled: list[Any] | None = None
        self._position = 0
        self.done = False
        self.closed = False

    async def fetch(self, size: int = ITERATE_BATCH) -> list[Record]:
        """Return the next batch of records; empty when done."""
        self._connection.busy += 1
        try:
            return await self._fetch(size)
        finally:
            self._connection.leave()

    async def _fetch(self, size: int) -> list[Record]:
        if self._spilled is not None:
            rows = self._spilled[self._position : self._position + size]
            self._position += len(rows)
        elif self.done or self.closed:
            return []
        else:
            conn = self._connection
            if self._stream is None:
                self._stream = await conn._unbuffered(self._sql, self._args)
                self._raw = conn._raw
                description = self._stream.description
                if not description:
                    self.done = True
                    return []
                self._meta = conn._meta(self._entry, description)
                conn._stream = self
            elif self._raw is not conn._raw:
                raise exceptions.OperationalError(
                    "cannot fetch more rows: the connection was lost during iterate()"
                )
            rows = await conn._guard(self._stream.fetchmany(size))
            if len(rows) < size:
                self._finish()
        if not rows or self._meta is None:
            return []
        return self._meta.records(rows, take=True)

    def _finish(self) -> None:
        self.done = True
        if self._connection._stream is self:
            self._connection._stream = None

    async def detach(self) -> None:
        """Free the connection for another statement: keep the rest in memory, or drop it."""
        stream = self._stream
        conn = self._connection
        if stream is None or self.done:
            self._finish()
        elif not self.closed:
            self._spilled = list(await conn._guard(stream.fetchall()))
            self._finish()
        else:
            drained = 0
            while drained < _DRAIN_BATCHES or conn.in_transaction:
                if len(await conn._guard(stream.fetchmany(_DRAIN_SIZE))) < _DRAIN_SIZE:
                    self._finish()
                    return
                drained += 1
            self._finish()
            conn._lose()

    def close(self) -> None:
        """Stop iterating; rows still pending on the server are drained before the next use."""
        self.closed = True
        self._spilled = None
        if self._stream is None or self.done:
            self._finish()
