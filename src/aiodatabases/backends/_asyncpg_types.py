"""The asyncpg backend's parts around its connections and pool: dialect, SQL typing, errors,
options, the connection class asyncpg creates, and the cursor behind ``iterate()``.

SQLAlchemy's asyncpg dialect assumes SQLAlchemy's own adapter, which installs JSON codecs on
every connection and passes the result type's OID to the result processors. aiodatabases
drives asyncpg directly, so the dialect here undoes those assumptions: JSON is decoded by
the column type (as on SQLite; raw SQL sees the JSON text, as with plain asyncpg), and
numeric results are converted by value instead of by OID.

Raw SQL placeholders carry no type: PostgreSQL infers one from the context, and for a bare
``SELECT $1`` it infers ``text``, which asyncpg refuses to fill with an ``int``. ``SqlInfo``
finds such placeholders once per statement; the backend asks the server what it inferred
and, where the answer is ``text`` but the value is not, adds a cast (``$1::int8``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
from sqlalchemy.dialects.postgresql.asyncpg import (
    AsyncpgBoolean,
    AsyncpgDateTime,
    AsyncpgFloat,
    AsyncpgNumeric,
    PGDialect_asyncpg,
)
from sqlalchemy.dialects.postgresql.types import PGUuid
from sqlalchemy.engine import processors
from sqlalchemy.sql import sqltypes

from .. import exceptions
from .._compiler import CompiledQuery
from .._records import Record, bool_to_bool, decimal_to_float
from .._url import DatabaseURL
from ._errors import combined_error
from ._options import OptionReader
from .base import TransactionOptions

if TYPE_CHECKING:
    from .asyncpg import AsyncpgConnection

__all__ = [
    "ITERATE_BATCH",
    "PRIMARY_KEY_SQL",
    "SETTLE_TIMEOUT",
    "Cursor",
    "PgConnection",
    "PostgreSQLDialect",
    "SqlInfo",
    "analyze",
    "begin_sql",
    "cast_for",
    "connect_options",
    "given_key",
    "in_transaction",
    "is_disconnect",
    "learn_casts",
    "reset_connection",
    "returning_key",
    "row_count",
    "settle_and_close",
    "translate",
    "unsent",
    "with_casts",
]


# -- the dialect ---------------------------------------------------------------------------


class _NumericResults:
    """Numeric result processing that looks at the value, not at the column's type OID."""

    asdecimal: bool
    _effective_decimal_return_scale: int

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        if self.asdecimal:
            to_decimal = processors.to_decimal_processor_factory(
                Decimal, self._effective_decimal_return_scale
            )

            def as_decimal(value: Any) -> Any:
                if value is None or type(value) is Decimal:
                    return value
                return to_decimal(value)

            return as_decimal

        # float(value) for a Decimal, else the value itself; in C when the speedups are
        # built, where a row whose floats need nothing is then kept uncopied.
        return decimal_to_float


class _Numeric(_NumericResults, AsyncpgNumeric):
    pass


class _Float(_NumericResults, AsyncpgFloat):
    pass


class _Boolean(AsyncpgBoolean):
    """Boolean whose bind check (``1`` -> ``True``, ``2`` refused) runs in C when the speedups
    are built; it accepts and refuses exactly what SQLAlchemy's does."""

    def bind_processor(self, dialect: Any) -> Any:
        return bool_to_bool


class _DateTime(AsyncpgDateTime):
    """``DateTime(timezone=True)`` takes naive values as UTC, as the SQLite backend does."""

    def bind_processor(self, dialect: Any) -> Any:
        if not self.timezone:
            return None

        def assume_utc(value: Any) -> Any:
            if isinstance(value, dt.datetime) and value.tzinfo is None:
                return value.replace(tzinfo=dt.UTC)
            return value

        return assume_utc


class _Uuid(PGUuid[Any]):
    """UUIDs come back as ``uuid.UUID`` itself, not asyncpg's subclass, as on SQLite."""

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        if not self.as_uuid:
            return super().result_processor(dialect, coltype)  # type: ignore[no-untyped-call]  # untyped in SQLAlchemy

        def plain(value: Any) -> Any:
            if value is None or type(value) is uuid.UUID:
                return value
            return uuid.UUID(bytes=value.bytes)

        return plain


class PostgreSQLDialect(PGDialect_asyncpg):
    """SQLAlchemy's asyncpg dialect, adjusted for asyncpg without SQLAlchemy's adapter."""

    supports_native_json_deserialization = False
    dialect_injects_custom_json_deserializer = False
    colspecs = {
        **PGDialect_asyncpg.colspecs,
        sqltypes.Numeric: _Numeric,
        sqltypes.Float: _Float,
        sqltypes.DateTime: _DateTime,
        sqltypes.Uuid: _Uuid,
        sqltypes.Boolean: _Boolean,
    }


# -- SQL analysis --------------------------------------------------------------------------

_TOKENS = re.compile(
    r"'(?:[^']|'')*'"
    r'|"(?:[^"]|"")*"'
    r"|--[^\n]*"
    r"|/\*.*?\*/"
    r"|\$\$.*?\$\$"
    r"|\$(?P<tag>[A-Za-z_]\w*)\$.*?\$(?P=tag)\$"
    r"|\$(?P<n>\d+)(?P<cast>\s*::)?",
    re.DOTALL,
)
# Statements and functions that change the session beyond the current transaction; after
# one of them the connection is reset before another task gets it.
_SESSION_STATEMENT = re.compile(
    r"(?:\A|;)\s*(?:SET|RESET|LISTEN|DISCARD|PREPARE|DEALLOCATE|DECLARE|LOAD)\b", re.IGNORECASE
)
_SESSION_FUNCTION = re.compile(
    r"\b(?:set_config|pg_(?:try_)?advisory_lock(?:_shared)?)\s*\(", re.IGNORECASE
)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)
_NAME = r'(?:"(?:[^"]|"")+"|[\w$]+)'
_INSERT_INTO = re.compile(
    rf"\A\s*INSERT\s+INTO\s+(?P<table>{_NAME}(?:\s*\.\s*{_NAME})?)", re.IGNORECASE
)

Signature = tuple[str | None, ...]


@dataclass(slots=True)
class SqlInfo:
    """What the backend needs to know about one SQL text; computed once, then cached."""

    untyped: tuple[int, ...]
    """Positions (0-based) of parameters that appear at least once without a cast."""
    session: bool
    """Whether the statement may change session state (``SET``, ``LISTEN``, locks ...)."""
    returning: bool
    """Whether the statement has a ``RETURNING`` clause."""
    insert_table: str | None
    """The target of an ``INSERT`` without ``RETURNING``, as written."""
    variants: dict[Signature, str] = field(default_factory=dict)
    """SQL to run for each signature of parameter casts (see ``cast_for``)."""


def analyze(sql: str) -> SqlInfo:
    """Scan ``sql`` once: its untyped placeholders and what kind of statement it is."""
    untyped: set[int] = set()
    code: list[str] = []
    last = 0
    for match in _TOKENS.finditer(sql):
        number = match.group("n")
        if number is None:
            if match.group(0).startswith('"'):
                continue  # a quoted name: kept, the INSERT target may be one
            # Literals and comments cannot hold keywords: blank them for the checks below.
            code.append(sql[last : match.start()])
            code.append(" ")
            last = match.end()
        elif match.group("cast") is None:
            untyped.add(int(number) - 1)
    code.append(sql[last:])
    text = "".join(code)
    returning = _RETURNING.search(text) is not None
    # Only a single INSERT can take a RETURNING clause at its end.
    single = ";" not in text.rstrip().rstrip(";")
    insert = _INSERT_INTO.match(text) if single and not returning else None
    return SqlInfo(
        untyped=tuple(sorted(untyped)),
        session=bool(_SESSION_STATEMENT.search(text) or _SESSION_FUNCTION.search(text)),
        returning=returning,
        insert_table=insert.group("table") if insert is not None else None,
    )


# Server errors that mean "add a type cast to the parameter": ambiguous operator,
# indeterminate type, type mismatch.
_CAST_STATES = {"42725", "42P18", "42804"}
_UNTYPED = {"text", "unknown"}
_CASTS: dict[type, str] = {
    bool: "boolean",
    int: "int8",
    float: "float8",
    Decimal: "numeric",
    dt.date: "date",
    dt.timedelta: "interval",
    bytes: "bytea",
    bytearray: "bytea",
    memoryview: "bytea",
    uuid.UUID: "uuid",
}


def cast_for(value: Any) -> str | None:
    """Return the PostgreSQL type for a value PostgreSQL may have typed as text, or ``None``."""
    kind = type(value)
    if kind is str or value is None:
        return None
    cast = _CASTS.get(kind)
    if cast is not None:
        return cast
    if isinstance(value, dt.datetime):
        return "timestamptz" if value.tzinfo is not None else "timestamp"
    if isinstance(value, dt.time):
        return "timetz" if value.tzinfo is not None else "time"
    if not isinstance(value, str):
        for base, name in _CASTS.items():
            if isinstance(value, base):
                return name
    return None


def with_casts(sql: str, casts: dict[int, str]) -> str:
    """Return ``sql`` with ``$n::type`` for every uncast occurrence of the positions given."""

    def replace(match: re.Match[str]) -> str:
        number = match.group("n")
        if number is None or match.group("cast") is not None:
            return match.group(0)
        cast = casts.get(int(number) - 1)
        return f"${number}::{cast}" if cast is not None else match.group(0)

    return _TOKENS.sub(replace, sql)


async def learn_casts(con: Any, sql: str, info: SqlInfo, signature: Signature) -> str:
    """Ask the server which types it infers for ``sql``'s untyped placeholders, and return the
    SQL to run for this signature: with casts where it took text but the value is not text.

    The answer is remembered in ``info``, so this costs a round trip per statement and
    signature, not per call. Inside a transaction the probe runs in a savepoint, because a
    statement that fails to prepare would abort the transaction.
    """
    savepoint = in_transaction(con)
    wanted = {p: cast for p, cast in zip(info.untyped, signature, strict=True) if cast}
    if savepoint:
        await con.execute("SAVEPOINT aiodatabases_probe")
    try:
        statement = await con.prepare(sql)
    except asyncpg.PostgresError as exc:
        if savepoint:
            await con.execute(
                "ROLLBACK TO SAVEPOINT aiodatabases_probe; RELEASE SAVEPOINT aiodatabases_probe"
            )
        if exc.sqlstate not in _CAST_STATES:
            return sql  # wrong for another reason: let it fail as written
        casts = wanted
    else:
        if savepoint:
            await con.execute("RELEASE SAVEPOINT aiodatabases_probe")
        types = [t.name for t in statement.get_parameters()]
        casts = {p: cast for p, cast in wanted.items() if p < len(types) and types[p] in _UNTYPED}
    result = with_casts(sql, casts) if casts else sql
    info.variants[signature] = result
    return result


def _drop_comment(match: re.Match[str]) -> str:
    token = match.group(0)
    return " " if token.startswith(("--", "/*")) else token


def returning_key(sql: str, key: str) -> str:
    """Return a raw ``INSERT`` with ``RETURNING`` of its key column appended."""
    body = _TOKENS.sub(_drop_comment, sql).rstrip()
    while body.endswith(";"):
        body = body[:-1].rstrip()
    quoted = '"' + key.replace('"', '""') + '"'
    return f"{body}\nRETURNING {quoted}"


# -- errors --------------------------------------------------------------------------------

_BY_CLASS: dict[str, type[exceptions.Error]] = {
    "23": exceptions.IntegrityError,
    "22": exceptions.DataError,
    "42": exceptions.ProgrammingError,
    "26": exceptions.ProgrammingError,
    "34": exceptions.ProgrammingError,
    "3F": exceptions.ProgrammingError,
    "0A": exceptions.NotSupportedError,
    "08": exceptions.OperationalError,
    "25": exceptions.OperationalError,
    "28": exceptions.OperationalError,
    "3D": exceptions.OperationalError,
    "40": exceptions.OperationalError,
    "53": exceptions.OperationalError,
    "54": exceptions.OperationalError,
    "55": exceptions.OperationalError,
    "57": exceptions.OperationalError,
    "58": exceptions.OperationalError,
}
_DISCONNECT_STATES = {"57P01", "57P02", "57P03"}
# serialization_failure and deadlock_detected: the server rolled the transaction back and
# running it again from the start may succeed.
_RETRYABLE_STATES = {"40001", "40P01"}


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection to the server is gone."""
    if isinstance(exc, TimeoutError):
        return False  # a statement over command_timeout: cancelled, the connection lives
    if isinstance(exc, OSError | asyncpg.exceptions.PostgresConnectionError):
        return True
    if getattr(exc, "sqlstate", None) in _DISCONNECT_STATES:
        return True
    return unsent(exc)


def left_mid_statement(exc: BaseException) -> bool:
    """Whether ``exc`` is asyncpg refusing an argument it could not encode: raised after the
    statement was parsed and before it was bound, it leaves the server's implicit transaction
    open (with the parse's table locks) until the connection next sends a Sync."""
    return isinstance(exc, asyncpg.DataError) and str(exc).startswith(
        "invalid input for query argument"
    )


def unsent(exc: BaseException) -> bool:
    """Whether ``exc`` was raised before the statement left: the connection was found closed,
    or busy with a message the server sent on its own (the FATAL error of a killed session,
    read before the end of the stream; our connections are never shared)."""
    if isinstance(exc, asyncpg.InterfaceError):
        return "connection is closed" in str(exc)
    if isinstance(exc, asyncpg.exceptions._base.InternalClientError):
        return str(exc).startswith("cannot switch to state")
    return False


def _ours(exc: BaseException) -> type[exceptions.Error]:
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        if sqlstate == "57014" and "statement timeout" in str(exc):
            return exceptions.QueryTimeoutError
        return _BY_CLASS.get(sqlstate[:2], exceptions.DatabaseError)
    if is_disconnect(exc):
        return exceptions.OperationalError
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):
        return exceptions.ConfigurationError
    if isinstance(exc, asyncpg.exceptions._base.DataError):
        return exceptions.DataError
    if isinstance(exc, asyncpg.InterfaceError):
        return exceptions.ProgrammingError
    return exceptions.DatabaseError


def translate(exc: BaseException, timeout: float | None = None) -> BaseException:
    """Return the aiodatabases error for an asyncpg error; asyncpg's class stays catchable."""
    if isinstance(exc, TimeoutError):
        error = exceptions.QueryTimeoutError(
            f"the statement ran longer than command_timeout={timeout} s and was cancelled"
        )
        error.__cause__ = exc
        return error
    if isinstance(exc, asyncpg.exceptions._base.InternalClientError) and unsent(exc):
        # asyncpg's words for "the server ended this session" would puzzle a caller.
        lost = exceptions.OperationalError(
            "the connection to PostgreSQL was lost: the server ended the session"
        )
        lost.__cause__ = exc
        return lost
    cls = combined_error(_ours(exc), type(exc), "Asyncpg")
    try:
        new = cls(*exc.args)
    except TypeError:
        new = _ours(exc)(*exc.args)
    new.__dict__.update(getattr(exc, "__dict__", {}))
    sqlstate = getattr(exc, "sqlstate", None)
    new.sqlstate = sqlstate if isinstance(sqlstate, str) else None  # type: ignore[attr-defined]  # set on every DatabaseError
    if sqlstate in _RETRYABLE_STATES:
        new.retryable = True  # type: ignore[attr-defined]  # set on every DatabaseError
    new.__cause__ = exc
    return new


# -- connections and statements ------------------------------------------------------------

ITERATE_BATCH = 256
# How long a connection may take to settle (a cancelled statement to stop, a reset to run)
# on its way back to the pool before it is closed instead.
SETTLE_TIMEOUT = 5.0


class Cursor:
    """A server-side cursor over a query's rows; see ``AsyncpgConnection.cursor``.

    Used by the task that opened it, one batch at a time.
    """

    def __init__(
        self,
        connection: AsyncpgConnection,
        entry: CompiledQuery | None,
        sql: str,
        args: Sequence[Any],
    ) -> None:
        self._connection = connection
        self._entry = entry
        self._sql = sql
        self._args = args
        self._cursor: Any = None
        self._open = False
        self._done = False

    async def fetch(self) -> list[Record]:
        """Return the next batch of records; empty when done."""
        if self._done:
            return []
        conn = self._connection
        if self._cursor is None:
            await conn._open_cursor_scope()
            self._open = True
            try:
                info = conn._backend.info(self._sql)
                sql = await conn._guarded(conn._sql_for(self._sql, self._args, info))
                self._cursor = await conn._guarded(conn._con.cursor(sql, *self._args))
            except BaseException:
                self.close()
                raise
        rows = await conn._guarded(self._cursor.fetch(ITERATE_BATCH))
        if len(rows) < ITERATE_BATCH:
            self._done = True
            self._open = False
            await conn._close_cursor_scope()
        if not rows:
            return []
        return conn._meta(self._entry, rows[0]).records(rows)

    def close(self) -> None:
        """Finish the query; the transaction it needed ends before the next statement."""
        self._done = True
        if self._open:
            self._open = False
            self._connection._abandon_cursor_scope()


async def settle_and_close(con: PgConnection) -> None:
    """Close a connection whose statement was cancelled, once the server has stopped it.

    asyncpg has sent the server a cancel request and makes the next statement wait for its
    outcome; closing at once would leave the statement running, locks and all.
    """
    try:
        await con.execute("SELECT 1", timeout=SETTLE_TIMEOUT)
    except asyncio.CancelledError:
        con.terminate()
        raise
    except Exception:
        pass
    con.terminate()


class PgConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped
    """asyncpg's connection with what the pool needs to know between checkouts."""

    __slots__ = ("aiodb_broken", "aiodb_dirty", "aiodb_used")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aiodb_broken = False  # a statement was cancelled mid-flight: close, never reuse
        self.aiodb_dirty = False  # the session may have changed: reset before reuse
        self.aiodb_used = time.monotonic()

    @property
    def aiodb_unwrapped(self) -> PgConnection:
        """This connection, also when reached through asyncpg's pool proxy."""
        return self


class _Discard(Exception):
    """Tells asyncpg's pool to close a connection instead of reusing it."""


async def reset_connection(con: PgConnection) -> None:
    """asyncpg's pool reset hook: reset the session only when it may have changed."""
    if con.aiodb_broken:
        raise _Discard
    if con.aiodb_dirty:
        con.aiodb_dirty = False
        query = con.get_reset_query()
        if query:
            await con.execute(query)


def in_transaction(con: Any) -> bool:
    """Whether a connection (closed ones included) has a transaction open."""
    return not con.is_closed() and bool(con.is_in_transaction())


def row_count(status: str) -> int | None:
    """The row count of a command status such as ``UPDATE 3``."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else None


PRIMARY_KEY_SQL = (
    "SELECT a.attname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a "
    "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
    "WHERE i.indrelid = to_regclass($1) AND i.indisprimary"
)


def given_key(entry: CompiledQuery | None, args: Sequence[Any]) -> Any:
    """The primary key value a Core insert without ``RETURNING`` was given, or ``None``."""
    statement = getattr(getattr(entry, "compiled", None), "statement", None)
    table = getattr(statement, "table", None)
    if entry is None or table is None:
        return None
    columns = list(table.primary_key.columns)
    if len(columns) != 1 or columns[0].key not in entry.unique_names:
        return None
    return args[entry.names.index(columns[0].key)]


_ISOLATION = {
    "serializable": "SERIALIZABLE",
    "repeatable_read": "REPEATABLE READ",
    "read_committed": "READ COMMITTED",
    "read_uncommitted": "READ UNCOMMITTED",
}


def begin_sql(options: TransactionOptions) -> str:
    """The ``BEGIN`` statement for a transaction's options.

    Raises:
        ConfigurationError: An option PostgreSQL does not have.
    """
    if options.mode is not None:
        raise exceptions.ConfigurationError(
            f"transaction option mode={options.mode!r} is for SQLite; PostgreSQL takes "
            "isolation, readonly and deferrable"
        )
    modes = []
    if options.isolation is not None:
        level = _ISOLATION.get(options.isolation)
        if level is None:
            raise exceptions.ConfigurationError(
                f"unknown isolation level {options.isolation!r}; use one of "
                f"{', '.join(sorted(_ISOLATION))}"
            )
        modes.append(f"ISOLATION LEVEL {level}")
    if options.readonly:
        modes.append("READ ONLY")
    if options.deferrable is not None:
        modes.append("DEFERRABLE" if options.deferrable else "NOT DEFERRABLE")
    return "BEGIN " + ", ".join(modes) if modes else "BEGIN"


# -- options -------------------------------------------------------------------------------

_SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
# asyncpg options accepted by name, with how a URL query string value is read.
_DRIVER_OPTIONS = {
    "statement_cache_size": "int",
    "max_cached_statement_lifetime": "float",
    "max_cacheable_statement_size": "int",
    "max_queries": "int",
    "max_inactive_connection_lifetime": "float",
    "direct_tls": "bool",
    "server_settings": "raw",
    "passfile": "raw",
    "target_session_attrs": "raw",
    "krbsrvname": "raw",
    "gsslib": "raw",
}
_POOL_OPTIONS = {"max_queries", "max_inactive_connection_lifetime"}


def connect_options(
    url: DatabaseURL, reader: OptionReader, command_timeout: float | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the keyword arguments for ``asyncpg.connect`` and for ``asyncpg.create_pool``.

    Raises:
        ConfigurationError: A malformed URL or option value.
    """
    connect: dict[str, Any] = {
        "host": url.hostname,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "database": url.database or None,
        "timeout": reader.float("timeout", 10.0),
        "command_timeout": command_timeout,
        "ssl": _ssl_option(reader),
    }
    reader.raw("host")  # a socket directory given as ?host=, already in url.hostname
    pool: dict[str, Any] = {}
    for name, how in _DRIVER_OPTIONS.items():
        if not reader.has(name):
            continue
        if how == "int":
            value: Any = reader.int(name, 0)
        elif how == "float":
            value = reader.float(name, None) or 0.0
        elif how == "bool":
            value = reader.bool(name, False)
        else:
            value = reader.raw(name)
        (pool if name in _POOL_OPTIONS else connect)[name] = value
    return {k: v for k, v in connect.items() if v is not None}, pool


def _ssl_option(reader: OptionReader) -> Any:
    name, other = ("sslmode", "ssl") if reader.has("sslmode") else ("ssl", "sslmode")
    if reader.has(other):
        raise exceptions.ConfigurationError("give either option ssl or sslmode, not both")
    reader.raw(other)
    value = reader.raw(name)
    if not isinstance(value, str):
        return value  # None, a bool or an ssl.SSLContext
    text = value.lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    if text in _SSL_MODES:
        return text
    raise exceptions.ConfigurationError(
        f"option {name}={value!r} must be true, false or one of {', '.join(sorted(_SSL_MODES))}"
    )
