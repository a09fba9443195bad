"""What the asyncpg backend needs besides the connection: its dialect, SQL analysis, errors.

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

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
from sqlalchemy.dialects.postgresql.asyncpg import (
    AsyncpgDateTime,
    AsyncpgFloat,
    AsyncpgNumeric,
    PGDialect_asyncpg,
)
from sqlalchemy.engine import processors
from sqlalchemy.sql import sqltypes

from .. import exceptions
from ._errors import combined_error

__all__ = [
    "PostgreSQLDialect",
    "SqlInfo",
    "analyze",
    "cast_for",
    "is_disconnect",
    "translate",
    "with_casts",
]


# -- the dialect ---------------------------------------------------------------------------


class _NumericResults:
    """Numeric result processing that looks at the value, not at the column's type OID."""

    asdecimal: bool
    _effective_decimal_return_scale: int | None

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

        def as_float(value: Any) -> Any:
            return float(value) if type(value) is Decimal else value

        return as_float


class _Numeric(_NumericResults, AsyncpgNumeric):  # type: ignore[misc]  # SQLAlchemy's private mixins
    pass


class _Float(_NumericResults, AsyncpgFloat):  # type: ignore[misc]  # SQLAlchemy's private mixins
    pass


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


class PostgreSQLDialect(PGDialect_asyncpg):
    """SQLAlchemy's asyncpg dialect, adjusted for asyncpg without SQLAlchemy's adapter."""

    supports_native_json_deserialization = False
    dialect_injects_custom_json_deserializer = False
    colspecs = {
        **PGDialect_asyncpg.colspecs,
        sqltypes.Numeric: _Numeric,
        sqltypes.Float: _Float,
        sqltypes.DateTime: _DateTime,
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
    with_key: str | None = None
    """For a raw ``INSERT``: the statement with ``RETURNING`` of the table's primary key."""


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
    insert = _INSERT_INTO.match(text)
    return SqlInfo(
        untyped=tuple(sorted(untyped)),
        session=bool(_SESSION_STATEMENT.search(text) or _SESSION_FUNCTION.search(text)),
        returning=returning,
        insert_table=insert.group("table") if insert is not None and not returning else None,
    )


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
    if kind is dt.datetime or isinstance(value, dt.datetime):
        return "timestamptz" if value.tzinfo is not None else "timestamp"
    if kind is dt.time or isinstance(value, dt.time):
        return "timetz" if value.tzinfo is not None else "time"
    cast = _CASTS.get(kind)
    if cast is None and not isinstance(value, str):
        for base, name in _CASTS.items():
            if isinstance(value, base):
                return name
    return cast


def with_casts(sql: str, casts: dict[int, str]) -> str:
    """Return ``sql`` with ``$n::type`` for every uncast occurrence of the positions given."""

    def replace(match: re.Match[str]) -> str:
        number = match.group("n")
        if number is None or match.group("cast") is not None:
            return match.group(0)
        cast = casts.get(int(number) - 1)
        return f"${number}::{cast}" if cast is not None else match.group(0)

    return _TOKENS.sub(replace, sql)


def returning_key(sql: str, key: str) -> str:
    """Return a raw ``INSERT`` with ``RETURNING`` of its key column appended."""
    body = sql.rstrip()
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


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection to the server is gone."""
    if isinstance(exc, OSError | asyncpg.exceptions.PostgresConnectionError):
        return True
    if getattr(exc, "sqlstate", None) in _DISCONNECT_STATES:
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)


def _ours(exc: BaseException) -> type[exceptions.Error]:
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        if sqlstate == "57014" and "statement timeout" in str(exc):
            return exceptions.QueryTimeoutError
        return _BY_CLASS.get(sqlstate[:2], exceptions.DatabaseError)
    if is_disconnect(exc):
        return exceptions.OperationalError
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
    cls = combined_error(_ours(exc), type(exc), "Asyncpg")
    try:
        new = cls(*exc.args)
    except TypeError:
        new = _ours(exc)(*exc.args)
    new.__dict__.update(getattr(exc, "__dict__", {}))
    sqlstate = getattr(exc, "sqlstate", None)
    new.sqlstate = sqlstate if isinstance(sqlstate, str) else None  # type: ignore[attr-defined]  # set on every DatabaseError
    new.__cause__ = exc
    return new
